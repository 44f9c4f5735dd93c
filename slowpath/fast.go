package slowpath

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// FastPath is the slow path's view of the XDP fast path; cmd/xdhcpd fills
// it in with the BPF maps. Every call happens after the records involved
// are on disk (ARCHITECTURE.md invariants 1 and 2).
type FastPath interface {
	// Publish adds or updates entries the fast path may answer. It keeps
	// neither entries nor their byte fields after it returns: PublishAll
	// reuses that memory for the next chunk.
	Publish(entries []FastLease) error
	// Remove withdraws entries.
	Remove(ips []netip.Addr) error
	// Granted returns the expiry the fast path last granted for ip. The
	// sweeper asks before expiring a lease, because the renewal event may
	// still be on its way; the XDP program refuses renewals at or after
	// that expiry, and the sweep goes by the earlier of its clock and
	// the program's, less the coarse clock's lag (fastClockGrace), so the
	// two cannot race.
	Granted(ip netip.Addr) (time.Time, bool)
	// Clock is the time the XDP program reads now, false when it cannot
	// say: it follows the system clock only at its next offset refresh,
	// and the sweep must not judge a lease due before the program does.
	Clock() (time.Time, bool)
}

// FastLease is everything the XDP program needs to answer a renewal
// exactly as the slow path would: fastpath.Lease, the one Go description of
// a fast-path lease entry, so the adapter in cmd/xdhcpd converts nothing.
// Serve is false when this server must not answer on its own (a FORCERENEW
// is pending or failover forbids it); the fast path punts.
type FastLease = fastpath.Lease

// Renewal is one renewal the fast path answered, reported on its ring
// buffer (or recovered by a scan of its map): fastpath.Renewal.
type Renewal = fastpath.Renewal

// fastLeaseLocked renders l for the fast path, or false when it must not
// be in the map (not active, or no subnet any more).
func (s *Server) fastLeaseLocked(l *lease.Lease) (FastLease, bool) {
	if l.State != lease.Active || !l.ServerID.IsValid() {
		return FastLease{}, false
	}
	sub := s.subs.forAddr(l.IP)
	if sub == nil {
		return FastLease{}, false
	}
	t := grantTimes(sub, sub.LeaseTime)
	return FastLease{
		IP: l.IP, Expiry: l.Expiry, HWType: l.HWType, HWAddr: l.HWAddr, ClientID: l.ClientID, ServerID: l.ServerID,
		IfIndex: l.IfIndex, VLANs: l.VLANs, GIAddr: l.GIAddr, LeaseTime: t[0], T1: t[1], T2: t[2],
		Horizon: l.DurableHorizon, Serve: s.serveLocked(l, sub), Template: sub.Options, RelayInfo: l.RelayInfo,
	}, true
}

// publish follows committed changes into the fast path.
func (s *Server) publish(ls []*lease.Lease) {
	if s.fast == nil {
		return
	}
	var add []FastLease
	var del []netip.Addr
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	for _, l := range ls {
		if b, ok := s.leases.Brief(l.IP); ok && b.Epoch != l.Epoch && l.State == lease.Active {
			// A binding the table has moved on from (released, expired,
			// another client's since): its version landing late must
			// not put its entry back; the newer versions' commits
			// publish or withdraw it.
			continue
		}
		if fl, ok := s.fastLeaseLocked(l); ok {
			add = append(add, fl)
		} else {
			del = append(del, l.IP)
		}
	}
	s.mu.Unlock()
	s.writeFast(add, del)
}

// RenumberInterface moves the bindings recorded on interface index old to
// index new: the served interface was deleted and re-created (a VLAN
// sub-interface rebuilt, a driver reset) and came back with another
// index. The fast path's entries are rewritten at once, so that their
// clients' renewals are answered by XDP again as soon as it is attached,
// instead of each going to the slow path first for arriving on an
// interface its entry does not name; the records follow in a commit.
// Returns how many bindings moved.
func (s *Server) RenumberInterface(old, new int) int {
	if old == new || old <= 0 || new <= 0 {
		return 0
	}
	now := s.now()
	var changed []*lease.Lease
	s.mu.Lock()
	s.leases.Range(func(b *lease.Brief) bool { return b.IfIndex == uint32(old) }, func(l *lease.Lease) bool {
		changed = append(changed, s.changeLocked(l.IP, causeRenumber, now, func(l *lease.Lease) { l.IfIndex = uint32(new) }))
		return true
	})
	s.mu.Unlock()
	if len(changed) == 0 {
		return 0
	}
	// Where a client is reached extends no promise: published before it
	// is durable, unlike a horizon (a crash before the commit costs one
	// renewal through the slow path).
	s.publish(changed)
	s.commit(changed, causeRenumber, nil)
	return len(changed)
}

// writeFast publishes add and withdraws del in the fast path's map.
func (s *Server) writeFast(add []FastLease, del []netip.Addr) {
	if len(add) > 0 {
		if err := s.fast.Publish(add); err != nil {
			s.logLimited(slog.LevelError, "fast_publish", "publishing leases to the fast path", "leases", len(add), "err", err)
		}
	}
	if len(del) > 0 {
		if err := s.fast.Remove(del); err != nil {
			s.logLimited(slog.LevelError, "fast_remove", "removing leases from the fast path", "leases", len(del), "err", err)
		}
	}
}

// PublishAll (re)publishes every active lease and withdraws the rest, for
// start-up reconciliation and after a configuration reload.
//
// It takes the addresses first and the records a chunk at a time: a copy
// of every record at once cost about 480 MB at a million leases, held
// until the last chunk was written (issue 19's profile). Each chunk is
// rendered and written under pubMu, so the server may serve meanwhile
// (the daemon starts serving before its map is full): a record changed
// since is never overwritten by this older rendering of it.
func (s *Server) PublishAll() { _ = s.PublishAllContext(context.Background()) }

// PublishAllContext is PublishAll that stops between chunks once ctx ends,
// with its error.
func (s *Server) PublishAllContext(ctx context.Context) error {
	if s.fast == nil {
		return nil
	}
	s.mu.Lock()
	keys := s.leases.Addrs(make([]uint32, 0, s.leases.Len()))
	s.mu.Unlock()
	var r renderScratch
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(keys), publishChunk)
		s.pubMu.Lock()
		s.writeFast(s.renderAddrs(keys[:n], &r))
		s.pubMu.Unlock()
		keys = keys[n:]
	}
	return nil
}

// publishChunk is how many records PublishAll renders and writes at a
// time.
const publishChunk = 8192

// renderScratch is the memory renderAddrs reads records into, reused
// from one chunk to the next: the entries it renders point into it, and
// are written before the next chunk is read.
type renderScratch struct {
	leases []lease.Lease
	arena  []byte
	add    []FastLease
	del    []netip.Addr
}

// renderAddrs renders the records of ips (lease.AddrUint32) as they are
// now for the fast path: the entries to write, and the addresses to
// withdraw, valid until r is used again.
func (s *Server) renderAddrs(ips []uint32, r *renderScratch) (add []FastLease, del []netip.Addr) {
	if cap(r.leases) < len(ips) {
		r.leases = make([]lease.Lease, len(ips))
	}
	r.arena, r.add, r.del = r.arena[:0], r.add[:0], r.del[:0]
	s.mu.Lock()
	for i, v := range ips {
		ip, l := lease.AddrFromUint32(v), &r.leases[i]
		var ok bool
		// The arena may move as it grows: the entries rendered from
		// it before keep the old one.
		if r.arena, ok = s.leases.GetInto(ip, l, r.arena); !ok {
			r.del = append(r.del, ip)
			continue
		}
		if fl, ok := s.fastLeaseLocked(l); ok {
			r.add = append(r.add, fl)
		} else {
			r.del = append(r.del, ip)
		}
	}
	s.mu.Unlock()
	return r.add, r.del
}

// FoldRenewals records renewals the fast path answered: expiry, CLTT, xid
// and where the request came from, committed in one batch. Renewals for
// leases that changed since (released, declined, reallocated) are ignored:
// the slow path's record wins. They are not republished (the map already
// holds them) but do go to the partner.
func (s *Server) FoldRenewals(rs []Renewal) {
	var changed []*lease.Lease
	var answers []*frAnswer
	s.mu.Lock()
	now := s.now()
	for _, r := range rs {
		l := s.leases.Get(r.IP)
		// A renewal is news when it happened after the client's last
		// transaction on record, whichever path made that one: the fast
		// path reports when to the (coarse) nanosecond, so a renewal it
		// answered in the same second as the slow path's ACK is still
		// ordered, and its xid, which a FORCERENEW must carry, kept. The
		// same renewal seen again (a map scan; on disk the CLTT has whole
		// seconds) is not news.
		if l == nil || l.State != lease.Active || string(l.HWAddr) != string(r.HWAddr) || !r.At.After(l.CLTT) ||
			(r.XID == l.LastXID && !r.Expiry.After(l.Expiry)) {
			continue
		}
		changed = append(changed, s.changeLocked(r.IP, causeFold, now, func(l *lease.Lease) {
			// Never shorter than what is on record (a grant the horizon cut).
			l.Expiry, l.CLTT, l.LastXID = later(l.Expiry, r.Expiry), r.At, r.XID
			if r.GIAddr.IsValid() && !r.GIAddr.IsUnspecified() {
				l.GIAddr = r.GIAddr
			}
		}))
	}
	// After the folds, so that the serve-bit change is the newer copy.
	for _, r := range rs {
		if p := s.frPending[r.IP]; p != nil && p.tries > 0 && !r.At.Before(p.first) {
			// A renewal the fast path answered after the FORCERENEW
			// left (the map still said Serve when the REQUEST came):
			// the client answered.
			if l := s.leases.Get(r.IP); l != nil && l.ClientKey() == p.key && string(l.HWAddr) == string(r.HWAddr) {
				if a, ok := s.answeredLocked(r.IP, false, now); ok && a != nil {
					answers = append(answers, a)
				}
			}
		}
	}
	s.mu.Unlock()
	if len(changed) > 0 {
		s.m.FastRenewalsFolded.Add(float64(len(changed)))
		s.commit(changed, causeFold, nil)
	}
	s.commitAnswers(answers)
}

// AdvanceHorizons keeps every active lease's promise horizon at least half
// of HorizonAhead in the future, so the fast path never punts a steady-state
// renewal for the horizon. New horizons go to disk first, then to the map.
func (s *Server) AdvanceHorizons() int {
	changed := s.horizonsDue()
	if len(changed) > 0 {
		s.commit(changed, causeHorizon, nil)
	}
	return len(changed)
}

// horizonsDue moves up to sweepBatch horizons in memory and returns the
// copies to commit.
func (s *Server) horizonsDue() []*lease.Lease {
	ahead := s.settings().HorizonAhead
	if ahead <= 0 || s.fast == nil {
		return nil
	}
	now := s.now()
	var changed []*lease.Lease
	s.mu.Lock()
	// The durable horizon decides: one moved in memory by a commit that
	// failed was never published, and needs moving again.
	due := func(b *lease.Brief) bool {
		return b.State == lease.Active && b.DurableHorizon.Sub(now) < ahead/2
	}
	s.leases.Range(due, func(l *lease.Lease) bool {
		if s.horizonMovesLocked(l, now, ahead) {
			// changeLocked moves the horizon (causeHorizon).
			changed = append(changed, s.changeLocked(l.IP, causeHorizon, now, func(*lease.Lease) {}))
		}
		return len(changed) < sweepBatch
	})
	s.mu.Unlock()
	return changed
}

// horizonMovesLocked: whether advancing l's horizon is worth a commit. A
// failover partner's cap (its acknowledged potential expiry plus MCLT) may
// hold it short of ahead/2; while the partner does not acknowledge (it is
// down) the cap creeps with the clock, and committing every lease for each
// creep would be a write storm for a few minutes each.
func (s *Server) horizonMovesLocked(l *lease.Lease, now time.Time, ahead time.Duration) bool {
	if s.partner == nil {
		return true
	}
	h, ok := s.horizonLocked(l, now)
	return ok && h.Sub(l.DurableHorizon) >= ahead/8
}

// RunHorizons advances horizons every interval until ctx ends.
func (s *Server) RunHorizons(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// A full batch may leave more due (a database whose horizons
			// all fell behind: after downtime, or the fast path newly on).
			// Each batch waits for its commit: its leases count as moved
			// only once durable, so not waiting picked the same ones again
			// and again, piling up commits without bound (11 GB at a
			// million leases, and a shutdown that never came).
			for ctx.Err() == nil {
				changed := s.horizonsDue()
				if len(changed) == 0 {
					break
				}
				if err := s.commitAndWait(ctx, changed, causeHorizon); err != nil {
					if ctx.Err() == nil {
						s.logLimited(slog.LevelError, "horizons", "advancing horizons", "leases", len(changed), "err", err)
					}
					break
				}
				if len(changed) < sweepBatch {
					break
				}
			}
		}
	}
}

func (s *Server) settings() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// AssumeGrantedToHorizon is for a fast path whose map did not survive
// (reboot, detach): whatever it granted is gone with it, and all that is
// known is that no grant went past a lease's durable horizon (ARCHITECTURE.md
// invariant 2). Every active lease is therefore held until its horizon.
//
// The records are extended in memory at once, and commit stores them (and
// tells the partner) in batches of sweepBatch, each waited for; the caller
// runs it, from a goroutine it owns, once the server serves. The disk may
// lag meanwhile without harm: a restart before commit ends finds the same
// durable horizons and extends the same records again. Committing every
// record in one batch, as this did, took 21 GB and the OOM killer at ten
// million leases. It returns how many leases were extended.
func (s *Server) AssumeGrantedToHorizon() (n int, commit func(context.Context) error) {
	s.mu.Lock()
	held := func(b *lease.Brief) bool { return b.State == lease.Active && b.DurableHorizon.After(b.Expiry) }
	n = 0
	s.leases.Range(func(b *lease.Brief) bool {
		if held(b) {
			n++
		}
		return false
	}, func(*lease.Lease) bool { return true })
	ips := make([]uint32, 0, n) // ten million appended grew it over and again
	// Only expiries and the partner's marks change (no state, pool or
	// count), and every record's expiry may: the heap is made once after.
	s.leases.Range(held, func(l *lease.Lease) bool {
		if holdToHorizon(l) {
			s.leases.Put(l)
			ips = append(ips, lease.AddrUint32(l.IP))
		}
		return true
	})
	if len(ips) > 0 {
		s.rebuildExpiryLocked()
	}
	s.mu.Unlock()
	return len(ips), func(ctx context.Context) error { return s.commitAddrs(ctx, ips, causeAssume) }
}

// releaseEvery is how many batches of sweepBatch commitAddrs writes
// between two releases of the store's mapped pages (200,000 records, some
// 50 MB of the file).
const releaseEvery = 10

// holdToHorizon is the change to one record that AssumeGrantedToHorizon
// and LoadHoldingGrants make (what applyToLocked would make for
// causeAssume, without its bookkeeping, which does not move): an active
// lease whose durable horizon is past its expiry expires at the horizon,
// and the partner is to hear of it. It reports whether l changed.
func holdToHorizon(l *lease.Lease) bool {
	if l.State != lease.Active || !l.DurableHorizon.After(l.Expiry) {
		return false
	}
	l.Expiry = l.DurableHorizon
	l.PartnerPending = true
	l.PotExp = later(l.Expiry, l.Horizon)
	return true
}

// commitAddrs commits the records of ips (lease.AddrUint32: four bytes an
// address, not netip.Addr's 24, at ten million) as they are now,
// sweepBatch at a time, each batch on disk before the next is read.
func (s *Server) commitAddrs(ctx context.Context, ips []uint32, c cause) error {
	defer s.releaseMapped()
	for batch := 1; len(ips) > 0; batch++ {
		if batch%releaseEvery == 0 {
			s.releaseMapped()
		}
		n := min(len(ips), sweepBatch)
		cl := make([]*lease.Lease, 0, n)
		for _, ip := range ips[:n] {
			cl = append(cl, &lease.Lease{IP: lease.AddrFromUint32(ip)}) // commit reads each record as it is when it submits
		}
		if err := s.commitAndWait(ctx, cl, c); err != nil {
			return fmt.Errorf("committing %d records (%d more to go): %w", n, len(ips)-n, err)
		}
		ips = ips[n:]
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
