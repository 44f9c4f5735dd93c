package failover

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// queue orders the binding updates to send. What must reach the partner is
// durable in the records themselves (their PartnerPending mark, read back
// at start); the queue is only the order, the newest copy per address, and
// what is in flight, by xid.
type queue struct {
	mu       sync.Mutex
	order    *list.List // of netip.Addr, oldest first
	elems    map[netip.Addr]*list.Element
	newest   map[netip.Addr]*lease.Lease
	inflight map[uint32][]*lease.Lease
	nflight  int
	wakeC    chan struct{}
	// lazy holds updates that may wait (fast-path renewals), newest copy
	// per address, with when each was first added; promote moves them to
	// the order.
	lazy      map[netip.Addr]lazyUpdate
	lazyOrder []lazyRef // the lazy addresses by since (may hold stale entries)
}

type lazyRef struct {
	ip    netip.Addr
	since time.Time
}

type lazyUpdate struct {
	l     *lease.Lease
	since time.Time
}

func newQueue() *queue {
	return &queue{order: list.New(), elems: map[netip.Addr]*list.Element{}, newest: map[netip.Addr]*lease.Lease{},
		inflight: map[uint32][]*lease.Lease{}, wakeC: make(chan struct{}, 1), lazy: map[netip.Addr]lazyUpdate{}}
}

// add queues copies of changed records; an address already queued keeps
// its place and takes the newer copy.
func (q *queue) add(ls []*lease.Lease) {
	q.mu.Lock()
	for _, l := range ls {
		delete(q.lazy, l.IP) // this copy is newer
		q.newest[l.IP] = l
		if _, ok := q.elems[l.IP]; !ok {
			q.elems[l.IP] = q.order.PushBack(l.IP)
		}
	}
	q.mu.Unlock()
	q.poke()
}

// addLazy queues copies that may wait: an address already queued to send
// takes the newer copy there; otherwise it waits, coalescing later copies,
// until promote.
func (q *queue) addLazy(ls []*lease.Lease, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range ls {
		if _, queued := q.elems[l.IP]; queued {
			q.newest[l.IP] = l
			continue
		}
		u, ok := q.lazy[l.IP]
		if !ok {
			u.since = now
			q.lazyOrder = append(q.lazyOrder, lazyRef{l.IP, now})
		}
		u.l = l
		q.lazy[l.IP] = u
	}
}

// promote queues the lazy updates waiting since before; it reports whether
// it queued any.
func (q *queue) promote(before time.Time) bool {
	q.mu.Lock()
	n := 0
	for len(q.lazyOrder) > 0 && !q.lazyOrder[0].since.After(before) {
		ref := q.lazyOrder[0]
		q.lazyOrder = q.lazyOrder[1:]
		u, ok := q.lazy[ref.ip]
		if !ok || !u.since.Equal(ref.since) {
			continue // sent with a newer copy meanwhile
		}
		delete(q.lazy, ref.ip)
		q.newest[ref.ip] = u.l
		if _, ok := q.elems[ref.ip]; !ok {
			q.elems[ref.ip] = q.order.PushBack(ref.ip)
		}
		n++
	}
	q.mu.Unlock()
	return n > 0
}

func (q *queue) poke() {
	select {
	case q.wakeC <- struct{}{}:
	default:
	}
}

// wake has a value when there may be something to send.
func (q *queue) wake() <-chan struct{} { return q.wakeC }

// next takes up to max records to send, oldest first.
func (q *queue) next(max int) []*lease.Lease {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*lease.Lease
	for len(out) < max {
		e := q.order.Front()
		if e == nil {
			break
		}
		ip := q.order.Remove(e).(netip.Addr)
		delete(q.elems, ip)
		out = append(out, q.newest[ip])
		delete(q.newest, ip)
	}
	return out
}

// sent records a BNDUPD's records as in flight under its xid.
func (q *queue) sent(xid uint32, ls []*lease.Lease) {
	q.mu.Lock()
	q.inflight[xid] = ls
	q.nflight += len(ls)
	q.mu.Unlock()
}

// acked returns the records a BNDACK answers (false: no such xid in
// flight).
func (q *queue) acked(xid uint32) ([]*lease.Lease, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ls, ok := q.inflight[xid]
	if ok {
		delete(q.inflight, xid)
		q.nflight -= len(ls)
	}
	return ls, ok
}

// requeue puts everything in flight back at the front (the connection was
// lost; acks on it will never come), unless a newer copy is queued.
func (q *queue) requeue() {
	q.mu.Lock()
	for xid, ls := range q.inflight {
		for i := len(ls) - 1; i >= 0; i-- {
			l := ls[i]
			if _, queued := q.elems[l.IP]; queued {
				continue
			}
			q.newest[l.IP] = l
			q.elems[l.IP] = q.order.PushFront(l.IP)
		}
		delete(q.inflight, xid)
	}
	q.nflight = 0
	q.mu.Unlock()
	q.poke()
}

// messages is how many BNDUPD messages are in flight.
func (q *queue) messages() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight)
}

// depth is how many records wait to be sent (lazy ones included) and how
// many are in flight.
func (q *queue) depth() (queued, inflight int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.order.Len() + len(q.lazy), q.nflight
}
