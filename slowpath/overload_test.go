package slowpath

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestStaleRequestsAreDropped: with MaxWait set, a request that waited in
// the socket longer than its client would is dropped and counted, not
// answered late; a DISCOVER (or INFORM) is held to a quarter of it (it is
// cheap to retransmit), so a REQUEST of the same age is still answered; without a kernel timestamp,
// or with MaxWait zero, nothing is dropped for its age.
func TestStaleRequestsAreDropped(t *testing.T) {
	f := newFixture(t)
	f.srv.set.MaxWait = time.Second
	handle := func(m *dhcpv4.DHCPv4, dst netip.Addr, waited time.Duration) int {
		t.Helper()
		in := Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: dst, IfIndex: 7}
		if waited >= 0 {
			in.Received = time.Now().Add(-waited)
		}
		f.srv.Handle(in)
		return len(f.out.take())
	}
	stale := func() float64 { return testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("stale")) }

	// A DISCOVER that waited 300 ms is past a quarter of a second.
	if n := handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast, 300*time.Millisecond); n != 0 || stale() != 1 {
		t.Fatalf("a DISCOVER 300 ms old: %d replies, %v stale", n, stale())
	}
	if n := handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast, 100*time.Millisecond); n != 1 {
		t.Fatalf("a DISCOVER 100 ms old: %d replies", n)
	}
	// A renewal 300 ms old: answered.
	_, renew := f.boundRenewal(mac(2))
	if n := handle(renew, srvAddr, 300*time.Millisecond); n != 1 {
		t.Fatalf("a renewal 300 ms old: %d replies", n)
	}
	// 1.5 s old: dropped.
	if n := handle(renew, srvAddr, 1500*time.Millisecond); n != 0 || stale() != 2 {
		t.Fatalf("a renewal 1.5 s old: %d replies, %v stale", n, stale())
	}
	// No timestamp: answered whatever; MaxWait zero: no bound.
	if n := handle(renew, srvAddr, -1); n != 1 {
		t.Fatalf("a renewal without a timestamp: %d replies", n)
	}
	f.srv.set.MaxWait = 0
	if n := handle(renew, srvAddr, time.Hour); n != 1 || stale() != 2 {
		t.Fatalf("MaxWait 0, a renewal an hour old: %d replies, %v stale", n, stale())
	}
}

// TestOverloadBoundsTheWait: requests older than QueueTarget are handled
// while the backlog is a burst; once every request has been older for a
// whole QueueInterval they are dropped (reason "overload") until a young
// one comes, and a backlog that returns soon after is dropped at once.
func TestOverloadBoundsTheWait(t *testing.T) {
	f := newFixture(t)
	f.srv.set.QueueTarget, f.srv.set.QueueInterval = 10*time.Millisecond, 100*time.Millisecond
	_, renew := f.boundRenewal(mac(2))
	handle := func(waited time.Duration) int {
		t.Helper()
		f.srv.Handle(Incoming{Data: renew.ToBytes(), Src: netip.MustParseAddrPort("10.77.0.100:68"), Dst: srvAddr, IfIndex: 7,
			Received: time.Now().Add(-waited)})
		return len(f.out.take())
	}
	overload := func() float64 { return testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("overload")) }
	start := time.Now()
	answered := 0
	for time.Since(start) < 80*time.Millisecond {
		answered += handle(50 * time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	if answered == 0 || overload() != 0 {
		t.Fatalf("a burst shorter than the interval: %d answered, %v dropped", answered, overload())
	}
	time.Sleep(30 * time.Millisecond) // past the interval, still behind
	if n := handle(50 * time.Millisecond); n != 0 || overload() != 1 {
		t.Fatalf("behind for a whole interval: %d replies, %v dropped", n, overload())
	}
	if n := handle(2 * time.Millisecond); n != 1 {
		t.Fatalf("a young request: %d replies", n)
	}
	if n := handle(50 * time.Millisecond); n != 0 || overload() != 2 {
		t.Fatalf("the backlog back at once: %d replies, %v dropped", n, overload())
	}
}

// TestQueuesAreApart: each socket's backlog is its own. A DISCOVER backlog
// in overload drops old DISCOVERs while REQUESTs of the same age, whose
// socket is not behind, are answered; the other way round, the REQUESTs'
// overload leaves DISCOVERs alone. DISCOVERs get the same QueueTarget as
// REQUESTs: they no longer share a queue with them.
func TestQueuesAreApart(t *testing.T) {
	f := newFixture(t)
	f.srv.set.QueueTarget, f.srv.set.QueueInterval = 10*time.Millisecond, 50*time.Millisecond
	_, renew := f.boundRenewal(mac(2))
	handle := func(m *dhcpv4.DHCPv4, dst netip.Addr, waited time.Duration) int {
		t.Helper()
		f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: dst, IfIndex: 7,
			Received: time.Now().Add(-waited)})
		return len(f.out.take())
	}
	overload := func() float64 { return testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("overload")) }
	discover := func(i int) *dhcpv4.DHCPv4 { return msg(t, dhcpv4.MessageTypeDiscover, mac(byte(10+i))) }

	// A DISCOVER 8 ms old is under the target: answered (it was not
	// before: DISCOVERs had a quarter of it).
	if n := handle(discover(0), bcast, 8*time.Millisecond); n != 1 {
		t.Fatalf("a DISCOVER 8 ms old: %d replies", n)
	}
	// DISCOVERs 30 ms old for longer than the interval: their queue is
	// behind.
	start := time.Now()
	for i := 1; time.Since(start) < 70*time.Millisecond; i++ {
		handle(discover(i), bcast, 30*time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	dropped := overload()
	if n := handle(discover(99), bcast, 30*time.Millisecond); n != 0 || overload() != dropped+1 {
		t.Fatalf("a DISCOVER behind: %d replies, overload %v then %v", n, dropped, overload())
	}
	// A renewal as old, in the other queue: answered.
	if n := handle(renew, srvAddr, 30*time.Millisecond); n != 1 {
		t.Fatalf("a renewal 30 ms old while DISCOVERs are behind: %d replies", n)
	}
	// Now the renewals' queue behind, the DISCOVERs' young again.
	handle(discover(100), bcast, time.Millisecond)
	start = time.Now()
	for time.Since(start) < 70*time.Millisecond {
		handle(renew, srvAddr, 30*time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	dropped = overload()
	if n := handle(renew, srvAddr, 30*time.Millisecond); n != 0 || overload() != dropped+1 {
		t.Fatalf("a renewal behind: %d replies, overload %v then %v", n, dropped, overload())
	}
	if n := handle(discover(0), bcast, 5*time.Millisecond); n != 1 {
		t.Fatalf("a DISCOVER 5 ms old while renewals are behind: %d replies", n)
	}
}

// TestRetriesAheadWaitInThePriorityQueue: a DISCOVER the kernel let into
// the priority socket as a retransmission (Incoming.Priority) is judged
// by that queue's wait. With the DISCOVER queue behind, one as old as the
// DISCOVERs it drops is answered; a DISCOVER past the DISCOVER max-wait
// is stale whichever queue it waited in.
func TestRetriesAheadWaitInThePriorityQueue(t *testing.T) {
	f := newFixture(t)
	f.srv.set.QueueTarget, f.srv.set.QueueInterval = 10*time.Millisecond, 50*time.Millisecond
	f.srv.set.MaxWait = time.Second
	handle := func(m *dhcpv4.DHCPv4, waited time.Duration, priority bool) int {
		t.Helper()
		f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7,
			Received: time.Now().Add(-waited), Priority: priority})
		return len(f.out.take())
	}
	discover := func(i int, secs uint16) *dhcpv4.DHCPv4 {
		m := msg(t, dhcpv4.MessageTypeDiscover, mac(byte(10+i)))
		m.NumSeconds = secs
		return m
	}
	retry := func(i int) *dhcpv4.DHCPv4 { return discover(i, 4) }
	// First tries (secs 0), which nothing spares.
	start := time.Now()
	for i := 1; time.Since(start) < 70*time.Millisecond; i++ {
		handle(discover(i, 0), 30*time.Millisecond, false)
		time.Sleep(5 * time.Millisecond)
	}
	if n := handle(discover(90, 0), 30*time.Millisecond, false); n != 0 {
		t.Fatalf("the DISCOVER queue is not behind: a DISCOVER 30 ms old from it got %d replies", n)
	}
	// From a client the server offered an address to before (the
	// fixture's pool is small): offered it again.
	if n := handle(retry(1), 30*time.Millisecond, true); n != 1 {
		t.Fatalf("a retransmission 30 ms old from the priority socket, which is not behind: %d replies, want 1", n)
	}
	stale := f.dropped("stale")
	if n := handle(retry(92), f.srv.set.MaxWait/4+time.Millisecond, true); n != 0 || f.dropped("stale") != stale+1 {
		t.Fatalf("a retransmission past the DISCOVER max-wait: %d replies, stale drops %v then %v", n, stale, f.dropped("stale"))
	}
}

// gateLog records what the server sets its HoldoffGate to: every
// DISCOVER holdoff in all, and the holdoffs' Base as it changes, the
// DISCOVER's in set and the REQUEST's in req (a change of doublings
// alone is not one).
type gateLog struct {
	all      []Holdoff
	set, req []time.Duration
}

func (g *gateLog) SetHoldoffs(discover, request Holdoff) error {
	g.all = append(g.all, discover)
	if len(g.set) == 0 || g.set[len(g.set)-1] != discover.Base || g.req[len(g.req)-1] != request.Base {
		g.set = append(g.set, discover.Base)
		g.req = append(g.req, request.Base)
	}
	return nil
}

// holdoffFixture is a server whose HoldoffGate the test watches, with its
// queue bounds on (10 ms over 20 ms) and a 2 s DISCOVER holdoff (the
// REQUEST holdoff off).
func holdoffFixture(t *testing.T) (*fixture, *gateLog) {
	f := newFixture(t)
	gate := &gateLog{}
	f.srv.gate = gate
	f.srv.set.QueueTarget, f.srv.set.QueueInterval = 10*time.Millisecond, 20*time.Millisecond
	f.srv.set.DiscoverHoldoff = 2 * time.Second
	return f, gate
}

// boundRenewal binds an address to the client hw by a DORA and returns
// it with the client's renewal of it.
func (f *fixture) boundRenewal(hw net.HardwareAddr) (netip.Addr, *dhcpv4.DHCPv4) {
	f.t.Helper()
	ack := f.dora(hw)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	return ip, msg(f.t, dhcpv4.MessageTypeRequest, hw, dhcpv4.WithClientIP(ip.AsSlice()))
}

// requestFor is a REQUEST from hw asking for a (option 50), with mods.
func requestFor(t *testing.T, hw net.HardwareAddr, a netip.Addr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return msg(t, dhcpv4.MessageTypeRequest, hw, append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.AsSlice())))...)
}

// offerTo has the client hw (its DISCOVER sent with mods) offered an
// address, and returns it with the offer's server identifier, as a
// SELECTING REQUEST names it.
func (f *fixture) offerTo(hw net.HardwareAddr, mods ...dhcpv4.Modifier) (netip.Addr, dhcpv4.Modifier) {
	f.t.Helper()
	offers := f.send(msg(f.t, dhcpv4.MessageTypeDiscover, hw, mods...), bcast)
	if len(offers) != 1 {
		f.t.Fatalf("DISCOVER: %v", offers)
	}
	oip, _ := netip.AddrFromSlice(offers[0].YourIPAddr.To4())
	return oip, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier()))
}

// dropped is how many requests the server dropped for why.
func (f *fixture) dropped(why string) float64 {
	return testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(why))
}

// handleWaited hands m to the server as a broadcast that waited in its
// socket for waited (full: read from a socket more than half full), and
// drops the replies, returning how many there were.
func (f *fixture) handleWaited(m *dhcpv4.DHCPv4, waited time.Duration, full bool) int {
	f.t.Helper()
	f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7,
		Received: time.Now().Add(-waited), QueueFull: full})
	return len(f.out.take())
}

// fallBehind hands m, 30 ms old, to the server for 40 ms: its queue (10 ms
// over 20 ms in holdoffFixture) falls behind.
func (f *fixture) fallBehind(m *dhcpv4.DHCPv4) {
	f.t.Helper()
	start := time.Now()
	for time.Since(start) < 40*time.Millisecond {
		f.handleWaited(m, 30*time.Millisecond, false)
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDiscoverHoldoff: the server turns its HoldoffGate's DISCOVER holdoff on
// when the DISCOVER queue falls behind, keeps it on while the queue,
// which the holdoff shields, is young again, and turns it off when
// DiscoverHoldoff or QueueTarget is zero. A REQUEST backlog does not
// turn it on.
func TestDiscoverHoldoff(t *testing.T) {
	f, gate := holdoffFixture(t)
	_, renew := f.boundRenewal(mac(2))
	handle := func(m *dhcpv4.DHCPv4, waited time.Duration) { f.handleWaited(m, waited, false) }
	discover := msg(t, dhcpv4.MessageTypeDiscover, mac(1))
	handle(discover, time.Millisecond)
	f.fallBehind(renew)
	if len(gate.set) != 0 {
		t.Fatalf("young DISCOVERs, renewals behind: holdoff set %v", gate.set)
	}
	f.fallBehind(discover)
	if len(gate.set) != 1 || gate.set[0] != 2*time.Second {
		t.Fatalf("DISCOVERs behind: holdoff set %v, want [2s]", gate.set)
	}
	handle(discover, time.Millisecond)
	if len(gate.set) != 1 {
		t.Fatalf("a young DISCOVER right after: holdoff set %v, want it left on", gate.set)
	}
	f.srv.set.DiscoverHoldoff = 0
	handle(discover, time.Millisecond)
	if len(gate.set) != 2 || gate.set[1] != 0 {
		t.Fatalf("DiscoverHoldoff 0: holdoff set %v, want it off", gate.set)
	}
	f.srv.set.DiscoverHoldoff = time.Second
	handle(discover, time.Millisecond)
	f.srv.set.QueueTarget = 0
	handle(discover, time.Millisecond)
	if want := []time.Duration{2 * time.Second, 0, time.Second, 0}; !slices.Equal(gate.set, want) {
		t.Fatalf("holdoff set %v, want %v", gate.set, want)
	}
}

// TestHoldoffDoublingsFollowTheQueue: the DISCOVER holdoff's doublings
// start at one, go up one every doublingUp while requests come older than
// the target, to MaxHoldoffDoublings (not for young requests read while
// the queue still counts as behind), and down one for every doublingDown
// after the last of those, counted in time, not in messages; the holdoff
// goes off a linger after the queue was last behind.
func TestHoldoffDoublingsFollowTheQueue(t *testing.T) {
	f, gate := holdoffFixture(t)
	discover := msg(t, dhcpv4.MessageTypeDiscover, mac(1))
	b := &f.srv.backlog
	// later moves the server's last doubling, and the queue's last time
	// behind (when behindToo is false), back by d, as if d had passed.
	later := func(d time.Duration, behindToo bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.doubledAt[classBulk] = b.doubledAt[classBulk].Add(-d)
		if behindToo {
			q := &b.queue[classBulk]
			q.lastBehind, q.lastAged, q.lastDrop, q.aboveSince = q.lastBehind.Add(-d), q.lastAged.Add(-d), time.Time{}, time.Time{}
		}
	}
	last := func() Holdoff {
		t.Helper()
		if len(gate.all) == 0 {
			t.Fatal("the holdoff was never set")
		}
		return gate.all[len(gate.all)-1]
	}
	f.fallBehind(discover)
	if h := last(); h != (Holdoff{2 * time.Second, 1}) {
		t.Fatalf("DISCOVERs behind: holdoff %+v, want 2s doubling once", h)
	}
	// Young DISCOVERs while the queue still counts as behind (a drop
	// within ten intervals), the last old one doublingUp ago: no more
	// doublings.
	b.mu.Lock()
	b.doubledAt[classBulk] = b.doubledAt[classBulk].Add(-doublingUp)
	b.queue[classBulk].lastAged = b.queue[classBulk].lastAged.Add(-doublingUp)
	b.mu.Unlock()
	f.handleWaited(discover, time.Millisecond, false)
	b.mu.Lock()
	stillBehind := b.queue[classBulk].behind(time.Now(), f.srv.set.QueueInterval)
	b.mu.Unlock()
	if !stillBehind {
		t.Fatal("the queue no longer counts as behind: the case is not tested")
	}
	if h := last(); h.Doublings != 1 {
		t.Fatalf("a young DISCOVER right after: holdoff %+v, want still one doubling", h)
	}
	for want := uint32(2); want <= MaxHoldoffDoublings+1; want++ {
		later(doublingUp, false)
		f.handleWaited(discover, 30*time.Millisecond, false) // behind still
		if h := last(); h.Doublings != min(want, MaxHoldoffDoublings) {
			t.Fatalf("behind another %v: holdoff %+v, want %d doublings", doublingUp, h, min(want, MaxHoldoffDoublings))
		}
	}
	// Keeping up: one fewer every doublingDown, however many requests
	// come meanwhile.
	for want := int(MaxHoldoffDoublings) - 1; want >= 2; want-- {
		later(doublingDown, true)
		for range 2 {
			f.handleWaited(discover, time.Millisecond, false)
			if h := last(); h != (Holdoff{2 * time.Second, uint32(want)}) {
				t.Fatalf("keeping up another %v: holdoff %+v, want 2s with %d doublings", doublingDown, h, want)
			}
		}
	}
	// A class quiet for two periods comes down two at once.
	later(2*doublingDown, true)
	f.handleWaited(discover, time.Millisecond, false)
	if h := last(); h != (Holdoff{2 * time.Second, 0}) {
		t.Fatalf("quiet for %v: holdoff %+v, want 2s without doublings", 2*doublingDown, h)
	}
	later(holdoffLinger, true)
	f.handleWaited(discover, time.Millisecond, false)
	if !slices.Equal(gate.set, []time.Duration{2 * time.Second, 0}) {
		t.Fatalf("a linger after, no doublings left: holdoff set %v, want it off", gate.set)
	}
}

// A DISCOVER read from a socket more than half full turns the holdoff on
// however young it is: bursts fill the buffer while the server keeps up
// on average. A REQUEST's full socket does not.
func TestDiscoverHoldoffOnAFullSocket(t *testing.T) {
	f, gate := holdoffFixture(t)
	handle := func(m *dhcpv4.DHCPv4, full bool) { f.handleWaited(m, time.Millisecond, full) }
	handle(msg(t, dhcpv4.MessageTypeRequest, mac(3)), true)
	handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), false)
	if len(gate.set) != 0 {
		t.Fatalf("young DISCOVERs from a socket with room: holdoff set %v", gate.set)
	}
	handle(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), true)
	if !slices.Equal(gate.set, []time.Duration{2 * time.Second}) {
		t.Fatalf("a DISCOVER from a socket more than half full: holdoff set %v, want [2s]", gate.set)
	}
}

// TestRequestHoldoff: the REQUEST holdoff goes on when the REQUEST queue
// falls behind, beside a DISCOVER holdoff already on, and goes off with
// RequestHoldoff 0; a DISCOVER backlog does not turn it on; with the
// bounds off (QueueTarget 0) any message turns both off.
func TestRequestHoldoff(t *testing.T) {
	f, gate := holdoffFixture(t)
	f.srv.set.RequestHoldoff = time.Second
	_, renew := f.boundRenewal(mac(2))
	discover := msg(t, dhcpv4.MessageTypeDiscover, mac(1))
	f.fallBehind(discover)
	if !slices.Equal(gate.req, []time.Duration{0}) || !slices.Equal(gate.set, []time.Duration{2 * time.Second}) {
		t.Fatalf("DISCOVERs behind: REQUEST holdoff %v (want [0]), DISCOVER holdoff %v (want [2s])", gate.req, gate.set)
	}
	f.fallBehind(renew)
	if !slices.Equal(gate.req, []time.Duration{0, time.Second}) || gate.set[len(gate.set)-1] != 2*time.Second {
		t.Fatalf("REQUESTs behind: REQUEST holdoff %v (want [0 1s]), DISCOVER holdoff %v (want it left at 2s)", gate.req, gate.set)
	}
	f.srv.set.RequestHoldoff = 0
	f.handleWaited(renew, time.Millisecond, false)
	if gate.req[len(gate.req)-1] != 0 || gate.set[len(gate.set)-1] != 2*time.Second {
		t.Fatalf("RequestHoldoff 0: REQUEST holdoff %v (want off), DISCOVER holdoff %v (want 2s)", gate.req, gate.set)
	}
	// The bounds turned off (a reload): one message of either class
	// turns both holdoffs off.
	f.srv.set.RequestHoldoff = time.Second
	f.fallBehind(renew)
	if gate.req[len(gate.req)-1] != time.Second {
		t.Fatalf("REQUESTs behind again: REQUEST holdoff %v", gate.req)
	}
	f.srv.set.QueueTarget = 0
	f.handleWaited(discover, time.Millisecond, false)
	if gate.req[len(gate.req)-1] != 0 || gate.set[len(gate.set)-1] != 0 {
		t.Fatalf("QueueTarget 0: REQUEST holdoff %v, DISCOVER holdoff %v; want both off", gate.req, gate.set)
	}
}

// TestUnknownRequestsShedWhenBehind: while the REQUEST queue is behind, a
// REQUEST that would bind a free address to a client the server has not
// seen is dropped unanswered ("overload_unknown"), while a bound client's
// renewal and INIT-REBOOT, a REQUEST for an offer or a reserved address, and those answered by a
// NAK (another client's address, one outside the pools, another network)
// are answered, and one naming another server is dropped as before
// ("other_server"). Before the queue falls behind, an unknown client is
// answered as ever.
func TestUnknownRequestsShedWhenBehind(t *testing.T) {
	f, _ := holdoffFixture(t)
	ip, renew := f.boundRenewal(mac(2))
	dropped := f.dropped
	if n := f.handleWaited(requestFor(t, mac(9), ip.Next()), time.Millisecond, false); n != 1 {
		t.Fatalf("an unknown client's INIT-REBOOT, nothing behind: %d replies, want 1", n)
	}
	f.fallBehind(renew)
	oip, sid := f.offerTo(mac(4))
	otherSID := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 1)))
	unknown0, other0 := dropped("overload_unknown"), dropped("other_server")
	for _, c := range []struct {
		name string
		m    *dhcpv4.DHCPv4
		want int
	}{
		// Free addresses of the pool (10.77.0.100-109): a bind each.
		{"an unknown client's INIT-REBOOT for a free address", requestFor(t, mac(8), netip.MustParseAddr("10.77.0.105")), 0},
		{"an unknown client's renewal of a free address", msg(t, dhcpv4.MessageTypeRequest, mac(7), dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 106))), 0},
		{"an unknown client's SELECTING for a free address not offered to it", requestFor(t, mac(6), netip.MustParseAddr("10.77.0.107"), sid), 0},
		{"the bound client's renewal", renew, 1},
		{"the bound client's INIT-REBOOT", requestFor(t, mac(2), ip), 1},
		{"a REQUEST for an offer", requestFor(t, mac(4), oip, sid), 1},
		{"a reserved client's INIT-REBOOT for its address", requestFor(t, resMAC, netip.MustParseAddr("10.77.0.42")), 1},
		// NAKs, which cost no commit.
		{"an INIT-REBOOT for another client's address", requestFor(t, mac(5), ip), 1},
		{"an INIT-REBOOT for an address outside the pools", requestFor(t, mac(5), netip.MustParseAddr("10.77.0.50")), 1},
		{"an INIT-REBOOT for another network", requestFor(t, mac(5), netip.MustParseAddr("192.0.2.7")), 1},
		{"a SELECTING REQUEST naming another server", requestFor(t, mac(3), netip.MustParseAddr("192.0.2.8"), otherSID), 0},
	} {
		// Behind again: the state lasts ten intervals after a drop,
		// which a loaded machine could outlast between the cases.
		f.handleWaited(renew, 30*time.Millisecond, false)
		if n := f.handleWaited(c.m, time.Millisecond, false); n != c.want {
			t.Errorf("%s while REQUESTs are behind: %d replies, want %d", c.name, n, c.want)
		}
	}
	if d := dropped("overload_unknown") - unknown0; d != 3 {
		t.Errorf("overload_unknown drops %v, want 3", d)
	}
	if d := dropped("other_server") - other0; d != 1 {
		t.Errorf("other_server drops %v, want 1 (not shed as unknown)", d)
	}
}

// TestOfferRequestsOutliveOverload: while the REQUEST queue is behind, a
// SELECTING REQUEST for the offer its client holds (known by its client
// identifier) is answered though it waited past QueueTarget, where a
// renewal or another client's REQUEST for that address of the same age
// is dropped ("overload"); with spare's allowance spent it is dropped too
// (the allowance: TestSpareBounds); past MaxWait it is dropped as stale
// like any other.
func TestOfferRequestsOutliveOverload(t *testing.T) {
	f, _ := holdoffFixture(t)
	f.srv.set.MaxWait = time.Second
	_, renew := f.boundRenewal(mac(2))
	dropped, offer := f.dropped, f.offerTo
	kept := func() float64 { return testutil.ToFloat64(f.srv.m.OfferRequestsKept) }
	// The offered client sends option 61: the offer is held for that
	// identifier, not for the chaddr alone.
	cid := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 0, 4}))
	oip, sid := offer(mac(4), cid)
	f.fallBehind(renew)
	for _, c := range []struct {
		name  string
		m     *dhcpv4.DHCPv4
		want  int
		drops float64 // its own "overload" drops
	}{
		{"the renewal", renew, 0, 1},
		{"another client's SELECTING REQUEST for the offered address", requestFor(t, mac(5), oip, sid), 0, 1},
		{"the offered client's SELECTING REQUEST", requestFor(t, mac(4), oip, sid, cid), 1, 0},
	} {
		f.spareCase(c.name+", while REQUESTs are behind", renew, c.m, c.want, c.drops, kept)
	}
	// With spare's allowance spent (spareMax in the window), the next
	// is dropped like the rest.
	oip, sid = offer(mac(10))
	f.srv.backlog.mu.Lock()
	pq := &f.srv.backlog.queue[classPriority]
	pq.sparedFrom, pq.spared, pq.overloaded = time.Now(), spareMax, 1000*spareShare
	f.srv.backlog.mu.Unlock()
	before, kept0 := dropped("overload"), kept()
	if n := f.handleWaited(requestFor(t, mac(10), oip, sid), 30*time.Millisecond, false); n != 0 || dropped("overload") != before+1 || kept() != kept0 {
		t.Errorf("the allowance spent: %d replies, %v overload drops, %v spared; want 0, 1, 0", n, dropped("overload")-before, kept()-kept0)
	}
	// Past MaxWait: stale, offer or not.
	oip, sid = offer(mac(6))
	stale0 := dropped("stale")
	if n := f.handleWaited(requestFor(t, mac(6), oip, sid), 2*time.Second, false); n != 0 || dropped("stale") != stale0+1 {
		t.Errorf("an offered client's REQUEST 2 s old: %d replies, stale drops %v (want %v)", n, dropped("stale"), stale0+1)
	}
}

// spareCase hands m to the server 30 ms old after spareShare overload
// drops of filler (its queue behind, the state lasting ten intervals after
// a drop, and enough drops for one spare), and checks that it got want
// replies and was dropped for overload (drops 1) or spared (drops 0, as
// kept counts).
func (f *fixture) spareCase(name string, filler, m *dhcpv4.DHCPv4, want int, drops float64, kept func() float64) {
	f.t.Helper()
	for range spareShare {
		f.handleWaited(filler, 30*time.Millisecond, false)
	}
	before, kept0 := f.dropped("overload"), kept()
	if n := f.handleWaited(m, 30*time.Millisecond, false); n != want {
		f.t.Errorf("%s, 30 ms old: %d replies, want %d", name, n, want)
	}
	if d := f.dropped("overload") - before; d != drops || kept()-kept0 != 1-drops {
		f.t.Errorf("%s: %v overload drops, %v spared; want %v and %v", name, d, kept()-kept0, drops, 1-drops)
	}
}

// TestDiscoverRetriesOutliveOverload: while DISCOVERs are behind, a
// DISCOVER whose client has been asking for a second or more (secs, as
// udhcpc, dhclient and dhcpcd count it up in their retransmissions) is
// answered where a first try is dropped, within spare's allowance, which
// only the DISCOVER queue's own drops fund; past the DISCOVER queue's
// MaxWait it is stale like any other.
func TestDiscoverRetriesOutliveOverload(t *testing.T) {
	f, _ := holdoffFixture(t)
	f.srv.set.MaxWait = time.Second // a quarter for DISCOVERs
	kept := func() float64 { return testutil.ToFloat64(f.srv.m.DiscoverRetriesKept) }
	secs := func(n uint16) dhcpv4.Modifier { return func(d *dhcpv4.DHCPv4) { d.NumSeconds = n } }
	flood := msg(t, dhcpv4.MessageTypeDiscover, mac(3))
	f.fallBehind(flood)
	for _, c := range []struct {
		name  string
		m     *dhcpv4.DHCPv4
		want  int
		drops float64
	}{
		{"a first DISCOVER (secs 0)", msg(t, dhcpv4.MessageTypeDiscover, mac(4)), 0, 1},
		{"a retransmitted DISCOVER (secs 4)", msg(t, dhcpv4.MessageTypeDiscover, mac(5), secs(4)), 1, 0},
		{"an INFORM with secs 4 (not a DISCOVER)", msg(t, dhcpv4.MessageTypeInform, mac(6), secs(4)), 0, 1},
	} {
		f.spareCase(c.name+", while DISCOVERs are behind", flood, c.m, c.want, c.drops, kept)
	}
	// The REQUEST queue's drops do not fund it: with the DISCOVER
	// queue's window empty, a retransmission is dropped.
	f.srv.backlog.mu.Lock()
	f.srv.backlog.queue[classPriority].sparedFrom, f.srv.backlog.queue[classPriority].overloaded = time.Now(), 1000*spareShare
	f.srv.backlog.queue[classBulk].sparedFrom, f.srv.backlog.queue[classBulk].overloaded = time.Now(), 0
	f.srv.backlog.mu.Unlock()
	before, kept0 := f.dropped("overload"), kept()
	if n := f.handleWaited(msg(t, dhcpv4.MessageTypeDiscover, mac(7), secs(8)), 30*time.Millisecond, false); n != 0 || f.dropped("overload") != before+1 || kept() != kept0 {
		t.Errorf("only REQUEST drops in the window: %d replies, %v overload drops, %v spared; want 0, 1, 0", n, f.dropped("overload")-before, kept()-kept0)
	}
	// Past the DISCOVER queue's MaxWait (250 ms): stale, retransmitted or not.
	stale0 := f.dropped("stale")
	if n := f.handleWaited(msg(t, dhcpv4.MessageTypeDiscover, mac(8), secs(8)), 300*time.Millisecond, false); n != 0 || f.dropped("stale") != stale0+1 {
		t.Errorf("a retransmitted DISCOVER 300 ms old: %d replies, stale drops %v (want %v)", n, f.dropped("stale"), stale0+1)
	}
}

// TestSpareBounds: in each spareWindow, spare lets through one request
// for every spareShare overload decisions, at most spareMax, and starts
// over in the next window.
func TestSpareBounds(t *testing.T) {
	var b backlog
	q := &b.queue[classPriority]
	t0 := time.Unix(1000, 0)
	spared := func(n int, at time.Time) int {
		k := 0
		for range n {
			if b.spare(classPriority, at) {
				k++
			}
		}
		return k
	}
	if k := spared(1, t0); k != 0 {
		t.Fatalf("no overload decision: %d spared", k)
	}
	for range 2*spareShare - 1 {
		q.countOverloadLocked(t0)
	}
	if k := spared(5, t0); k != 1 {
		t.Fatalf("%d decisions: %d spared, want 1", 2*spareShare-1, k)
	}
	q.countOverloadLocked(t0)
	if k := spared(5, t0); k != 1 {
		t.Fatalf("%d decisions: %d more spared, want 1", 2*spareShare, k)
	}
	for range 1000 * spareShare {
		q.countOverloadLocked(t0.Add(spareWindow / 2))
	}
	if k := spared(1000, t0.Add(spareWindow/2)); k != spareMax-2 {
		t.Fatalf("%d decisions in the window: %d more spared, want %d (spareMax in all)", 1000*spareShare+2*spareShare, k, spareMax-2)
	}
	// The next window: nothing decided in it yet.
	if k := spared(1, t0.Add(spareWindow)); k != 0 {
		t.Fatalf("a new window: %d spared", k)
	}
	for range spareShare {
		q.countOverloadLocked(t0.Add(spareWindow))
	}
	if k := spared(5, t0.Add(spareWindow)); k != 1 {
		t.Fatalf("a new window, %d decisions: %d spared, want 1", spareShare, k)
	}
}

// slowStore commits in order, each batch a while after it is submitted,
// as a disk does under load.
type slowStore struct {
	*memStore
	delay   time.Duration
	q       chan func()
	submits atomic.Int64
}

func newSlowStore(t *testing.T, m *memStore, delay time.Duration) *slowStore {
	s := &slowStore{memStore: m, delay: delay, q: make(chan func(), 1<<16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range s.q {
			time.Sleep(s.delay)
			f()
		}
	}()
	t.Cleanup(func() { close(s.q); <-done })
	return s
}

func (s *slowStore) Submit(ls []*lease.Lease, done func(error)) {
	s.submits.Add(1)
	s.q <- func() { s.memStore.Submit(ls, done) }
}

// TestHorizonsCatchUpWithoutAStorm: when every lease's horizon is due at
// once (a database from before the fast path, or long downtime), they are
// advanced a batch at a time, each batch committed before the next is
// taken: each lease is committed once, and the loop stops when asked.
// Taking the next batch before the last was durable took the same leases
// again and again, without bound.
func TestHorizonsCatchUpWithoutAStorm(t *testing.T) {
	f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
	const n = 3*sweepBatch + 500
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 78, byte(1 + i>>8), byte(i)})
		f.store.leases[ip] = &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: mac(byte(i)), Expiry: f.now.Add(time.Hour), CLTT: f.now}
	}
	f.srv = f.build()
	f.srv.fast = &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
	f.srv.set.HorizonAhead = 4 * time.Hour
	slow := newSlowStore(t, f.store, 20*time.Millisecond)
	f.srv.store = slow
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.RunHorizons(ctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for !func() bool {
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		all := true
		f.srv.leases.Range(nil, func(l *lease.Lease) bool {
			all = !l.DurableHorizon.IsZero()
			return all
		})
		return all
	}() {
		if time.Now().After(deadline) {
			t.Fatalf("horizons not all durable after 10s (%d commits)", slow.submits.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunHorizons did not stop")
	}
	if got := slow.submits.Load(); got > 4 {
		t.Fatalf("%d commits for %d leases due (batches of %d): the same leases were committed again", got, n, sweepBatch)
	}
}

// TestReadyWaitsForABehindStore: while the store is behind by more than
// QueueInterval (here: an ACK's commit held longer), Ready (which the
// packet reader calls before each batch) does not return, so the
// requests behind it wait in the sockets, where admit bounds their wait;
// it returns once the store has caught up, at once with nothing waiting
// or QueueTarget 0, and with ctx's error when ctx ends first. The wait is
// counted as it passes.
func TestReadyWaitsForABehindStore(t *testing.T) {
	f := newFixture(t)
	held := &heldStore{memStore: f.store, open: true}
	f.config = func(c *Config) { c.Store = held }
	f.srv = f.build()
	f.srv.set.QueueTarget, f.srv.set.QueueInterval = 10*time.Millisecond, 30*time.Millisecond
	ready := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return f.srv.Ready(ctx)
	}
	if err := ready(time.Second); err != nil {
		t.Fatalf("nothing waiting for the store: %v", err)
	}

	ack := f.dora(mac(2))
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	held.mu.Lock()
	held.open = false
	held.mu.Unlock()
	f.srv.Handle(Incoming{Data: msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithClientIP(ip.AsSlice())).ToBytes(),
		Src: netip.MustParseAddrPort("10.77.0.100:68"), Dst: srvAddr, IfIndex: 7, Received: time.Now()})
	if n := len(f.out.take()); n != 0 {
		t.Fatalf("an ACK sent before its commit: %d replies", n)
	}
	time.Sleep(40 * time.Millisecond) // past QueueInterval
	if err := ready(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an ACK waiting past QueueInterval: Ready returned %v, want it to wait", err)
	}
	if w := testutil.ToFloat64(f.srv.m.StoreBehind); w < 0.04 {
		t.Fatalf("store_behind_seconds %v after a 50 ms wait", w)
	}
	f.srv.set.QueueTarget = 0
	if err := ready(time.Second); err != nil {
		t.Fatalf("QueueTarget 0: %v", err)
	}
	f.srv.set.QueueTarget = 10 * time.Millisecond

	returned := make(chan error, 1)
	go func() { returned <- ready(10 * time.Second) }()
	select {
	case err := <-returned:
		t.Fatalf("Ready returned (%v) with the ACK still waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	held.release(nil)
	if err := <-returned; err != nil {
		t.Fatalf("the ACK out: Ready returned %v", err)
	}
	if n := len(f.out.take()); n != 1 {
		t.Fatalf("the commit done: %d replies, want the ACK", n)
	}
}
