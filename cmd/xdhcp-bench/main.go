// Command xdhcp-bench is the benchmark rig: it runs xdhcpd, Kea and ISC
// dhcpd in network namespaces, drives them with its own generator
// (bench/loadgen) and with perfdhcp as the referee, and writes a report.
// The usage text below lists its commands.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xdhcp/xdhcp/bench"
	"github.com/xdhcp/xdhcp/internal/buildinfo"
)

const usage = `usage:
  xdhcp-bench all --xdhcpd PATH [--quick] [--out DIR]         the comparison, scenarios, referee, cost, leasequery, scale (startup), overload and flood, in one report
  xdhcp-bench compare --xdhcpd PATH [--quick] [--servers xdhcpd,kea,dhcpd] [--clients N] [--step 30s] [--out DIR]
  xdhcp-bench leasequery --xdhcpd PATH [--quick] [--out DIR]   UDP leasequery/s and bulk leases/s
  xdhcp-bench startup --xdhcpd PATH [--leases 1000000,10000000] [--server xdhcpd-xdp-native|xdhcpd-xdp-generic] [--quick] [--out DIR]
                  the scale section: per database size (comma-separated; --quick: 200000), xdhcpd with the fast path on:
                  time to ready, RSS, the BPF maps' memory (memlock), whether XDP answers a renewal of the last lease,
                  and a bulk leasequery (TCP, by relay-id) streaming every lease; a table and a chart against leases
  xdhcp-bench renew --xdhcpd PATH [--quick] [--out DIR]     renewals/s with XDP native, generic and off, Kea, dhcpd; XDP cost per packet
  xdhcp-bench scenarios --xdhcpd PATH [--quick] [--servers LIST] [--scenarios renew-relay,...] [--order bound|scattered] [--out DIR]   every scenario and mode against every server
  xdhcp-bench run --xdhcpd PATH --server NAME --scenario dora|renew|mixed|release [--mode relay|l2]
                  [--clients N] [--rate R | --max-loss F] [--step D] [--opt82] [--client-ids] [--vlans 0|1|2] [--senders N] [--sender sockets|xdp] [--injection live-frames|test-runs] [--order bound|scattered]
                  [--profile DIR [--profile-seconds N]] [--out DIR]   (--profile: xdhcpd's CPU profile of the phase, a 3 s execution trace, allocs at its start and end)
  xdhcp-bench cost [--quick] [--compare OBJ] [--runs N] [--rounds N] [--out DIR]
                  the XDP program's cost per renewal (BPF_PROG_TEST_RUN), as a multiple of a program that
                  swaps MACs and returns XDP_TX (bpf/anchor.c), and the verifier's instruction count;
                  --compare times another xdp_dhcp object (same map layout) in the same rounds
  xdhcp-bench charts --from REPORT.json [--out DIR]   draw a report's charts again from its JSON (PNG, named after the report)
  xdhcp-bench referee --xdhcpd PATH [--quick] [--servers LIST]   perfdhcp's renewals (-r R -f R) against each server
  xdhcp-bench forcerenew --xdhcpd PATH [--clients 10000] [--rate R] [--server xdhcpd-xdp-native|xdhcpd-xdp-generic|xdhcpd] [--quick] [--out DIR]
                  signed FORCERENEW/s on one goroutine, then a renumbering campaign: clients bound in pool A, pool A
                  drained by a reload, forcerenew --pool A --move at --rate clients/s (0: unlimited); wall time and counts
  xdhcp-bench failover --xdhcpd PATH [--server xdhcpd-xdp-native|xdhcpd-xdp-generic|xdhcpd] [--clients N] [--step D] [--quick] [--out DIR]
                  DORA/s and renewals/s of one server and of the same server as a failover primary (secondary:
                  xdhcpd in its own namespace), side by side, with the binding updates acknowledged per second
  xdhcp-bench failover-catchup --xdhcpd PATH [--leases 1000000] [--pool 4194302] [--allocation independent,proportional] [--profile DIR [--profile-seconds 30]] [--quick] [--out DIR]
                  a secondary with an empty database catching up from its primary (UPDREQALL), xdhcpd to xdhcpd: seconds
                  to NORMAL with every binding, updates/s, both daemons' peak RSS, per pool allocation mode
  xdhcp-bench failover-recovery --xdhcpd PATH [--clients 1000] [--auto-partner-down 10s] [--out DIR]
                  a balanced xdhcpd pair, the secondary killed with -9: seconds until the survivor is
                  communications-interrupted and partner-down, binds new clients of both halves, and until the
                  restarted secondary and it are NORMAL again
  xdhcp-bench overload --xdhcpd PATH [--scenario renew|dora] [--clients 10000] [--step 5s] [--order bound|scattered] [--quick] [--out DIR]
                  the slow path (fast path off) offered 50% to 150% of its ceiling, with its bounds on a request's
                  wait and without: answered/s, goodput, loss, p50 and p99 latency, side by side
  xdhcp-bench overload-xdp --xdhcpd PATH [--clients 20000] [--rate 10000] [--fractions 0,1.2,1.5] [--ceiling DORA/s] [--step 5s] [--quick] [--out DIR]
                  renewals answered by XDP (fast path native) at --rate while new clients' DORAs are offered to the slow
                  path at shares of its DORA ceiling (0: the renewals alone): renewal loss and latency beside the DORAs'
  xdhcp-bench flood --xdhcpd PATH [--kind discover|request] [--rate 200000] [--duration 30s] [--clients 5000] [--servers xdhcpd,xdhcpd-xdp-native,kea] [--sender xdp|sockets] [--quick] [--out DIR]
                  a relayed flood of DISCOVERs (or INIT-REBOOT REQUESTs for random addresses: --kind request; all runs
                  both) from random MACs at --rate (sent from the kernel, or sockets), while a new
                  client starts a DORA every second (retransmitting at 4, 8, 16 s ± 1 s) and --clients bound clients renew at
                  1000/s: each new client's time to its ACK, renewals answered and lost, the rate actually sent, and the
                  server's drops by reason (its metrics, the kernel's UDP RcvbufErrors), side by side
  xdhcp-bench selftest [--mode relay|l2] [--clients N] [--senders N] [--sender sockets|xdp] [--injection live-frames|test-runs] [--out DIR]   the generator's ceiling against an XDP reflector
Renewals go out through sockets (sendmmsg, raw frames) or, with --sender xdp, from the kernel
(BPF_PROG_TEST_RUN live frames, or test runs where the kernel refuses those; answers counted by XDP);
all, scenarios and selftest run both.
Servers: xdhcpd-xdp-native, xdhcpd-xdp-generic, xdhcpd (fast path off), kea, kea-mt (Kea with multi-threading on), dhcpd, dhcpd-16k-pool.
Runs as root: it creates network namespaces. Every run writes a report (markdown, JSON, PNG charts) under --out.
xdhcp-bench COMMAND --help prints that command's usage; --version the build information.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// drawCharts draws the charts of the report stored as JSON at from into
// dir, named after the report's file.
func drawCharts(from, dir string, stdout, stderr io.Writer) int {
	if from == "" {
		fmt.Fprintln(stderr, "xdhcp-bench charts: --from REPORT.json is required")
		return 2
	}
	j, err := os.ReadFile(from)
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench charts: %v\n", err)
		return 1
	}
	var rep bench.Report
	if err := json.Unmarshal(j, &rep); err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench charts: %s: %v\n", from, err)
		return 1
	}
	names, err := bench.RenderCharts(&rep, dir, strings.TrimSuffix(filepath.Base(from), ".json"))
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench charts: %v\n", err)
		return 1
	}
	for _, n := range names {
		fmt.Fprintln(stdout, filepath.Join(dir, n))
	}
	return 0
}

// commands are the commands usage lists; needsXdhcpd are those that run
// the daemon (cost and selftest do not, so they need no --xdhcpd).
var (
	commands    = []string{"all", "charts", "compare", "leasequery", "startup", "renew", "scenarios", "run", "cost", "referee", "selftest", "forcerenew", "failover", "failover-catchup", "failover-recovery", "overload", "overload-xdp", "flood"}
	needsXdhcpd = []string{"all", "compare", "leasequery", "startup", "renew", "scenarios", "run", "referee", "forcerenew", "failover", "failover-catchup", "failover-recovery", "overload", "overload-xdp", "flood"}
)

// commandUsage is cmd's own part of usage (its lines and their
// continuations), then the notes that apply to every command.
func commandUsage(cmd string) string {
	var b strings.Builder
	b.WriteString("usage:\n")
	lines := strings.Split(usage, "\n")
	in := false
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "  xdhcp-bench "):
			in = strings.HasPrefix(l, "  xdhcp-bench "+cmd+" ")
		case !strings.HasPrefix(l, "   "):
			in = false
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, " ") && i > 0 && l != "" {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// Help, version and the command's name come before anything else is
	// checked (root, the daemon binary, flag values).
	if args[0] == "help" {
		if len(args) > 1 && slices.Contains(commands, args[1]) {
			fmt.Fprint(stdout, commandUsage(args[1]))
		} else {
			fmt.Fprint(stdout, usage)
		}
		return 0
	}
	if help, version := buildinfo.Asks(args); help || version {
		switch {
		case version:
			fmt.Fprintln(stdout, buildinfo.Version("xdhcp-bench"))
		case slices.Contains(commands, args[0]):
			fmt.Fprint(stdout, commandUsage(args[0]))
		default:
			fmt.Fprint(stdout, usage)
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	if !slices.Contains(commands, cmd) {
		fmt.Fprintf(stderr, "xdhcp-bench: unknown command %q\n%s", cmd, usage)
		return 2
	}
	fs := flag.NewFlagSet("xdhcp-bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bin := fs.String("xdhcpd", "bin/xdhcpd", "xdhcpd binary")
	fs.String("xdhcpctl", "bin/xdhcpctl", "xdhcpctl binary (unused; kept for symmetry with make bench)")
	out := fs.String("out", "bench/results", "where reports are written")
	from := fs.String("from", "", "charts: the report's JSON to draw the charts of")
	quick := fs.Bool("quick", false, "short steps, fewer clients (about a minute)")
	servers := fs.String("servers", "", "servers to compare (default: all that apply)")
	server := fs.String("server", "xdhcpd-xdp-native", "server for run")
	scenario := fs.String("scenario", "renew", "scenario for run: dora, renew, mixed, release")
	mode := fs.String("mode", "relay", "relay (packets from a giaddr) or l2 (raw frames from each client's MAC)")
	rate := fs.Int("rate", 0, "operations per second for run (0: open loop); forcerenew: clients forced per second (0: unlimited); flood: DISCOVERs per second; overload-xdp: renewals per second (default 10000)")
	maxLoss := fs.Float64("max-loss", 0, "run: search the highest rate with at most this loss (e.g. 0.001) instead of --rate")
	opt82 := fs.Bool("opt82", true, "relay mode: option 82 (circuit-id, remote-id) per client")
	clientIDs := fs.Bool("client-ids", true, "clients send option 61")
	only := fs.String("scenarios", "", "scenarios: only these scenario-mode pairs (e.g. renew-relay,release-relay)")
	vlans := fs.Int("vlans", 0, "l2 mode: VLAN tags per client (0, 1 or 2; the server side must be set up for them)")
	senders := fs.Int("senders", 2, "goroutines sending at once (each a share of the rate)")
	floodKind := fs.String("kind", "", "flood: what the flood sends, discover or request (default discover; all runs both)")
	sender := fs.String("sender", "", "renewals sent through sockets or xdp (from the kernel); default: sockets for run, both for selftest")
	injection := fs.String("injection", "", "how the xdp sender sends: live-frames, or test-runs (what it falls back to where the kernel refuses live frames); default: live frames where the kernel runs them")
	clients := fs.Int("clients", 0, "distinct clients (default 100000 for compare, 10000 for the generator)")
	step := fs.Duration("step", 0, "length of each step (default 30s for compare, 3s for the generator)")
	duration := fs.Duration("duration", 0, "flood: how long the flood lasts (default 30s, 15s with --quick)")
	leases := fs.String("leases", "", "startup: database sizes, comma-separated (default "+bench.DefaultScaleSizes+"); failover-catchup: the primary's leases (default 1000000)")
	pool := fs.Int("pool", 4194302, "failover-catchup: addresses in the pool")
	autoPD := fs.Duration("auto-partner-down", 10*time.Second, "failover-recovery: the survivor's auto-partner-down")
	profile := fs.String("profile", "", "failover-catchup: save both daemons' CPU profiles of the catch-up's first --profile-seconds here; run (xdhcpd at one --rate): its CPU profile of the phase and its allocations at the phase's start and end")
	profileSecs := fs.Int("profile-seconds", 30, "failover-catchup, run: length of the --profile CPU profiles")
	allocation := fs.String("allocation", "independent,proportional", "failover-catchup: the pool's failover-allocation modes to measure")
	compareObj := fs.String("compare", "", "cost: another xdp_dhcp object (e.g. an older commit's bpf/xdp_bpfel.o) timed in the same rounds")
	costRuns := fs.Int("runs", 0, "cost: BPF_PROG_TEST_RUN repetitions per measurement (default 50000, 20000 with --quick)")
	costRounds := fs.Int("rounds", 0, "cost: interleaved rounds per case (default 61)")
	fractions := fs.String("fractions", "", "overload: shares of the ceiling to offer, comma-separated (default 0.5,1,1.2,1.5; 1,1.2,1.5 with --quick); overload-xdp: shares of the DORA ceiling, 0 for none (default 0,1.2,1.5)")
	queueTarget := fs.String("queue-target", "", "overload: the bounded server's server.queue-target (default: the daemon's)")
	ceiling := fs.Float64("ceiling", 0, "overload: the slow path's ceiling per second, taken as given instead of searched for; overload-xdp: its DORA ceiling with the fast path on")
	renewOrder := fs.String("order", "bound", "run, scenarios, overload: renewals in the order the clients were bound (bound: the addresses' order, a few pages of the lease tree per commit) or in a random order (scattered: a page per renewal, as an ISP's spread-out renewals); all runs overload in both unless this is given, --ceiling then being the bound order's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *vlans < 0 || *vlans > 2 {
		fmt.Fprintf(stderr, "xdhcp-bench: --vlans %d: want 0, 1 or 2\n", *vlans)
		return 2
	}
	if *mode != "relay" && *mode != "l2" {
		fmt.Fprintf(stderr, "xdhcp-bench: --mode %q: want relay or l2\n", *mode)
		return 2
	}
	if *sender != "" && *sender != bench.SenderSockets && *sender != bench.SenderXDP {
		fmt.Fprintf(stderr, "xdhcp-bench: --sender %q: want sockets or xdp\n", *sender)
		return 2
	}
	if *renewOrder != "bound" && *renewOrder != "scattered" {
		fmt.Fprintf(stderr, "xdhcp-bench: --order %q: want bound or scattered\n", *renewOrder)
		return 2
	}
	if k := *floodKind; k != "" && k != bench.FloodDiscover && k != bench.FloodRequest {
		fmt.Fprintf(stderr, "xdhcp-bench: --kind %q: want %s or %s\n", k, bench.FloodDiscover, bench.FloodRequest)
		return 2
	}
	scattered := *renewOrder == "scattered"
	if scattered && *scenario == "dora" {
		fmt.Fprintln(stderr, "xdhcp-bench: --order scattered orders renewals and releases; a DORA takes the address the pool hands out")
		return 2
	}
	if *injection != "" && *injection != bench.InjectLive && *injection != bench.InjectTestRuns {
		fmt.Fprintf(stderr, "xdhcp-bench: --injection %q: want %s or %s\n", *injection, bench.InjectLive, bench.InjectTestRuns)
		return 2
	}
	if *maxLoss < 0 || *maxLoss >= 1 || *rate < 0 || *clients < 0 || *step < 0 || *costRuns < 0 || *costRounds < 0 {
		fmt.Fprintln(stderr, "xdhcp-bench: --max-loss wants [0,1); --rate, --clients, --step, --runs and --rounds cannot be negative")
		return 2
	}
	if *duration < 0 {
		fmt.Fprintln(stderr, "xdhcp-bench: --duration cannot be negative")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdhcp-bench: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	if *leases != "" {
		if _, err := bench.ParseLeaseCounts(*leases); err != nil {
			fmt.Fprintf(stderr, "xdhcp-bench: --leases: %v\n", err)
			return 2
		}
	}
	if cmd == "charts" {
		return drawCharts(*from, *out, stdout, stderr)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "xdhcp-bench: needs root (network namespaces)")
		return 1
	}
	if _, err := os.Stat(*bin); err != nil && slices.Contains(needsXdhcpd, cmd) {
		fmt.Fprintf(stderr, "xdhcp-bench: --xdhcpd %s: %v\n", *bin, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rig, err := bench.NewRig()
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench: %v\n", err)
		return 1
	}
	defer rig.Close()
	rep := &bench.Report{Date: time.Now(), Full: cmd == "all", RigRequestHoldoff: bench.RigRequestHoldoff, RigDiscoverHoldoff: bench.RigDiscoverHoldoff}
	rep.Environment()
	x := bench.Xdhcpd{Bin: *bin}
	pick := func(name, mode string) (bench.Server, error) {
		switch strings.TrimSpace(name) {
		case "xdhcpd":
			return x, nil
		case "xdhcpd-xdp-native":
			return bench.Xdhcpd{Bin: *bin, Fast: "native"}, nil
		case "xdhcpd-xdp-generic":
			return bench.Xdhcpd{Bin: *bin, Fast: "generic"}, nil
		case "kea":
			return bench.Kea{Raw: mode == "l2"}, nil
		case "kea-mt":
			return bench.Kea{Raw: mode == "l2", MT: true}, nil
		case "dhcpd":
			return bench.Dhcpd{}, nil
		case "dhcpd-16k-pool":
			return bench.Dhcpd{SmallPool: true}, nil
		}
		return nil, fmt.Errorf("unknown server %q (xdhcpd-xdp-native, xdhcpd-xdp-generic, xdhcpd, kea, kea-mt, dhcpd, dhcpd-16k-pool)", name)
	}
	genClients, genStep := 10000, 3*time.Second
	if *quick {
		genClients, genStep = 2000, 2*time.Second
	}
	if *clients > 0 {
		genClients = *clients
	}
	if *step > 0 {
		genStep = *step
	}
	pop := bench.DefaultPopulation(*opt82, *clientIDs, *vlans)
	// Generator servers: dhcpd with a small pool (with the rig's 131k
	// pool it takes leases too slowly to set a renewal run up), and Kea
	// with multi-threading off and on (the tables compare with the faster).
	genServers := "xdhcpd-xdp-native,xdhcpd-xdp-generic,xdhcpd,kea,kea-mt,dhcpd-16k-pool"
	if *servers != "" {
		genServers = *servers
	}
	scenarioRun := func(name, scen, mode string, maxLoss float64, via string) error {
		s, err := pick(name, mode)
		if err != nil {
			return err
		}
		o := bench.ScenarioOptions{Scenario: scen, Mode: mode, Clients: genClients, Pop: pop, MaxLoss: maxLoss,
			StartRate: 2000, Step: genStep, Log: stdout, Progress: progress(stdout), Senders: *senders, Sender: via, Injection: *injection,
			Scattered: scattered}
		if scen == "dora" || scen == "release" {
			o.StartRate = 500
		}
		if *quick {
			o.StartRate, o.Bisect = 8000, 1
		}
		if via == bench.SenderXDP {
			o.StartRate = 20000
			if *quick {
				o.StartRate = 40000
			}
		}
		r := rig.Scenario(ctx, s, o)
		if r.Err != "" {
			fmt.Fprintf(stdout, "  %s %s %s: %s\n", name, scen, mode, r.Err)
		}
		rep.Scenarios = append(rep.Scenarios, r)
		return ctx.Err()
	}
	xdpCost := func() error {
		fmt.Fprintln(stdout, "XDP program cost (BPF_PROG_TEST_RUN)...")
		// Short measurements, many rounds: each copy of the program is
		// timed within milliseconds of its pair and of the anchor.
		runs := 50_000
		if *quick {
			runs = 20_000
		}
		if *costRuns > 0 {
			runs = *costRuns
		}
		cost, err := bench.XDPCost(ctx, bench.CostOptions{Runs: runs, Compare: *compareObj, Rounds: *costRounds})
		if err != nil {
			return fmt.Errorf("xdp cost: %w", err)
		}
		rep.Cost, rep.CostPrograms = cost.Cases, cost.Programs
		return nil
	}
	steps := map[string]func() error{
		"compare": func() error {
			o := bench.CompareOptions{Clients: 100000, StepTime: 30 * time.Second, Start: 1000, Bisect: 3, Log: stdout}
			if *quick {
				o.Clients, o.StepTime, o.Bisect, o.Start = 20000, 3*time.Second, 0, 2000
			}
			if *clients > 0 {
				o.Clients = *clients
			}
			if *step > 0 {
				o.StepTime = *step
			}
			list := *servers
			if list == "" {
				list = "xdhcpd,kea,kea-mt,dhcpd,dhcpd-16k-pool"
				if *quick {
					list = "xdhcpd,kea"
				}
			}
			for _, name := range strings.Split(list, ",") {
				switch strings.TrimSpace(name) {
				case "xdhcpd":
					o.Servers = append(o.Servers, x)
				case "kea":
					o.Servers = append(o.Servers, bench.Kea{})
				case "kea-mt":
					o.Servers = append(o.Servers, bench.Kea{MT: true})
				case "dhcpd":
					o.Servers = append(o.Servers, bench.Dhcpd{})
				case "dhcpd-16k-pool":
					o.Servers = append(o.Servers, bench.Dhcpd{SmallPool: true})
				default:
					return fmt.Errorf("unknown server %q (xdhcpd, kea, kea-mt, dhcpd, dhcpd-16k-pool)", name)
				}
			}
			rep.Clients, rep.StepTime = o.Clients, o.StepTime.String()
			for _, s := range o.Servers {
				fmt.Fprintf(stdout, "%s (%s):\n", s.Name(), s.Version())
				rep.Results = append(rep.Results, rig.FindRate(ctx, s, o))
			}
			return nil
		},
		"renew": func() error {
			for _, name := range strings.Split(genServers, ",") {
				if err := scenarioRun(name, "renew", "relay", 0.001, cmp.Or(*sender, bench.SenderSockets)); err != nil {
					return err
				}
			}
			return xdpCost()
		},
		"scenarios": func() error {
			for _, sc := range []struct {
				scen, mode string
				loss       float64
				via        string
			}{{"renew", "relay", 0.001, bench.SenderSockets}, {"renew", "relay", 0.001, bench.SenderXDP},
				{"renew", "l2", 0.001, bench.SenderSockets}, {"renew", "l2", 0.001, bench.SenderXDP},
				{"dora", "relay", 0.025, bench.SenderSockets}, {"mixed", "relay", 0.01, bench.SenderSockets},
				{"release", "relay", 0.025, bench.SenderSockets}} {
				if *only != "" && !strings.Contains(","+*only+",", ","+sc.scen+"-"+sc.mode+",") {
					continue
				}
				if *sender != "" && sc.via != *sender {
					continue
				}
				names := genServers
				if *quick {
					// The reduced set: renewals through a relay, XDP against
					// fast path off against Kea.
					if sc.scen != "renew" || sc.mode != "relay" {
						continue
					}
					if *servers == "" {
						names = "xdhcpd-xdp-native,xdhcpd,kea,kea-mt"
					}
				}
				for _, name := range strings.Split(names, ",") {
					if err := scenarioRun(name, sc.scen, sc.mode, sc.loss, sc.via); err != nil {
						return err
					}
				}
			}
			return nil
		},
		"referee": func() error {
			o := bench.CompareOptions{Clients: 20000, StepTime: 10 * time.Second, Start: 1000, Bisect: 2, Log: stdout}
			if *quick {
				o.StepTime, o.Bisect = 3*time.Second, 0
			}
			for _, name := range strings.Split(genServers, ",") {
				s, err := pick(name, "relay")
				if err != nil {
					return err
				}
				rep.Referee = append(rep.Referee, rig.RenewReferee(ctx, s, o))
			}
			return nil
		},
		"run": func() error {
			s, err := pick(*server, *mode)
			if err != nil {
				return err
			}
			o := bench.ScenarioOptions{Scenario: *scenario, Mode: *mode, Clients: genClients, Pop: pop, MaxLoss: *maxLoss,
				StartRate: 1000, Rate: *rate, Step: genStep, Log: stdout, Progress: progress(stdout), Senders: *senders, Sender: *sender, Injection: *injection,
				ProfileDir: *profile, ProfileSeconds: *profileSecs, Scattered: scattered}
			if *step == 0 && *maxLoss == 0 {
				o.Step = 10 * time.Second
			}
			r := rig.Scenario(ctx, s, o)
			rep.Scenarios = append(rep.Scenarios, r)
			if r.Err != "" {
				return fmt.Errorf("%s", r.Err)
			}
			return nil
		},
		"selftest": func() error {
			modes := []string{*mode}
			if !isSet(fs, "mode") {
				modes = []string{"relay", "l2"}
			}
			if *quick && !isSet(fs, "mode") {
				modes = []string{"relay"}
			}
			vias := []string{bench.SenderSockets, bench.SenderXDP}
			if *sender != "" {
				vias = []string{*sender}
			} else if *quick {
				vias = []string{bench.SenderXDP} // the reduced set
			}
			for _, m := range modes {
				for _, via := range vias {
					o := bench.ScenarioOptions{Mode: m, Clients: genClients, Pop: pop, MaxLoss: 0.001, StartRate: 20000, Step: genStep,
						Log: stdout, Progress: progress(stdout), Senders: *senders, Sender: via, Injection: *injection}
					if *quick {
						o.StartRate, o.Bisect = 50000, 1
						if via == bench.SenderXDP {
							o.StartRate = 200000
						}
					}
					r := rig.Selftest(ctx, o)
					if r.Err != "" {
						return fmt.Errorf("selftest %s %s: %s", m, via, r.Err)
					}
					rep.Selftest = append(rep.Selftest, r)
				}
			}
			return nil
		},
		"leasequery": func() error {
			n, d := 100_000, 10*time.Second
			if *quick {
				n, d = 20_000, 3*time.Second
			}
			fmt.Fprintf(stdout, "leasequery: %d leases...\n", n)
			res := rig.Leasequery(ctx, x, n, d)
			fmt.Fprintf(stdout, "  UDP %.0f answered/s, bulk %.0f leases/s %s\n", res.UDPRate, res.BulkRate, res.Err)
			rep.LQ = &res
			return nil
		},
		"startup": func() error {
			list := *leases
			if list == "" {
				list = bench.DefaultScaleSizes
				if *quick {
					list = "200000"
				}
			}
			sizes, err := bench.ParseLeaseCounts(list)
			if err != nil {
				return fmt.Errorf("startup: --leases: %w", err)
			}
			fast, ok := map[string]string{"xdhcpd-xdp-native": "native", "xdhcpd-xdp-generic": "generic"}[*server]
			if !ok {
				return fmt.Errorf("startup: --server %q: want xdhcpd-xdp-native or xdhcpd-xdp-generic (the scale section runs with the fast path on)", *server)
			}
			rep.Scale = rig.Scale(ctx, bench.ScaleOptions{Bin: *bin, Fast: fast, Sizes: sizes,
				Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
			var failed []string
			for _, r := range rep.Scale {
				if r.Err != "" {
					failed = append(failed, fmt.Sprintf("%d leases: %s", r.Leases, r.Err))
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("startup: %s", strings.Join(failed, "; "))
			}
			return ctx.Err()
		},
	}
	steps["cost"] = xdpCost
	// alone is --server for the commands that run xdhcpd alone (no other
	// server): its fast path mode, and the clients, --quick's fewer or
	// --clients.
	alone := func(cmd string) (fast string, n int, err error) {
		modes := map[string]string{"xdhcpd-xdp-native": "native", "xdhcpd-xdp-generic": "generic", "xdhcpd": ""}
		fast, ok := modes[*server]
		if !ok {
			return "", 0, fmt.Errorf("%s: --server %q: want xdhcpd-xdp-native, xdhcpd-xdp-generic or xdhcpd", cmd, *server)
		}
		n = 10000
		if *quick {
			n = 2000
		}
		if *clients > 0 {
			n = *clients
		}
		return fast, n, nil
	}
	steps["forcerenew"] = func() error {
		f, n, err := alone("forcerenew")
		if err != nil {
			return err
		}
		d := 2 * time.Second
		if *quick {
			d = time.Second
		}
		fr := &bench.ForceRenewReport{}
		rep.FR = fr
		if fr.Sign, err = bench.SignRate(d); err != nil {
			return fmt.Errorf("forcerenew: signing rate: %w", err)
		}
		fmt.Fprintf(stdout, "signed FORCERENEW/s on one goroutine: %.0f\n", fr.Sign.PerSecond)
		fmt.Fprintf(stdout, "renumbering %d clients (rate %d/s, 0: unlimited, fast path %q)...\n", n, *rate, f)
		r := rig.ForceRenew(ctx, bench.ForceRenewOptions{Bin: *bin, Fast: f, Clients: n, Rate: float64(*rate), Progress: progress(stdout)})
		fr.Runs = append(fr.Runs, r)
		if r.Err != "" {
			return fmt.Errorf("forcerenew: %s", r.Err)
		}
		fmt.Fprintf(stdout, "  campaign %.2f s, %.0f FORCERENEW/s, moved %d of %d; leases left in pool A %d, clients in pool B %d\n",
			r.Seconds, r.SentPerSecond, r.Campaign.Moved, r.Campaign.Total, r.LeasesInA, r.ClientsInB)
		return ctx.Err()
	}
	steps["failover"] = func() error {
		f, n, err := alone("failover")
		if err != nil {
			return err
		}
		d := 3 * time.Second
		if *quick {
			d = time.Second
		}
		if *step > 0 {
			d = *step
		}
		fmt.Fprintf(stdout, "failover on and off, %s, %d clients, %s steps...\n", *server, n, d)
		fr := rig.Failover(ctx, bench.FailoverOptions{Bin: *bin, Fast: f, Clients: n, Step: d, StartRate: 1000,
			Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
		rep.Failover = &fr
		for _, r := range fr.Rows {
			if r.DORA.Err != "" || r.Renew.Err != "" {
				return fmt.Errorf("failover: %s: %s %s", r.Server, r.DORA.Err, r.Renew.Err)
			}
		}
		return ctx.Err()
	}
	steps["failover-catchup"] = func() error {
		n, size := 1_000_000, *pool
		if *leases != "" {
			ns, err := bench.ParseLeaseCounts(*leases)
			if err != nil || len(ns) != 1 {
				return fmt.Errorf("failover-catchup: --leases %q: want one number of leases (%v)", *leases, err)
			}
			n = ns[0]
		}
		if *quick {
			n, size = min(n, 100_000), min(size, 400_000)
		}
		if size < n {
			return fmt.Errorf("failover-catchup: --pool %d is smaller than --leases %d", size, n)
		}
		var modes []string
		for _, m := range strings.Split(*allocation, ",") {
			if m != "independent" && m != "proportional" {
				return fmt.Errorf("failover-catchup: --allocation %q: want independent and/or proportional", m)
			}
			modes = append(modes, m)
		}
		fmt.Fprintf(stdout, "failover catch-up, %d leases in %d addresses...\n", n, size)
		rep.Catchup = rig.FailoverCatchup(ctx, bench.CatchupOptions{Bin: *bin, Leases: n, PoolSize: size, Allocations: modes,
			ProfileDir: *profile, ProfileSeconds: *profileSecs, Timeout: 10 * time.Minute, Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
		for _, r := range rep.Catchup {
			if r.Err != "" {
				return fmt.Errorf("failover-catchup: %s: %s", r.Allocation, r.Err)
			}
		}
		return ctx.Err()
	}
	steps["failover-recovery"] = func() error {
		n := 1000
		if *clients > 0 {
			n = *clients
		}
		if *autoPD <= 0 {
			return fmt.Errorf("failover-recovery: --auto-partner-down %s: want a positive duration (the survivor must take over by itself)", *autoPD)
		}
		fmt.Fprintf(stdout, "failover recovery, auto-partner-down %s, %d clients after the take-over...\n", *autoPD, n)
		res := rig.FailoverRecovery(ctx, bench.RecoveryOptions{Bin: *bin, Clients: n, AutoPartnerDown: *autoPD, Timeout: 5 * time.Minute})
		rep.Recovery = &res
		if res.Err != "" {
			return fmt.Errorf("failover-recovery: %s", res.Err)
		}
		fmt.Fprintf(stdout, "  kill -> communications-interrupted %.2f s, -> partner-down %.2f s; %d of %d new clients bound in %.2f s; restart -> normal %.2f s\n",
			res.DetectSeconds, res.PartnerDownSeconds, res.Bound, res.Clients, res.ServeSeconds, res.RestartNormalSeconds)
		return ctx.Err()
	}
	steps["overload"] = func() error {
		sc := *scenario
		if sc != "renew" && sc != "dora" {
			return fmt.Errorf("overload: --scenario %q: want renew or dora", sc)
		}
		n, d := 10000, 5*time.Second
		fr := []float64{0.5, 1, 1.2, 1.5}
		if *quick {
			n, d, fr = 5000, 3*time.Second, []float64{1, 1.2, 1.5}
		}
		if *clients > 0 {
			n = *clients
		}
		if *step > 0 {
			d = *step
		}
		if *fractions != "" {
			var err error
			if fr, err = parseFractions(*fractions, false); err != nil {
				return fmt.Errorf("overload: --fractions: %w", err)
			}
		}
		if *queueTarget != "" {
			if d, err := time.ParseDuration(*queueTarget); err != nil || d <= 0 {
				return fmt.Errorf("overload: --queue-target %q: want a duration above 0, e.g. 20ms", *queueTarget)
			}
		}
		if *ceiling < 0 {
			return fmt.Errorf("overload: --ceiling %v: want a rate per second, or 0 to search for it", *ceiling)
		}
		var list []string
		if *servers != "" {
			list = strings.Split(*servers, ",")
		}
		// A full run measures renewals in both orders (bound: the
		// addresses' order, which shares the lease tree's pages; and
		// random, a page each), unless --order names one. --ceiling is
		// the bound order's then: the random order's is its own.
		orders := []string{*renewOrder}
		if cmd == "all" && !isSet(fs, "order") && sc == "renew" {
			orders = []string{"bound", "scattered"}
		}
		var failed []error
		for _, o := range orders {
			ceil := *ceiling
			if len(orders) > 1 && o == "scattered" {
				ceil = 0
			}
			fmt.Fprintf(stdout, "overload, %s, %d clients, %s steps, %s order...\n", sc, n, d, o)
			ov := rig.Overload(ctx, bench.OverloadOptions{Bin: *bin, Scenario: sc, Clients: n, Step: d, Fractions: fr, Ceiling: ceil, Servers: list, QueueTarget: *queueTarget, Scattered: o == "scattered",
				Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
			if ov.Scattered {
				rep.OverloadScattered = &ov
			} else {
				rep.Overload = &ov
			}
			if ov.Err != "" {
				// The other order still runs: one failing loses
				// nothing of the other.
				failed = append(failed, fmt.Errorf("overload (%s order): %s", o, ov.Err))
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		return errors.Join(failed...)
	}
	steps["overload-xdp"] = func() error {
		n, d, rr := 20000, 5*time.Second, 10000
		fr := []float64{0, 1.2, 1.5}
		if *quick {
			n, d, rr = 5000, 3*time.Second, 2000
		}
		if *clients > 0 {
			n = *clients
		}
		if *step > 0 {
			d = *step
		}
		// In a full run --rate, --fractions and --ceiling are other
		// sections' (--ceiling the renewals' overload ceiling).
		own := cmd == "overload-xdp"
		if own && isSet(fs, "rate") {
			rr = *rate
			if rr <= 0 || rr > n {
				return fmt.Errorf("overload-xdp: --rate %d: want renewals per second above 0 and at most the clients (%d): each client renews at most once a second", rr, n)
			}
		}
		rr = min(rr, n)
		if own && *fractions != "" {
			var err error
			if fr, err = parseFractions(*fractions, true); err != nil {
				return fmt.Errorf("overload-xdp: --fractions: %w", err)
			}
		}
		dceil := 0.0
		if own {
			if dceil = *ceiling; dceil < 0 {
				return fmt.Errorf("overload-xdp: --ceiling %v: want a DORA rate per second, or 0 to search for it", *ceiling)
			}
		}
		fmt.Fprintf(stdout, "renewals through XDP while the slow path is overloaded with DORAs, %d clients renewing at %d/s, %s steps...\n", n, rr, d)
		x := rig.XDPOverload(ctx, bench.XDPOverloadOptions{Bin: *bin, RenewClients: n, RenewRate: rr, Step: d, Fractions: fr, Ceiling: dceil,
			Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
		rep.XDPOverload = &x
		if x.Err != "" {
			return fmt.Errorf("overload-xdp: %s", x.Err)
		}
		return ctx.Err()
	}
	steps["flood"] = func() error {
		d, n, fr, list := 30*time.Second, 5000, 200_000, "xdhcpd,xdhcpd-xdp-native,kea"
		if *quick {
			d, n, list = 15*time.Second, 2000, "xdhcpd,xdhcpd-xdp-native"
		}
		if *duration > 0 {
			d = *duration
		}
		if *clients > 0 {
			n = *clients
		}
		if isSet(fs, "rate") {
			fr = *rate
		}
		if *servers != "" {
			list = *servers
		}
		var ss []bench.Server
		for _, name := range strings.Split(list, ",") {
			s, err := pick(name, "relay")
			if err != nil {
				return fmt.Errorf("flood: %w", err)
			}
			ss = append(ss, s)
		}
		kinds := []string{cmp.Or(*floodKind, bench.FloodDiscover)}
		if cmd == "all" && *floodKind == "" {
			kinds = []string{bench.FloodDiscover, bench.FloodRequest}
		}
		var failed []string
		for _, kind := range kinds {
			fmt.Fprintf(stdout, "%s flood, %d/s asked for %s, %d clients renewing...\n", strings.ToUpper(kind), fr, d, n)
			f := rig.Flood(ctx, bench.FloodOptions{Servers: ss, Kind: kind, Rate: fr, Duration: d, Clients: n, RenewRate: 1000, Sender: *sender,
				Log: func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) }})
			if kind == bench.FloodRequest {
				rep.FloodRequest = &f
			} else {
				rep.Flood = &f
			}
			if f.Err != "" {
				failed = append(failed, kind+" flood: "+f.Err)
			}
			for _, r := range f.Rows {
				if r.Err != "" {
					failed = append(failed, kind+" flood: "+r.Server+": "+r.Err)
				}
			}
			if ctx.Err() != nil {
				break
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("flood: %s", strings.Join(failed, "; "))
		}
		return ctx.Err()
	}
	order := []string{cmd}
	if cmd == "all" {
		order = []string{"selftest", "compare", "scenarios", "referee", "cost", "leasequery", "startup", "overload", "overload-xdp", "flood",
			"forcerenew", "failover", "failover-catchup", "failover-recovery"}
		if *quick {
			order = []string{"selftest", "compare", "scenarios", "cost", "startup"}
		}
	}
	for _, c := range order {
		f, ok := steps[c]
		if !ok {
			fmt.Fprintf(stderr, "xdhcp-bench: unknown command %q\n%s", cmd, usage)
			return 2
		}
		if err := f(); err != nil {
			fmt.Fprintf(stderr, "xdhcp-bench: %v\n", err)
			if ctx.Err() != nil {
				// Interrupted: keep what was measured, marked as partial.
				rep.Partial = true
				break
			}
			// One section failing loses none of the others (a full run
			// takes more than an hour): it is named in the report, and
			// the run exits 1.
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", c, err))
		}
	}
	md, err := rep.Write(*out)
	if err != nil {
		fmt.Fprintf(stderr, "xdhcp-bench: writing report: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nreport: %s\n", rep.Markdown(), md)
	if rep.Partial || len(rep.Failed) > 0 {
		return 1
	}
	return 0
}

// progress is where the live progress line goes: the terminal, if stdout
// is one.
func progress(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return w
		}
	}
	return nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseFractions reads overload's and overload-xdp's --fractions: shares
// of the ceiling, each above 0 (or 0, with zeroOK: overload-xdp's step
// without DORAs) and at most 5.
func parseFractions(s string, zeroOK bool) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v == 0 && !zeroOK || v > 5 {
			if zeroOK {
				return nil, fmt.Errorf("%q: want shares of the ceiling from 0 (none) to 5, e.g. 0,1.2,1.5", f)
			}
			return nil, fmt.Errorf("%q: want shares of the ceiling above 0 and at most 5, e.g. 1.2,1.5", f)
		}
		out = append(out, v)
	}
	return out, nil
}
