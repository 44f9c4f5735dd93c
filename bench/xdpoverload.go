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
// at a share of its ceiling while bound clients renew through XDP.
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
			rep.Err = fmt.Sprintf("finding the DORA ceiling: %s", ceil.Err)
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
	dir, err := os.MkdirTemp("", "xdhcp-bench-xdp-overload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := srv.Start(ctx, r.Srv, dir)
	if err != nil {
		return err
	}
	defer stopServer(srv, p, r.Srv, dir)

	tr, err := r.transport("relay")
	if err != nil {
		return err
	}
	defer tr.Close()
	renew, err := loadgen.New(genConfig(ScenarioOptions{Mode: "relay", Clients: o.RenewClients, Pop: DefaultPopulation(false, true, 0)}, p.Pid()), tr)
	if err != nil {
		return err
	}
	defer renew.Close()
	if _, err := renew.Acquire(ctx, o.RenewClients); err != nil {
		return fmt.Errorf("taking leases: %w", err)
	}

	if _, err := r.Cli.Exec(ctx, "ip", "addr", "replace", xdpOverloadGiaddr+"/32", "dev", ClientIf); err != nil {
		return err
	}
	var dtr loadgen.Transport
	if err := r.Cli.Do(func() (err error) {
		dtr, err = loadgen.NewRelay(netip.MustParseAddr(xdpOverloadGiaddr), netip.MustParseAddr(ServerAddr))
		return err
	}); err != nil {
		return err
	}
	defer dtr.Close()
	most := 0
	for _, f := range o.Fractions {
		most = max(most, int(f*rep.Ceiling))
	}
	// Clients of their own (another salt: other MACs), enough that the
	// DORAs the server drops do not leave the generator without idle
	// ones (stepClients), within what the pool has beside the renewing
	// ones.
	dcfg := genConfig(ScenarioOptions{Mode: "relay", Clients: min(stepClients(most), relayPoolSize()-o.RenewClients), Pop: loadgen.Population{ClientIDs: true, Salt: 2}}, p.Pid())
	dcfg.GIAddr = netip.MustParseAddr(xdpOverloadGiaddr)
	dora, err := loadgen.New(dcfg, dtr)
	if err != nil {
		return err
	}
	defer dora.Close()
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
		how = "within 1% loss, searched without the renewals, which take CPU from the two the server shares with the generator, so the DORAs' shares read low"
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
