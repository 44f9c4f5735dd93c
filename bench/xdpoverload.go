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
	// Ceiling is the slow path's DORA ceiling with the fast path on (the
	// highest rate answered within 1% loss), searched or given.
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
	Log     func(format string, args ...any)
}

// xdpOverloadGiaddr relays the new clients' DORAs: a relay of their own,
// so their answers do not meet the renewals'.
const xdpOverloadGiaddr = "10.80.0.4"

// XDPOverload measures renewals answered by XDP while the slow path is
// offered more DORAs than it answers.
func (r *Rig) XDPOverload(ctx context.Context, o XDPOverloadOptions) XDPOverloadReport {
	o.RenewClients, o.RenewRate = cmp.Or(o.RenewClients, 20000), cmp.Or(o.RenewRate, 10000)
	rep := XDPOverloadReport{RenewRate: o.RenewRate, RenewClients: o.RenewClients, Ceiling: o.Ceiling}
	srv := Xdhcpd{Bin: o.Bin, Fast: "native"}
	if rep.Ceiling <= 0 {
		search := ScenarioOptions{Scenario: loadgen.DORA, Mode: "relay", Clients: o.RenewClients, Pop: DefaultPopulation(false, true, 0), Step: o.Step,
			MaxLoss: overloadMaxLoss, StartRate: 4000, Bisect: 3, Confirm: true}
		if o.Log != nil {
			search.Log = logfWriter(o.Log)
		}
		ceil := r.Scenario(ctx, srv, search)
		rep.CeilingSteps = ceil.Steps
		if ceil.Err != "" || ceil.Best.Rate == 0 {
			rep.Err = "finding the DORA ceiling: " + cmp.Or(ceil.Err, "no rate was answered within 1% loss")
			return rep
		}
		rep.Ceiling = ceil.Best.Rate
	}
	o.logf("  DORA ceiling %.0f/s with the fast path on; %d clients renewing at %d/s through XDP\n", rep.Ceiling, o.RenewClients, o.RenewRate)
	if err := r.xdpOverloadSteps(ctx, srv, o, &rep); err != nil {
		rep.Err = err.Error()
	}
	return rep
}

// xdpOverloadSteps starts srv once, binds the renewing clients, and runs
// each step: the renewals and the DORAs side by side.
func (r *Rig) xdpOverloadSteps(ctx context.Context, srv Xdhcpd, o XDPOverloadOptions, rep *XDPOverloadReport) error {
	most := 0
	for _, f := range o.Fractions {
		most = max(most, int(f*rep.Ceiling))
	}
	// The DORAs' clients: enough that those the server drops do not
	// leave the generator without idle ones (stepClients), within what
	// the pool has beside the renewing ones.
	doraClients := min(stepClients(most), relayPoolSize()-o.RenewClients)
	if most > 0 && doraClients <= 0 {
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
	var dora *loadgen.Gen
	if most > 0 {
		dtr, err := r.relayAt(ctx, xdpOverloadGiaddr)
		if err != nil {
			return fmt.Errorf("new clients: %w", err)
		}
		defer dtr.Close()
		// Another salt: other MACs than the renewing clients'.
		dcfg := genConfig(ScenarioOptions{Mode: "relay", Clients: doraClients, Pop: loadgen.Population{ClientIDs: true, Salt: 2}}, p.Pid())
		dcfg.GIAddr = netip.MustParseAddr(xdpOverloadGiaddr)
		if dora, err = loadgen.New(dcfg, dtr); err != nil {
			return fmt.Errorf("new clients: %w", err)
		}
		defer dora.Close()
	}
	time.Sleep(time.Second) // the leases' commits and the fast path's map settle

	for _, f := range o.Fractions {
		row := XDPOverloadRow{Fraction: f, DORAOffered: int(f * rep.Ceiling)}
		var wg sync.WaitGroup
		var renewErr, doraErr error
		wg.Go(func() {
			row.Renew, renewErr = renew.Run(ctx, loadgen.Phase{Scenario: loadgen.Renew, Rate: o.RenewRate, Duration: o.Step})
		})
		if row.DORAOffered > 0 {
			wg.Go(func() {
				row.DORA, doraErr = dora.Run(ctx, loadgen.Phase{Scenario: loadgen.DORA, Rate: row.DORAOffered, Duration: o.Step})
			})
		}
		wg.Wait()
		if err := errors.Join(renewErr, doraErr); err != nil {
			row.Err = err.Error()
		}
		o.logf("  DORA %3.0f%% (%6d/s offered): %6.0f answered/s, loss %5.1f%%; renewals %6.0f answered/s, loss %.2f%%, p50 %.0f µs, p99 %.0f µs %s\n",
			100*f, row.DORAOffered, row.DORA.Rate, 100*row.DORA.Loss, row.Renew.Rate, 100*row.Renew.Loss, row.Renew.P50, row.Renew.P99, row.Err)
		rep.Rows = append(rep.Rows, row)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (o XDPOverloadOptions) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
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
		how = "the most answered within 1% loss, searched without the renewals; more is answered with more loss"
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
