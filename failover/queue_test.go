package failover

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func TestQueueOrderDedupeRequeue(t *testing.T) {
	q := newQueue()
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	l := func(ip netip.Addr, v int64) *lease.Lease { return &lease.Lease{IP: ip, LastXID: uint32(v)} }
	q.add([]*lease.Lease{l(a, 1), l(b, 1)})
	q.add([]*lease.Lease{l(a, 2), l(c, 1)}) // a keeps its place, takes the newer copy
	got := q.next(2)
	if len(got) != 2 || got[0].IP != a || got[0].LastXID != 2 || got[1].IP != b {
		t.Fatalf("next: %+v", got)
	}
	q.sent(7, got)
	if n, f := q.depth(); n != 1 || f != 2 || q.messages() != 1 {
		t.Fatalf("depth %d %d messages %d", n, f, q.messages())
	}
	q.add([]*lease.Lease{l(b, 3)}) // newer than the one in flight
	q.requeue()
	got = q.next(10)
	if len(got) != 3 || got[0].IP != a || got[1].IP != c && got[1].IP != b {
		t.Fatalf("after requeue: %+v", got)
	}
	for _, x := range got {
		if x.IP == b && x.LastXID != 3 {
			t.Fatalf("requeue put back the older copy of b: %+v", x)
		}
	}
	if _, ok := q.acked(7); ok {
		t.Fatal("an ack for a requeued batch")
	}
}

// TestLazyUpdatesCoalesce: fast-path renewals wait LazyDelay and collapse
// to one update per address; a non-lazy change of the address sends at
// once with the newest copy.
func TestLazyUpdatesCoalesce(t *testing.T) {
	q := newQueue()
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	t0 := time.Unix(1_800_000_000, 0)
	for i := 0; i < 5; i++ {
		q.addLazy([]*lease.Lease{{IP: a, LastXID: uint32(i)}}, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	q.addLazy([]*lease.Lease{{IP: b}}, t0.Add(800*time.Millisecond))
	if got := q.next(10); len(got) != 0 {
		t.Fatalf("lazy updates sent before promote: %+v", got)
	}
	if n, _ := q.depth(); n != 2 {
		t.Fatalf("depth %d, want the 2 addresses waiting", n)
	}
	if !q.promote(t0.Add(500 * time.Millisecond)) {
		t.Fatal("nothing promoted")
	}
	got := q.next(10)
	if len(got) != 1 || got[0].IP != a || got[0].LastXID != 4 {
		t.Fatalf("promoted %+v, want a's newest copy only", got)
	}
	q.add([]*lease.Lease{{IP: b, LastXID: 9}}) // a change of b: now, newest
	got = q.next(10)
	if len(got) != 1 || got[0].IP != b || got[0].LastXID != 9 {
		t.Fatalf("next %+v", got)
	}
	if q.promote(t0.Add(time.Hour)); len(q.next(10)) != 0 {
		t.Fatal("b sent twice")
	}
}
