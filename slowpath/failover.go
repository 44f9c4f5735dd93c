package slowpath

// The slow path's side of failover (draft-ietf-dhc-failover-12): which
// addresses this server may give out while it has a partner, the partner's
// binding updates applied through the one change path (ARCHITECTURE.md
// invariant 8), its acknowledgements, and what the relationship reads to
// catch the partner up. cmd/xdhcpd adapts these methods to
// failover.Bindings (failover imports slowpath, not the reverse).

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/alloc"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// takeAddr makes ip unavailable from both of the subnet's sets (it is
// offered or bound).
func (sn *Subnet) takeAddr(ip netip.Addr) {
	sn.set.Take(ip)
	sn.backup.Take(ip)
}

// requestKind sorts a client message for Partner.Answer; ok is false for
// the messages every state processes (RELEASE and DECLINE only end a
// binding, which the partner then hears of).
func requestKind(p *dhcpwire.Packet, mt uint8) (RequestKind, bool) {
	switch mt {
	case dhcpwire.Discover:
		return RequestNew, true
	case dhcpwire.Request:
		_, sid := p.AddrOption(dhcpwire.OptServerID)
		_, want := p.AddrOption(dhcpwire.OptRequestedIP)
		if sid || want || p.CIAddr.IsUnspecified() {
			return RequestNew, true // SELECTING or INIT-REBOOT
		}
		return RequestRenew, true
	case dhcpwire.Inform:
		return RequestOther, true
	}
	return 0, false
}

// hashKey is what the load-balancing hash reads (RFC 3074 §5, as ISC
// dhcpd and Kea read it): option 61's data with its type byte, else the
// hardware address.
func hashKey(clientID []byte, p *dhcpwire.Packet) []byte {
	if len(clientID) > 0 {
		return clientID
	}
	return p.CHAddr()
}

// mayGiveLocked reports whether failover lets this server give sub's
// address ip, whose record is l (nil: none, so its owner's free state), to
// the client key at now. It only decides ownership; availableForLocked
// checks the rest.
func (s *Server) mayGiveLocked(sub *Subnet, ip netip.Addr, l *lease.Lease, key string, now time.Time) bool {
	if s.partner == nil {
		return l == nil || l.State.Reusable()
	}
	free, backup := s.partner.Allocate(now)
	if _, reserved := sub.ReservedIP[ip]; reserved {
		// A reserved address is its client's (availableForLocked has
		// checked the client): either server may give it, whenever it
		// gives addresses at all, as dhcpd lets the partner that got
		// it with the R flag do. Two grants can only be to that client.
		return (l == nil || l.State.Reusable() || l.State == lease.Backup) && (free || backup)
	}
	owner := func() bool {
		if sub.ownerState(ip) == lease.Backup {
			return backup
		}
		return free
	}
	switch {
	case l == nil:
		return owner()
	case l.State == lease.Backup:
		return backup
	case l.State.Ending():
		// An EXPIRED or RELEASED address is FREE (the primary's; in an
		// independent pool its owner's) once the partner has heard
		// (draft-12 §5.11); its last client may have it back before
		// that.
		if l.ClientKey() == key {
			return free || backup
		}
		return owner() && s.mayFreeLocked(l, now)
	case l.State.Reusable():
		return free
	}
	return false
}

// mayFreeLocked: an EXPIRED or RELEASED record may become FREE once the
// partner has acknowledged it, or without that when the partner allows
// (PARTNER-DOWN, MCLT after every promise made on it).
func (s *Server) mayFreeLocked(l *lease.Lease, now time.Time) bool {
	return s.partner == nil || !l.PartnerPending || s.partner.MayReuse(l, now)
}

// allocateLocked takes an address for a new binding from the sets
// failover allows (without a partner: the one set).
func (s *Server) allocateLocked(sub *Subnet, now time.Time) (netip.Addr, bool) {
	free, backup := true, false
	if s.partner != nil {
		free, backup = s.partner.Allocate(now)
	}
	if free {
		if ip, ok := sub.set.Allocate(); ok {
			return ip, true
		}
	}
	if backup {
		if ip, ok := sub.backup.Allocate(); ok {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// ApplyPartner applies the partner's binding updates (received potential
// expiry in PotExp, times on this server's clock) and waits until the
// accepted ones are on disk; see ApplyPartnerAsync.
func (s *Server) ApplyPartner(ctx context.Context, ups []*lease.Lease) ([]uint8, error) {
	type result struct {
		res []uint8
		err error
	}
	ch := make(chan result, 1)
	s.ApplyPartnerAsync(ups, func(res []uint8, err error) { ch <- result{res, err} })
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ApplyPartnerAsync resolves each of the partner's binding updates against
// the local record by the conflict table (draft-12 §7.1.3), in order and
// before it returns, and commits the accepted ones through changeLocked;
// done gets a reject reason per update (0 for accepted) once they are on
// disk, so the partner's BNDACK follows a durable write (ARCHITECTURE.md
// invariant 6), or the commit's error. It does not wait: the relationship
// goes on reading the partner while the store commits.
func (s *Server) ApplyPartnerAsync(ups []*lease.Lease, done func([]uint8, error)) {
	res := make([]uint8, len(ups))
	now := s.now()
	var changed, ended []*lease.Lease
	s.mu.Lock()
	primary := s.partner != nil && s.partner.Primary()
	for i, u := range ups {
		sn := s.subs.forAddr(u.IP)
		reserved := false
		if sn != nil {
			_, reserved = sn.ReservedIP[u.IP]
		}
		if sn == nil || (!sn.set.Contains(u.IP) && !reserved) {
			res[i] = uint8(wire.ReasonIllegalIP)
			s.warnLimited("failover_illegal_ip", "the partner sent a binding outside this server's pools: do both sides have the same pools?", "ip", u.IP)
			continue
		}
		if !u.State.Valid() {
			res[i] = uint8(wire.ReasonMissingBinding)
			continue
		}
		if u.Reserved && (u.State == lease.Free || u.State == lease.Backup) && !reserved {
			// draft-12 §7.1.3: the partner may give this address to
			// the client it is reserved for; here nobody reserved it.
			res[i] = uint8(wire.ReasonNotReserved)
			s.warnLimited("failover_not_reserved", "the partner sent a reserved address this server has no reservation for: do both sides have the same reservations?", "ip", u.IP)
			continue
		}
		cur := s.leases.Get(u.IP) // a copy, applied to below
		if ok, why := resolveConflict(cur, u, primary, now); !ok {
			res[i] = why
			continue
		}
		if o, offered := s.offers[u.IP]; offered && (u.State != lease.Active || o.client != u.ClientKey()) {
			// The partner's word on the address stands; our offer of
			// it lapses (the client's REQUEST will be NAKed).
			s.removeOfferLocked(u.IP)
		}
		var others []netip.Addr
		if u.State == lease.Active {
			others = s.clientBindingsLocked(u, sn)
		}
		// The copy, without the reservation mark: commit reads each
		// address's record again when it submits (current).
		l := cur
		if l == nil {
			l = &lease.Lease{IP: u.IP}
		}
		s.applyToLocked(l, cur != nil, causePartner, now, func(l *lease.Lease) { adoptPartnerBinding(l, u) })
		if l.State == lease.Active && (len(l.HWAddr) > 0 || len(l.ClientID) > 0) {
			s.indexClientLocked(l, true)
		}
		changed = append(changed, l)
		ended = append(ended, s.oneBindingLocked(u.IP, others, now)...)
	}
	s.mu.Unlock()
	if len(ended) > 0 {
		s.commit(ended, causeReplaced, nil)
	}
	if len(changed) == 0 {
		done(res, nil)
		return
	}
	s.commit(changed, causePartner, func(err error) {
		if err != nil {
			done(nil, fmt.Errorf("storing %d partner binding updates: %w", len(changed), err))
			return
		}
		done(res, nil)
	})
}

// clientBindingsLocked lists the other addresses u's client holds active
// in subnet sn here (its last address, and those bound to its hardware
// address, as replaceOthersLocked looks for them).
func (s *Server) clientBindingsLocked(u *lease.Lease, sn *Subnet) []netip.Addr {
	var out []netip.Addr
	for _, ip := range s.clientAddrsLocked(u.ClientKey(), lease.ClientKey(nil, u.HWType, u.HWAddr)) {
		l := s.leases.Get(ip)
		if ip != u.IP && l != nil && l.State == lease.Active && lease.SameClient(l, u) && sn.Prefix.Contains(ip) && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// oneBindingLocked keeps one client to one binding per subnet when the
// partner's update gave it the address got while it held others here
// (a client that moved to the partner while this server still held its
// old binding, or each server granting one during a partition): the
// binding with the latest client-last-transaction-time stays, as the
// failover draft says for "two addresses, one client" (§7.1.2), and the
// others are RELEASED as a grant here ends them (replaceOthersLocked). The
// partner hears of each end and, applying the same rule to the same
// times, keeps the same binding. Returns copies of the ended records.
func (s *Server) oneBindingLocked(got netip.Addr, others []netip.Addr, now time.Time) []*lease.Lease {
	if len(others) == 0 {
		return nil
	}
	// The latest CLTT stays; on a tie the lower address, so that both
	// servers, each applying the rule to the other's update, keep the
	// same one.
	keep := got
	for _, ip := range others {
		a, b := s.leases.Get(ip).CLTT, s.leases.Get(keep).CLTT
		if a.After(b) || (a.Equal(b) && ip.Less(keep)) {
			keep = ip
		}
	}
	var ended []*lease.Lease
	for _, ip := range append(others, got) {
		if ip == keep {
			continue
		}
		ended = append(ended, s.changeLocked(ip, causeReplaced, now, func(l *lease.Lease) {
			l.State = lease.Released
			l.Expiry, l.CLTT = now, now
		}))
		s.m.Replaced.Inc()
	}
	if keep != got {
		s.moveClientLocked(s.leases.Get(keep).ClientKey(), keep)
	}
	return ended
}

// adoptPartnerBinding makes l the partner's binding u.
func adoptPartnerBinding(l *lease.Lease, u *lease.Lease) {
	same := l.State == lease.Active && u.State == lease.Active && lease.SameClient(l, u)
	// The partner's transaction with the client is the later one: its
	// xid is the one the client expects of a FORCERENEW.
	// (The partner's times are whole seconds.)
	theirs := !same || !u.CLTT.Before(l.CLTT.Truncate(time.Second))
	exp := u.Expiry
	if same && l.Expiry.After(exp) {
		exp = l.Expiry // draft-12 §7.1.5: the later expiry stands
	}
	if !same {
		// What this server promised, and where it saw the client, were
		// about another binding.
		l.Horizon, l.ForceRenewKey = time.Time{}, nil
		l.IfIndex, l.VLANs, l.GIAddr, l.ServerID, l.LastXID = 0, [2]uint16{}, netip.Addr{}, netip.Addr{}, 0
		l.Start = u.CLTT
	}
	l.State, l.Expiry = u.State, exp
	if u.State != lease.Abandoned {
		l.HWType, l.HWAddr, l.ClientID = u.HWType, u.HWAddr, u.ClientID
	}
	if !u.CLTT.IsZero() {
		l.CLTT = u.CLTT
	}
	// The partner's potential expiry, which this server acknowledges: it
	// bounds what this server may grant the client in its turn, as
	// AckedExp does for this server's own updates (draft-12 §7.1.5).
	l.PotExp = u.PotExp
	if u.PotExp.After(l.AckedExp) {
		l.AckedExp = u.PotExp
	}
	if len(u.RelayInfo) > 0 {
		l.RelayInfo = u.RelayInfo
	}
	if len(u.VendorClass) > 0 {
		l.VendorClass = u.VendorClass
	}
	if u.Hostname != "" {
		l.Hostname = u.Hostname
	}
	if len(u.ForceRenewKey) > 0 {
		// The key the partner gave the client (xdhcpd partners over
		// TLS send it): this server can FORCERENEW the client too,
		// with the xid of the client's last transaction, sent beside it.
		l.ForceRenewKey = u.ForceRenewKey
		if u.LastXID != 0 && theirs {
			l.LastXID = u.LastXID
		}
	}
	l.PartnerPending = false
}

// announceReservations tells the partner, from the primary, which
// reserved addresses of the pools are free (sent with the R flag: the
// secondary may then give them, to their clients only) and which
// reservations old had that are gone (sent FREE without it). Reservations
// are configuration, on both sides, so this is sent again at every start
// and reload rather than stored.
func (s *Server) announceReservations(old *subnets) {
	if s.partner == nil || !s.partner.Primary() {
		return
	}
	now := s.now()
	var ls []*lease.Lease
	s.mu.Lock()
	free := func(sn *Subnet, ip netip.Addr) bool {
		l := s.leases.Get(ip)
		return sn.set.Contains(ip) && (l == nil || l.State == lease.Free || l.State == lease.Backup)
	}
	for _, sn := range s.subs.list {
		for ip := range sn.ReservedIP {
			if free(sn, ip) {
				ls = append(ls, &lease.Lease{IP: ip, State: lease.Free, StateAt: now, Reserved: true})
			}
		}
	}
	if old != nil {
		for _, osn := range old.list {
			for ip := range osn.ReservedIP {
				if sn := s.subs.forAddr(ip); sn != nil {
					if _, still := sn.ReservedIP[ip]; !still && free(sn, ip) {
						ls = append(ls, &lease.Lease{IP: ip, State: lease.Free, StateAt: now})
					}
				}
			}
		}
	}
	s.mu.Unlock()
	if len(ls) > 0 {
		s.partner.Update(ls, false)
	}
}

// PartnerAck is the partner's answer to one binding update: Sent is the
// record as sent, Reject the reason it was refused (0: accepted).
type PartnerAck struct {
	Sent   *lease.Lease
	Reject uint8
}

// PartnerAcked records the partner's answers and waits until they are on
// disk; see PartnerAckedAsync.
func (s *Server) PartnerAcked(ctx context.Context, acks []PartnerAck) error {
	changed := s.partnerAckedLocked(acks, true)
	if len(changed) == 0 {
		return nil
	}
	if err := s.commitAndWait(ctx, changed, causePartnerAck); err != nil {
		return fmt.Errorf("storing %d partner acknowledgements: %w", len(changed), err)
	}
	return nil
}

// PartnerAckedAsync records the partner's answers. An accepted update
// raises the record's AckedExp to the potential expiry sent (which lifts
// the cap on what this server may promise), and clears the partner mark
// unless the record has changed since; an EXPIRED or RELEASED record may
// then become FREE. A refused one clears the mark without raising AckedExp.
// The change is made in memory and reaches the disk with the record's next
// commit, not with one of its own: an ack is not worth a write per
// renewal. Lost to a crash, it costs the update being sent again (the
// record is still marked on disk) and a cap from the older AckedExp until
// then, which is the safe side.
func (s *Server) PartnerAckedAsync(acks []PartnerAck) { s.partnerAckedLocked(acks, false) }

// partnerAckedLocked applies acks, and returns copies of the records they
// changed when copies is set (an ack that changes nothing, such as one
// for a record the partner had acked before, costs no copy and no edit:
// a catch-up acks every record).
func (s *Server) partnerAckedLocked(acks []PartnerAck, copies bool) []*lease.Lease {
	now := s.now()
	var changed []*lease.Lease
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range acks {
		cur := s.leases.Get(a.Sent.IP)
		if cur == nil {
			continue
		}
		same := sameAsSent(cur, a.Sent)
		if a.Reject != 0 && (!same || cur.State.Ending()) {
			// A newer version is on its way; or the partner refused
			// an end (EXPIRED, RELEASED) because it holds the address
			// for a client still (a renewal it has not told yet): the
			// address stays marked, so it is not freed, until the
			// partner's update replaces the record.
			continue
		}
		raise := a.Reject == 0 && a.Sent.PotExp.After(cur.AckedExp)
		if raise || (same && cur.PartnerPending) {
			// cur is the record as read (a copy): applied to, and stored.
			s.applyToLocked(cur, true, causePartnerAck, now, func(l *lease.Lease) {
				if raise {
					l.AckedExp = a.Sent.PotExp
				}
				if same {
					l.PartnerPending = false
				}
			})
			if copies {
				changed = append(changed, s.markReservedLocked(cur))
			}
		}
		if same && cur.State.Ending() {
			s.toFree = append(s.toFree, cur.IP)
		}
	}
	return changed
}

// sameAsSent reports whether the partner has now heard everything it needs
// of cur: the version sent had the same binding and times.
func sameAsSent(cur, sent *lease.Lease) bool {
	return cur.State == sent.State && cur.Expiry.Unix() == sent.Expiry.Unix() && cur.CLTT.Unix() == sent.CLTT.Unix() &&
		cur.PotExp.Unix() == sent.PotExp.Unix() && lease.SameClient(cur, sent)
}

// commitAndWait commits cl and waits until it is on disk and its effects
// applied: the durable horizons and the fast path's entries, which the
// store transaction applies after all its callbacks (whenApplied). A
// caller that looked again at once (RunHorizons, after a full batch) saw
// the batch's horizons not yet durable and committed it a second time.
func (s *Server) commitAndWait(ctx context.Context, cl []*lease.Lease, c cause) error {
	done := make(chan error, 1)
	s.commit(cl, c, func(err error) { s.whenApplied(func() { done <- err }) })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PartnerPending calls fn with a copy of every record the partner has not
// acknowledged, until fn returns false.
func (s *Server) PartnerPending(fn func(*lease.Lease) bool) {
	s.eachCopy(func(l *lease.Lease) bool { return l.PartnerPending }, fn)
}

// Addrs returns the address of every record, in address order: the
// partner that takes them all (UPDREQALL) then writes its database in
// key order, appending to its pages instead of inserting at random
// places (a third of a catch-up's time at 1M leases).
func (s *Server) Addrs() []netip.Addr {
	s.mu.Lock()
	keys := s.leases.Addrs(make([]uint32, 0, s.leases.Len()))
	s.mu.Unlock()
	// Sorted as integers: netip.Addr.Compare took 0.3 s at a million.
	slices.Sort(keys)
	ips := make([]netip.Addr, len(keys))
	for i, k := range keys {
		ips[i] = lease.AddrFromUint32(k)
	}
	return ips
}

// Records returns copies of the records of ips that exist (for the
// partner: Reserved set).
func (s *Server) Records(ips []netip.Addr) []*lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := make([]*lease.Lease, 0, len(ips))
	for _, ip := range ips {
		if l := s.leases.Get(ip); l != nil {
			ls = append(ls, s.markReservedLocked(l))
		}
	}
	return ls
}

// eachCopy copies the records that match under the lock, then hands them
// to fn without it (fn may take its time: it sends to the partner).
func (s *Server) eachCopy(match func(*lease.Lease) bool, fn func(*lease.Lease) bool) {
	s.mu.Lock()
	var ls []*lease.Lease
	s.leases.Range(nil, func(l *lease.Lease) bool {
		if match(l) {
			ls = append(ls, s.markReservedLocked(l.Clone()))
		}
		return true
	})
	s.mu.Unlock()
	for _, l := range ls {
		if !fn(l) {
			return
		}
	}
}

// PoolCounts returns the addresses available to give out that pool
// balance moves, FREE (the primary's in NORMAL) and BACKUP (the
// secondary's), over every subnet: independent pools are left out.
func (s *Server) PoolCounts() (free, backup int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.subs.list {
		free += int(sn.set.AvailableMovable())
		backup += int(sn.backup.AvailableMovable())
	}
	return free, backup
}

// Rebalance moves up to n available FREE addresses to BACKUP (n > 0) or
// up to -n BACKUP addresses to FREE (n < 0), from each subnet in
// proportion to what it has available, commits them (they reach the
// partner as binding updates) and returns how many moved. The primary runs
// it for a POOLREQ and for pool balance.
func (s *Server) Rebalance(ctx context.Context, n int) (int, error) {
	to, want := lease.Backup, n
	if n < 0 {
		to, want = lease.Free, -n
	}
	now := s.now()
	var changed []*lease.Lease
	s.mu.Lock()
	from := func(sn *Subnet) *alloc.Set {
		if to == lease.Free {
			return sn.backup
		}
		return sn.set
	}
	// Independent pools' halves are fixed: only the others move.
	var total uint64
	for _, sn := range s.subs.list {
		total += from(sn).AvailableMovable()
	}
	for _, sn := range s.subs.list {
		set := from(sn)
		avail := set.AvailableMovable()
		if total == 0 || avail == 0 {
			continue
		}
		quota := min(want-len(changed), int((uint64(want)*avail+total-1)/total))
		var skipped []netip.Addr
		for moved := 0; moved < quota; {
			ip, ok := set.AllocateMovable()
			if !ok {
				break
			}
			if l := s.leases.Get(ip); l != nil && (to == lease.Backup && l.State != lease.Free && l.State != lease.Reset ||
				to == lease.Free && l.State != lease.Backup) {
				// An EXPIRED or RELEASED address becomes FREE (the
				// primary's) before it can be handed over.
				skipped = append(skipped, ip)
				continue
			}
			changed = append(changed, s.changeLocked(ip, causePool, now, func(l *lease.Lease) { l.State = to }))
			moved++
		}
		for _, ip := range skipped {
			set.Free(ip)
		}
	}
	s.mu.Unlock()
	if len(changed) == 0 {
		return 0, nil
	}
	if err := s.commitAndWait(ctx, changed, causePool); err != nil {
		return 0, fmt.Errorf("moving %d addresses to %s: %w", len(changed), to, err)
	}
	return len(changed), nil
}

// PartnerStateChanged re-decides every lease's serve bit after the
// relationship's state changed (what this server may answer alone) and
// republishes the fast path's entries.
func (s *Server) PartnerStateChanged() {
	s.PublishAll()
}
