package bench

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// group is the results of one scenario in one mode from one sender, in
// run order.
type group struct {
	scenario, mode, sender string
	injection              string // how SenderXDP sent
	results                []ScenarioResult
}

func groups(rs []ScenarioResult) []group {
	var gs []group
	for _, r := range rs {
		sender := cmp.Or(r.Sender, SenderSockets)
		i := 0
		for i < len(gs) && (gs[i].scenario != r.Scenario || gs[i].mode != r.Mode || gs[i].sender != sender || gs[i].injection != r.Injection) {
			i++
		}
		if i == len(gs) {
			gs = append(gs, group{scenario: r.Scenario, mode: r.Mode, sender: sender, injection: r.Injection})
		}
		gs[i].results = append(gs[i].results, r)
	}
	return gs
}

var scenarioText = map[string]string{
	"dora":    "new clients (DISCOVER, OFFER, REQUEST, ACK); a lease counts when its ACK arrives within 1 s of each exchange",
	"renew":   "bound clients renew (RENEWING); an answer is a DHCPACK for the client's address with the configured lease time",
	"mixed":   "94% renewals, 5% new clients (DORA), 1% releases; answered counts renewals and new leases",
	"release": "a bound client releases and at once takes a lease again (DORA); answered counts the new leases",
}

// scenarioTables renders the generator's results, one table per scenario
// and mode, with the ratios the goals are stated in.
func (rep *Report) scenarioTables(b *strings.Builder) {
	if len(rep.Selftest) > 0 {
		b.WriteString("\n## Generator ceiling (`xdhcp-bench selftest`: renewals against an XDP reflector)\n\n")
		b.WriteString("| mode | sender | clients | threads | answered/s at ≤0.1% loss (offered/s) | open loop answered/s (sent/s) | p99 µs |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rep.Selftest {
			ol := "-"
			if r.OpenLoop != nil {
				ol = fmt.Sprintf("%.0f (%.0f)", r.OpenLoop.Rate, float64(r.OpenLoop.PacketsSent)/r.OpenLoop.Seconds)
			}
			fmt.Fprintf(b, "| %s | %s | %d | %d | %.0f (%.0f/s) | %s | %s |%s\n", r.Mode, senderName(cmp.Or(r.Sender, SenderSockets), r.Injection), r.Clients, r.Senders,
				r.Best.Rate, offered(r.Scenario, r.Best), ol, latency(r, r.Best.P99), errCell(r.Err))
		}
		b.WriteString("\nSenders: `sockets` is sendmmsg on a UDP socket (relay) or a raw socket (layer 2), a system call per batch and a socket buffer per packet; `xdp` prebuilds every client's renewal in a BPF map and sends them from the kernel with BPF_PROG_TEST_RUN in live-frame mode (bpf/inject.c), pacing itself, while an XDP program on the generator's veth validates and counts the answers (xid, address, server id, lease time). It spins on one CPU, pinned (the answers' softirq work follows the sending CPU on a veth), for the whole phase, so the server has the other CPU and a share of this one; it does not time answers. Where the kernel refuses live-frame mode, `xdp, by test runs` runs the same program as ordinary test runs, one system call per renewal, and sends the frames they return through a packet socket, one sendmmsg per 64: the same renewals at the same pace, with a lower ceiling, which this table shows.\n")
	}
	for _, g := range groups(rep.Scenarios) {
		maxLoss := g.results[0].MaxLoss
		how := fmt.Sprintf("the generator sends through sockets from %d goroutines. Latency is per operation (first request to final answer)", g.results[0].Senders)
		if g.sender == SenderXDP {
			how = "renewals are sent from the kernel (`--sender xdp`, see the generator ceiling); latency is not measured"
		}
		fmt.Fprintf(b, "\n## %s, %s mode, %s sender (xdhcp-bench generator)\n\n%s. The offered rate doubles, then bisects (3 s steps), then the generator sends open loop; the result is the highest answered rate of any of these phases with at most %.1f%% loss and no wrong answer, beside the rate the generator actually offered in it (below its target when the generator was the limit); %s.\n\n",
			g.scenario, g.mode, senderName(g.sender, g.injection), scenarioText[g.scenario], 100*maxLoss, how)
		b.WriteString("| server | answered/s within the loss limit (offered/s) | loss | p50 / p99 / p99.9 µs | open loop answered/s (loss) | wrong | server CPU s per 1M answers | + softirq s per 1M | vs kea | vs xdhcpd (fast path off) |\n|---|---|---|---|---|---|---|---|---|---|\n")
		rate := map[string]float64{}
		for _, r := range g.results {
			rate[r.Server] = r.Best.Rate
		}
		// "vs kea" is against Kea at its best: the faster of its rows
		// (multi-threading on or off).
		kea := fasterKea(rate)
		for _, r := range g.results {
			x := r.Best
			ol := "-"
			if r.OpenLoop != nil {
				ol = fmt.Sprintf("%.0f (%.2f%%)", r.OpenLoop.Rate, 100*r.OpenLoop.Loss)
			}
			ratio := func(base float64, others ...string) string {
				if base == 0 || slices.Contains(others, r.Server) {
					return "-"
				}
				return fmt.Sprintf("%.1f×", x.Rate/base)
			}
			lat := latency(r, x.P50) + " / " + latency(r, x.P99) + " / " + latency(r, x.P999)
			fmt.Fprintf(b, "| %s | %.0f (%.0f) | %.3f%% | %s | %s | %d | %.1f | %.1f | %s | %s |%s\n",
				r.Server, x.Rate, offered(r.Scenario, x), 100*x.Loss, lat, ol, x.Wrong, x.CPUPerMillion, x.SoftirqPerMillion,
				ratio(kea, keaRows...), ratio(rate["xdhcpd"], "xdhcpd"), errCell(r.Err))
		}
		if _, ok := rate[keaRows[1]]; ok {
			b.WriteString("\n" + keaMTNote + "\n")
		}
		if g.scenario == loadgen.Renew {
			b.WriteString("\n" + renewOrderNote(g.results) + "\n")
		}
		for _, r := range g.results {
			if r.Server == "dhcpd-16k-pool" {
				b.WriteString("\ndhcpd runs with 16k-address pools here (its cost per lease grows with the pool's size; see the DORA section).\n")
				break
			}
		}
		rep.chartLinks(b, fmt.Sprintf("%s %s %s", g.scenario, g.mode, g.sender), groupStem(rep.base(), g), "-sweep.png", "-p99.png", "-cpu.png")
	}
	if len(rep.Scenarios) > 0 {
		b.WriteString("\nCPU: the server process's user+system time from /proc; XDP runs in softirq context, which is counted for the whole machine (the generator's own receive path included), so the fair comparison of total cost is the sum of the two columns.\n")
	}
}

// renewOrderNote says in which order the clients renewed: it decides
// what xdhcpd's slow path writes per commit (one page of its lease tree
// for many address-ordered renewals, one for each scattered renewal),
// while Kea's memfile appends every renewal whatever its address.
func renewOrderNote(rs []ScenarioResult) string {
	if slices.ContainsFunc(rs, func(r ScenarioResult) bool { return r.Best.Scattered || r.OpenLoop != nil && r.OpenLoop.Scattered }) {
		return "The clients renewed in a random order (`--order scattered`): each of xdhcpd's slow-path renewals writes a page of the lease tree of its own, as an ISP's spread-out renewals do; Kea's memfile appends every renewal whatever its address."
	}
	return "The clients renewed in the order they were bound, the addresses' order (`--order bound`): xdhcpd's slow path writes one page of its lease tree for many of them, which spread-out renewals do not give it (`--order scattered`); Kea's memfile appends every renewal whatever its address."
}

// keaRows are Kea's rows: multi-threading off, then on.
var keaRows = []string{Kea{}.Name(), Kea{MT: true}.Name()}

// keaMTNote explains the kea-mt row and what "vs kea" compares with.
const keaMTNote = "kea-mt is Kea with multi-threading on (a thread per CPU; off by default in 2.2, on from 2.4); \"vs kea\" compares with the faster Kea row (kea or kea-mt) measured here."

// fasterKea is the higher of the Kea rows' rates, 0 without a Kea row.
func fasterKea(rates map[string]float64) float64 {
	best := 0.0
	for _, k := range keaRows {
		best = max(best, rates[k])
	}
	return best
}

// senderName is a sender as the report names it: the kernel sender's
// fallback (InjectTestRuns) is told apart, its ceiling being lower.
func senderName(sender, injection string) string {
	if sender == SenderXDP && injection == InjectTestRuns {
		return sender + ", by test runs"
	}
	return sender
}

// latency is a latency cell: n/a where the sender does not time answers.
func latency(r ScenarioResult, us float64) string {
	if r.Sender == SenderXDP {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", us)
}

func errCell(err string) string {
	if err == "" {
		return ""
	}
	return " error: " + strings.ReplaceAll(err, "|", "/")
}

// groupStem is the start of a scenario group's chart names.
func groupStem(base string, g group) string {
	stem := fmt.Sprintf("%s-%s-%s", filepath.Base(base), g.scenario, g.mode)
	if g.sender == SenderXDP {
		stem += "-xdp"
		if g.injection == InjectTestRuns {
			stem += "-testruns"
		}
	}
	return stem
}

// chartLinks embeds the report's charts named stem+suffix, for each suffix
// that was drawn.
func (rep *Report) chartLinks(b *strings.Builder, alt, stem string, suffixes ...string) {
	for _, sfx := range suffixes {
		if slices.Contains(rep.Charts, stem+sfx) {
			fmt.Fprintf(b, "\n![%s](%s)\n", alt, stem+sfx)
		}
	}
}

// writeCharts draws the report's charts beside it (RenderCharts).
func (rep *Report) writeCharts(dir string) error {
	names, err := RenderCharts(rep, dir, rep.base())
	if err != nil {
		return err
	}
	rep.Charts = names
	return nil
}
