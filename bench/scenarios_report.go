package bench

import (
	"cmp"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
)

// group is the results of one scenario in one mode from one sender, in
// run order.
type group struct {
	scenario, mode, sender string
	results                []ScenarioResult
}

func groups(rs []ScenarioResult) []group {
	var gs []group
	for _, r := range rs {
		sender := cmp.Or(r.Sender, SenderSockets)
		i := 0
		for i < len(gs) && (gs[i].scenario != r.Scenario || gs[i].mode != r.Mode || gs[i].sender != sender) {
			i++
		}
		if i == len(gs) {
			gs = append(gs, group{scenario: r.Scenario, mode: r.Mode, sender: sender})
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
			fmt.Fprintf(b, "| %s | %s | %d | %d | %.0f (%.0f/s) | %s | %s |%s\n", r.Mode, cmp.Or(r.Sender, SenderSockets), r.Clients, r.Senders,
				r.Best.Rate, offered(r.Scenario, r.Best), ol, latency(r, r.Best.P99), errCell(r.Err))
		}
		b.WriteString("\nSenders: `sockets` is sendmmsg on a UDP socket (relay) or a raw socket (layer 2), a system call per batch and a socket buffer per packet; `xdp` prebuilds every client's renewal in a BPF map and sends them from the kernel with BPF_PROG_TEST_RUN in live-frame mode (bpf/inject.c), pacing itself, while an XDP program on the generator's veth validates and counts the answers (xid, address, server id, lease time). It spins on one CPU, pinned (the answers' softirq work follows the sending CPU on a veth), for the whole phase, so the server has the other CPU and a share of this one; it does not time answers.\n")
	}
	for _, g := range groups(rep.Scenarios) {
		maxLoss := g.results[0].MaxLoss
		how := fmt.Sprintf("the generator sends through sockets from %d goroutines. Latency is per operation (first request to final answer)", g.results[0].Senders)
		if g.sender == SenderXDP {
			how = "renewals are sent from the kernel (`--sender xdp`, see the generator ceiling); latency is not measured"
		}
		fmt.Fprintf(b, "\n## %s, %s mode, %s sender (xdhcp-bench generator)\n\n%s. The offered rate doubles, then bisects (3 s steps), then the generator sends open loop; the result is the highest answered rate of any of these phases with at most %.1f%% loss and no wrong answer, beside the rate the generator actually offered in it (below its target when the generator was the limit); %s.\n\n",
			g.scenario, g.mode, g.sender, scenarioText[g.scenario], 100*maxLoss, how)
		b.WriteString("| server | answered/s within the loss limit (offered/s) | loss | p50 / p99 / p99.9 µs | open loop answered/s (loss) | wrong | server CPU s per 1M answers | + softirq s per 1M | vs kea | vs xdhcpd (fast path off) |\n|---|---|---|---|---|---|---|---|---|---|\n")
		rate := map[string]float64{}
		for _, r := range g.results {
			rate[r.Server] = r.Best.Rate
		}
		for _, r := range g.results {
			x := r.Best
			ol := "-"
			if r.OpenLoop != nil {
				ol = fmt.Sprintf("%.0f (%.2f%%)", r.OpenLoop.Rate, 100*r.OpenLoop.Loss)
			}
			ratio := func(other string) string {
				if rate[other] == 0 || r.Server == other {
					return "-"
				}
				return fmt.Sprintf("%.1f×", x.Rate/rate[other])
			}
			lat := latency(r, x.P50) + " / " + latency(r, x.P99) + " / " + latency(r, x.P999)
			fmt.Fprintf(b, "| %s | %.0f (%.0f) | %.3f%% | %s | %s | %d | %.1f | %.1f | %s | %s |%s\n",
				r.Server, x.Rate, offered(r.Scenario, x), 100*x.Loss, lat, ol, x.Wrong, x.CPUPerMillion, x.SoftirqPerMillion,
				ratio("kea"), ratio("xdhcpd"), errCell(r.Err))
		}
		for _, r := range g.results {
			if r.Server == "dhcpd-16k-pool" {
				b.WriteString("\ndhcpd runs with 16k-address pools here (its cost per lease grows with the pool's size; see the DORA section).\n")
				break
			}
		}
		if len(rep.Charts) > 0 {
			fmt.Fprintf(b, "\n![%s %s %s](%s)\n", g.scenario, g.mode, g.sender, chartName(rep.base(), g))
		}
	}
	if len(rep.Scenarios) > 0 {
		b.WriteString("\nCPU: the server process's user+system time from /proc; XDP runs in softirq context, which is counted for the whole machine (the generator's own receive path included), so the fair comparison of total cost is the sum of the two columns.\n")
	}
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

func chartName(base string, g group) string {
	if g.sender == SenderXDP {
		return fmt.Sprintf("%s-%s-%s-xdp.svg", filepath.Base(base), g.scenario, g.mode)
	}
	return fmt.Sprintf("%s-%s-%s.svg", filepath.Base(base), g.scenario, g.mode)
}

// writeCharts draws one bar chart per scenario and mode beside the report.
func (rep *Report) writeCharts(dir string) error {
	for _, g := range groups(rep.Scenarios) {
		name := chartName(rep.base(), g)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(barChart(g)), 0o644); err != nil {
			return fmt.Errorf("chart %s: %w", name, err)
		}
		rep.Charts = append(rep.Charts, name)
	}
	return nil
}

// barChart is an SVG bar chart of answered/s per server.
func barChart(g group) string {
	const w, barH, gap, left = 640.0, 26.0, 10.0, 190.0
	top := 40.0
	h := top + float64(len(g.results))*(barH+gap) + 20
	peak := 1.0
	for _, r := range g.results {
		peak = max(peak, r.Best.Rate)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="13">`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15">%s, %s mode, %s sender: answered/s within %.1f%% loss</text>`+"\n", g.scenario, g.mode, g.sender, 100*g.results[0].MaxLoss)
	for i, r := range g.results {
		y := top + float64(i)*(barH+gap)
		bw := (w - left - 90) * r.Best.Rate / peak
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n", left-8, y+barH*0.7, html.EscapeString(r.Server))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="#3b6ea5"/>`+"\n", left, y, bw, barH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%.0f</text>`+"\n", left+bw+6, y+barH*0.7, r.Best.Rate)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
