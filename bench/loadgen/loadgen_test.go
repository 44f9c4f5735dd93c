package loadgen

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
)

func TestMessageAppend(t *testing.T) {
	pop := Population{ClientIDs: true, Opt82: true}
	id := pop.Identity(70000)
	if pop.Identity(1).MAC.String() == id.MAC.String() {
		t.Fatal("two clients share a MAC")
	}
	tests := []struct {
		name  string
		m     Message
		codes []uint8
	}{
		{"relayed discover", Message{Type: dhcpwire.Discover, XID: 7, ID: id, GIAddr: netip.MustParseAddr("10.80.0.1")},
			[]uint8{53, 61, 55, 82}},
		{"retransmitted discover", Message{Type: dhcpwire.Discover, XID: 7, ID: id, GIAddr: netip.MustParseAddr("10.80.0.1"), Secs: 12},
			[]uint8{53, 61, 55, 82}},
		{"selecting", Message{Type: dhcpwire.Request, XID: 7, ID: id, Requested: netip.MustParseAddr("10.80.1.9"), ServerID: netip.MustParseAddr("10.64.0.1"), Broadcast: true},
			[]uint8{53, 50, 54, 61, 55}},
		{"renewal", Message{Type: dhcpwire.Request, XID: 8, ID: id, CIAddr: netip.MustParseAddr("10.80.1.9")},
			[]uint8{53, 61, 55}},
		{"release", Message{Type: dhcpwire.Release, XID: 9, ID: id, CIAddr: netip.MustParseAddr("10.80.1.9"), ServerID: netip.MustParseAddr("10.64.0.1")},
			[]uint8{53, 54, 61}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p dhcpwire.Packet
			if err := p.Parse(tt.m.Append(nil)); err != nil {
				t.Fatal(err)
			}
			if p.Op != dhcpwire.BootRequest || p.XID != tt.m.XID || p.MessageType() != tt.m.Type || p.CIAddr != orZero(tt.m.CIAddr) ||
				p.GIAddr != orZero(tt.m.GIAddr) || string(p.CHAddr()) != string(id.MAC) || p.Broadcast() != tt.m.Broadcast || p.Secs != tt.m.Secs {
				t.Fatalf("header wrong: %+v", p)
			}
			if got := p.Codes(); string(got) != string(tt.codes) {
				t.Fatalf("options %v, want %v", got, tt.codes)
			}
			if v, _ := p.Option(dhcpwire.OptClientID); string(v) != string(id.ClientID) {
				t.Fatalf("client-id %x", v)
			}
			if tt.m.GIAddr.IsValid() {
				if v, _ := p.Option(dhcpwire.OptRelayAgentInfo); string(v) != string(id.Opt82) {
					t.Fatalf("option 82 %x", v)
				}
			}
		})
	}
}

func orZero(a netip.Addr) netip.Addr {
	if a.IsValid() {
		return a
	}
	return netip.IPv4Unspecified()
}

func TestFrame(t *testing.T) {
	server := netip.MustParseAddr("10.64.0.1")
	smac := []byte{2, 0, 0, 0, 0, 1}
	for vl := range 3 {
		id := Population{VLANs: vl}.Identity(5)
		for _, ci := range []netip.Addr{{}, netip.MustParseAddr("10.64.1.5")} {
			p := Packet{Payload: Message{Type: dhcpwire.Request, XID: 1, ID: id, CIAddr: ci}.Append(nil), Client: id, CIAddr: ci}
			f := Frame(p, server, smac)
			etype, vlans, l3, ok := stripEthernet(f)
			if !ok || etype != etherIPv4 || len(vlans) != vl {
				t.Fatalf("vlans %d: ethertype %#x tags %v", vl, etype, vlans)
			}
			if vl == 2 && binary.BigEndian.Uint16(f[12:]) != ether8021A {
				t.Fatal("outer tag of two is not 802.1ad")
			}
			src, dst, payload, ok := udpPayload(l3)
			if !ok || string(payload) != string(p.Payload) || src.Port() != 68 || dst.Port() != 67 {
				t.Fatalf("udp: %v %v %v", src, dst, ok)
			}
			wantDst, wantMAC := netip.MustParseAddr("255.255.255.255"), broadcastMAC
			if ci.IsValid() {
				wantDst, wantMAC = server, smac
			}
			if dst.Addr() != wantDst || string(f[:6]) != string(wantMAC) || string(f[6:12]) != string(id.MAC) || src.Addr() != orZero(ci) {
				t.Fatalf("addresses: %v -> %v, %x", src, dst, f[:12])
			}
		}
	}
}

func TestLatencyQuantiles(t *testing.T) {
	var l Latency
	for i := 1; i <= 1000; i++ {
		l.Add(time.Duration(i) * 10 * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := l.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.04 {
			t.Errorf("p%v = %v, want %v within 4%%", c.q*100, got, c.want)
		}
	}
	var empty Latency
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for us := uint64(0); us < 1<<20; us += 7 {
		if b := bucket(us); bucketValue(b) < us || (b > 0 && bucketValue(b-1) >= us) {
			t.Fatalf("%d µs in bucket %d bounded by %d", us, b, bucketValue(b))
		}
	}
}

// fakeServer answers the generator in memory, so that the engine's
// bookkeeping can be checked without a network: it hands out addresses
// in order, answers renewals, and can be told to misbehave.
type fakeServer struct {
	mu    sync.Mutex
	queue []queued
	// readDelay holds each Recv back, as a generator that waits for a
	// CPU would be; the answers keep the time they were queued.
	readDelay time.Duration
	next      uint32
	leases    map[string]netip.Addr
	drop      func(n int) bool // drop the nth request
	corrupt   func(n int) bool // answer the nth request with the wrong address
	n         int
	cond      *sync.Cond
	closed    bool
	lease     uint32
	same      bool // offer every client the same address
	// key, when set, goes in option 90 of every ACK to a client that
	// sent 145; nakRenew NAKs REQUESTs from a bound client (ciaddr set).
	key      *auth.Key
	replay   uint64
	nakRenew bool
	lastXID  map[string]uint32 // the xid of each client's last ACKed REQUEST
}

func newFake() *fakeServer {
	f := &fakeServer{leases: map[string]netip.Addr{}, next: 0x0a500100, lease: 3600, lastXID: map[string]uint32{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fakeServer) Name() string { return "fake" }

func (f *fakeServer) Send(pkts []Packet) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, pk := range pkts {
		var p dhcpwire.Packet
		if p.Parse(pk.Payload) != nil {
			continue
		}
		f.n++
		if f.drop != nil && f.drop(f.n) {
			continue
		}
		key := string(p.CHAddr())
		h := dhcpwire.ReplyHeader(&p)
		var typ uint8
		switch p.MessageType() {
		case dhcpwire.Discover:
			a, ok := f.leases[key]
			if f.same {
				a, ok = netip.MustParseAddr("10.80.1.1"), true
			}
			if !ok {
				a = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, f.next)))
				f.next++
				f.leases[key] = a
			}
			h.YIAddr, typ = a, dhcpwire.Offer
		case dhcpwire.Request:
			a := f.leases[key]
			if f.same {
				a = netip.MustParseAddr("10.80.1.1")
			}
			h.YIAddr, typ = a, dhcpwire.Ack
			if f.nakRenew && p.CIAddr.IsValid() && !p.CIAddr.IsUnspecified() {
				h.YIAddr, typ = netip.IPv4Unspecified(), dhcpwire.Nak
			} else {
				f.lastXID[key] = p.XID
			}
		case dhcpwire.Release:
			continue
		}
		if f.corrupt != nil && f.corrupt(f.n) {
			h.YIAddr = netip.MustParseAddr("192.0.2.1")
		}
		b := dhcpwire.AppendHeader(nil, h)
		b = append(b, dhcpwire.OptMessageType, 1, typ)
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr("10.64.0.1"))
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, f.lease)
		if _, ok := p.Option(dhcpwire.OptForceRenewNonce); ok && f.key != nil && typ == dhcpwire.Ack {
			f.replay++
			b = auth.AppendKeyOption(b, f.replay, *f.key)
		}
		if v, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok {
			b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, v)
		}
		f.queue = append(f.queue, queued{append(b, dhcpwire.OptEnd), time.Now().Round(0)})
	}
	f.cond.Broadcast()
	return len(pkts), nil
}

// queued is an answer the fake has sent and when: the kernel's stamp,
// wall clock only, as the kernel's (Round(0) drops the monotonic reading).
type queued struct {
	b  []byte
	at time.Time
}

func (f *fakeServer) Recv(msgs []Received, wait time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 && !f.closed {
		t := time.AfterFunc(wait, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
		f.cond.Wait()
		t.Stop()
	}
	if len(f.queue) > 0 && f.readDelay > 0 {
		// Hand answers over no sooner than readDelay after they came.
		ripe := f.queue[0].at.Add(f.readDelay)
		f.mu.Unlock()
		time.Sleep(time.Until(ripe))
		f.mu.Lock()
	}
	n := 0
	for n < len(msgs) && len(f.queue) > 0 && time.Since(f.queue[0].at) >= f.readDelay {
		msgs[n].N = copy(msgs[n].Buf, f.queue[0].b)
		msgs[n].Arrived = f.queue[0].at
		f.queue = f.queue[1:]
		n++
	}
	return n, nil
}

func (f *fakeServer) Close() error { return nil }

func newGen(t *testing.T, f *fakeServer, clients int) *Gen {
	t.Helper()
	g, err := New(Config{Clients: clients, Pop: Population{ClientIDs: true, Opt82: true}, Server: netip.MustParseAddr("10.64.0.1"),
		GIAddr: netip.MustParseAddr("10.80.0.1"), LeaseTime: time.Hour, Timeout: 200 * time.Millisecond}, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// boundGen is newGen with every client holding a lease.
func boundGen(t *testing.T, f *fakeServer, clients int) *Gen {
	t.Helper()
	g := newGen(t, f, clients)
	if n, err := g.Acquire(context.Background(), clients); err != nil || n != clients {
		t.Fatalf("acquired %d of %d: %v", n, clients, err)
	}
	return g
}

func TestScenariosAgainstFake(t *testing.T) {
	for _, tc := range []struct {
		sc      string
		senders int
	}{{DORA, 1}, {Renew, 1}, {Mixed, 1}, {Release, 1}, {DORA, 3}, {Renew, 3}, {Mixed, 3}} {
		sc := tc.sc
		t.Run(fmt.Sprintf("%s/senders=%d", sc, tc.senders), func(t *testing.T) {
			f := newFake()
			g := newGen(t, f, 500)
			g.cfg.Senders = tc.senders // the rate is shared; the totals must not change
			if sc != DORA {
				if n, err := g.Acquire(context.Background(), 450); err != nil || n != 450 {
					t.Fatalf("acquired %d: %v", n, err)
				}
			}
			r, err := g.Run(context.Background(), Phase{Scenario: sc, Rate: 5000, Duration: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if r.Answered == 0 || r.Wrong != 0 || r.Dropped != 0 || r.Late != 0 || r.NAKs != 0 {
				t.Fatalf("%+v", r)
			}
			// Paced at 5000/s for 0.3 s: at most about 1500 operations
			// start. A loaded machine can only lower the count (the
			// generator gets less CPU), so the pace is checked from above
			// and from below only that the phase really ran traffic.
			if r.Started < 100 || r.Started > 1600 {
				t.Fatalf("started %d operations, want at least 100 and at most about 1500", r.Started)
			}
			if sc == Mixed && (r.Released == 0 || r.Released > r.Started/20) {
				t.Fatalf("mixed released %d of %d", r.Released, r.Started)
			}
			if r.P50 <= 0 || r.P99 < r.P50 {
				t.Fatalf("latency p50 %v p99 %v", r.P50, r.P99)
			}
		})
	}
}

func TestDropsAndWrongAnswers(t *testing.T) {
	f := newFake()
	g := boundGen(t, f, 100)
	f.mu.Lock()
	base := f.n
	f.drop = func(n int) bool { return (n-base)%10 == 1 }    // every tenth renewal lost
	f.corrupt = func(n int) bool { return (n-base)%10 == 5 } // and another answered wrongly
	f.mu.Unlock()
	r, err := g.Run(context.Background(), Phase{Scenario: Renew, Rate: 2000, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Answered+r.Dropped+r.Wrong != r.Started {
		t.Fatalf("answered %d + dropped %d + wrong %d != started %d", r.Answered, r.Dropped, r.Wrong, r.Started)
	}
	within := func(got, want int64) bool { return got >= want*7/10 && got <= want*13/10+2 }
	if !within(r.Dropped, r.Started/10) || !within(r.Wrong, r.Started/10) {
		t.Fatalf("dropped %d, wrong %d of %d started; want a tenth each", r.Dropped, r.Wrong, r.Started)
	}
	if r.Loss < 0.05 || r.Loss > 0.2 {
		t.Fatalf("loss %v", r.Loss)
	}
}

func TestLeaseTimeChecked(t *testing.T) {
	f := newFake()
	g := boundGen(t, f, 50)
	f.mu.Lock()
	f.lease = 60 // far below the configured hour: a wrong answer
	f.mu.Unlock()
	r, _ := g.Run(context.Background(), Phase{Scenario: Renew, Rate: 1000, Duration: 100 * time.Millisecond})
	if r.Answered != 0 || r.Wrong == 0 {
		t.Fatalf("short lease accepted: %+v", r)
	}
}

func TestConfigErrors(t *testing.T) {
	f := newFake()
	if _, err := New(Config{Clients: 0, Server: netip.MustParseAddr("10.0.0.1")}, f); err == nil {
		t.Error("no clients accepted")
	}
	if _, err := New(Config{Clients: 1, Server: netip.MustParseAddr("::1")}, f); err == nil {
		t.Error("IPv6 server accepted")
	}
	g := newGen(t, f, 10)
	if _, err := g.Run(context.Background(), Phase{Scenario: "flood", Duration: time.Millisecond}); err == nil {
		t.Error("unknown scenario accepted")
	}
}

func TestDuplicateAddressIsWrong(t *testing.T) {
	f := newFake()
	f.same = true
	g := newGen(t, f, 4)
	done := make(chan Result, 1) // the run may outlive a failed test
	go func() {
		r, _ := g.Run(context.Background(), Phase{Scenario: DORA, Rate: 40, Duration: 200 * time.Millisecond})
		done <- r
	}()
	select {
	case r := <-done:
		if r.Wrong == 0 || g.Bound() != 1 {
			t.Fatalf("one address given to several clients: wrong %d, bound %d", r.Wrong, g.Bound())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not drain: an exchange was lost track of")
	}
}

// Scattered renewals visit every bound client once a round, in an order
// that is not the addresses' (the fake, like a fresh pool, hands them out
// in the order the clients were bound); without it they come in address
// order. A store keeping leases by address sees the difference.
func TestScatteredRenewalOrder(t *testing.T) {
	for _, scattered := range []bool{false, true} {
		t.Run(fmt.Sprint("scattered=", scattered), func(t *testing.T) {
			const clients = 400
			g, err := New(Config{Clients: clients, Pop: Population{ClientIDs: true, Opt82: true}, Server: netip.MustParseAddr("10.64.0.1"),
				GIAddr: netip.MustParseAddr("10.80.0.1"), LeaseTime: time.Hour, Timeout: 200 * time.Millisecond, Scattered: scattered}, newFake())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Close)
			if n, err := g.Acquire(context.Background(), clients); err != nil || n != clients {
				t.Fatalf("acquired %d of %d: %v", n, clients, err)
			}
			seen := map[int]bool{}
			descents := 0
			var last netip.Addr
			g.mu.Lock()
			for range clients {
				j, ok := g.next(opRenew, bound)
				if !ok {
					g.mu.Unlock()
					t.Fatal("no bound client")
				}
				seen[j] = true
				ip := g.clients[j].ip
				if last.IsValid() && ip.Less(last) {
					descents++
				}
				last = ip
			}
			g.mu.Unlock()
			if len(seen) != clients {
				t.Fatalf("%d distinct clients in a round of %d", len(seen), clients)
			}
			// In address order one descent at most (where the round
			// wraps); a random order has about half.
			if scattered && descents < clients/4 || !scattered && descents > 1 {
				t.Fatalf("%d descents in address order over %d renewals", descents, clients)
			}
			// The kernel sender's order (RenewalOrder) is the same one.
			ro := g.RenewalOrder()
			if len(ro) != clients {
				t.Fatalf("RenewalOrder lists %d of %d bound clients", len(ro), clients)
			}
			descents = 0
			for i := 1; i < len(ro); i++ {
				if ro[i].IP.Less(ro[i-1].IP) {
					descents++
				}
			}
			if scattered && descents < clients/4 || !scattered && descents > 0 {
				t.Fatalf("RenewalOrder: %d descents in address order over %d clients", descents, clients)
			}
		})
	}
}

// TestLatencyToArrival: the latency is taken to the answer's arrival,
// not to when the generator got round to reading it; the read latency
// keeps the difference.
func TestLatencyToArrival(t *testing.T) {
	f := newFake()
	// A timeout far beyond the delay: a loaded machine must not turn
	// held-back answers into drops.
	g, err := New(Config{Clients: 200, Pop: Population{ClientIDs: true}, Server: netip.MustParseAddr("10.64.0.1"),
		GIAddr: netip.MustParseAddr("10.80.0.1"), LeaseTime: time.Hour, Timeout: 2 * time.Second}, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	if n, err := g.Acquire(context.Background(), 200); err != nil || n != 200 {
		t.Fatalf("acquired %d of 200: %v", n, err)
	}
	const delay = 30 * time.Millisecond
	f.mu.Lock()
	f.readDelay = delay
	f.mu.Unlock()
	r, err := g.Run(context.Background(), Phase{Scenario: Renew, Rate: 2000, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Answered == 0 || r.Dropped != 0 || r.Wrong != 0 {
		t.Fatalf("%+v", r)
	}
	// Every answer was read at least delay after the fake queued it
	// (the histogram's buckets are within 3%).
	d := float64(delay / time.Microsecond)
	if r.ReadP50 < 0.97*d || r.ReadP50-r.P50 < 0.8*d || r.ReadP99 < r.P99 {
		t.Fatalf("latency to arrival p50 %v p99 %v µs, as read p50 %v p99 %v µs; reads were held back %v", r.P50, r.P99, r.ReadP50, r.ReadP99, delay)
	}
}
