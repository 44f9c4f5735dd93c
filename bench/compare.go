package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// DropLimit is the drop ratio a rate may have and still count (ISC's
// method for DORA rates).
const DropLimit = 0.025

// CompareOptions shape a comparison run.
type CompareOptions struct {
	Servers  []Server
	Clients  int           // distinct MACs (perfdhcp -R)
	StepTime time.Duration // length of each perfdhcp run
	Start    int           // first rate tried
	Bisect   int           // bisection steps after the first failing rate
	Log      io.Writer
}

// ServerResult is one server's outcome.
type ServerResult struct {
	Server  string       `json:"server"`
	Version string       `json:"version"`
	Best    PerfResult   `json:"best"`
	Rate    float64      `json:"leases-per-second"`
	CPU     float64      `json:"cpu-seconds-per-1000-leases"`
	Steps   []PerfResult `json:"steps"`
	Err     string       `json:"error,omitempty"`
}

// Rig is the two namespaces joined by a veth.
type Rig struct {
	Srv, Cli *netns.NS
	pass     io.Closer
}

// NewRig builds the namespaces; Close removes them.
func NewRig() (*Rig, error) {
	s, err := netns.NewUnique("xb-srv")
	if err != nil {
		return nil, err
	}
	c, err := netns.NewUnique("xb-cli")
	if err != nil {
		s.Close()
		return nil, err
	}
	r := &Rig{Srv: s, Cli: c}
	err = netns.Veth(s, ServerIf, netip.MustParsePrefix(ServerAddr+"/24"), c, ClientIf, netip.MustParsePrefix(ClientAddr+"/24"))
	if err == nil {
		_, err = c.Exec(context.Background(), "ip", "addr", "add", Giaddr+"/32", "dev", ClientIf)
	}
	if err == nil {
		_, err = s.Exec(context.Background(), "ip", "route", "add", RelayNet, "via", ClientAddr)
	}
	if err == nil {
		// Native XDP_TX on the server's veth delivers only to a peer with
		// an XDP program; full checksums in both directions.
		r.pass, err = netns.AttachXDPPass(c, ClientIf)
	}
	for _, e := range []struct {
		ns *netns.NS
		If string
	}{{s, ServerIf}, {c, ClientIf}} {
		if err == nil {
			err = netns.DisableTxOffload(e.ns, e.If)
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close removes the namespaces and everything running in them.
func (r *Rig) Close() {
	if r.pass != nil {
		r.pass.Close()
	}
	r.Srv.Close()
	r.Cli.Close()
}

// measure runs perfdhcp once at rate against a freshly started server.
func (r *Rig) measure(ctx context.Context, s Server, rate int, o CompareOptions) (PerfResult, float64, error) {
	dir, err := os.MkdirTemp("", "xdhcp-bench-"+s.Name())
	if err != nil {
		return PerfResult{}, 0, err
	}
	defer os.RemoveAll(dir)
	p, err := s.Start(ctx, r.Srv, dir)
	if err != nil {
		return PerfResult{}, 0, fmt.Errorf("%s: %w", s.Name(), err)
	}
	defer stopServer(s, p, r.Srv, dir)
	// Ready means answering DORA, the same test for every server.
	deadline := time.Now().Add(90 * time.Second)
	for {
		w, err := RunPerfdhcp(ctx, r.Cli, Giaddr, ServerAddr, 20, 20, time.Second)
		if err == nil && w.RA.Received > 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return PerfResult{}, 0, fmt.Errorf("%s answered no DORA within 90s of starting: %v", s.Name(), err)
		}
	}
	cpu0 := cpuSeconds(p.Pid())
	clients := o.Clients
	if c, ok := s.(interface{ MaxClients() int }); ok && c.MaxClients() > 0 {
		clients = min(clients, c.MaxClients())
	}
	res, err := RunPerfdhcp(ctx, r.Cli, Giaddr, ServerAddr, rate, clients, o.StepTime)
	return res, cpuSeconds(p.Pid()) - cpu0, err
}

// FindRate finds the highest DORA rate a server sustains with at most
// DropLimit drops: double until it fails, then bisect.
func (r *Rig) FindRate(ctx context.Context, s Server, o CompareOptions) ServerResult {
	out := ServerResult{Server: s.Name(), Version: s.Version()}
	good, bad := 0, 0
	rate := o.Start
	try := func(rate int) bool {
		res, cpu, err := r.measure(ctx, s, rate, o)
		if err != nil {
			out.Err = err.Error()
			return false
		}
		out.Steps = append(out.Steps, res)
		ok := res.DropRatio() <= DropLimit
		fmt.Fprintf(o.Log, "  %-7s rate %6d/s: %6.0f leases/s, drops %5.1f%%, cpu %.2fs %s\n", s.Name(), rate, res.LeasesPerSecond(), 100*res.DropRatio(), cpu, map[bool]string{true: "ok", false: "over the limit"}[ok])
		if ok && res.LeasesPerSecond() > out.Rate {
			out.Best, out.Rate = res, res.LeasesPerSecond()
			if res.RA.Received > 0 {
				out.CPU = cpu / float64(res.RA.Received) * 1000
			}
		}
		return ok
	}
	// Double while the server keeps up; if the first rate is already too
	// much, halve until it keeps up (down to a floor).
	for ctx.Err() == nil && out.Err == "" {
		if try(rate) {
			good = rate
			if bad != 0 {
				break
			}
			rate *= 2
			continue
		}
		bad = rate
		if good != 0 || rate <= 50 {
			break
		}
		rate /= 2
	}
	for i := 0; i < o.Bisect && bad > good+good/20 && ctx.Err() == nil && out.Err == ""; i++ {
		mid := (good + bad) / 2
		if try(mid) {
			good = mid
		} else {
			bad = mid
		}
	}
	return out
}

// Report is a whole comparison, as written to bench/results.
type Report struct {
	Date     time.Time         `json:"date"`
	Host     string            `json:"host"`
	Kernel   string            `json:"kernel"`
	CPU      string            `json:"cpu"`
	Clients  int               `json:"clients"`
	StepTime string            `json:"step-time"`
	Results  []ServerResult    `json:"results"`
	Startup  *StartupResult    `json:"startup,omitempty"`
	Renew    []RenewResult     `json:"renew,omitempty"`
	Cost     []CostResult      `json:"xdp-cost,omitempty"`
	LQ       *LeasequeryResult `json:"leasequery,omitempty"`
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
		for _, r := range rep.Results {
			ratio := func(other string) string {
				if rates[other] == 0 || r.Server == other {
					return "-"
				}
				return fmt.Sprintf("%.2f×", r.Rate/rates[other])
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %d | %.1f%% | %.3f | %s | %s |\n", r.Server, r.Version, r.Rate, r.Best.Rate, 100*r.Best.DropRatio(), r.CPU, ratio("kea"), ratio("dhcpd"))
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
	if len(rep.Renew) > 0 {
		b.WriteString("\n## Renewals/s (relayed; our generator with sendmmsg/recvmmsg, every answer validated)\n\n")
		b.WriteString("| server | leases | answered/s at ≤0.1% loss (offered) | open loop: sent | answered/s | loss | wrong | server process CPU s per 1M | ≤0.1% loss vs fast path off |\n|---|---|---|---|---|---|---|---|---|\n")
		var off float64
		for _, r := range rep.Renew {
			if r.Server == "xdhcpd" {
				off = r.LowLoss
			}
		}
		for _, r := range rep.Renew {
			ratio := "-"
			if off > 0 && r.Server != "xdhcpd" {
				ratio = fmt.Sprintf("%.1f×", r.LowLoss/off)
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f (%d/s) | %d | %.0f | %.2f%% | %d | %.1f | %s |\n", r.Server, r.Leases, r.LowLoss, r.LowLossAt, r.Sent, r.Rate, 100*r.Loss, r.Wrong, r.CPU, ratio)
			if r.Err != "" {
				fmt.Fprintf(&b, "| %s | error: %s |\n", r.Server, r.Err)
			}
		}
		b.WriteString("\nXDP work runs in softirq context and is not in the server process's CPU time.\n")
	}
	if len(rep.Cost) > 0 {
		b.WriteString("\n## XDP program cost per renewal (BPF_PROG_TEST_RUN, warm, request restored before each run)\n\n| case | runs | measured ns | wrapper baseline ns | program ns/packet |\n|---|---|---|---|---|\n")
		for _, c := range rep.Cost {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f |\n", c.Case, c.Runs, c.Measured, c.Baseline, c.Cost)
		}
	}
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
	return b.String()
}

// Write stores the report as markdown and JSON under dir.
func (rep *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(dir, rep.Date.UTC().Format("2006-01-02T1504")+"-"+rep.Host)
	j, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(base+".json", j, 0o644); err != nil {
		return "", err
	}
	md := []byte(rep.Markdown())
	if err := os.WriteFile(base+".md", md, 0o644); err != nil {
		return "", err
	}
	// latest.md is what the README links.
	return base + ".md", os.WriteFile(filepath.Join(dir, "latest.md"), md, 0o644)
}

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
}
