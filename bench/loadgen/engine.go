package loadgen

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Scenario names.
const (
	DORA    = "dora"    // new clients: DISCOVER, OFFER, REQUEST, ACK
	Renew   = "renew"   // bound clients renew (RENEWING, unicast)
	Mixed   = "mixed"   // renewals, new clients and releases by Mix
	Release = "release" // bound clients release and come straight back (DORA)
)

// Scenarios lists every scenario.
var Scenarios = []string{DORA, Renew, Mixed, Release}

// Mix weighs the operations of the mixed scenario (parts of their sum).
type Mix struct{ Renew, New, Release int }

// DefaultMix is 94% renewals, 5% new clients, 1% releases.
var DefaultMix = Mix{Renew: 94, New: 5, Release: 1}

// DefaultTimeout is how long a client waits for an exchange's answer
// before counting it lost. The client sends nothing else meanwhile.
const DefaultTimeout = time.Second

// Config describes the clients and the server they talk to.
type Config struct {
	Clients int // at most 1<<24
	Pop     Population
	// Server is where renewals and releases go (the server identifier
	// the offers carry is used for SELECTING requests).
	Server netip.Addr
	// GIAddr is the relay address in relay mode; invalid in layer 2 mode.
	GIAddr netip.Addr
	// Broadcast sets the B flag on DISCOVER and SELECTING REQUEST.
	Broadcast bool
	Timeout   time.Duration // per exchange; 0 means DefaultTimeout
	// LeaseTime, when set, is the lease time every ACK must carry (a grant
	// cut short by the fast path's horizon may be as little as half).
	LeaseTime time.Duration
	Mix       Mix
	// Reflected accepts the reflector's echo (a BOOTREPLY for the client's
	// address, nothing more) as the answer to a renewal: selftest only.
	Reflected bool
	// ServerPID, when set, has the server's CPU time measured per phase.
	ServerPID int
	// Progress, when set, gets a line a second while a phase runs.
	Progress io.Writer
	// Senders is how many goroutines send at once, each a share of the
	// rate; 0 means one. On a veth rig every send carries the server's
	// XDP and the kernel's delivery in its own system call, so one sender
	// keeps one CPU busy and leaves the other idle.
	Senders int
	// ForceRenew has the clients send option 145, keep the key an ACK
	// delivers and answer a FORCERENEW (bench/loadgen/forcerenew.go).
	// Only the layer 2 transport receives FORCERENEWs: they are unicast
	// to the client's address, which nothing routes back to a relay.
	ForceRenew bool
	// Scattered renews and releases the bound clients in a random order
	// (the same one each run) instead of the order they were bound in.
	// Addresses come from a fresh pool in order, so renewals in bound
	// order arrive in address order, and a store that keeps leases in a
	// tree by address writes one page for many of them; scattered, each
	// renewal dirties a page of its own, as an ISP's renewals do once
	// their timing has spread over the lease time.
	Scattered bool
}

// Phase is one measured run.
type Phase struct {
	Scenario string
	Rate     int // operations started per second; 0 sends as fast as the transport takes them
	Duration time.Duration
}

// Result is what a phase measured. Loss is dropped/(answered+dropped);
// an answer that fails validation is wrong, not answered.
type Result struct {
	Scenario    string  `json:"scenario"`
	Mode        string  `json:"mode"`
	Clients     int     `json:"clients"`
	TargetRate  int     `json:"target-rate"` // 0: open loop
	Seconds     float64 `json:"seconds"`
	PacketsSent int64   `json:"packets-sent"`
	Started     int64   `json:"started"`
	Answered    int64   `json:"answered"`
	Dropped     int64   `json:"dropped"`
	Wrong       int64   `json:"wrong"`
	NAKs        int64   `json:"naks"`
	Late        int64   `json:"late"`
	Starved     int64   `json:"starved"`
	Released    int64   `json:"released"`
	Rate        float64 `json:"answered-per-second"`
	Loss        float64 `json:"loss"`
	// P50, P99 and P999 are the answers' latency from when the generator
	// sent the request (for a DORA the DISCOVER, so its own turnaround
	// on the OFFER counts) to the answer's arrival in the kernel
	// (Received.Arrived; to when the generator read it where the
	// transport cannot say), so the generator's wait to read an answer
	// is not the server's. ReadP50 and ReadP99 are to when it read it,
	// that wait included. An answer counts as lost or late by when it
	// was read.
	P50     float64 `json:"latency-p50-us"`
	P99     float64 `json:"latency-p99-us"`
	P999    float64 `json:"latency-p99.9-us"`
	ReadP50 float64 `json:"read-latency-p50-us,omitempty"`
	ReadP99 float64 `json:"read-latency-p99-us,omitempty"`
	// ServerCPU is the server process's user+system seconds in the phase;
	// Softirq is the whole machine's softirq seconds, where XDP and the
	// veth receive path run (the generator's share included).
	ServerCPU         float64 `json:"server-cpu-seconds"`
	CPUPerMillion     float64 `json:"server-cpu-seconds-per-million"`
	Softirq           float64 `json:"softirq-cpu-seconds"`
	SoftirqPerMillion float64 `json:"softirq-cpu-seconds-per-million"`
	// Scattered says the clients renewed and released in a random order
	// (Config.Scattered), not in the order they were bound.
	Scattered bool `json:"scattered,omitempty"`
}

// Client states.
const (
	idle uint8 = iota
	discovering
	requesting
	bound
	renewing
)

// Operation kinds.
const (
	opDORA uint8 = iota
	opRenew
	opRelease
	opForce // a REQUEST a FORCERENEW called for, and the DORA its NAK calls for
	opKinds
)

type client struct {
	ip, offered, server netip.Addr
	start               int64 // when the operation began, ns on the engine's clock
	state, seq, op      uint8
}

type pending struct {
	idx      int32
	seq      uint8
	state    uint8
	deadline int64
}

type counts struct {
	started, answered, dropped [opKinds]int64
	wrong, naks, late, starved int64
	released, packets          int64
	lat                        Latency // to the answer's arrival
	read                       Latency // to when it was read
}

// Gen is a running client population on one transport.
type Gen struct {
	cfg   Config
	tr    Transport
	epoch time.Time

	mu      sync.Mutex
	clients []client
	byIP    map[netip.Addr]int32
	queue   []pending // in deadline order, from qhead on
	qhead   int
	// inFlight counts operations awaiting an answer (the queue also
	// holds answered ones until their deadline passes).
	inFlight int
	c        counts
	cursor   [opKinds]int
	// order, with Config.Scattered, maps a renewal's or release's cursor
	// to a client: a permutation of the clients.
	order   []int32
	seqGen  uint8
	opCount int
	keys    []keyState // per client, with Config.ForceRenew only
	redo    []int32    // moved clients whose DORA timed out, to DISCOVER again
	redoReq []int32    // forced REQUESTs that timed out, to send again
	frs     ForceRenewStats

	stop chan struct{}
	done chan struct{}
}

// New starts a generator: its receiver runs until Close.
func New(cfg Config, tr Transport) (*Gen, error) {
	if cfg.Clients <= 0 || cfg.Clients > 1<<24 {
		return nil, fmt.Errorf("clients %d: want 1 to %d", cfg.Clients, 1<<24)
	}
	if !cfg.Server.Is4() {
		return nil, fmt.Errorf("server address %v: want IPv4", cfg.Server)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	g := &Gen{cfg: cfg, tr: tr, epoch: time.Now(), clients: make([]client, cfg.Clients),
		byIP: make(map[netip.Addr]int32, cfg.Clients), stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.ForceRenew {
		g.keys = make([]keyState, cfg.Clients)
	}
	if cfg.Scattered {
		// A fixed seed: every run, and every server in it, is offered
		// the same order.
		r := rand.New(rand.NewPCG(1, 2))
		g.order = make([]int32, cfg.Clients)
		for i := range g.order {
			g.order[i] = int32(i)
		}
		r.Shuffle(len(g.order), func(i, j int) { g.order[i], g.order[j] = g.order[j], g.order[i] })
	}
	if o, ok := tr.(addressOwner); ok {
		o.setOwner(g.owner)
	}
	go g.receive()
	return g, nil
}

// Close stops the receiver; the transport stays the caller's.
func (g *Gen) Close() {
	close(g.stop)
	<-g.done
}

func (g *Gen) now() int64 { return int64(time.Since(g.epoch)) }

func (g *Gen) owner(ip netip.Addr) (Identity, bool) {
	g.mu.Lock()
	i, ok := g.byIP[ip]
	g.mu.Unlock()
	if !ok {
		return Identity{}, false
	}
	return g.cfg.Pop.Identity(int(i)), true
}

// Lease is a bound client: its index in the population and its address.
type Lease struct {
	Index int
	IP    netip.Addr
}

// Leases lists the bound clients in index order.
func (g *Gen) Leases() []Lease { return g.leases(nil) }

// RenewalOrder lists the bound clients in the order renewals visit them:
// Leases, or with Config.Scattered in its random order (the kernel sender
// offers them in this order).
func (g *Gen) RenewalOrder() []Lease { return g.leases(g.order) }

// leases lists the bound clients in order, a permutation of the clients'
// indexes, or by index when it is nil. (order is set once, by New.)
func (g *Gen) leases(order []int32) []Lease {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Lease, 0, len(g.byIP))
	for k := range g.clients {
		i := k
		if order != nil {
			i = int(order[k])
		}
		if c := &g.clients[i]; c.ip.IsValid() && (c.state == bound || c.state == renewing) {
			out = append(out, Lease{Index: i, IP: c.ip})
		}
	}
	return out
}

// Bound is how many clients hold a lease.
func (g *Gen) Bound() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byIP)
}

// Acquire takes leases for the first n clients, as fast as the server
// answers with a window of exchanges in flight, retrying lost ones, and
// returns how many hold one.
func (g *Gen) Acquire(ctx context.Context, n int) (int, error) {
	n = min(n, len(g.clients))
	const window = 256
	deadline := time.Now().Add(time.Duration(n/500)*time.Second + 30*time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		g.mu.Lock()
		now := g.now()
		g.expire(now)
		inFlight := g.inFlight
		var out []Packet
		var arena []byte
		for range min(n, 4096) {
			if inFlight >= window || len(out) >= 64 {
				break
			}
			j := g.cursor[opDORA] % n
			g.cursor[opDORA] = (j + 1) % n
			if g.clients[j].state == idle {
				out, arena = g.startDORA(j, opDORA, now, out, arena)
				inFlight++
			}
		}
		done := len(g.byIP) >= n
		g.mu.Unlock()
		if done {
			break
		}
		if len(out) > 0 {
			g.send(out)
		} else {
			time.Sleep(200 * time.Microsecond)
		}
	}
	g.drain(ctx)
	g.mu.Lock()
	g.c = counts{} // acquisition is not what is measured
	g.mu.Unlock()
	got := g.Bound()
	if got < n {
		return got, fmt.Errorf("%d of %d clients got a lease", got, n)
	}
	return got, ctx.Err()
}

// Assume binds the first n clients to addresses without asking anyone,
// for a server that cannot hand them out (the selftest's reflector).
func (g *Gen) Assume(n int, addr func(i int) netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range min(n, len(g.clients)) {
		c := &g.clients[i]
		c.ip, c.server, c.state = addr(i), g.cfg.Server, bound
		g.byIP[c.ip] = int32(i)
	}
}

// Run runs one phase and reports it.
func (g *Gen) Run(ctx context.Context, p Phase) (Result, error) {
	pick, err := g.picker(p.Scenario)
	if err != nil {
		return Result{}, err
	}
	g.mu.Lock()
	g.c = counts{}
	g.mu.Unlock()
	meter := StartCPU(g.cfg.ServerPID)
	start := time.Now()
	senders := max(1, g.cfg.Senders)
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.pace(ctx, p, pick, float64(p.Rate)/float64(senders), start, w == 0)
		}()
	}
	wg.Wait()
	g.drain(ctx)
	elapsed := p.Duration.Seconds()
	g.mu.Lock()
	c := g.c
	g.mu.Unlock()
	r := Result{Scenario: p.Scenario, Mode: g.tr.Name(), Clients: len(g.clients), TargetRate: p.Rate, Seconds: elapsed,
		PacketsSent: c.packets, Wrong: c.wrong, NAKs: c.naks, Late: c.late, Starved: c.starved, Released: c.released,
		P50: us(c.lat.Quantile(0.5)), P99: us(c.lat.Quantile(0.99)), P999: us(c.lat.Quantile(0.999)),
		ReadP50: us(c.read.Quantile(0.5)), ReadP99: us(c.read.Quantile(0.99)), Scattered: g.order != nil && p.Scenario != DORA}
	for k := range opKinds {
		r.Started += c.started[k]
		r.Answered += c.answered[k]
		r.Dropped += c.dropped[k]
	}
	r.Rate = float64(r.Answered) / elapsed
	if r.Answered+r.Dropped > 0 {
		r.Loss = float64(r.Dropped) / float64(r.Answered+r.Dropped)
	}
	meter.Fill(&r)
	if g.cfg.Progress != nil {
		fmt.Fprintln(g.cfg.Progress)
	}
	return r, ctx.Err()
}

// pace starts operations at rate a second (0: as fast as the transport
// takes them) until the phase ends; the first sender also reports progress.
func (g *Gen) pace(ctx context.Context, p Phase, pick pickFunc, rate float64, start time.Time, report bool) {
	end := start.Add(p.Duration)
	var started int64
	lastTick, last := start, counts{}
	for ctx.Err() == nil {
		t := time.Now()
		if !t.Before(end) {
			return
		}
		batch := 64
		if rate > 0 {
			due := int64(t.Sub(start).Seconds() * rate)
			batch = int(min(int64(batch), due-started))
			if batch <= 0 {
				// Sleep until the next operation is due.
				due := start.Add(time.Duration(float64(started+1) / rate * float64(time.Second)))
				time.Sleep(max(time.Until(due), 20*time.Microsecond))
				continue
			}
		}
		g.mu.Lock()
		now := g.now()
		g.expire(now)
		var out []Packet
		var arena []byte
		for range batch {
			out, arena = pick(now, out, arena)
		}
		g.mu.Unlock()
		started += int64(batch)
		if len(out) > 0 {
			if _, err := g.send(out); err != nil {
				time.Sleep(50 * time.Microsecond) // socket buffer full
			}
		} else {
			time.Sleep(50 * time.Microsecond) // every client busy
		}
		if report && g.cfg.Progress != nil && t.Sub(lastTick) >= time.Second {
			g.mu.Lock()
			c := g.c
			g.mu.Unlock()
			g.progress(t.Sub(start), t.Sub(lastTick), &c, &last)
			lastTick, last = t, c
		}
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (g *Gen) progress(total, dt time.Duration, c, last *counts) {
	var a, d, la, ld int64
	for k := range opKinds {
		a, d = a+c.answered[k], d+c.dropped[k]
		la, ld = la+last.answered[k], ld+last.dropped[k]
	}
	loss := 0.0
	if a-la+d-ld > 0 {
		loss = float64(d-ld) / float64(a-la+d-ld)
	}
	fmt.Fprintf(g.cfg.Progress, "\r  %4.0fs  sent %7.0f/s  answered %7.0f/s  drops %5.2f%%  wrong %d  p50 %v  p99 %v   ",
		total.Seconds(), float64(c.packets-last.packets)/dt.Seconds(), float64(a-la)/dt.Seconds(), 100*loss, c.wrong,
		c.lat.Quantile(0.5), c.lat.Quantile(0.99))
}

// drain waits until nothing is in flight (answered or timed out).
func (g *Gen) drain(ctx context.Context) {
	for ctx.Err() == nil {
		g.mu.Lock()
		g.expire(g.now())
		n := g.inFlight
		g.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type pickFunc func(now int64, out []Packet, arena []byte) ([]Packet, []byte)

// picker returns what starts one operation of the scenario; it runs with
// g.mu held.
func (g *Gen) picker(scenario string) (pickFunc, error) {
	renew := func(now int64, out []Packet, arena []byte) ([]Packet, []byte) {
		if j, ok := g.next(opRenew, bound); ok {
			return g.startRenew(j, now, out, arena)
		}
		g.c.starved++
		return out, arena
	}
	dora := func(now int64, out []Packet, arena []byte) ([]Packet, []byte) {
		if j, ok := g.next(opDORA, idle, bound); ok {
			return g.startDORA(j, opDORA, now, out, arena)
		}
		g.c.starved++
		return out, arena
	}
	release := func(reacquire bool) pickFunc {
		return func(now int64, out []Packet, arena []byte) ([]Packet, []byte) {
			j, ok := g.next(opRelease, bound)
			if !ok {
				g.c.starved++
				return out, arena
			}
			out, arena = g.release(j, out, arena)
			if reacquire {
				out, arena = g.startDORA(j, opRelease, now, out, arena)
			}
			return out, arena
		}
	}
	switch scenario {
	case Renew:
		return renew, nil
	case DORA:
		return dora, nil
	case Release:
		return release(true), nil
	case Mixed:
		m := g.cfg.Mix
		total := m.Renew + m.New + m.Release
		if m.Renew < 0 || m.New < 0 || m.Release < 0 || total == 0 {
			return nil, fmt.Errorf("mix %+v: weights must be non-negative with a positive sum", m)
		}
		// New clients come from those without a lease; once they are all
		// bound, a bound one starts over as new (a DORA all the same).
		newClient := func(now int64, out []Packet, arena []byte) ([]Packet, []byte) {
			j, ok := g.next(opDORA, idle)
			if !ok {
				j, ok = g.next(opDORA, bound)
			}
			if ok {
				return g.startDORA(j, opDORA, now, out, arena)
			}
			g.c.starved++
			return out, arena
		}
		rel := release(false)
		return func(now int64, out []Packet, arena []byte) ([]Packet, []byte) {
			k := g.opCount % total
			g.opCount++
			switch {
			case k < m.Renew:
				return renew(now, out, arena)
			case k < m.Renew+m.New:
				return newClient(now, out, arena)
			default:
				return rel(now, out, arena)
			}
		}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q (want %v)", scenario, Scenarios)
}

// next finds, round robin from op's cursor, a client in one of the
// states; it looks at a bounded number so that a busy population costs
// a starved operation, not a scan of every client.
func (g *Gen) next(op uint8, states ...uint8) (int, bool) {
	n := len(g.clients)
	for range min(n, 512) {
		j := g.cursor[op]
		g.cursor[op] = (j + 1) % n
		if g.order != nil && op != opDORA {
			// A DORA keeps the clients' order: the pool's addresses go
			// out in it, and the renewals' order is what scatters them.
			j = int(g.order[j])
		}
		for _, s := range states {
			if g.clients[j].state == s {
				return j, true
			}
		}
	}
	return 0, false
}

func (g *Gen) xid(j int) uint32 { return uint32(g.clients[j].seq)<<24 | uint32(j) }

func (g *Gen) await(j int, state uint8, now int64) {
	c := &g.clients[j]
	c.state = state
	g.queue = append(g.queue, pending{idx: int32(j), seq: c.seq, state: state, deadline: now + int64(g.cfg.Timeout)})
}

// startDORA sends client j's DISCOVER, counted as an operation of kind op.
func (g *Gen) startDORA(j int, op uint8, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	c := &g.clients[j]
	if c.state == bound {
		g.unbind(j)
	}
	c.op, c.start = op, now
	g.c.started[op]++
	g.inFlight++
	return g.discover(j, now, out, arena)
}

// discover sends client j's DISCOVER as the next step of its exchange.
func (g *Gen) discover(j int, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	g.clients[j].seq++
	g.await(j, discovering, now)
	id := g.cfg.Pop.Identity(j)
	m := Message{Type: dhcpwire.Discover, XID: g.xid(j), ID: id, GIAddr: g.cfg.GIAddr, Broadcast: g.cfg.Broadcast,
		NonceCapable: g.cfg.ForceRenew}
	return appendPacket(out, arena, m, netip.Addr{})
}

func (g *Gen) startRenew(j int, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	c := &g.clients[j]
	c.seq++
	c.op, c.start = opRenew, now
	g.c.started[opRenew]++
	g.inFlight++
	g.await(j, renewing, now)
	m := Message{Type: dhcpwire.Request, XID: g.xid(j), ID: g.cfg.Pop.Identity(j), CIAddr: c.ip, GIAddr: g.cfg.GIAddr,
		NonceCapable: g.cfg.ForceRenew}
	return appendPacket(out, arena, m, c.ip)
}

func (g *Gen) release(j int, out []Packet, arena []byte) ([]Packet, []byte) {
	c := &g.clients[j]
	c.seq++
	ip, server := c.ip, c.server
	g.unbind(j)
	g.c.released++
	m := Message{Type: dhcpwire.Release, XID: g.xid(j), ID: g.cfg.Pop.Identity(j), CIAddr: ip, ServerID: server, GIAddr: g.cfg.GIAddr}
	return appendPacket(out, arena, m, ip)
}

func (g *Gen) unbind(j int) {
	c := &g.clients[j]
	if c.ip.IsValid() {
		if g.byIP[c.ip] == int32(j) {
			delete(g.byIP, c.ip)
		}
	}
	c.ip, c.state = netip.Addr{}, idle
}

// appendPacket renders m into arena (so that a batch shares one buffer)
// and queues it; from is the client's address in layer 2 mode.
func appendPacket(out []Packet, arena []byte, m Message, from netip.Addr) ([]Packet, []byte) {
	if cap(arena)-len(arena) < 600 {
		arena = make([]byte, 0, 64*600)
	}
	s := len(arena)
	arena = m.Append(arena)
	return append(out, Packet{Payload: arena[s:len(arena):len(arena)], Client: m.ID, CIAddr: from}), arena
}

func (g *Gen) send(out []Packet) (int, error) {
	n, err := g.tr.Send(out)
	g.mu.Lock()
	g.c.packets += int64(n)
	g.mu.Unlock()
	return n, err
}

// expire times out exchanges past their deadline; it runs with g.mu held.
func (g *Gen) expire(now int64) {
	i := g.qhead
	for ; i < len(g.queue) && g.queue[i].deadline <= now; i++ {
		p := g.queue[i]
		c := &g.clients[p.idx]
		if c.seq != p.seq || c.state != p.state {
			continue // answered, or moved on to its next exchange
		}
		if c.op == opForce && c.state == renewing && g.keys[p.idx].tries < forcedTries {
			// The forced REQUEST or its answer was lost: retransmit it,
			// as dhcpcd does in RENEWING, a few times.
			g.keys[p.idx].tries++
			g.frs.Retried++
			g.redoReq = append(g.redoReq, p.idx)
			continue
		}
		if c.op == opForce && c.state != renewing {
			// A moved client whose DISCOVER or REQUEST went unanswered
			// has no lease: like a real client it tries again (the
			// receiver sends it), still counted in flight.
			g.frs.Retried++
			g.redo = append(g.redo, p.idx)
			continue
		}
		g.c.dropped[c.op]++
		g.inFlight--
		if c.op == opForce {
			g.frs.Lost++
		}
		if c.state == renewing {
			c.state = bound // it still holds its lease
		} else {
			c.state = idle
		}
	}
	g.qhead = i
	// Compact once the expired head outweighs what is still pending, so
	// the copying stays linear in the number of exchanges.
	if g.qhead > 1024 && g.qhead > len(g.queue)/2 {
		g.queue = append(g.queue[:0], g.queue[g.qhead:]...)
		g.qhead = 0
	}
}

// receive reads answers until Close and sends the REQUESTs offers call for.
func (g *Gen) receive() {
	defer close(g.done)
	msgs := make([]Received, 64)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 1600)
	}
	var p dhcpwire.Packet
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		n, err := g.tr.Recv(msgs, 100*time.Millisecond)
		if err != nil {
			// A broken socket would otherwise spin a core until Close;
			// the run's drop count shows the missing answers.
			select {
			case <-g.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		var out []Packet
		var arena []byte
		g.mu.Lock()
		wall := time.Now()
		now := int64(wall.Sub(g.epoch))
		for _, m := range msgs[:n] {
			// The kernel's stamp is wall-clock time: its distance from
			// now is taken on that clock, and moved onto the
			// generator's.
			at := now
			if !m.Arrived.IsZero() {
				at -= int64(max(wall.Sub(m.Arrived), 0))
			}
			out, arena = g.answer(&p, m.Buf[:m.N], now, at, out, arena)
		}
		if g.keys != nil {
			g.expire(now)
			for _, j := range g.redo {
				out, arena = g.discover(int(j), now, out, arena)
			}
			g.redo = g.redo[:0]
			for _, j := range g.redoReq {
				out, arena = g.forcedRequest(int(j), now, out, arena)
			}
			g.redoReq = g.redoReq[:0]
		}
		g.mu.Unlock()
		if len(out) > 0 {
			g.send(out)
		}
	}
}

// answer validates one reply, which arrived at at, and moves its client
// on; it runs with g.mu held.
func (g *Gen) answer(p *dhcpwire.Packet, b []byte, now, at int64, out []Packet, arena []byte) ([]Packet, []byte) {
	if err := p.Parse(b); err != nil || p.Op != dhcpwire.BootReply {
		g.c.wrong++
		return out, arena
	}
	j := int(p.XID & (1<<24 - 1))
	if j >= len(g.clients) {
		g.c.wrong++
		return out, arena
	}
	if g.keys != nil && p.MessageType() == dhcpwire.ForceRenew {
		// Unsolicited: its xid is the last ACKed REQUEST's, not one
		// awaiting an answer.
		return g.forceRenew(j, b, p.XID, now, out, arena)
	}
	c := &g.clients[j]
	if uint8(p.XID>>24) != c.seq || (c.state != discovering && c.state != requesting && c.state != renewing) {
		g.c.late++ // timed out already, or a duplicate
		return out, arena
	}
	id := g.cfg.Pop.Identity(j)
	if p.HLen != 6 || [6]byte(p.CHAddr()) != [6]byte(id.MAC) || !g.relayEchoed(p, id) {
		g.fail(j)
		return out, arena
	}
	sid, _ := p.Option(dhcpwire.OptServerID)
	typ := p.MessageType()
	if g.cfg.Reflected {
		typ = 0
	}
	if typ == dhcpwire.Nak {
		g.c.naks++
		if c.op == opForce && c.state == renewing {
			return g.forcedNAK(j, now, out, arena)
		}
		g.fail(j)
		return out, arena
	}
	switch c.state {
	case discovering:
		if typ != dhcpwire.Offer || !p.YIAddr.Is4() || p.YIAddr.IsUnspecified() || len(sid) != 4 {
			g.fail(j)
			return out, arena
		}
		c.offered, c.server = p.YIAddr, netip.AddrFrom4([4]byte(sid))
		g.await(j, requesting, now)
		m := Message{Type: dhcpwire.Request, XID: p.XID, ID: id, Requested: c.offered, ServerID: c.server, GIAddr: g.cfg.GIAddr, Broadcast: g.cfg.Broadcast,
			NonceCapable: g.cfg.ForceRenew}
		return appendPacket(out, arena, m, netip.Addr{})
	case requesting:
		if typ != dhcpwire.Ack || p.YIAddr != c.offered || len(sid) != 4 || netip.AddrFrom4([4]byte(sid)) != c.server || !g.leaseTimeOK(p) {
			g.fail(j)
			return out, arena
		}
		g.done1(j, now, at)
		g.keepKey(j, p)
		if c.op == opForce {
			g.frs.Moved++
		}
		c.ip, c.state = c.offered, bound
		if prev, ok := g.byIP[c.ip]; ok && int(prev) != j {
			// The server gave out an address another client holds.
			g.c.wrong++
			pc := &g.clients[prev]
			if pc.state == discovering || pc.state == requesting || pc.state == renewing {
				g.inFlight-- // its exchange ends here
			}
			pc.seq++
			pc.ip, pc.state = netip.Addr{}, idle
		}
		g.byIP[c.ip] = int32(j)
	case renewing:
		if g.cfg.Reflected && p.YIAddr == c.ip {
			g.done1(j, now, at)
			c.state = bound
			return out, arena
		}
		if typ != dhcpwire.Ack || p.YIAddr != c.ip || len(sid) != 4 || !g.leaseTimeOK(p) {
			g.fail(j)
			return out, arena
		}
		g.done1(j, now, at)
		g.keepKey(j, p)
		if c.op == opForce {
			g.frs.Renewed++
		}
		c.state = bound
	}
	return out, arena
}

// done1 counts client j's exchange answered: the answer arrived at at
// and was read at now.
func (g *Gen) done1(j int, now, at int64) {
	c := &g.clients[j]
	g.c.answered[c.op]++
	g.inFlight--
	if at < c.start {
		// The wall clock stepped forward between arrival and read:
		// the stamp says nothing, the read time does.
		at = now
	}
	g.c.lat.Add(time.Duration(at - c.start))
	g.c.read.Add(time.Duration(now - c.start))
}

// fail counts a wrong answer and returns the client to where it was.
func (g *Gen) fail(j int) {
	c := &g.clients[j]
	g.c.wrong++
	g.inFlight--
	c.seq++ // whatever else arrives for this exchange is late
	if c.state == renewing {
		c.state = bound
	} else {
		c.state = idle
	}
}

func (g *Gen) leaseTimeOK(p *dhcpwire.Packet) bool {
	v, ok := p.Option(dhcpwire.OptLeaseTime)
	if !ok || len(v) != 4 {
		return false
	}
	lt := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	if g.cfg.LeaseTime == 0 {
		return lt > 0
	}
	return lt <= g.cfg.LeaseTime && lt >= g.cfg.LeaseTime/2
}

// relayEchoed checks that option 82, when the relay added it, came back
// byte for byte (RFC 3046 §2.2).
func (g *Gen) relayEchoed(p *dhcpwire.Packet, id Identity) bool {
	if !g.cfg.GIAddr.IsValid() || id.Opt82 == nil {
		return true
	}
	v, ok := p.Option(dhcpwire.OptRelayAgentInfo)
	return ok && string(v) == string(id.Opt82)
}
