package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// The flood measurement (issue 19): DISCOVERs (or REQUESTs:
// FloodOptions.Kind) from many random MACs at a high rate, relayed from
// floodGiaddr, while new clients start a DORA every second from
// probeGiaddr and bound clients renew at a modest rate from Giaddr. Three relays, so that each sender reads only its own answers.
const (
	floodGiaddr = "10.80.0.3"
	probeGiaddr = "10.80.0.2"
	// floodMetrics is where xdhcpd serves /metrics during the flood, in
	// the server's namespace.
	floodMetrics = "127.0.0.1:9583"
	// FloodMACs is how many distinct random MACs the flood cycles
	// through: at 200k DISCOVERs/s each sends about 3 a second, under the
	// XDP program's per-MAC punt limit (20/s, burst 40), as a flood from
	// many MACs would.
	FloodMACs = 1 << 16
	// FloodGoal is issue 19's bound on a new client's time to a lease
	// during the flood; ProbeLimit how long a new client keeps trying.
	FloodGoal  = 10 * time.Second
	ProbeLimit = 30 * time.Second
	// floodSettle is the pause between taking the bound clients' leases
	// and the flood: more than the daemon's default request-holdoff.
	floodSettle = 2500 * time.Millisecond
	// probeGrace is how long after the flood's end a new client's
	// exchange in flight may still finish and count.
	probeGrace = time.Second
)

// Flood kinds: what the flood's messages are.
const (
	// FloodDiscover floods DISCOVERs, the bulk socket's class.
	FloodDiscover = "discover"
	// FloodRequest floods INIT-REBOOT REQUESTs for random addresses of
	// the relayed pool: the REQUEST socket's class, where bound clients'
	// renewals wait.
	FloodRequest = "request"
)

// FloodOptions shape xdhcp-bench flood.
type FloodOptions struct {
	Servers []Server
	// Kind is FloodDiscover (default) or FloodRequest.
	Kind     string
	Rate     int           // flood messages per second asked for
	Duration time.Duration // of the flood
	// Clients renew at RenewRate a second during the flood (leases taken
	// before it).
	Clients   int
	RenewRate int
	// Sender is SenderXDP (the kernel sender, bpf/inject.c, default) or
	// SenderSockets (sendmmsg from the flood's relay socket).
	Sender string
	Log    func(format string, args ...any)
}

func (o FloodOptions) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// FloodReport is xdhcp-bench flood: each server under the same flood.
type FloodReport struct {
	// Kind is what the flood sent (FloodDiscover or FloodRequest; empty
	// in reports from before REQUEST floods: DISCOVERs).
	Kind       string     `json:"flood-kind,omitempty"`
	Rate       int        `json:"flood-rate-asked"`
	Seconds    float64    `json:"flood-seconds"`
	Sender     string     `json:"flood-sender"`
	Injection  string     `json:"flood-injection,omitempty"` // how SenderXDP sent: InjectLive or InjectTestRuns
	MACs       int        `json:"flood-macs"`
	Clients    int        `json:"renewing-clients"`
	RenewRate  int        `json:"renewal-rate"`
	GoalSec    float64    `json:"goal-seconds"`
	LimitSec   float64    `json:"new-client-limit-seconds"`
	XdhcpdTree string     `json:"xdhcpd-tree,omitempty"` // the daemon's VCS state, as its --version says
	Rows       []FloodRow `json:"rows"`
	Err        string     `json:"error,omitempty"`
}

// FloodRow is one server under the flood.
type FloodRow struct {
	Server  string `json:"server"`
	Version string `json:"version"`
	// FloodSent is how many messages the flood sent, FloodRate that per
	// second of the flood: the rate actually offered.
	FloodSent int64   `json:"flood-sent"`
	FloodRate float64 `json:"flood-sent-per-second"`
	// FloodReplies is how many answers the flood's relay got (OFFERs to
	// DISCOVERs; ACKs and NAKs to REQUESTs).
	FloodReplies int64   `json:"flood-replies"`
	Seconds      float64 `json:"seconds"`
	// Renew is the bound clients' renewals during the flood.
	Renew loadgen.Result `json:"renewals"`
	// Probes are the new clients, one started each second of the flood.
	Probes []ProbeResult `json:"new-clients"`
	// Counters are deltas from just before the flood to a second after
	// its end: the server namespace's UDP counters ("udp.*", from
	// /proc/net/snmp), its port 67 sockets' drops ("socket67.drops",
	// /proc/net/udp), the server veth's receive counters ("veth.*"), the
	// generator namespace's UDP counters ("gen.udp.*"), xdhcpd's metrics
	// (by series) or Kea's statistics ("kea.*").
	Counters map[string]float64 `json:"counters"`
	// SocketMid is `ss -uamn sport = :67` in the server's namespace
	// halfway through the flood: the socket's queue (skmem r, rb) and
	// drops (d).
	SocketMid string `json:"server-socket-mid-flood,omitempty"`
	Err       string `json:"error,omitempty"`
}

// ProbeResult is one new client's DORA during the flood, retransmitting
// as RFC 2131 §4.1 says (4 s, 8 s, 16 s, ..., each ±1 s at random).
type ProbeResult struct {
	Start  float64 `json:"start-seconds"`  // after the flood began
	Window float64 `json:"window-seconds"` // it tried this long at most: ProbeLimit, or to the flood's end (+1 s)
	Bound  bool    `json:"bound"`
	// Seconds is from its first DISCOVER to the ACK; FirstOffer to the
	// first OFFER it took.
	Seconds    float64 `json:"seconds-to-ack,omitempty"`
	FirstOffer float64 `json:"seconds-to-first-offer,omitempty"`
	Discovers  int     `json:"discovers"`
	Requests   int     `json:"requests"`
	Offers     int     `json:"offers"`
	NAKs       int     `json:"naks,omitempty"`
	IP         string  `json:"ip,omitempty"`
}

// Flood runs the flood against each server in turn.
func (r *Rig) Flood(ctx context.Context, o FloodOptions) FloodReport {
	o.Sender, o.Kind = cmp.Or(o.Sender, SenderXDP), cmp.Or(o.Kind, FloodDiscover)
	rep := FloodReport{Kind: o.Kind, Rate: o.Rate, Seconds: o.Duration.Seconds(), Sender: o.Sender, MACs: FloodMACs, Clients: o.Clients,
		RenewRate: o.RenewRate, GoalSec: FloodGoal.Seconds(), LimitSec: ProbeLimit.Seconds()}
	if o.Sender != SenderXDP && o.Sender != SenderSockets {
		rep.Err = fmt.Sprintf("sender %q: want %s or %s", o.Sender, SenderXDP, SenderSockets)
		return rep
	}
	if o.Kind != FloodDiscover && o.Kind != FloodRequest {
		rep.Err = fmt.Sprintf("kind %q: want %s or %s", o.Kind, FloodDiscover, FloodRequest)
		return rep
	}
	if o.Sender == SenderXDP {
		rep.Injection, _ = injection("") // "" never fails
	}
	for _, s := range o.Servers {
		if x, ok := s.(Xdhcpd); ok && rep.XdhcpdTree == "" {
			rep.XdhcpdTree = strings.TrimSpace(firstLine(x.Bin, "--version"))
		}
		o.logf("  %s: flood of %d %ss/s (%s sender) for %s, %d clients renewing at %d/s, a new client every second...\n",
			s.Name(), o.Rate, floodNoun(rep.Kind), o.Sender, o.Duration, o.Clients, o.RenewRate)
		row := r.flood1(ctx, s, o)
		rep.Rows = append(rep.Rows, row)
		if row.Err != "" {
			o.logf("  %s: %s\n", s.Name(), row.Err)
		} else {
			o.logf("  %s\n", row.summaryLine(rep.Kind))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return rep
}

// flood1 measures one server.
func (r *Rig) flood1(ctx context.Context, s Server, o FloodOptions) FloodRow {
	row := FloodRow{Server: s.Name(), Version: s.Version()}
	fail := func(err error) FloodRow { row.Err = err.Error(); return row }
	dir, err := os.MkdirTemp("", "xdhcp-bench-flood-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if x, ok := s.(Xdhcpd); ok {
		x.Metrics, x.Holdoffs = floodMetrics, true
		s = x
	}
	p, err := s.Start(ctx, r.Srv, dir)
	if err != nil {
		return fail(err)
	}
	defer stopServer(s, p, r.Srv, dir)

	// The bound clients: leases first, renewals during the flood.
	g, tr, err := r.boundRelayClients(ctx, p.Pid(), o.Clients)
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	defer g.Close()

	// The flood's relay (its answers come back here, and the socket
	// sender sends from it) and the new clients' relay.
	ftr, err := r.relayAt(ctx, floodGiaddr)
	if err != nil {
		return fail(err)
	}
	defer ftr.Close()
	ptr, err := r.relayAt(ctx, probeGiaddr)
	if err != nil {
		return fail(err)
	}
	defer ptr.Close()
	payloads := floodMessages(o.Kind, FloodMACs, netip.MustParseAddr(floodGiaddr), 19)
	var in *Injector
	if o.Sender == SenderXDP {
		if in, err = r.floodInjector(payloads); err != nil {
			return fail(err)
		}
		defer in.Close()
	}
	// The leases' commits and the fast path's map settle, and the
	// clients' DORA REQUESTs age past the REQUEST holdoff (2 s): a
	// renewal within it of the client's last REQUEST would be taken for
	// a repeat as soon as the flood puts the server behind.
	time.Sleep(floodSettle)

	before, err := r.floodCounters(ctx, s, dir)
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	end := start.Add(o.Duration)
	var wg sync.WaitGroup
	var floodErr, renewErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		if in == nil {
			row.FloodSent, row.FloodReplies, _ = paced(ctx, ftr, payloads, o.Duration, o.Rate, isReply)
			return
		}
		stop := make(chan struct{})
		got := countReplies(ftr, stop)
		row.FloodSent, floodErr = in.offer(ctx, o.Rate, o.Duration)
		time.Sleep(500 * time.Millisecond) // late answers
		close(stop)
		row.FloodReplies = got()
	}()
	go func() {
		defer wg.Done()
		row.Renew, renewErr = g.Run(ctx, loadgen.Phase{Scenario: loadgen.Renew, Rate: o.RenewRate, Duration: o.Duration})
	}()
	probesDone := make(chan []ProbeResult, 1)
	go func() {
		pop := loadgen.Population{ClientIDs: true, Salt: 1}
		// Random start times and retransmissions (RFC 2131's ±1 s), so
		// that no client keeps step with the flood sender's own rhythm
		// (the kernel sender pauses between its calls).
		rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 68))
		probesDone <- runProbes(ctx, ptr, pop, netip.MustParseAddr(probeGiaddr), start, end, time.Now, rng)
	}()
	midDone := make(chan string, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(o.Duration / 2):
		}
		out, err := r.Srv.Exec(ctx, "ss", "-uamn", "sport", "=", ":67")
		if err != nil {
			midDone <- err.Error()
			return
		}
		midDone <- strings.TrimSpace(string(out))
	}()
	wg.Wait()
	row.Seconds = o.Duration.Seconds()
	if row.Seconds > 0 {
		row.FloodRate = float64(row.FloodSent) / row.Seconds
	}
	// What the server still holds of the flood when it ends is dropped
	// or answered within a second (server.max-wait).
	time.Sleep(time.Until(end.Add(time.Second)))
	after, cerr := r.floodCounters(ctx, s, dir)
	row.Probes = <-probesDone
	row.SocketMid = <-midDone
	row.Counters = map[string]float64{}
	for k, v := range after {
		row.Counters[k] = v - before[k]
	}
	if err := errors.Join(floodErr, renewErr, cerr); err != nil {
		return fail(err)
	}
	return row
}

// isReply accepts any DHCP reply (the flood's relay gets only the
// flood's answers: OFFERs, or ACKs and NAKs).
func isReply(b []byte) bool { return len(b) > 0 && b[0] == dhcpwire.BootReply }

// countReplies reads tr until stop and returns what reports how many
// replies it read.
func countReplies(tr loadgen.Transport, stop <-chan struct{}) func() int64 {
	var n atomic.Int64
	done := readUntil(tr, stop, 100*time.Millisecond, true, func(b []byte) {
		if isReply(b) {
			n.Add(1)
		}
	})
	return func() int64 { <-done; return n.Load() }
}

// floodNoun is what a flood of kind sends, for the report's text.
func floodNoun(kind string) string {
	if kind == FloodRequest {
		return "REQUEST"
	}
	return "DISCOVER"
}

// floodMessages renders n messages of the kind from distinct random MACs
// (locally administered, unicast) relayed by giaddr, with random xids and
// no option 61 or 82, as a flooding tool sends them: DISCOVERs, or
// INIT-REBOOT REQUESTs (option 50, no server identifier) for random
// addresses of the relayed pool, which the MACs hold no lease of.
func floodMessages(kind string, n int, giaddr netip.Addr, seed uint64) [][]byte {
	// The addresses have a generator of their own: the MACs and xids are
	// the DISCOVER flood's of the same seed.
	rng, addrs := rand.New(rand.NewPCG(seed, 0x19)), rand.New(rand.NewPCG(seed, 0x50))
	first, last := lease.AddrUint32(netip.MustParseAddr(poolStart)), lease.AddrUint32(netip.MustParseAddr(poolEnd))
	seen := make(map[[6]byte]bool, n)
	out := make([][]byte, 0, n)
	for len(out) < n {
		var mac [6]byte
		v := rng.Uint64()
		for i := range mac {
			mac[i] = byte(v >> (8 * i))
		}
		mac[0] = mac[0]&^0x01 | 0x02
		if seen[mac] {
			continue
		}
		seen[mac] = true
		xid := rng.Uint32()
		if xid>>24 == injectMark {
			xid ^= 1 << 24
		}
		m := loadgen.Message{Type: dhcpwire.Discover, XID: xid, ID: loadgen.Identity{MAC: net.HardwareAddr(mac[:])}, GIAddr: giaddr}
		if kind == FloodRequest {
			m.Type, m.Requested = dhcpwire.Request, lease.AddrFromUint32(first+addrs.Uint32N(last-first+1))
		}
		out = append(out, m.Append(nil))
	}
	return out
}

// floodInjector loads the flood's messages into the kernel sender, as
// frames from the client veth to the server's (relayed, from
// floodGiaddr:67). Their answers pass the tally up to the flood's socket.
func (r *Rig) floodInjector(payloads [][]byte) (*Injector, error) {
	ifindex, cliMAC, srvMAC, err := r.vethMACs()
	if err != nil {
		return nil, fmt.Errorf("flood injector: %w", err)
	}
	from, to := netip.MustParseAddr(floodGiaddr), netip.MustParseAddr(ServerAddr)
	// No answer is expected for an address: every reply is "other" to
	// the tally and passes (192.0.2.1 is in no pool).
	none := netip.MustParseAddr("192.0.2.1")
	clients := make([]injected, len(payloads))
	for k, pl := range payloads {
		b := loadgen.AppendEthernet(nil, srvMAC, cliMAC, nil, 0x0800)
		clients[k] = injected{frame: pktio.AppendIPv4UDP(b, from, to, 67, 67, pl), ip: none, server: to}
	}
	return r.startInjector(ifindex, clients, 0, false, "")
}

// offer sends the loaded frames at rate a second (0: as fast as it can)
// for d and returns how many it sent.
func (in *Injector) offer(ctx context.Context, rate int, d time.Duration) (int64, error) {
	err := in.rig.Cli.Do(func() error { return in.send(ctx, rate, d) })
	var st bpf.InjectInjectState
	if e := in.objs.InjectProgress.Lookup(uint32(0), &st); e != nil {
		err = errors.Join(err, fmt.Errorf("reading the sender's progress: %w", e))
	}
	return int64(st.Sent), err
}

// Probe states.
const (
	probeDiscovering = iota
	probeRequesting
	probeBound
	probeGaveUp
)

// requestTries is how many REQUESTs a new client sends for one OFFER
// before it starts over with a DISCOVER (RFC 2131 §4.4.1: back to INIT).
const requestTries = 3

// retransmitAfter is the wait after a client's tries-th transmission of a
// message: 4 s, doubled each time, at most 64 s (RFC 2131 §4.1; the
// probe adds the ±1 s randomization).
func retransmitAfter(tries int) time.Duration {
	return min(4*time.Second<<max(0, tries-1), 64*time.Second)
}

// probe is one new client: a DORA from its first DISCOVER to its ACK,
// with retransmissions, within limit.
type probe struct {
	n               int
	id              loadgen.Identity
	attempt         uint32
	xid             uint32
	start, limit    time.Time
	began           time.Time // when the current DORA's first DISCOVER went out (Message.Secs)
	state           int
	next            time.Time // of the next transmission
	tries           int       // transmissions of the current message
	offered, server netip.Addr
	res             ProbeResult
	// rng randomizes each retransmission by ±1 s; nil: no randomization.
	rng *rand.Rand
}

func newProbe(n int, id loadgen.Identity, start, limit time.Time) *probe {
	p := &probe{n: n, id: id, start: start, limit: limit, next: start}
	p.xid = probeXID(n, 0)
	return p
}

// probeXID is new client n's xid for its attempt-th DORA; its first byte
// is never the kernel sender's mark.
func probeXID(n int, attempt uint32) uint32 {
	return 0x5a<<24 | uint32(n&0xffff)<<8 | attempt&0xff
}

func (p *probe) done() bool { return p.state == probeBound || p.state == probeGaveUp }

// due returns what the client sends at now, if anything.
func (p *probe) due(now time.Time, giaddr netip.Addr) (loadgen.Message, bool) {
	if p.done() {
		return loadgen.Message{}, false
	}
	if !now.Before(p.limit) {
		p.state = probeGaveUp
		return loadgen.Message{}, false
	}
	if now.Before(p.next) {
		return loadgen.Message{}, false
	}
	if p.state == probeRequesting && p.tries >= requestTries {
		p.restart(now)
	}
	if p.state == probeDiscovering && p.tries == 0 {
		// From when it goes out, not when it was due: a loop that
		// runs late under the flood must not send a first DISCOVER
		// with secs above 0, which the server takes for a retry.
		p.began = now
	}
	p.tries++
	p.next = now.Add(retransmitAfter(p.tries))
	if p.rng != nil {
		p.next = p.next.Add(time.Duration(p.rng.Int64N(int64(2*time.Second))) - time.Second)
	}
	// secs counts from the DORA's first DISCOVER, as real clients count
	// it (0 on that first one).
	m := loadgen.Message{XID: p.xid, ID: p.id, GIAddr: giaddr, Secs: uint16(min(now.Sub(p.began)/time.Second, 0xffff))}
	if p.state == probeDiscovering {
		m.Type = dhcpwire.Discover
		p.res.Discovers++
	} else {
		m.Type, m.Requested, m.ServerID = dhcpwire.Request, p.offered, p.server
		p.res.Requests++
	}
	return m, true
}

// restart begins a new DORA (a new xid) at now.
func (p *probe) restart(now time.Time) {
	p.attempt++
	p.xid = probeXID(p.n, p.attempt)
	p.state, p.tries, p.next = probeDiscovering, 0, now
}

// answer takes a reply carrying the client's current xid.
func (p *probe) answer(typ uint8, yiaddr, sid netip.Addr, at time.Time) {
	switch {
	case p.state == probeDiscovering && typ == dhcpwire.Offer && yiaddr.Is4() && !yiaddr.IsUnspecified() && sid.Is4():
		p.res.Offers++
		if p.res.FirstOffer == 0 {
			p.res.FirstOffer = at.Sub(p.start).Seconds()
		}
		// SELECTING: the REQUEST goes out at once.
		p.state, p.offered, p.server, p.tries, p.next = probeRequesting, yiaddr, sid, 0, at
	case p.state == probeRequesting && typ == dhcpwire.Ack && yiaddr == p.offered:
		p.state = probeBound
		p.res.Bound, p.res.Seconds, p.res.IP = true, at.Sub(p.start).Seconds(), yiaddr.String()
	case p.state == probeRequesting && typ == dhcpwire.Nak:
		p.res.NAKs++
		p.restart(at)
	}
}

// probeReply is a reply to a new client, as read.
type probeReply struct {
	xid     uint32
	typ     uint8
	yi, sid netip.Addr
	at      time.Time
}

// runProbes starts a new client every second from start+1s while the
// flood lasts (to end), relayed from giaddr over tr, and runs each until
// it is bound, ProbeLimit has passed, or the flood has ended (plus
// probeGrace): what is measured is a DORA during the flood. With rng, the
// k-th client starts at a random time within second k, and its
// retransmissions are randomized by ±1 s.
func runProbes(ctx context.Context, tr loadgen.Transport, pop loadgen.Population, giaddr netip.Addr, start, end time.Time, clock func() time.Time, rng *rand.Rand) []ProbeResult {
	replies := make(chan probeReply, 1024)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rb := make([]loadgen.Received, 64)
		for i := range rb {
			rb[i].Buf = make([]byte, 1500)
		}
		var pk dhcpwire.Packet
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := tr.Recv(rb, 50*time.Millisecond)
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			at := clock()
			for _, m := range rb[:n] {
				if pk.Parse(m.Buf[:m.N]) != nil || pk.Op != dhcpwire.BootReply {
					continue
				}
				sid, _ := pk.AddrOption(dhcpwire.OptServerID)
				select {
				case replies <- probeReply{xid: pk.XID, typ: pk.MessageType(), yi: pk.YIAddr, sid: sid, at: at}:
				case <-stop:
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	total := probeCount(end.Sub(start))
	starts := make([]time.Duration, total)
	for i := range starts {
		starts[i] = time.Duration(i+1) * time.Second
		if rng != nil && i+1 < total {
			starts[i] += time.Duration(rng.Int64N(int64(time.Second)))
		} else if rng != nil {
			// The last second may be cut short by the flood's end.
			starts[i] += time.Duration(rng.Int64N(int64(max(time.Millisecond, end.Sub(start)-starts[i]))))
		}
	}
	probes := make([]*probe, 0, total)
	byXID := map[uint32]*probe{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		now := clock()
		for len(probes) < total {
			k := len(probes) + 1
			at := start.Add(starts[k-1])
			if now.Before(at) {
				break
			}
			limit := at.Add(ProbeLimit)
			if e := end.Add(probeGrace); e.Before(limit) {
				limit = e
			}
			p := newProbe(k, pop.Identity(k), at, limit)
			p.rng = rng
			p.res.Start, p.res.Window = starts[k-1].Seconds(), limit.Sub(at).Seconds()
			probes = append(probes, p)
		}
		var out []loadgen.Packet
		finished := len(probes) == total
		for _, p := range probes {
			if m, ok := p.due(now, giaddr); ok {
				byXID[p.xid] = p
				out = append(out, loadgen.Packet{Payload: m.Append(nil), Client: m.ID})
			}
			finished = finished && p.done()
		}
		if len(out) > 0 {
			tr.Send(out)
		}
		if finished {
			break
		}
		select {
		case rp := <-replies:
			if p := byXID[rp.xid]; p != nil && p.xid == rp.xid {
				p.answer(rp.typ, rp.yi, rp.sid, rp.at)
			}
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	out := make([]ProbeResult, len(probes))
	for i, p := range probes {
		out[i] = p.res
	}
	return out
}

// probeCount is how many new clients a flood of d starts: one a second
// from its first second on.
func probeCount(d time.Duration) int {
	return max(0, int((d-time.Nanosecond)/time.Second))
}

// floodCounters reads the counters a flood row keeps (see
// FloodRow.Counters) as they are now.
func (r *Rig) floodCounters(ctx context.Context, s Server, dir string) (map[string]float64, error) {
	out := map[string]float64{}
	srv, err := r.Srv.Exec(ctx, "cat", "/proc/net/snmp", "/proc/net/udp", "/proc/net/dev")
	if err != nil {
		return nil, err
	}
	parseKernelCounters(string(srv), "", ServerIf, out)
	cli, err := r.Cli.Exec(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return nil, err
	}
	parseKernelCounters(string(cli), "gen.", "", out)
	switch s.(type) {
	case Xdhcpd:
		text, err := scrapeText(r.Srv, floodMetrics)
		if err != nil {
			return nil, err
		}
		for k, v := range promSeries(text, "xdhcp_slowpath_dropped_total", "xdhcp_slowpath_messages_total", "xdhcp_slowpath_replies_total",
			"xdhcp_slowpath_offers_withdrawn_total", "xdhcp_fastpath_punts_total", "xdhcp_fastpath_replies_total",
			"xdhcp_slowpath_discovers_held_total", "xdhcp_slowpath_requests_held_total", "xdhcp_slowpath_offer_requests_kept_total",
			"xdhcp_slowpath_discover_retries_kept_total", "xdhcp_slowpath_discover_retries_ahead_total", "xdhcp_slowpath_discover_retries_over_total") {
			out[k] = v
		}
	case Kea:
		st, err := keaStatistics(filepath.Join(dir, "kea.sock"))
		if err != nil {
			return nil, err
		}
		for k, v := range st {
			out["kea."+k] = v
		}
	}
	return out, nil
}

// parseKernelCounters reads /proc/net/snmp's Udp counters (as
// prefix+"udp.NAME"), and, when present, /proc/net/udp's port 67 sockets'
// drops (prefix+"socket67.drops") and /proc/net/dev's receive counters of
// iface (prefix+"veth.rx_packets", "veth.rx_dropped") into out.
func parseKernelCounters(text, prefix, iface string, out map[string]float64) {
	var udpHead []string
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[0] == "Udp:":
			if _, err := strconv.ParseFloat(f[1], 64); err != nil {
				udpHead = f[1:]
				continue
			}
			for i, v := range f[1:] {
				if i < len(udpHead) {
					n, _ := strconv.ParseFloat(v, 64)
					out[prefix+"udp."+udpHead[i]] = n
				}
			}
		case len(f) >= 13 && strings.HasSuffix(f[0], ":") && strings.HasSuffix(f[1], ":0043"):
			// /proc/net/udp: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			out[prefix+"socket67.drops"] += n
		case iface != "" && len(f) >= 5 && f[0] == iface+":":
			// /proc/net/dev: bytes packets errs drop ...
			rx, _ := strconv.ParseFloat(f[2], 64)
			drop, _ := strconv.ParseFloat(f[4], 64)
			out[prefix+"veth.rx_packets"], out[prefix+"veth.rx_dropped"] = rx, drop
		}
	}
}

// scrapeText reads the /metrics served at addr inside ns. The connection
// is opened on a thread in ns and the request written by hand (an HTTP
// client would dial from another thread, outside ns).
func scrapeText(ns *netns.NS, addr string) (string, error) {
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return "", fmt.Errorf("metrics at %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", fmt.Errorf("metrics at %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("metrics at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics at %s: %s %v", addr, resp.Status, err)
	}
	return string(body), nil
}

// promSeries picks the samples of the named metrics out of Prometheus'
// text format, keyed by series (name and labels as written).
func promSeries(text string, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		end := strings.IndexAny(l, "{ ")
		if end < 0 || !slices.Contains(names, l[:end]) {
			continue
		}
		series, rest := l[:end], l[end:]
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			series, rest = l[:end+i+1], rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[series] = v
		}
	}
	return out
}

// keaStatistics asks kea-dhcp4's control socket for its global packet
// statistics (pkt4-*), latest values.
func keaStatistics(sock string) (map[string]float64, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, fmt.Errorf("kea statistics: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(`{"command": "statistic-get-all"}`)); err != nil {
		return nil, fmt.Errorf("kea statistics: %w", err)
	}
	var resp struct {
		Result    int                            `json:"result"`
		Arguments map[string][][]json.RawMessage `json:"arguments"`
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("kea statistics: %w", err)
	}
	return keaPktStats(resp.Arguments), nil
}

// keaPktStats keeps the pkt4-* statistics' latest values (each is a list
// of [value, timestamp], newest first).
func keaPktStats(args map[string][][]json.RawMessage) map[string]float64 {
	out := map[string]float64{}
	for k, samples := range args {
		if !strings.HasPrefix(k, "pkt4-") || len(samples) == 0 || len(samples[0]) == 0 {
			continue
		}
		var v float64
		if json.Unmarshal(samples[0][0], &v) == nil {
			out[k] = v
		}
	}
	return out
}

// FloodSummary is what a row's new clients came to.
type FloodSummary struct {
	Started  int // new clients
	InWindow int // of them, those whose first FloodGoal lay within the flood
	InGoal   int // of those, bound within FloodGoal
	Bound    int // bound at all (within their window)
	// Discovers and Offers are the new clients' DISCOVERs sent and
	// OFFERs taken: their DISCOVERs' share answered.
	Discovers, Offers int
	// Median and Max time to the ACK of those bound; NaN-free: 0 when
	// none.
	Median, Max float64
}

// Summary sums up the row's new clients.
func (row *FloodRow) Summary(goal time.Duration) FloodSummary {
	var s FloodSummary
	var times []float64
	for _, p := range row.Probes {
		s.Started++
		s.Discovers += p.Discovers
		s.Offers += p.Offers
		if p.Window >= goal.Seconds() {
			s.InWindow++
			if p.Bound && p.Seconds <= goal.Seconds() {
				s.InGoal++
			}
		}
		if p.Bound {
			s.Bound++
			times = append(times, p.Seconds)
		}
	}
	if len(times) > 0 {
		slices.Sort(times)
		s.Median, s.Max = times[len(times)/2], times[len(times)-1]
		if len(times)%2 == 0 {
			s.Median = (times[len(times)/2-1] + times[len(times)/2]) / 2
		}
	}
	return s
}

// perSecond is a counter's delta over the row's flood.
func (row *FloodRow) perSecond(key string) float64 {
	if row.Seconds <= 0 {
		return 0
	}
	return row.Counters[key] / row.Seconds
}

// share is a/b as a percentage, "-" when b is 0.
func share(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

// read is what the server's program read from its socket a second: the
// kernel's UDP InDatagrams (counted as the application receives).
func (row *FloodRow) read() float64 { return row.perSecond("udp.InDatagrams") }

// drops lists the server's own drop counters by reason, largest first.
func (row *FloodRow) drops() string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range row.Counters {
		if v == 0 {
			continue
		}
		if r, ok := strings.CutPrefix(k, `xdhcp_slowpath_dropped_total{reason="`); ok {
			l = append(l, kv{strings.TrimSuffix(r, `"}`), v})
		}
		if k == "xdhcp_slowpath_discovers_held_total" {
			l = append(l, kv{"DISCOVERs held off (kernel)", v})
		}
		if k == "xdhcp_slowpath_requests_held_total" {
			l = append(l, kv{"REQUESTs held off (kernel)", v})
		}
		if k == "kea.pkt4-receive-drop" {
			l = append(l, kv{"receive-drop (kea)", v})
		}
	}
	if len(l) == 0 {
		return "none"
	}
	slices.SortFunc(l, func(a, b kv) int { return cmp.Compare(b.v, a.v) })
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s %s", e.k, count(e.v)))
	}
	return strings.Join(parts, ", ")
}

// count renders a counter compactly: 1234 -> 1.2k.
func count(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// summaryLine is the row of a flood of kind in one line, for the log.
func (row *FloodRow) summaryLine(kind string) string {
	s := row.Summary(FloodGoal)
	answers := "OFFERs"
	if kind == FloodRequest {
		answers = "answers"
	}
	return fmt.Sprintf("%s: flood %.0f/s sent, %.0f/s read by the server, %.0f %s/s to it; kernel drops %.0f/s; new clients bound within %s: %d of %d (median %.1f s, max %.1f s, bound at all %d of %d); renewals %.0f/s answered, loss %.1f%%; drops: %s",
		row.Server, row.FloodRate, row.read(), float64(row.FloodReplies)/max(row.Seconds, 1e-9), answers, row.perSecond("udp.RcvbufErrors"),
		FloodGoal, s.InGoal, s.InWindow, s.Median, s.Max, s.Bound, s.Started, row.Renew.Rate, 100*row.Renew.Loss, row.drops())
}

// floodSection renders xdhcp-bench flood's reports: DISCOVERs, then
// REQUESTs.
func (rep *Report) floodSection(b *strings.Builder) {
	for _, f := range []*FloodReport{rep.Flood, rep.FloodRequest} {
		if f != nil {
			floodOne(b, f)
		}
	}
}

// floodOne renders one flood's comparison.
func floodOne(b *strings.Builder, f *FloodReport) {
	noun := floodNoun(f.Kind)
	fmt.Fprintf(b, "\n## %s flood: new clients and renewals under %d %ss/s asked (%s sender, relayed, %d random MACs, %.0f s)\n\n",
		noun, f.Rate, noun, senderName(f.Sender, f.Injection), f.MACs, f.Seconds)
	if f.Err != "" {
		fmt.Fprintf(b, "Not measured: %s\n", f.Err)
		return
	}
	fmt.Fprintf(b, "While the flood runs, a new client starts a DORA every second (relayed from %s, retransmitting after 4 s, 8 s, 16 s, each ±1 s at random, as RFC 2131 has it; given up to %.0f s, but no longer than the flood lasts plus 1 s), and %d bound clients renew at %d/s (relayed, 1 s timeout). "+
		"*Sent* is what the generator put on the wire; *read* the datagrams the server's program took from its sockets (the namespace's UDP InDatagrams); *kernel drops* the datagrams its full socket refused (UDP RcvbufErrors). "+
		"A new client counts toward the %.0f s goal when its first %.0f s lay within the flood.\n\n",
		probeGiaddr, f.LimitSec, f.Clients, f.RenewRate, f.GoalSec, f.GoalSec)
	if f.Kind != FloodRequest {
		b.WriteString("The new clients send one message at a time at random moments, the flood in bursts from a generator that shares the two CPUs with the server (its pace sags while the server works), so the new clients' DISCOVERs are not a random sample of the flood's: compare the two answered shares.\n\n")
	}
	if f.Kind != "" {
		b.WriteString("xdhcpd runs here with its default server.request-holdoff (2 s) and server.discover-holdoff (2 s).\n\n")
	}
	if f.Kind == FloodRequest {
		b.WriteString("The flood's REQUESTs are INIT-REBOOT ones (option 50, no server identifier) for random addresses of the relayed pool, from MACs that hold no lease: they go where bound clients' renewals wait, the REQUEST socket. *Answers to the flood* are the ACKs and NAKs its relay got; the new clients' DISCOVERs column still counts their own DISCOVERs and OFFERs.\n\n")
	}
	if f.XdhcpdTree != "" {
		fmt.Fprintf(b, "xdhcpd: `%s`.\n\n", f.XdhcpdTree)
	}
	answers := "OFFERs"
	if f.Kind == FloodRequest {
		answers = "answers"
	}
	fmt.Fprintf(b, "| server | flood sent/s | read by server/s | %s to the flood/s (share of its %ss) | kernel drops/s |", answers, noun)
	b.WriteString(" new clients bound ≤ 10 s | time to ACK median / max | new clients' DISCOVERs answered | renewals answered/s | renewal loss | renewal p99 ms | server drops (whole flood) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range f.Rows {
		r := &f.Rows[i]
		if r.Err != "" {
			fmt.Fprintf(b, "| %s | error: %s | | | | | | | | | | |\n", r.Server, strings.ReplaceAll(r.Err, "\n", " "))
			continue
		}
		s := r.Summary(time.Duration(f.GoalSec * float64(time.Second)))
		times := "-"
		if s.Bound > 0 {
			times = fmt.Sprintf("%.2f s / %.2f s", s.Median, s.Max)
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f (%s) | %.0f | %d of %d (bound at all: %d of %d) | %s | %d of %d (%s) | %.0f | %.1f%% | %.1f | %s |\n",
			r.Server, r.FloodRate, r.read(), float64(r.FloodReplies)/max(r.Seconds, 1e-9), share(float64(r.FloodReplies), float64(r.FloodSent)),
			r.perSecond("udp.RcvbufErrors"), s.InGoal, s.InWindow, s.Bound, s.Started, times, s.Offers, s.Discovers,
			share(float64(s.Offers), float64(s.Discovers)), r.Renew.Rate, 100*r.Renew.Loss, r.Renew.P99/1000, r.drops())
	}
	floodProbes(b, f)
	floodCounters(b, f)
}

// floodProbes is the new clients' table: one row per start second, one
// column per server.
func floodProbes(b *strings.Builder, f *FloodReport) {
	n := 0
	for _, r := range f.Rows {
		n = max(n, len(r.Probes))
	}
	if n == 0 {
		return
	}
	b.WriteString("\nEach new client (started at a random time within the second named): seconds from its first DISCOVER to the ACK, or why not (D: DISCOVERs sent, O: OFFERs taken, R: REQUESTs sent).\n\n| started in second |")
	for _, r := range f.Rows {
		fmt.Fprintf(b, " %s |", r.Server)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(f.Rows)) + "\n")
	for i := range n {
		start := ""
		for _, r := range f.Rows {
			if i < len(r.Probes) {
				start = fmt.Sprintf("%.0f s", float64(int(r.Probes[i].Start)))
			}
		}
		fmt.Fprintf(b, "| %s |", start)
		for _, r := range f.Rows {
			cell := ""
			if i < len(r.Probes) {
				p := r.Probes[i]
				if p.Bound {
					cell = fmt.Sprintf("%.2f s (D%d O%d R%d)", p.Seconds, p.Discovers, p.Offers, p.Requests)
				} else {
					cell = fmt.Sprintf("none in %.0f s (D%d O%d R%d)", p.Window, p.Discovers, p.Offers, p.Requests)
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		b.WriteString("\n")
	}
}

// floodCounters lists each server's nonzero counters over the flood.
func floodCounters(b *strings.Builder, f *FloodReport) {
	b.WriteString("\nCounters over the flood (and the second after it):\n\n")
	for _, r := range f.Rows {
		if r.Err != "" {
			continue
		}
		keys := make([]string, 0, len(r.Counters))
		for k, v := range r.Counters {
			if v != 0 {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("`%s` %.0f", k, r.Counters[k])
		}
		fmt.Fprintf(b, "- %s (server CPU %.1f s, softirq %.1f s): %s\n", r.Server, r.Renew.ServerCPU, r.Renew.Softirq, strings.Join(parts, ", "))
		if r.SocketMid != "" {
			fmt.Fprintf(b, "  - mid-flood `ss -uamn sport = :67`: `%s`\n", strings.Join(strings.Fields(r.SocketMid), " "))
		}
	}
}
