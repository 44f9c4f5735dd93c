package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// ScenarioOptions shape one run of xdhcp-bench's own generator.
type ScenarioOptions struct {
	Scenario string // loadgen.DORA, Renew, Mixed or Release
	Mode     string // "relay" or "l2"
	Clients  int
	Pop      loadgen.Population
	// MaxLoss, when positive, searches for the highest rate with at most
	// this loss (doubling from StartRate, then bisecting); then an
	// open-loop phase follows. Otherwise one phase runs at Rate (0: open
	// loop).
	MaxLoss   float64
	StartRate int
	Bisect    int // bisection steps after the first failing rate (default 3)
	// Confirm runs a step of the search that failed once more, and takes
	// the rate as failed only if it fails again, so that a one-off stall
	// of the host (a slow fsync, a burst of its own work) does not set a
	// ceiling that later steps are fractions of (Overload). Two tries at
	// a rate at the edge raise the odds that it passes: the ceiling found
	// leans high by that much.
	Confirm  bool
	Rate     int
	Step     time.Duration // length of each phase
	Progress io.Writer     // live progress line; nil for none
	Log      io.Writer     // one line per step; nil for none
	Senders  int           // sending goroutines (loadgen.Config.Senders)
	// Sender is SenderSockets (default) or SenderXDP, which offers the
	// renew scenario's renewals from the kernel (Injector); leases are
	// taken through the sockets either way.
	Sender string
	// Injection is how SenderXDP sends: InjectLive, InjectTestRuns, or ""
	// for live frames where the kernel runs them.
	Injection string
	// ProfileDir, when set and the server is xdhcpd, receives its CPU
	// profile of ProfileSeconds (default 20) of the measured phase, taken
	// from its middle (server.pprof is turned on), and its allocations
	// (allocs) at the phase's start and end, for pprof's -diff_base. Only
	// a run at one rate (MaxLoss 0) is profiled.
	ProfileDir     string
	ProfileSeconds int
	// ServerSide, for xdhcpd, reads where the time went in the server
	// (ScenarioResult.ServerSide) for a run at one rate (MaxLoss 0).
	ServerSide bool
	// Scattered renews in a random order, not the order the clients were
	// bound in (loadgen.Config.Scattered).
	Scattered bool
	// settle is the pause before each phase for the previous one's
	// backlog to drain; 0: a second, 300 ms for the kernel sender.
	settle time.Duration
}

// ScenarioResult is one server's outcome in one scenario.
type ScenarioResult struct {
	Server   string `json:"server"`
	Version  string `json:"version"`
	Scenario string `json:"scenario"`
	Mode     string `json:"mode"`
	Clients  int    `json:"clients"`
	Senders  int    `json:"senders"` // the generator's sending goroutines
	Sender   string `json:"sender"`  // SenderSockets or SenderXDP
	// Injection is how SenderXDP sent (InjectLive or InjectTestRuns).
	Injection string `json:"injection,omitempty"`
	// Best is the phase with the highest answered rate within the loss
	// limit, the open loop included (or the one phase run); OpenLoop the
	// phase offered as much as the generator sends.
	Best     loadgen.Result   `json:"best"`
	MaxLoss  float64          `json:"max-loss"`
	OpenLoop *loadgen.Result  `json:"open-loop,omitempty"`
	Steps    []loadgen.Result `json:"steps,omitempty"`
	// ServerSide is ScenarioOptions.ServerSide's reading.
	ServerSide *ServerSide `json:"server-side,omitempty"`
	Err        string      `json:"error,omitempty"`
}

// relayAt opens a relay transport on another giaddr in the client
// namespace (added to its interface first): a population of its own,
// whose answers do not meet the rig relay's.
func (r *Rig) relayAt(ctx context.Context, giaddr string) (loadgen.Transport, error) {
	if _, err := r.Cli.Exec(ctx, "ip", "addr", "replace", giaddr+"/32", "dev", ClientIf); err != nil {
		return nil, fmt.Errorf("relay address %s: %w", giaddr, err)
	}
	var t loadgen.Transport
	err := r.Cli.Do(func() (err error) {
		t, err = loadgen.NewRelay(netip.MustParseAddr(giaddr), netip.MustParseAddr(ServerAddr))
		return err
	})
	return t, err
}

// boundRelayClients starts a generator of n relayed clients (the default
// population) on the rig's relay and has each take a lease from the
// server, process pid; both are the caller's to close.
func (r *Rig) boundRelayClients(ctx context.Context, pid, n int) (*loadgen.Gen, loadgen.Transport, error) {
	tr, err := r.transport("relay")
	if err != nil {
		return nil, nil, err
	}
	g, err := loadgen.New(genConfig(ScenarioOptions{Mode: "relay", Clients: n, Pop: DefaultPopulation(false, true, 0)}, pid), tr)
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	if _, err := g.Acquire(ctx, n); err != nil {
		g.Close()
		tr.Close()
		return nil, nil, fmt.Errorf("taking leases: %w", err)
	}
	return g, tr, nil
}

// transport opens the generator's transport in the client namespace.
func (r *Rig) transport(mode string) (loadgen.Transport, error) {
	var t loadgen.Transport
	err := r.Cli.Do(func() error {
		var err error
		switch mode {
		case "relay", "":
			t, err = loadgen.NewRelay(netip.MustParseAddr(Giaddr), netip.MustParseAddr(ServerAddr))
		case "l2":
			t, err = loadgen.NewL2(ClientIf, netip.MustParseAddr(ServerAddr))
		default:
			err = fmt.Errorf("mode %q: want relay or l2", mode)
		}
		return err
	})
	return t, err
}

// genConfig is the generator's view of the rig for mode.
func genConfig(o ScenarioOptions, pid int) loadgen.Config {
	c := loadgen.Config{Clients: o.Clients, Pop: o.Pop, Server: netip.MustParseAddr(ServerAddr), LeaseTime: time.Hour,
		ServerPID: pid, Progress: o.Progress, Senders: o.Senders, Scattered: o.Scattered}
	if o.Mode == "l2" {
		// The B flag makes every server broadcast OFFER and ACK, so that a
		// server on UDP sockets (Kea's default) can answer a client with no
		// address; renewals are unicast both ways.
		c.Broadcast = true
		c.Pop.Opt82 = false
	} else {
		c.GIAddr = netip.MustParseAddr(Giaddr)
		c.Pop.VLANs = 0
	}
	return c
}

// Scenario starts s afresh and drives it with the generator.
func (r *Rig) Scenario(ctx context.Context, s Server, o ScenarioOptions) ScenarioResult {
	res := ScenarioResult{Server: s.Name(), Version: s.Version(), Scenario: o.Scenario, Mode: o.Mode, Clients: o.Clients, MaxLoss: o.MaxLoss,
		Senders: max(1, o.Senders), Sender: cmp.Or(o.Sender, SenderSockets)}
	if res.Mode == "" {
		res.Mode = "relay"
	}
	fail := func(err error) ScenarioResult { res.Err = err.Error(); return res }
	if res.Sender != SenderSockets && (res.Sender != SenderXDP || o.Scenario != loadgen.Renew) {
		return fail(fmt.Errorf("sender %q: want %s, or %s for the renew scenario", res.Sender, SenderSockets, SenderXDP))
	}
	dir, err := os.MkdirTemp("", "xdhcp-bench-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if x, ok := s.(Xdhcpd); ok && (o.ProfileDir != "" || o.ServerSide) {
		x.Metrics = ServerAddr + ":" + scenarioMetricsPort
		if o.ProfileDir != "" {
			x.Metrics += "\n  pprof: true"
		}
		s = x
	} else {
		o.ServerSide = false
	}
	p, err := s.Start(ctx, r.Srv, dir)
	if err != nil {
		return fail(err)
	}
	defer stopServer(s, p, r.Srv, dir)
	tr, err := r.transport(o.Mode)
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	cfg := genConfig(o, p.Pid())
	g, err := loadgen.New(cfg, tr)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	if o.Scenario != loadgen.DORA {
		n := o.Clients
		if o.Scenario == loadgen.Mixed {
			n = o.Clients * 9 / 10 // the rest are the new clients
		}
		if _, err := g.Acquire(ctx, n); err != nil {
			return fail(fmt.Errorf("taking leases: %w", err))
		}
	}
	if res.Sender == SenderXDP {
		return r.injected(ctx, g, cfg, o, res, false)
	}
	return r.phases(ctx, g, o, res, s.Name())
}

// injected runs o's phases with the renewals offered by an Injector for
// g's leases.
func (r *Rig) injected(ctx context.Context, g *loadgen.Gen, cfg loadgen.Config, o ScenarioOptions, res ScenarioResult, reflected bool) ScenarioResult {
	res.Senders = 1 // see Injector.Run
	in, err := r.newInjector(g, cfg, reflected, o.Injection)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer in.Close()
	res.Injection = in.how
	return r.search(ctx, o, res, res.Server, func(rate int) (loadgen.Result, error) {
		return in.Run(ctx, res.Mode, rate, o.Step, cfg.ServerPID)
	})
}

// phases runs the measured phases of o on g.
func (r *Rig) phases(ctx context.Context, g *loadgen.Gen, o ScenarioOptions, res ScenarioResult, name string) ScenarioResult {
	return r.search(ctx, o, res, name, func(rate int) (loadgen.Result, error) {
		return g.Run(ctx, loadgen.Phase{Scenario: res.Scenario, Rate: rate, Duration: o.Step})
	})
}

// search runs the measured phases of o with phase: one at o.Rate, or a
// rate search within o.MaxLoss followed by an open-loop phase.
func (r *Rig) search(ctx context.Context, o ScenarioOptions, res ScenarioResult, name string, phase func(rate int) (loadgen.Result, error)) ScenarioResult {
	fail := func(err error) ScenarioResult { res.Err = err.Error(); return res }
	run := func(rate int) (loadgen.Result, error) {
		// Let the previous phase's backlog drain (the kernel sender has
		// waited for late answers already).
		pause := time.Second
		if res.Sender == SenderXDP {
			pause = 300 * time.Millisecond
		}
		time.Sleep(cmp.Or(o.settle, pause))
		ph, err := phase(rate)
		switch {
		case o.Log == nil:
		case err != nil:
			fmt.Fprintf(o.Log, "  %-20s %-7s %-5s %-7s rate %7d/s: %v\n",
				name, res.Scenario, res.Mode, senderName(res.Sender, res.Injection), rate, err)
		default:
			fmt.Fprintf(o.Log, "  %-20s %-7s %-5s %-7s rate %7d/s: %8.0f answered/s, loss %6.3f%%, wrong %d, p99 %sµs\n",
				name, res.Scenario, res.Mode, senderName(res.Sender, res.Injection), rate, ph.Rate, 100*ph.Loss, ph.Wrong, latency(res, ph.P99))
		}
		return ph, err
	}
	if o.MaxLoss <= 0 {
		if o.ProfileDir != "" && strings.HasPrefix(name, "xdhcpd") {
			defer r.profilePhase(o, name)()
		}
		var side func() (*ServerSide, error)
		if o.ServerSide {
			side = serverSideProbe(r.Srv, ServerAddr+":"+scenarioMetricsPort)
		}
		ph, err := run(o.Rate)
		res.Best = ph
		if side != nil {
			ss, serr := side()
			if serr != nil && o.Log != nil {
				fmt.Fprintf(o.Log, "  server-side latency: %v\n", serr)
			}
			res.ServerSide = ss
		}
		if err != nil {
			return fail(err)
		}
		return res
	}
	// A run's error ends the search: no step after it, and no
	// confirmation of the step it ended.
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	try := func(rate int) (float64, float64) {
		ph, err := run(rate)
		if err != nil {
			stop(err)
			return 0, 1
		}
		res.Steps = append(res.Steps, ph)
		// A step counts only if the generator offered the rate (with every
		// client busy it cannot) and nothing was answered wrongly.
		in := within(ph, o.MaxLoss)
		ok := in && offered(res.Scenario, ph) >= 0.95*float64(rate)
		// The result is the highest answered rate of any phase within the
		// loss limit, offered or not: when the generator falls short of a
		// rate the server still answered what it was sent, at that loss.
		if in && ph.Rate > res.Best.Rate {
			res.Best = ph
		}
		if !ok {
			return ph.Rate, 1
		}
		return ph.Rate, ph.Loss
	}
	if o.Confirm {
		try = confirmed(sctx, o.MaxLoss, o.Log, try)
	}
	findRate(sctx, max(o.StartRate, 100), o.MaxLoss, cmp.Or(o.Bisect, 3), try)
	if err := context.Cause(sctx); err != nil && ctx.Err() == nil {
		return fail(err)
	}
	ol, err := run(0)
	if err != nil {
		return fail(err)
	}
	res.OpenLoop = &ol
	if within(ol, o.MaxLoss) && ol.Rate > res.Best.Rate {
		res.Best = ol
	}
	return res
}

// confirmed is try for a search whose failed steps run once more
// (ScenarioOptions.Confirm): a rate fails only if it fails twice.
func confirmed(ctx context.Context, maxLoss float64, log io.Writer, try func(rate int) (float64, float64)) func(rate int) (float64, float64) {
	return func(rate int) (float64, float64) {
		a, l := try(rate)
		if l <= maxLoss || ctx.Err() != nil {
			return a, l
		}
		if log != nil {
			fmt.Fprintf(log, "  %d/s failed: once more to confirm\n", rate)
		}
		return try(rate)
	}
}

// scenarioMetricsPort serves the profiles of ScenarioOptions.ProfileDir.
const scenarioMetricsPort = "9582"

// profilePhase takes the profiles of ScenarioOptions.ProfileDir for the
// phase that starts now (after its settling pause): the allocations now,
// the CPU profile from a quarter into the phase, and, when the returned
// function is called at the phase's end, the allocations again.
func (r *Rig) profilePhase(o ScenarioOptions, name string) func() {
	addr := ServerAddr + ":" + scenarioMetricsPort
	stem := filepath.Join(o.ProfileDir, fmt.Sprintf("%s-%s-%s", name, o.Scenario, cmp.Or(o.Mode, "relay")))
	logf := func(err error) {
		if err != nil && o.Log != nil {
			fmt.Fprintf(o.Log, "  profile: %v\n", err)
		}
	}
	logf(os.MkdirAll(o.ProfileDir, 0o755))
	logf(fetchProfile(r.Srv, addr, "allocs", 0, stem+".allocs-start.pb.gz"))
	// Within the phase: from a quarter in to at most its end.
	secs := max(1, min(cmp.Or(o.ProfileSeconds, 20), int(o.Step*3/4/time.Second)))
	from := cmp.Or(o.settle, time.Second) + o.Step/4
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(from)
		logf(fetchProfile(r.Srv, addr, "profile", secs, stem+".cpu.pb.gz"))
	})
	// An execution trace of a few seconds beside it: where a request's
	// wait comes from (a stall of the reader, the commit, the collector)
	// shows in the goroutines' timelines, not in a CPU profile.
	wg.Go(func() {
		time.Sleep(from)
		logf(fetchProfile(r.Srv, addr, "trace", min(secs, 3), stem+".trace"))
	})
	return func() {
		logf(fetchProfile(r.Srv, addr, "allocs", 0, stem+".allocs-end.pb.gz"))
		wg.Wait()
	}
}

// within reports whether a phase kept within the loss limit with no wrong
// answer.
func within(ph loadgen.Result, maxLoss float64) bool {
	return ph.Answered > 0 && ph.Loss <= maxLoss && ph.Wrong == 0
}

// offered is the rate of operations the generator actually started in a
// phase of scenario.
func offered(scenario string, ph loadgen.Result) float64 {
	if ph.Seconds <= 0 {
		return 0
	}
	if scenario == loadgen.Release {
		return float64(ph.Started) / ph.Seconds // each operation is a release and a DORA
	}
	return float64(ph.Started+ph.Released) / ph.Seconds
}

// DefaultPopulation is the rig's client population: option 82 per client
// in relay mode, client-ids, and vlans tags per client in layer 2 mode.
func DefaultPopulation(opt82, clientIDs bool, vlans int) loadgen.Population {
	return loadgen.Population{Opt82: opt82, ClientIDs: clientIDs, VLANs: vlans}
}
