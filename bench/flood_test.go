package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// TestFloodMessages: distinct, locally administered unicast MACs, relayed
// messages without option 61 or 82, xids never the kernel sender's mark;
// DISCOVERs, or INIT-REBOOT REQUESTs (option 50 in the relayed pool, no
// server identifier, no ciaddr).
func TestFloodMessages(t *testing.T) {
	gi := netip.MustParseAddr(floodGiaddr)
	first, last := netip.MustParseAddr(poolStart), netip.MustParseAddr(poolEnd)
	for _, kind := range []string{FloodDiscover, FloodRequest} {
		ds := floodMessages(kind, 5000, gi, 1)
		if len(ds) != 5000 {
			t.Fatalf("%s: %d messages, want 5000", kind, len(ds))
		}
		seen := map[string]bool{}
		asked := map[netip.Addr]bool{}
		for _, d := range ds {
			p, err := dhcpwire.Parse(d)
			if err != nil {
				t.Fatal(err)
			}
			mac := string(p.CHAddr())
			if seen[mac] {
				t.Fatalf("%s: MAC %x twice", kind, p.CHAddr())
			}
			seen[mac] = true
			if p.GIAddr != gi || p.Hops != 1 || p.Has(dhcpwire.OptClientID) || p.Has(dhcpwire.OptRelayAgentInfo) || !p.CIAddr.IsUnspecified() {
				t.Fatalf("%s: not a bare relayed message: %+v", kind, p)
			}
			want, hasWant := p.AddrOption(dhcpwire.OptRequestedIP)
			switch kind {
			case FloodDiscover:
				if p.MessageType() != dhcpwire.Discover || hasWant {
					t.Fatalf("not a DISCOVER: %+v", p)
				}
			case FloodRequest:
				if p.MessageType() != dhcpwire.Request || !hasWant || want.Less(first) || last.Less(want) || p.Has(dhcpwire.OptServerID) {
					t.Fatalf("not an INIT-REBOOT REQUEST in the pool: %+v (option 50 %v)", p, want)
				}
				asked[want] = true
			}
			if m := p.CHAddr()[0]; m&1 != 0 || m&2 == 0 {
				t.Fatalf("MAC %x: want locally administered unicast", p.CHAddr())
			}
			if p.XID>>24 == injectMark {
				t.Fatalf("xid %#x carries the kernel sender's mark", p.XID)
			}
		}
		if kind == FloodRequest && len(asked) < 4500 {
			t.Errorf("REQUESTs ask for %d distinct addresses of 5000: not random", len(asked))
		}
		if again := floodMessages(kind, 10, gi, 1); string(again[3]) != string(ds[3]) {
			t.Errorf("%s: the same seed gave other messages", kind)
		}
	}
	// Both kinds come from the same MACs, with the same xids.
	d, r := floodMessages(FloodDiscover, 100, gi, 7), floodMessages(FloodRequest, 100, gi, 7)
	for i := range d {
		pd, _ := dhcpwire.Parse(d[i])
		pr, _ := dhcpwire.Parse(r[i])
		if string(pd.CHAddr()) != string(pr.CHAddr()) || pd.XID != pr.XID {
			t.Fatalf("message %d: DISCOVER from %x (xid %#x), REQUEST from %x (xid %#x): want the same MAC and xid", i, pd.CHAddr(), pd.XID, pr.CHAddr(), pr.XID)
		}
	}
}

// TestFloodReportBeforeKinds: a report written before REQUEST floods (no
// flood-kind) reads as a DISCOVER flood and renders as one.
func TestFloodReportBeforeKinds(t *testing.T) {
	var rep Report
	old := `{"flood": {"flood-rate-asked": 200000, "flood-seconds": 30, "flood-sender": "xdp", "flood-macs": 65536,
		"rows": [{"server": "xdhcpd", "flood-sent": 6000000, "flood-sent-per-second": 200000, "flood-replies": 300000, "seconds": 30}]}}`
	if err := json.Unmarshal([]byte(old), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Flood == nil || rep.Flood.Kind != "" || rep.FloodRequest != nil {
		t.Fatalf("decoded %+v", rep)
	}
	var b strings.Builder
	rep.floodSection(&b)
	mustContain(t, "section", b.String(), "## DISCOVER flood: new clients and renewals under 200000 DISCOVERs/s asked (xdp sender",
		"65536 random MACs",
		"| OFFERs to the flood/s (share of its DISCOVERs) |", "| xdhcpd | 200000 |")
	if strings.Contains(b.String(), "REQUEST") {
		t.Errorf("an old report's section speaks of REQUESTs:\n%s", b.String())
	}
}

// TestProbeRetransmits: without an answer a new client sends DISCOVERs at
// 0, 4, 12 and 28 s, each with the seconds since the first (secs, as real
// clients count it), and gives up at its limit.
func TestProbeRetransmits(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newProbe(1, loadgen.Population{Salt: 1}.Identity(1), t0, t0.Add(30*time.Second))
	var sent []time.Duration
	for at := time.Duration(0); at <= 31*time.Second; at += 100 * time.Millisecond {
		if m, ok := p.due(t0.Add(at), netip.MustParseAddr(probeGiaddr)); ok {
			if m.Type != dhcpwire.Discover || m.XID != probeXID(1, 0) || time.Duration(m.Secs)*time.Second != at {
				t.Fatalf("at %s: sent type %d xid %#x secs %d", at, m.Type, m.XID, m.Secs)
			}
			sent = append(sent, at)
		}
	}
	want := []time.Duration{0, 4 * time.Second, 12 * time.Second, 28 * time.Second}
	if len(sent) != len(want) {
		t.Fatalf("DISCOVERs at %v, want %v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("DISCOVERs at %v, want %v", sent, want)
		}
	}
	if p.state != probeGaveUp || p.res.Bound || p.res.Discovers != 4 {
		t.Errorf("state %d, result %+v", p.state, p.res)
	}
}

// TestProbeLateFirstDISCOVER: a probe whose loop first asks it 1.5 s after
// its start sends its first DISCOVER with secs 0 (the server spares a
// DISCOVER with secs above 0 as a retransmission), and counts from then.
func TestProbeLateFirstDISCOVER(t *testing.T) {
	t0 := time.Unix(1000, 0)
	gi := netip.MustParseAddr(probeGiaddr)
	p := newProbe(1, loadgen.Population{Salt: 1}.Identity(1), t0, t0.Add(30*time.Second))
	late := t0.Add(1500 * time.Millisecond)
	if m, ok := p.due(late, gi); !ok || m.Secs != 0 {
		t.Fatalf("first DISCOVER, sent 1.5 s late: sent %v, secs %d; want secs 0", ok, m.Secs)
	}
	if m, ok := p.due(late.Add(4*time.Second), gi); !ok || m.Secs != 4 {
		t.Fatalf("its retransmission 4 s later: sent %v, secs %d; want 4", ok, m.Secs)
	}
}

// TestProbeDORA: an OFFER sends the REQUEST at once; the ACK binds; a NAK
// or three unanswered REQUESTs start over with a new xid.
func TestProbeDORA(t *testing.T) {
	gi := netip.MustParseAddr(probeGiaddr)
	t0 := time.Unix(1000, 0)
	yi, sid := netip.MustParseAddr("10.80.1.7"), netip.MustParseAddr(ServerAddr)
	p := newProbe(2, loadgen.Population{Salt: 1}.Identity(2), t0, t0.Add(30*time.Second))
	p.due(t0, gi)
	p.due(t0.Add(4*time.Second), gi) // the first DISCOVER was lost
	p.answer(dhcpwire.Offer, yi, sid, t0.Add(5*time.Second))
	m, ok := p.due(t0.Add(5*time.Second), gi)
	if !ok || m.Type != dhcpwire.Request || m.Requested != yi || m.ServerID != sid || m.XID != probeXID(2, 0) {
		t.Fatalf("after the OFFER: %+v %v", m, ok)
	}
	p.answer(dhcpwire.Offer, netip.MustParseAddr("10.80.1.8"), sid, t0.Add(5100*time.Millisecond)) // a late OFFER: ignored
	p.answer(dhcpwire.Ack, yi, sid, t0.Add(5200*time.Millisecond))
	if !p.res.Bound || p.res.Seconds != 5.2 || p.res.FirstOffer != 5 || p.res.Discovers != 2 || p.res.Requests != 1 || p.res.Offers != 1 || p.res.IP != yi.String() {
		t.Fatalf("result %+v", p.res)
	}
	if _, ok := p.due(t0.Add(9*time.Second), gi); ok {
		t.Error("a bound client sent again")
	}

	q := newProbe(3, loadgen.Population{Salt: 1}.Identity(3), t0, t0.Add(60*time.Second))
	q.due(t0, gi)
	q.answer(dhcpwire.Offer, yi, sid, t0.Add(time.Second))
	for _, at := range []time.Duration{1, 5, 13} {
		if m, ok := q.due(t0.Add(at*time.Second), gi); !ok || m.Type != dhcpwire.Request {
			t.Fatalf("at %ds: %+v %v, want a REQUEST", at, m, ok)
		}
	}
	m, ok = q.due(t0.Add(29*time.Second), gi)
	if !ok || m.Type != dhcpwire.Discover || m.XID != probeXID(3, 1) {
		t.Fatalf("after three unanswered REQUESTs: %+v %v, want a DISCOVER with a new xid", m, ok)
	}
	q.answer(dhcpwire.Offer, yi, sid, t0.Add(30*time.Second))
	q.due(t0.Add(30*time.Second), gi)
	q.answer(dhcpwire.Nak, netip.IPv4Unspecified(), sid, t0.Add(31*time.Second))
	m, ok = q.due(t0.Add(31*time.Second), gi)
	if !ok || m.Type != dhcpwire.Discover || m.XID != probeXID(3, 2) || q.res.NAKs != 1 {
		t.Fatalf("after a NAK: %+v %v %+v", m, ok, q.res)
	}
}

// fakeServer is a relay transport whose server offers and acknowledges
// 10.80.1.N to client N, losing the first DISCOVER of each xid when lossy.
type fakeServer struct {
	mu      sync.Mutex
	lossy   bool
	seen    map[uint32]bool
	replies chan []byte
}

func (f *fakeServer) Name() string { return "relay" }
func (f *fakeServer) Close() error { return nil }

func (f *fakeServer) Send(pkts []loadgen.Packet) (int, error) {
	for _, pk := range pkts {
		p, err := dhcpwire.Parse(pk.Payload)
		if err != nil {
			return 0, err
		}
		typ := uint8(dhcpwire.Offer)
		if p.MessageType() == dhcpwire.Request {
			typ = dhcpwire.Ack
		} else {
			f.mu.Lock()
			drop := f.lossy && !f.seen[p.XID]
			f.seen[p.XID] = true
			f.mu.Unlock()
			if drop {
				continue
			}
		}
		h := dhcpwire.Header{Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: p.XID, GIAddr: p.GIAddr,
			YIAddr: netip.AddrFrom4([4]byte{10, 80, 1, pk.Client.MAC[5]})}
		b := dhcpwire.AppendHeader(nil, h)
		b = append(b, dhcpwire.OptMessageType, 1, typ)
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr(ServerAddr))
		f.replies <- append(b, dhcpwire.OptEnd)
	}
	return len(pkts), nil
}

func (f *fakeServer) Recv(msgs []loadgen.Received, wait time.Duration) (int, error) {
	select {
	case b := <-f.replies:
		msgs[0].N = copy(msgs[0].Buf, b)
		return 1, nil
	case <-time.After(wait):
		return 0, nil
	}
}

// TestRunProbes: a new client a second from the flood's first second on,
// each until bound or the flood's end (plus a second); on a clock 20
// times faster than the wall's.
func TestRunProbes(t *testing.T) {
	for _, lossy := range []bool{false, true} {
		real0 := time.Now()
		clock := func() time.Time { return real0.Add(20 * time.Since(real0)) }
		f := &fakeServer{lossy: lossy, seen: map[uint32]bool{}, replies: make(chan []byte, 64)}
		start := clock()
		res := runProbes(context.Background(), f, loadgen.Population{Salt: 1}, netip.MustParseAddr(probeGiaddr), start, start.Add(10*time.Second), clock, nil)
		if len(res) != 9 {
			t.Fatalf("lossy %v: %d new clients, want 9 (1 s to 9 s)", lossy, len(res))
		}
		for i, p := range res {
			if p.Start != float64(i+1) || p.Window != min(30, 11-p.Start) {
				t.Errorf("lossy %v: client %d started at %v with a window of %v", lossy, i, p.Start, p.Window)
			}
			switch {
			case !lossy && (!p.Bound || p.Seconds > 1 || p.Discovers != 1 || p.Requests != 1):
				t.Errorf("client %d: %+v, want bound at once", i, p)
			case lossy && p.Window > 5 && (!p.Bound || p.Seconds < 4 || p.Seconds > 5 || p.Discovers != 2):
				t.Errorf("lossy: client %d: %+v, want bound at its retransmission after 4 s", i, p)
			case lossy && p.Window < 3.5 && (p.Bound || p.Discovers != 1):
				t.Errorf("lossy: client %d: %+v, want no lease (the flood ended before its retransmission)", i, p)
			}
		}
	}
}

func TestProbeCount(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 0, time.Second: 0, 1500 * time.Millisecond: 1, 20 * time.Second: 19, 30 * time.Second: 29} {
		if got := probeCount(d); got != want {
			t.Errorf("probeCount(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestParseKernelCounters(t *testing.T) {
	text := `Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 100
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 1500 3 700 1400 690 0 0 0 10
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0043 00000000:0000 07 00000000:00F00000 00:00000000 00000000     0        0 4242 2 0000000000000000 690
  124: 0100007F:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 5
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
 bsrv0: 9000000   30000    0   12    0     0          0         0   500000    2000    0    0    0     0       0          0
`
	out := map[string]float64{}
	parseKernelCounters(text, "", ServerIf, out)
	for k, want := range map[string]float64{"udp.InDatagrams": 1500, "udp.RcvbufErrors": 690, "udp.InErrors": 700, "udp.MemErrors": 10,
		"socket67.drops": 690, "veth.rx_packets": 30000, "veth.rx_dropped": 12} {
		if out[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, out[k], want, out)
		}
	}
	if _, ok := out["udp.UdpLite"]; ok || len(out) != 12 {
		t.Errorf("counters %v: want the 9 Udp ones, socket67.drops and two of the veth", out)
	}
}

func TestPromSeries(t *testing.T) {
	text := `# HELP xdhcp_slowpath_dropped_total Messages the slow path did not answer, by reason.
# TYPE xdhcp_slowpath_dropped_total counter
xdhcp_slowpath_dropped_total{reason="overload"} 1.234e+06
xdhcp_slowpath_dropped_total{reason="stale"} 17
xdhcp_slowpath_dropped_total_other 5
xdhcp_fastpath_replies_total 42
xdhcp_slowpath_messages_total{type="discover"} 2e6
`
	got := promSeries(text, "xdhcp_slowpath_dropped_total", "xdhcp_fastpath_replies_total")
	want := map[string]float64{`xdhcp_slowpath_dropped_total{reason="overload"}`: 1234000, `xdhcp_slowpath_dropped_total{reason="stale"}`: 17,
		"xdhcp_fastpath_replies_total": 42}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestKeaPktStats(t *testing.T) {
	var resp struct {
		Arguments map[string][][]json.RawMessage `json:"arguments"`
	}
	j := `{"result": 0, "arguments": {"pkt4-received": [[1200, "2026-12-05 10:00:01"], [1100, "2026-12-05 10:00:00"]],
	  "pkt4-receive-drop": [[7, "x"]], "subnet[1].assigned-addresses": [[5, "x"]], "pkt4-offer-sent": []}}`
	if err := json.Unmarshal([]byte(j), &resp); err != nil {
		t.Fatal(err)
	}
	got := keaPktStats(resp.Arguments)
	if len(got) != 2 || got["pkt4-received"] != 1200 || got["pkt4-receive-drop"] != 7 {
		t.Errorf("got %v", got)
	}
}

// TestFloodSection: the table's rates are per second of the flood; only
// new clients with a whole goal window in the flood count toward it.
func TestFloodSection(t *testing.T) {
	row := FloodRow{Server: "xdhcpd", FloodSent: 2_000_000, FloodRate: 100_000, FloodReplies: 200_000, Seconds: 20,
		Renew:    loadgen.Result{Rate: 990, Loss: 0.01, P99: 2500},
		Counters: map[string]float64{"udp.InDatagrams": 600_000, "udp.RcvbufErrors": 1_400_000, `xdhcp_slowpath_dropped_total{reason="overload"}`: 350_000, `xdhcp_slowpath_dropped_total{reason="stale"}`: 0},
		Probes: []ProbeResult{
			{Start: 1, Window: 20, Bound: true, Seconds: 4.2, Discovers: 2, Offers: 1, Requests: 1},
			{Start: 2, Window: 19, Bound: false, Discovers: 3},
			{Start: 15, Window: 6, Bound: true, Seconds: 0.01, Discovers: 1, Offers: 1, Requests: 1},
		}}
	s := row.Summary(FloodGoal)
	if s.Started != 3 || s.InWindow != 2 || s.InGoal != 1 || s.Bound != 2 || s.Max != 4.2 || s.Median != 2.105 || s.Discovers != 6 || s.Offers != 2 {
		t.Errorf("summary %+v", s)
	}
	rep := &Report{Flood: &FloodReport{Rate: 200000, Seconds: 20, Sender: SenderXDP, MACs: FloodMACs, Clients: 5000, RenewRate: 1000,
		GoalSec: 10, LimitSec: 30, Rows: []FloodRow{row, {Server: "kea", Err: "boom"}}}}
	var b strings.Builder
	rep.floodSection(&b)
	mustContain(t, "section", b.String(),
		"| xdhcpd | 100000 | 30000 | 10000 (10%) | 70000 | 1 of 2 (bound at all: 2 of 3) | 2.10 s / 4.20 s | 2 of 6 (33%) | 990 | 1.0% | 2.5 | overload 350k |",
		"| kea | error: boom |",
		"| 1 s | 4.20 s (D2 O1 R1) |",
		"| 2 s | none in 19 s (D3 O0 R0) |")
	if strings.Contains(b.String(), "REQUEST flood") {
		t.Error("a DISCOVER flood's section names a REQUEST flood")
	}
	// A REQUEST flood renders after the DISCOVER flood, under its name.
	req := *rep.Flood
	req.Kind = FloodRequest
	rep.FloodRequest = &req
	b.Reset()
	rep.floodSection(&b)
	out := b.String()
	mustContain(t, "section", out,
		"## DISCOVER flood: new clients and renewals under 200000 DISCOVERs/s asked (xdp sender",
		"65536 random MACs",
		"## REQUEST flood: new clients and renewals under 200000 REQUESTs/s asked",
		"| answers to the flood/s (share of its REQUESTs) |",
		"INIT-REBOOT",
		"xdhcpd runs here with its default server.request-holdoff (2 s)")
	if strings.Index(out, "## DISCOVER flood") > strings.Index(out, "## REQUEST flood") {
		t.Error("the REQUEST flood comes before the DISCOVER flood")
	}
}

// TestProbeJitter: with randomization each new client starts within its
// second and retransmits 4 s ± 1 s after its first DISCOVER.
func TestProbeJitter(t *testing.T) {
	real0 := time.Now()
	clock := func() time.Time { return real0.Add(20 * time.Since(real0)) }
	f := &fakeServer{seen: map[uint32]bool{}, replies: make(chan []byte, 64)}
	start := clock()
	res := runProbes(context.Background(), f, loadgen.Population{Salt: 1}, netip.MustParseAddr(probeGiaddr), start, start.Add(5500*time.Millisecond), clock, rand.New(rand.NewPCG(1, 2)))
	if len(res) != 5 {
		t.Fatalf("%d new clients, want 5", len(res))
	}
	distinct := map[float64]bool{}
	for i, p := range res {
		lo, hi := float64(i+1), float64(i+2)
		if i == 4 {
			hi = 5.5
		}
		if p.Start < lo || p.Start >= hi || !p.Bound {
			t.Errorf("client %d: %+v, want a start in [%v, %v) and a lease", i, p, lo, hi)
		}
		distinct[p.Start-lo] = true
	}
	if len(distinct) < 4 {
		t.Errorf("starts %+v: not randomized", res)
	}

	t0 := time.Unix(1000, 0)
	gi := netip.MustParseAddr(probeGiaddr)
	for seed := range uint64(20) {
		p := newProbe(1, loadgen.Population{Salt: 1}.Identity(1), t0, t0.Add(30*time.Second))
		p.rng = rand.New(rand.NewPCG(seed, 3))
		p.due(t0, gi)
		if d := p.next.Sub(t0); d < 3*time.Second || d > 5*time.Second {
			t.Errorf("seed %d: first retransmission after %s, want 4 s ± 1 s", seed, d)
		}
	}
}
