package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is a whole comparison, as written to bench/results.
type Report struct {
	Date time.Time `json:"date"`
	// RigRequestHoldoff is the server.request-holdoff the rig's xdhcpd
	// runs with outside the flood sections (XdhcpdConfig); empty in
	// reports from before the holdoff.
	RigRequestHoldoff string `json:"xdhcpd-request-holdoff,omitempty"`
	// RigDiscoverHoldoff is its server.discover-holdoff there; empty in
	// reports from before 2026-12-07, whose rig ran with the default.
	RigDiscoverHoldoff string         `json:"xdhcpd-discover-holdoff,omitempty"`
	Host               string         `json:"host"`
	Kernel             string         `json:"kernel"`
	CPU                string         `json:"cpu"`
	Clients            int            `json:"clients"`
	StepTime           string         `json:"step-time"`
	Results            []ServerResult `json:"results"`
	// Startup is the startup section of reports before Scale replaced it.
	Startup *StartupResult `json:"startup,omitempty"`
	// Scale is xdhcp-bench startup's scale section: one row per size.
	Scale []ScaleRow `json:"scale,omitempty"`
	// Scenarios are xdhcp-bench's own generator against each server;
	// Selftest its ceiling against the XDP reflector.
	Scenarios []ScenarioResult `json:"scenarios,omitempty"`
	Selftest  []ScenarioResult `json:"selftest,omitempty"`
	Charts    []string         `json:"charts,omitempty"`
	Partial   bool             `json:"partial,omitempty"` // interrupted before the end
	// Failed names the sections of a full run that failed, and why; the
	// others were measured.
	Failed  []string          `json:"failed,omitempty"`
	Referee []RefereeResult   `json:"perfdhcp-renewals,omitempty"`
	Cost    []CostResult      `json:"xdp-cost,omitempty"`
	LQ      *LeasequeryResult `json:"leasequery,omitempty"`

	// CostPrograms are the objects Cost timed, as the verifier saw them.
	CostPrograms []CostProgram `json:"xdp-programs,omitempty"`

	// FR is xdhcp-bench forcerenew's signing rate and campaigns.
	FR *ForceRenewReport `json:"forcerenew,omitempty"`
	// Failover is xdhcp-bench failover's comparison.
	Failover *FailoverReport `json:"failover,omitempty"`
	// Full marks xdhcp-bench all's report (it becomes latest.md).
	Full bool `json:"full,omitempty"`
	// Catchup is xdhcp-bench failover-catchup's rows.
	Catchup []CatchupRow `json:"failover-catchup,omitempty"`
	// Overload is xdhcp-bench overload's comparison (renewals in the
	// order they were bound, unless its Scattered says otherwise: reports
	// before OverloadScattered).
	Overload *OverloadReport `json:"overload,omitempty"`
	// OverloadScattered is the same comparison with renewals in a random
	// order (--order scattered); xdhcp-bench all runs both.
	OverloadScattered *OverloadReport `json:"overload-scattered,omitempty"`
	// XDPOverload is xdhcp-bench overload-xdp's: renewals answered by XDP
	// while the slow path is offered more DORAs than it answers.
	XDPOverload *XDPOverloadReport `json:"overload-xdp,omitempty"`
	// Flood is xdhcp-bench flood's comparison (issue 19), a DISCOVER
	// flood; FloodRequest the same with REQUESTs (--kind request).
	Flood        *FloodReport `json:"flood,omitempty"`
	FloodRequest *FloodReport `json:"flood-request,omitempty"`
	// Recovery is xdhcp-bench failover-recovery's result.
	Recovery *RecoveryResult `json:"failover-recovery,omitempty"`

	// name is the files' name once Write has chosen it (base).
	name string
}

// Environment fills in host facts.
func (rep *Report) Environment() {
	rep.Host, _ = os.Hostname()
	rep.Kernel = strings.TrimSpace(firstLine("uname", "-r"))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				rep.CPU = strings.TrimSpace(l[strings.Index(l, ":")+1:]) + fmt.Sprintf(" (%d CPUs)", runtime.NumCPU())
				break
			}
		}
	}
}

// Markdown renders the report.
func (rep *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# xdhcp benchmark, %s\n\n", rep.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Host %s, kernel %s, CPU %s (%d CPUs shared by the generator and the server). Traffic crosses a veth between two network namespaces.\n\n",
		rep.Host, rep.Kernel, rep.CPU, runtime.NumCPU())
	switch {
	case rep.RigDiscoverHoldoff != "":
		fmt.Fprintf(&b, "xdhcpd runs with server.request-holdoff %s and server.discover-holdoff %s, except in the flood sections (their defaults there): the rig offers its rates with clients that renew every 0.1 to 1.25 s, or start a DORA again as often with the same MAC, where real clients renew once per T1, and whenever the server fell behind the holdoffs would take those messages for a flood's repeats.\n\n", rep.RigRequestHoldoff, rep.RigDiscoverHoldoff)
	case rep.RigRequestHoldoff != "":
		fmt.Fprintf(&b, "xdhcpd runs with server.request-holdoff %s, except in the flood sections (its default there): the rig offers its rates with clients that renew every 0.1 to 1.25 s, where real clients renew once per T1, and whenever the server fell behind the holdoff would take those renewals for a flood's repeats.\n\n", rep.RigRequestHoldoff)
	}
	for _, f := range rep.Failed {
		fmt.Fprintf(&b, "**Section not measured: %s**\n\n", strings.ReplaceAll(f, "\n", " "))
	}
	if rep.Partial {
		b.WriteString("**Partial report: the run was interrupted; only the sections below were measured.**\n\n")
	}
	if len(rep.Results) > 0 {
		fmt.Fprintf(&b, "DORA: perfdhcp in relay mode (giaddr %s), %d clients, %s per step; a step counts when at most %.1f%% of DORA exchanges fail.\n\n", Giaddr, rep.Clients, rep.StepTime, 100*DropLimit)
	}
	if len(rep.Results) > 0 {
		b.WriteString("## DORA leases/s (every ACK durable: xdhcpd fsyncs bbolt, Kea memfile persist=true, dhcpd leases file)\n\n")
		b.WriteString("| server | version | leases/s | at rate | drops | CPU s per 1000 leases | vs Kea | vs dhcpd |\n|---|---|---|---|---|---|---|---|\n")
		rates := map[string]float64{}
		for _, r := range rep.Results {
			rates[r.Server] = r.Rate
		}
		// "vs Kea" is against Kea at its best: the faster of its rows
		// (multi-threading on or off).
		keaBest := fasterKea(rates)
		for _, r := range rep.Results {
			ratio := func(base float64, others ...string) string {
				if base == 0 || slices.Contains(others, r.Server) {
					return "-"
				}
				return fmt.Sprintf("%.2f×", r.Rate/base)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %d | %.1f%% | %.3f | %s | %s |\n", r.Server, r.Version, r.Rate, r.Best.Rate, 100*r.Best.DropRatio(), r.CPU,
				ratio(keaBest, keaRows...), ratio(rates["dhcpd"], "dhcpd"))
		}
		rep.chartLinks(&b, "DORA leases/s against offered/s", rep.base(), "-dora.png")
		if _, ok := rates[keaRows[1]]; ok {
			b.WriteString("\nkea-mt is Kea with multi-threading on (a thread per CPU; off by default in 2.2, on from 2.4); \"vs Kea\" compares with the faster Kea row.\n")
		}
		for _, r := range rep.Results {
			if r.Server == "dhcpd-16k-pool" {
				b.WriteString("\ndhcpd-16k-pool is ISC dhcpd with a 16k-address pool and perfdhcp capped at 16000 clients: with the rig's 131k-address pool dhcpd's cost per lease is dominated by the pool's size, so this row shows it without that limit. It is not a like-for-like row.\n")
			}
		}
		b.WriteString("\nSteps (exact commands):\n\n```\n")
		for _, r := range rep.Results {
			for _, s := range r.Steps {
				fmt.Fprintf(&b, "%-7s %s   # %d acks, %.1f%% drops\n", r.Server, s.Command, s.RA.Received, 100*s.DropRatio())
			}
			if r.Err != "" {
				fmt.Fprintf(&b, "%-7s error: %s\n", r.Server, r.Err)
			}
		}
		b.WriteString("```\n")
	}
	rep.scenarioTables(&b)
	if len(rep.Referee) > 0 {
		fmt.Fprintf(&b, "\n## Renewals/s by perfdhcp (referee: `-r R -f R`, relayed; a step counts with at most %.1f%% renewals and %.1f%% DORA exchanges lost)\n\nperfdhcp renews only as fast as it takes leases, so this is bounded by each server's DORA rate; it checks the generator's figures from outside, not the fast path's ceiling.\n\n| server | renewals/s | command |\n|---|---|---|\n", 100*RenewLossLimit, 100*DropLimit)
		for _, r := range rep.Referee {
			fmt.Fprintf(&b, "| %s | %.0f | `%s` |%s\n", r.Server, r.Rate, r.Best.Command, errCell(r.Err))
		}
	}
	rep.costSection(&b)
	rep.forceRenewSection(&b)
	rep.failoverSection(&b)
	rep.catchupSection(&b)
	rep.recoverySection(&b)
	rep.overloadSection(&b)
	rep.xdpOverloadSection(&b)
	rep.floodSection(&b)
	if q := rep.LQ; q != nil {
		fmt.Fprintf(&b, "\n## Leasequery (xdhcpd, %d leases)\n\n| UDP by IP answered/s at ≤1%% loss (offered) | UDP answered/s open loop (sent, answered, wrong) | bulk leases streamed/s (TCP, by relay-id) | streamed |\n|---|---|---|---|\n| %.0f (%d/s) | %.0f (%d, %d, %d) | %.0f | %d |\n",
			q.Leases, q.UDPLowLoss, q.UDPLowLossAt, q.UDPRate, q.UDPSent, q.UDPAnswered, q.UDPWrong, q.BulkRate, q.BulkStreamed)
		if q.Err != "" {
			fmt.Fprintf(&b, "\nerror: %s\n", q.Err)
		}
	}
	if s := rep.Startup; s != nil {
		fmt.Fprintf(&b, "\n## xdhcpd startup with %d leases\n\n| ready after | RSS when ready |\n|---|---|\n| %s | %.0f MiB |\n", s.Leases, s.Ready.Round(time.Millisecond), float64(s.RSSBytes)/(1<<20))
	}
	rep.scaleSection(&b)
	return b.String()
}

// Write stores the report as markdown and JSON under dir.
func (rep *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Two commands started in the same minute would share a name, and
	// the second overwrote the first's report (a flood section was lost
	// so to the DORA run after it): the second gets a suffix.
	rep.name = ""
	stem := rep.base()
	for i := 2; exists(filepath.Join(dir, rep.base()+".md")) || exists(filepath.Join(dir, rep.base()+".json")); i++ {
		rep.name = fmt.Sprintf("%s-%d", stem, i)
	}
	base := filepath.Join(dir, rep.base())
	if err := rep.writeCharts(dir); err != nil {
		return "", err
	}
	j, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(base+".json", j, 0o644); err != nil {
		return "", err
	}
	md := []byte(rep.Markdown())
	if err := os.WriteFile(base+".md", md, 0o644); err != nil {
		return "", err
	}
	// latest.md is what the README links: a full run's report only, not
	// one command's (which would hide the rest).
	if !rep.Full {
		return base + ".md", nil
	}
	return base + ".md", os.WriteFile(filepath.Join(dir, "latest.md"), md, 0o644)
}

// base names the report's files: the minute it began and the host, with
// the suffix Write chose if another report had that name.
func (rep *Report) base() string {
	if rep.name != "" {
		return rep.name
	}
	return rep.Date.UTC().Format("2006-01-02T1504") + "-" + rep.Host
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
