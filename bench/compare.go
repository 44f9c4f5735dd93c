package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
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
	// restoreNeigh puts the neighbour table limits back.
	restoreNeigh func()
}

// raiseNeighLimits makes room for a neighbour entry per layer 2 client:
// with the default limits (1024 entries, global to the kernel, not per
// namespace) the server's replies to the rest are dropped while the table
// thrashes. It returns what restores the old limits.
func raiseNeighLimits() (func(), error) {
	const dir = "/proc/sys/net/ipv4/neigh/default/"
	want := map[string]int{"gc_thresh1": 262144, "gc_thresh2": 1048576, "gc_thresh3": 2097152}
	old := map[string][]byte{}
	restore := func() {
		for k, v := range old {
			os.WriteFile(dir+k, v, 0o644)
		}
	}
	// Largest first going up, so that thresh1 ≤ thresh2 ≤ thresh3 holds.
	for _, k := range []string{"gc_thresh3", "gc_thresh2", "gc_thresh1"} {
		b, err := os.ReadFile(dir + k)
		if err != nil {
			restore()
			return nil, fmt.Errorf("neighbour table limits: %w", err)
		}
		if cur, _ := strconv.Atoi(strings.TrimSpace(string(b))); cur >= want[k] {
			continue
		}
		old[k] = b
		if err := os.WriteFile(dir+k, []byte(strconv.Itoa(want[k])), 0o644); err != nil {
			restore()
			return nil, fmt.Errorf("neighbour table limits: %w", err)
		}
	}
	return restore, nil
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
	err = netns.Veth(s, ServerIf, netip.MustParsePrefix(ServerAddr+"/15"), c, ClientIf, netip.MustParsePrefix(ClientAddr+"/15"))
	if err == nil {
		_, err = c.Exec(context.Background(), "ip", "addr", "add", Giaddr+"/32", "dev", ClientIf)
	}
	if err == nil {
		_, err = s.Exec(context.Background(), "ip", "route", "add", RelayNet, "via", ClientAddr)
	}
	if err == nil {
		r.restoreNeigh, err = raiseNeighLimits()
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
	if r.restoreNeigh != nil {
		r.restoreNeigh()
	}
	r.Srv.Close()
	r.Cli.Close()
}

// measure runs perfdhcp once at rate against a freshly started server.
func (r *Rig) measure(ctx context.Context, s Server, rate, renew int, o CompareOptions) (PerfResult, float64, error) {
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
	cpu0 := loadgen.ProcessCPU(p.Pid())
	clients := o.Clients
	if c, ok := s.(interface{ MaxClients() int }); ok && c.MaxClients() > 0 {
		clients = min(clients, c.MaxClients())
	}
	res, err := RunPerfdhcpRenew(ctx, r.Cli, Giaddr, ServerAddr, rate, renew, clients, o.StepTime)
	return res, loadgen.ProcessCPU(p.Pid()) - cpu0, err
}

// FindRate finds the highest DORA rate a server sustains with at most
// DropLimit drops: double until it fails, then bisect.
func (r *Rig) FindRate(ctx context.Context, s Server, o CompareOptions) ServerResult {
	out := ServerResult{Server: s.Name(), Version: s.Version()}
	good, bad := 0, 0
	rate := o.Start
	try := func(rate int) bool {
		res, cpu, err := r.measure(ctx, s, rate, 0, o)
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

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
}
