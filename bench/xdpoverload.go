package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// XDPOverloadRow is one step: new clients' DORAs offered to the slow path
// at a share of its ceiling while bound clients renew through XDP. Both
// results' server CPU figures are the one daemon's over the same step.
type XDPOverloadRow struct {
	Fraction    float64        `json:"fraction-of-dora-ceiling"`
	DORAOffered int            `json:"dora-offered-per-second"`
	DORA        loadgen.Result `json:"dora"`
	Renew       loadgen.Result `json:"renew"`
	Err         string         `json:"error,omitempty"`
}

// XDPOverloadReport is issue 19's "renewals already answered by XDP are
// unaffected": xdhcpd with the XDP fast path (native) renews a bound
// population at a steady rate, answered by XDP, while new clients' DORAs,
// which only the slow path answers, are offered at 0 (the renewals
// alone) and beyond the slow path's DORA ceiling, all in one daemon.
type XDPOverloadReport struct {
	// Ceiling is the slow path's DORA ceiling with the fast path on and
	// the renewals running (the highest rate answered within 1% loss),
	// searched or given.
	Ceiling      float64          `json:"dora-ceiling-per-second"`
	CeilingSteps []loadgen.Result `json:"ceiling-steps,omitempty"`
	RenewRate    int              `json:"renew-rate"`
	RenewClients int              `json:"renew-clients"`
	Rows         []XDPOverloadRow `json:"rows"`
	Err          string           `json:"error,omitempty"`
}

// XDPOverloadOptions shape Rig.XDPOverload.
type XDPOverloadOptions struct {
	Bin string
	// RenewClients renew at RenewRate (default 20,000 and 10,000/s).
	RenewClients, RenewRate int
	Step                    time.Duration
	// Fractions of the DORA ceiling to offer (0: the renewals alone).
	Fractions []float64
	// Ceiling, when above 0, is the DORA ceiling taken as given.
	Ceiling float64
	Log     progressLog
}

// xdpOverloadGiaddr relays the new clients' DORAs: a relay of their own,
// so their answers do not meet the renewals'.
const xdpOverloadGiaddr = "10.80.0.4"

// XDPOverload measures renewals answered by XDP while the slow path is
// offered more DORAs than it answers.
func (r *Rig) XDPOverload(ctx context.Context, o XDPOverloadOptions) XDPOverloadReport {
	o.RenewClients, o.RenewRate = cmp.Or(o.RenewClients, 20000), cmp.Or(o.RenewRate, 10000)
	rep := XDPOverloadReport{RenewRate: o.RenewRate, RenewClients: o.RenewClients, Ceiling: o.Ceiling}
	if err := r.xdpOverload(ctx, o, &rep); err != nil {
		rep.Err = err.Error()
	}
	return rep
}

// xdpOverloadDORAClients caps the new clients' population: enough for a
// DORA ceiling up to 80,000/s (stepClients), within what the relay pool
// has beside the renewing clients.
const xdpOverloadDORAClients = 100_000

// xdpOverload starts the daemon once and binds the renewing clients;
// then, renewing throughout, searches the slow path's DORA ceiling (unless
// given) and runs each step.
func (r *Rig) xdpOverload(ctx context.Context, o XDPOverloadOptions, rep *XDPOverloadReport) error {
	srv := Xdhcpd{Bin: o.Bin, Fast: "native"}
	doraClients := min(xdpOverloadDORAClients, relayPoolSize()-o.RenewClients)
	if doraClients <= 0 {
		return fmt.Errorf("%d renewing clients leave none of the relay pool's %d addresses for new clients", o.RenewClients, relayPoolSize())
	}
	dir, err := os.MkdirTemp("", "xdhcp-bench-xdp-overload-")
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := srv.Start(ctx, r.Srv, dir)
	if err != nil {
		return fmt.Errorf("starting %s: %w", srv.Name(), err)
	}
	defer stopServer(srv, p, r.Srv, dir)

	renew, tr, err := r.boundRelayClients(ctx, p.Pid(), o.RenewClients)
	if err != nil {
		return fmt.Errorf("renewing clients: %w", err)
	}
	defer tr.Close()
	defer renew.Close()
	dtr, err := r.relayAt(ctx, xdpOverloadGiaddr)
	if err != nil {
		return fmt.Errorf("new clients: %w", err)
	}
	defer dtr.Close()
	// Another salt: other MACs than the renewing clients'.
	dcfg := genConfig(ScenarioOptions{Mode: "relay", Clients: doraClients, Pop: loadgen.Population{ClientIDs: true, Salt: 2}}, p.Pid())
	dcfg.GIAddr = netip.MustParseAddr(xdpOverloadGiaddr)
	dora, err := loadgen.New(dcfg, dtr)
	if err != nil {
		return fmt.Errorf("new clients: %w", err)
	}
	defer dora.Close()
	time.Sleep(time.Second) // the leases' commits and the fast path's map settle

	// step runs the renewals and, at a rate above 0, the DORAs beside
	// them for one step.
	step := func(doraRate int, doras bool) (renewed, doraRes loadgen.Result, err error) {
		var wg sync.WaitGroup
		var renewErr, doraErr error
		wg.Go(func() {
			renewed, renewErr = renew.Run(ctx, loadgen.Phase{Scenario: loadgen.Renew, Rate: o.RenewRate, Duration: o.Step})
		})
		if doras {
			wg.Go(func() {
				doraRes, doraErr = dora.Run(ctx, loadgen.Phase{Scenario: loadgen.DORA, Rate: doraRate, Duration: o.Step})
			})
		}
		wg.Wait()
		return renewed, doraRes, errors.Join(renewErr, doraErr)
	}
	if rep.Ceiling <= 0 {
		// With the renewals running: they take CPU from the two the
		// server shares with the generators, and a ceiling searched
		// without them put the steps' shares beyond what the slow path
		// answers beside them.
		search := ScenarioOptions{Scenario: loadgen.DORA, MaxLoss: overloadMaxLoss, StartRate: 4000, Bisect: 3, Confirm: true}
		search.Log = o.Log
		ceil := r.search(ctx, search, ScenarioResult{Scenario: loadgen.DORA, Mode: "relay", Sender: SenderSockets}, srv.Name(), func(rate int) (loadgen.Result, error) {
			_, d, err := step(rate, true)
			return d, err
		})
		rep.CeilingSteps = ceil.Steps
		if ceil.Err != "" || ceil.Best.Rate == 0 {
			return fmt.Errorf("finding the DORA ceiling: %s", cmp.Or(ceil.Err, "no rate was answered within 1% loss"))
		}
		rep.Ceiling = ceil.Best.Rate
	}
	o.Log.printf("  DORA ceiling %.0f/s with the fast path on and %d clients renewing at %d/s through XDP\n", rep.Ceiling, o.RenewClients, o.RenewRate)

	for _, f := range o.Fractions {
		time.Sleep(time.Second) // the step before's backlog drains
		row := XDPOverloadRow{Fraction: f, DORAOffered: int(f * rep.Ceiling)}
		var err error
		if row.Renew, row.DORA, err = step(row.DORAOffered, row.DORAOffered > 0); err != nil {
			row.Err = err.Error()
		}
		o.Log.printf("  DORA %3.0f%% (%6d/s offered): %6.0f answered/s, loss %5.1f%%; renewals %6.0f answered/s, loss %.2f%%, p50 %.0f µs, p99 %.0f µs %s\n",
			100*f, row.DORAOffered, row.DORA.Rate, 100*row.DORA.Loss, row.Renew.Rate, 100*row.Renew.Loss, row.Renew.P50, row.Renew.P99, row.Err)
		rep.Rows = append(rep.Rows, row)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// xdpOverloadSection renders the report's XDP-under-overload part.
func (rep *Report) xdpOverloadSection(b *strings.Builder) {
	x := rep.XDPOverload
	if x == nil {
		return
	}
	b.WriteString("## Renewals through XDP while the slow path is overloaded\n\n")
	if x.Err != "" {
		fmt.Fprintf(b, "Error: %s\n\n", x.Err)
	}
	how := "given"
	if len(x.CeilingSteps) > 0 {
		how = "the most answered within 1% loss, searched in the same daemon with the renewals running"
	}
	fmt.Fprintf(b, "xdhcpd with the XDP fast path (native). %d bound clients renew at %d/s (relayed), which XDP answers; new clients' DORAs, which only the slow path answers, are offered beside them from a relay of their own at shares of the slow path's DORA ceiling with the fast path on (%.0f/s, %s). One daemon for every step; 0%% is the renewals alone. Latency is to the answer's arrival in the generator's kernel, in brackets to when the generator read it.\n\n",
		x.RenewClients, x.RenewRate, x.Ceiling, how)
	b.WriteString("| DORAs offered (share of ceiling) | DORAs answered/s | DORA loss | renewals answered/s | renewal loss | renewal p50 µs | renewal p99 µs |\n|---|---|---|---|---|---|---|\n")
	for _, r := range x.Rows {
		if r.Err != "" {
			fmt.Fprintf(b, "| %d (%.0f%%) | error: %s | | | | | |\n", r.DORAOffered, 100*r.Fraction, r.Err)
			continue
		}
		dora, loss := "none", "–"
		if r.DORAOffered > 0 {
			dora, loss = fmt.Sprintf("%.0f", r.DORA.Rate), fmt.Sprintf("%.1f%%", 100*r.DORA.Loss)
		}
		fmt.Fprintf(b, "| %d (%.0f%%) | %s | %s | %.0f | %.2f%% | %.0f | %s |\n", r.DORAOffered, 100*r.Fraction, dora, loss, r.Renew.Rate, 100*r.Renew.Loss, r.Renew.P50, p99Cell(r.Renew))
	}
	b.WriteString("\n")
}
