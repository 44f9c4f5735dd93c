package alloc

import (
	"net/netip"
	"testing"
)

func mustPool(t testing.TB, a, b string) *Pool {
	t.Helper()
	p, err := NewPool(netip.MustParseAddr(a), netip.MustParseAddr(b))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolAllocatesEveryAddressOnce(t *testing.T) {
	for _, tc := range []struct{ start, end string }{
		{"10.0.0.1", "10.0.0.1"},
		{"10.0.0.0", "10.0.0.63"},
		{"10.0.0.5", "10.0.1.70"},
		{"10.0.0.0", "10.0.255.255"},
	} {
		p := mustPool(t, tc.start, tc.end)
		seen := map[netip.Addr]bool{}
		for {
			a, ok := p.Allocate()
			if !ok {
				break
			}
			if seen[a] || !p.Contains(a) {
				t.Fatalf("%s-%s: got %s twice or outside the pool", tc.start, tc.end, a)
			}
			seen[a] = true
		}
		if uint32(len(seen)) != p.Size() || p.Available() != 0 {
			t.Fatalf("%s-%s: allocated %d of %d, %d still available", tc.start, tc.end, len(seen), p.Size(), p.Available())
		}
	}
}

func TestFreshBeforeReusedAndReusedInFreeOrder(t *testing.T) {
	p := mustPool(t, "10.0.0.1", "10.0.0.4")
	var got []netip.Addr
	for range 3 {
		a, _ := p.Allocate()
		got = append(got, a)
	}
	p.Free(got[1])
	p.Free(got[0])
	a, _ := p.Allocate()
	if a != netip.MustParseAddr("10.0.0.4") {
		t.Fatalf("want the last fresh address 10.0.0.4 before reused ones, got %s", a)
	}
	a, _ = p.Allocate()
	if a != got[1] {
		t.Fatalf("want least recently freed %s, got %s", got[1], a)
	}
	a, _ = p.Allocate()
	if a != got[0] {
		t.Fatalf("want %s, got %s", got[0], a)
	}
	if _, ok := p.Allocate(); ok {
		t.Fatal("pool should be exhausted")
	}
}

func TestTakeOutOfTurnLeavesNoStaleAllocation(t *testing.T) {
	p := mustPool(t, "10.0.0.1", "10.0.0.2")
	a, _ := p.Allocate()
	b, _ := p.Allocate()
	p.Free(a)
	p.Take(a) // a returning client took it back directly
	p.Free(b)
	got, ok := p.Allocate()
	if !ok || got != b {
		t.Fatalf("want %s, got %s %v", b, got, ok)
	}
	if _, ok := p.Allocate(); ok {
		t.Fatal("stale queue entry was handed out")
	}
}

func TestQueueStaysBounded(t *testing.T) {
	p := mustPool(t, "10.0.0.0", "10.0.0.255")
	for p.Available() > 0 {
		p.Allocate()
	}
	a := netip.MustParseAddr("10.0.0.7")
	for range 100000 {
		p.Free(a)
		p.Take(a)
	}
	if len(p.queue) > 2048 {
		t.Fatalf("queue grew to %d entries for one address", len(p.queue))
	}
}

func TestSetAcrossPools(t *testing.T) {
	s, err := NewSet([][2]netip.Addr{
		{netip.MustParseAddr("10.0.1.0"), netip.MustParseAddr("10.0.1.1")},
		{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.10")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 3 {
		t.Fatalf("size %d", s.Size())
	}
	want := []string{"10.0.0.10", "10.0.1.0", "10.0.1.1"}
	for _, w := range want {
		a, ok := s.Allocate()
		if !ok || a.String() != w {
			t.Fatalf("want %s, got %s %v", w, a, ok)
		}
	}
	if s.Contains(netip.MustParseAddr("10.0.0.11")) || !s.Contains(netip.MustParseAddr("10.0.1.1")) {
		t.Fatal("Contains is wrong")
	}
}

func TestNearlyFullPoolFindsTheLastAddress(t *testing.T) {
	p := mustPool(t, "10.0.0.0", "10.255.255.255") // 16M addresses
	last := netip.MustParseAddr("10.200.13.77")
	for a := netip.MustParseAddr("10.0.0.0"); a.Less(netip.MustParseAddr("11.0.0.0")); a = a.Next() {
		if a != last {
			p.fresh.clear(u32(a) - p.start)
		}
	}
	if got, ok := p.Allocate(); !ok || got != last {
		t.Fatalf("got %s %v, want %s", got, ok, last)
	}
}

func BenchmarkAllocateNearlyFull(b *testing.B) {
	p := mustPool(b, "10.0.0.0", "10.15.255.255") // 1M addresses
	for p.Available() > 16 {
		p.Allocate()
	}
	b.ResetTimer()
	for b.Loop() {
		a, _ := p.Allocate()
		p.Free(a)
	}
}

func BenchmarkAllocateFresh16M(b *testing.B) {
	p := mustPool(b, "10.0.0.0", "10.255.255.255")
	b.ResetTimer()
	for b.Loop() {
		if _, ok := p.Allocate(); !ok {
			b.StopTimer()
			p = mustPool(b, "10.0.0.0", "10.255.255.255")
			b.StartTimer()
		}
	}
}

// TestDrainingPoolMakesNoGrants: a draining pool gives nothing out and
// counts as unavailable, its taken addresses are what DrainingInUse
// reports, and it empties as they are freed (renumbering's progress).
func TestDrainingPoolMakesNoGrants(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	s, err := NewSet([][2]netip.Addr{{a("10.0.0.10"), a("10.0.0.19")}, {a("10.0.0.100"), a("10.0.0.103")}})
	if err != nil {
		t.Fatal(err)
	}
	s.Take(a("10.0.0.11"))
	s.Take(a("10.0.0.12"))
	if s.Drain(a("10.0.0.10"), a("10.0.0.18"), true) {
		t.Fatal("Drain accepted a range that is not a pool")
	}
	if !s.Drain(a("10.0.0.10"), a("10.0.0.19"), true) {
		t.Fatal("Drain refused the pool 10.0.0.10-10.0.0.19")
	}
	if got := s.Available(); got != 4 {
		t.Fatalf("Available %d with the 10-address pool draining, want 4", got)
	}
	if got := s.DrainingInUse(); got != 2 {
		t.Fatalf("DrainingInUse %d, want 2", got)
	}
	if s.IsAvailable(a("10.0.0.13")) || !s.Draining(a("10.0.0.13")) || s.Draining(a("10.0.0.100")) {
		t.Fatal("a draining pool's free address counted as available, or Draining wrong")
	}
	for range 4 {
		ip, ok := s.Allocate()
		if !ok || !ip.Less(a("10.0.0.104")) || ip.Less(a("10.0.0.100")) {
			t.Fatalf("Allocate gave %v, %v; want an address of 10.0.0.100-103", ip, ok)
		}
	}
	if ip, ok := s.Allocate(); ok {
		t.Fatalf("Allocate gave %v from a draining pool", ip)
	}
	s.Free(a("10.0.0.11"))
	s.Free(a("10.0.0.12"))
	if got := s.DrainingInUse(); got != 0 {
		t.Fatalf("DrainingInUse %d after both addresses were freed, want 0", got)
	}
	s.Drain(a("10.0.0.10"), a("10.0.0.19"), false)
	if ip, ok := s.Allocate(); !ok || !s.Contains(ip) {
		t.Fatal("Allocate found nothing once the pool stopped draining")
	}
}
