package slowpath

import (
	"cmp"
	"container/heap"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// sweepBatch bounds the work one sweep does under the lock, so expiring a
// million leases at once does not stall the server.
const sweepBatch = 20000

// Sweep returns lapsed offers to their pools and moves leases along
// ACTIVE → EXPIRED → FREE and ABANDONED → FREE (after quarantine), in
// batches. Run calls it every second.
func (s *Server) Sweep() {
	now := s.now()
	var changed []*lease.Lease
	s.mu.Lock()
	for s.offerQ.Len() > 0 && s.offerQ.Front().until <= s.offerSince(now) {
		ip := s.offerQ.Front().addr()
		s.offerQ.Pop()
		if o, ok := s.offers[ip]; ok && !o.until.After(now) {
			s.removeOfferLocked(ip)
			s.returnAddrLocked(ip)
		}
	}
	// Informed clients not heard from for a day (inform.go) are
	// forgotten, their stored records deleted.
	s.submitInformedLocked(s.expireInformedLocked(now), nil)
	// Records expired or released in an earlier sweep become FREE now;
	// under failover once the partner has acknowledged them
	// (PartnerAcked queues them again then).
	// Free is the owner's free state: BACKUP in an independent pool's
	// upper half.
	toFree := func(l *lease.Lease) {
		l.State = lease.Free
		if sn := s.subs.forAddr(l.IP); sn != nil {
			l.State = sn.ownerState(l.IP)
		}
	}
	n := min(len(s.toFree), sweepBatch)
	for _, ip := range s.toFree[:n] {
		if l := s.leases.Get(ip); l != nil && l.State.Ending() && s.mayFreeLocked(l, now) {
			changed = append(changed, s.changeLocked(ip, causeExpire, now, toFree))
		}
	}
	s.toFree = s.toFree[n:]
	if len(s.expiry) > 2*s.leases.Len()+expirySlack {
		// Entries of bindings that ended wait for their own time: a
		// churn of new bindings would grow the heap for a lease time.
		// Made anew, it holds one per record at most.
		s.rebuildExpiryLocked()
	}
	due := s.sweepDueLocked(now)
	for i := 0; i < sweepBatch && len(s.expiry) > 0 && s.expiry[0].at <= due; i++ {
		e := heap.Pop(&s.expiry).(expiryEntry)
		ip := lease.AddrFromUint32(e.ip)
		b, ok := s.leases.Brief(ip)
		if !ok || b.State != lease.Active && b.State != lease.Abandoned || bindingTag(b.StateAt) != e.tag {
			continue // ended, or an earlier binding's entry (this one's was pushed when it began)
		}
		if b.Expiry.Unix() > e.at {
			s.expiry.push(ip, b.Expiry, b.StateAt) // renewed since: the entry moves on with it
			continue
		}
		// Due. (An expiry before the entry's had an entry of its own,
		// popped first; a lease found here past it is due all the same.)
		l := s.leases.Get(ip)
		switch l.State {
		case lease.Active:
			// The fast path may have renewed this lease and its event not
			// arrived yet: its map entry holds the latest grant, which the
			// effective expiry takes. With no entry to ask (one missing
			// from the map, or an earlier run's program still attached)
			// the horizon bounds what it can have granted (ARCHITECTURE.md
			// invariant 2), so the address waits for that. Without any
			// fast path the record is every grant this run made (a
			// renewal ACKed on its horizon is in the table at once);
			// grants of earlier runs past their records (XDP's, a
			// crash's) were held at start (LoadHoldingGrants).
			late, asked := s.effectiveExpiryLocked(l)
			if !asked && (s.fast != nil || s.staleFast) {
				late = l.Horizon
			}
			if late.After(l.Expiry) && late.After(now) {
				c := s.changeLocked(ip, causeExpire, now, func(l *lease.Lease) { l.Expiry = late })
				changed = append(changed, c)
				s.expiry.push(ip, c.Expiry, c.StateAt) // this entry is gone, and a later expiry adds none
				continue
			}
			changed = append(changed, s.changeLocked(ip, causeExpire, now, func(l *lease.Lease) { l.State = lease.Expired }))
		case lease.Abandoned:
			changed = append(changed, s.changeLocked(ip, causeExpire, now, toFree))
		}
	}
	s.mu.Unlock()
	if len(changed) > 0 {
		s.commit(changed, causeExpire, nil)
	}
}

// fastClockGrace is how long past its expiry a lease stays active when a
// fast path may answer its renewals. The XDP program reads its clock as
// the coarse monotonic clock (a tick behind) plus an offset to the system
// clock that the daemon writes once a second: in the moment after a
// second begins it may still read the second before, refuse nothing, and
// ACK a renewal the sweep has just judged due, after the sweep asked for
// the grant (Granted) and before the map entry is withdrawn. That ACK
// would be lost with the lease, and the address given to another client.
// The sweep therefore goes by the earlier of its own clock and the
// program's (FastPath.Clock: after a step of the system clock the program
// keeps the old time until the offset's next refresh), less two seconds
// for the coarse tick and the rounding to seconds; it then finds any such
// grant in the map.
const fastClockGrace = 2

// sweepDueLocked is the second up to which expiry entries are due now:
// with a fast path, as fastClockGrace says; without one nothing else
// grants, and a lease is due at its expiry.
func (s *Server) sweepDueLocked(now time.Time) int64 {
	if s.fast == nil && !s.staleFast {
		return now.Unix()
	}
	if s.fast != nil {
		if c, ok := s.fast.Clock(); ok && c.Before(now) {
			now = c
		}
	}
	return now.Unix() - fastClockGrace
}

// expirySlack is how far the expiry heap may grow past twice the number
// of records in the lease table before Sweep makes it anew.
const expirySlack = 1024

// expiryEntry is 16 bytes. Every active or abandoned lease has one, at or
// before its expiry, pushed when the binding began (or its expiry moved
// earlier); entries of bindings that ended stay until their time comes or
// the heap is made anew.
type expiryEntry struct {
	ip uint32 // lease.AddrUint32
	// tag is bindingTag of the record's StateAt when pushed: an entry
	// whose tag is not the record's is an earlier binding's. Without
	// it, an address released and bound again had two entries, both
	// moved on with each renewal for as long as the binding lasted.
	tag uint32
	at  int64
}

// bindingTag tells one binding of an address from the next: the low bits
// of the time its state last changed.
func bindingTag(stateAt time.Time) uint32 { return uint32(stateAt.UnixNano()) }

// expiryHeap orders leases by expiry; an entry popped early (the lease was
// renewed since) moves on to the lease's expiry, an earlier binding's is
// dropped.
type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// Push and Pop implement heap.Interface; use push to add.
func (h *expiryHeap) Push(x any) { *h = append(*h, x.(expiryEntry)) }

// Pop implements heap.Interface.
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (h *expiryHeap) push(ip netip.Addr, at, stateAt time.Time) {
	heap.Push(h, expiryEntry{lease.AddrUint32(ip), bindingTag(stateAt), at.Unix()})
}

// add appends an entry without ordering the heap: for a rebuild, which
// calls init once at the end.
func (h *expiryHeap) add(ip netip.Addr, at, stateAt time.Time) {
	*h = append(*h, expiryEntry{lease.AddrUint32(ip), bindingTag(stateAt), at.Unix()})
}

func (h *expiryHeap) init() { heap.Init(h) }

// freedAddr is an address to hand back to its pool (the BACKUP set when
// backup), with when it became reusable: pools reuse the longest free
// first.
type freedAddr struct {
	ip      netip.Addr
	stateAt int64
	backup  bool
}

func freedOf(l *lease.Lease) freedAddr {
	return freedAddr{ip: l.IP, stateAt: l.StateAt.UnixNano(), backup: l.State == lease.Backup}
}

func sortByStateAt(fs []freedAddr) {
	slices.SortFunc(fs, func(a, b freedAddr) int { return cmp.Compare(a.stateAt, b.stateAt) })
}
