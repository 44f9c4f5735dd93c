package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// CatchupRow is one wiped secondary catching up from its primary: the
// primary holds Leases active bindings in a pool of PoolSize addresses,
// the secondary starts with an empty database, asks for everything
// (UPDREQALL) and is NORMAL with every binding after Seconds.
type CatchupRow struct {
	Allocation string  `json:"allocation"` // the pool's failover-allocation
	Leases     int     `json:"leases"`
	PoolSize   int     `json:"pool-size"`
	Seconds    float64 `json:"seconds"`
	// Received is the binding updates the secondary took (bindings, and
	// with proportional allocation the addresses handed over as BACKUP).
	Received  uint64  `json:"bndupd-received"`
	PerSecond float64 `json:"bndupd-per-second"`
	// Peak RSS (VmHWM) of each daemon when the secondary was caught up.
	PrimaryPeakRSS   int64  `json:"primary-peak-rss-bytes"`
	SecondaryPeakRSS int64  `json:"secondary-peak-rss-bytes"`
	Err              string `json:"error,omitempty"`
}

// CatchupOptions shape xdhcp-bench failover-catchup.
type CatchupOptions struct {
	Bin         string
	Leases      int
	PoolSize    int
	Allocations []string // "independent", "proportional"
	Timeout     time.Duration
	// ProfileDir, when set, receives both daemons' CPU profiles of the
	// first ProfileSeconds of the catch-up (server.pprof is turned on),
	// and their allocations (allocs) once the secondary is caught up.
	ProfileDir     string
	ProfileSeconds int
	Log            func(format string, args ...any)
}

// catchupMetricsPort serves the profiles of --profile.
const catchupMetricsPort = "9581"

// catchupConfig is one side's configuration: fast path off (the catch-up
// is the slow path's and the relationship's work), one /8 subnet whose
// pool is the first size addresses from 10.0.0.1.
func catchupConfig(dir, role, listen, peer, iface, allocation string, size int, profile bool) string {
	last := netip.AddrFrom4([4]byte{10, 0, 0, 0})
	for range size {
		last = last.Next()
	}
	metrics := `""`
	if profile {
		metrics = listen + ":" + catchupMetricsPort + "\n  pprof: true"
	}
	return fmt.Sprintf(`server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: %s
subnets:
  - subnet: 10.0.0.0/8
    pools: [{range: 10.0.0.1-%s, failover-allocation: %s}]
    lease-time: 1d
failover:
  name: catchup
  role: %s
  listen: %s
  peer: %s
  mclt: 1h
  auto-partner-down: 0s
`, iface, dir, dir, metrics, last, allocation, role, listen, peer)
}

// FailoverCatchup measures, for each allocation mode, how long a
// secondary with an empty database takes to be NORMAL with all of a
// primary's bindings, and both daemons' peak RSS.
func (r *Rig) FailoverCatchup(ctx context.Context, o CatchupOptions) []CatchupRow {
	var rows []CatchupRow
	for _, a := range o.Allocations {
		row := r.catchup(ctx, o, a)
		o.Log("  %-12s %d leases in %d addresses: %.1f s, %d updates (%.0f/s), peak RSS primary %.0f MiB, secondary %.0f MiB %s\n",
			a, row.Leases, row.PoolSize, row.Seconds, row.Received, row.PerSecond,
			float64(row.PrimaryPeakRSS)/(1<<20), float64(row.SecondaryPeakRSS)/(1<<20), row.Err)
		rows = append(rows, row)
		if ctx.Err() != nil {
			break
		}
	}
	return rows
}

func (r *Rig) catchup(ctx context.Context, o CatchupOptions, allocation string) CatchupRow {
	row := CatchupRow{Allocation: allocation, Leases: o.Leases, PoolSize: o.PoolSize}
	fail := func(err error) CatchupRow { row.Err = err.Error(); return row }
	dir, err := os.MkdirTemp("", "xdhcp-catchup")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	pdir, sdir := filepath.Join(dir, "primary"), filepath.Join(dir, "secondary")
	for _, d := range []string{pdir, sdir} {
		if err := os.MkdirAll(filepath.Join(d, "state"), 0o700); err != nil {
			return fail(err)
		}
	}
	if err := WriteLeases(ctx, filepath.Join(pdir, "state", "leases.db"), o.Leases); err != nil {
		return fail(fmt.Errorf("writing %d leases: %w", o.Leases, err))
	}
	peer, err := netns.NewUnique("xb-catchup")
	if err != nil {
		return fail(err)
	}
	defer peer.Close()
	if err := netns.Veth(r.Srv, foIf, netip.MustParsePrefix(foPrimaryAddr+"/30"), peer, foIf, netip.MustParsePrefix(foSecondaryAddr+"/30")); err != nil {
		return fail(err)
	}
	// The secondary serves the pool's subnet on its side of the veth
	// (an interface is required); no client reaches it.
	write := func(d, role, listen, peerAddr string) (string, error) {
		f := filepath.Join(d, "xdhcpd.yaml")
		return f, os.WriteFile(f, []byte(catchupConfig(d, role, listen, peerAddr, foIf, allocation, o.PoolSize, o.ProfileDir != "")), 0o600)
	}
	pcfg, err := write(pdir, "primary", foPrimaryAddr, foSecondaryAddr)
	if err != nil {
		return fail(err)
	}
	scfg, err := write(sdir, "secondary", foSecondaryAddr, foPrimaryAddr)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	pp, err := r.Srv.Start(ctx, o.Bin, "--config", pcfg)
	if err != nil {
		return fail(err)
	}
	defer pp.Stop()
	if err := waitFor(ctx, pp, func() bool { return socketAnswers(filepath.Join(pdir, "ctl.sock")) }); err != nil {
		return fail(fmt.Errorf("primary: %w", err))
	}
	t0 := time.Now()
	sp, err := peer.Start(ctx, o.Bin, "--config", scfg)
	if err != nil {
		return fail(err)
	}
	defer sp.Stop()
	ssock := filepath.Join(sdir, "ctl.sock")
	if o.ProfileDir != "" {
		// The secondary's listener comes up with its daemon; give it a
		// moment rather than miss the start of the catch-up.
		profiles := make(chan error, 2)
		for _, p := range []struct {
			ns   *netns.NS
			addr string
			name string
		}{{r.Srv, foPrimaryAddr, "primary"}, {peer, foSecondaryAddr, "secondary"}} {
			go func() {
				var err error
				for range 50 {
					if err = fetchProfile(p.ns, p.addr+":"+catchupMetricsPort, "profile", o.ProfileSeconds,
						filepath.Join(o.ProfileDir, fmt.Sprintf("catchup-%s-%s.cpu.pb.gz", allocation, p.name))); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				profiles <- err
			}()
		}
		defer func() {
			for range 2 {
				if err := <-profiles; err != nil {
					o.Log("  profile: %v\n", err)
				}
			}
		}()
	}
	var st failover.Status
	err = waitWithin(ctx, sp, o.Timeout, func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return control.Call(c, ssock, "failover-status", nil, &st) == nil && st.State == "normal" && st.PartnerState == "normal" &&
			st.UpdatesReceived >= uint64(o.Leases)
	})
	row.Seconds = time.Since(t0).Seconds()
	row.Received = st.UpdatesReceived
	row.PrimaryPeakRSS, row.SecondaryPeakRSS = peakRSS(pp.Pid()), peakRSS(sp.Pid())
	if o.ProfileDir != "" {
		for _, p := range []struct {
			ns         *netns.NS
			addr, name string
		}{{r.Srv, foPrimaryAddr, "primary"}, {peer, foSecondaryAddr, "secondary"}} {
			if err := fetchProfile(p.ns, p.addr+":"+catchupMetricsPort, "allocs", 0,
				filepath.Join(o.ProfileDir, fmt.Sprintf("catchup-%s-%s.allocs.pb.gz", allocation, p.name))); err != nil {
				o.Log("  profile: %v\n", err)
			}
		}
	}
	if err != nil {
		return fail(fmt.Errorf("the secondary was not caught up after %.0f s (state %s, %d updates received): %w", row.Seconds, st.State, st.UpdatesReceived, err))
	}
	if row.Seconds > 0 {
		row.PerSecond = float64(row.Received) / row.Seconds
	}
	return row
}

// catchupSection renders the rows.
func (rep *Report) catchupSection(b *strings.Builder) {
	if len(rep.Catchup) == 0 {
		return
	}
	b.WriteString("\n## Failover: a wiped secondary catching up (UPDREQALL), xdhcpd to xdhcpd\n\n")
	b.WriteString("| allocation | leases | pool | seconds to NORMAL | updates received | updates/s | primary peak RSS | secondary peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Catchup {
		secs := fmt.Sprintf("%.1f", r.Seconds)
		if r.Err != "" {
			secs = "not caught up: " + r.Err
		}
		fmt.Fprintf(b, "| %s | %d | %d | %s | %d | %.0f | %.0f MiB | %.0f MiB |\n", r.Allocation, r.Leases, r.PoolSize, secs,
			r.Received, r.PerSecond, float64(r.PrimaryPeakRSS)/(1<<20), float64(r.SecondaryPeakRSS)/(1<<20))
	}
}
