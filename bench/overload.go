package bench

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// OverloadRow is one server at one offered rate: what it answered, how
// fast, and at what latency.
type OverloadRow struct {
	Server   string         `json:"server"`
	Fraction float64        `json:"fraction-of-ceiling"`
	Offered  int            `json:"offered-per-second"`
	Result   loadgen.Result `json:"result"`
	// Inside is where the time went inside xdhcpd (nil for others).
	Inside *ServerSide `json:"server-side,omitempty"`
	Err    string      `json:"error,omitempty"`
}

// OverloadReport is xdhcp-bench overload: the slow path's ceiling (the
// highest rate answered within 1% loss, bounded queue), then each server
// offered fractions of it, side by side in one run.
type OverloadReport struct {
	Scenario string  `json:"scenario"`
	Ceiling  float64 `json:"ceiling-per-second"`
	// Scattered: the renewals came in a random order, not the order the
	// clients were bound in (OverloadOptions.Scattered).
	Scattered bool `json:"scattered,omitempty"`
	// QueueTarget is the bounded server's server.queue-target.
	QueueTarget string `json:"queue-target,omitempty"`
	// CeilingSteps are the search's steps (none when the ceiling was
	// given), a failed one's confirmation included.
	CeilingSteps []loadgen.Result `json:"ceiling-steps,omitempty"`
	Rows         []OverloadRow    `json:"rows"`
	Err          string           `json:"error,omitempty"`
}

// overloadMaxLoss is the loss within which a rate counts for the ceiling.
const overloadMaxLoss = 0.01

// OverloadOptions shape one overload comparison.
type OverloadOptions struct {
	Bin       string
	Scenario  string // loadgen.Renew or loadgen.DORA
	Clients   int
	Step      time.Duration
	Fractions []float64
	// Ceiling, when above 0, is taken as the ceiling instead of searching
	// for it (to repeat a measurement at known rates).
	Ceiling float64
	// QueueTarget, when set, is the bounded server's server.queue-target
	// (default: the daemon's, config.DefaultQueueTarget).
	QueueTarget string
	// Servers limits the rows to these of "xdhcpd" and
	// "xdhcpd-unbounded-queue"; empty: both.
	Servers []string
	// Scattered renews the clients in a random order rather than in the
	// order they were bound, which is the addresses' (loadgen.Config.
	// Scattered): the store then writes a page per renewal.
	Scattered bool
	Log       progressLog
}

// Overload measures the slow path (fast path off, so renewals reach it)
// with and without its bounds on a request's wait, at fractions of its
// ceiling: goodput and latency when offered more than it can answer.
func (r *Rig) Overload(ctx context.Context, o OverloadOptions) OverloadReport {
	rep := OverloadReport{Scenario: o.Scenario, QueueTarget: cmp.Or(o.QueueTarget, config.DefaultQueueTarget.String()), Scattered: o.Scattered}
	base := ScenarioOptions{Scenario: o.Scenario, Mode: "relay", Clients: o.Clients, Pop: DefaultPopulation(false, true, 0), Step: o.Step, Scattered: o.Scattered}
	if rep.Ceiling = o.Ceiling; rep.Ceiling <= 0 {
		search := base
		search.MaxLoss, search.StartRate, search.Bisect = overloadMaxLoss, 4000, 3
		// Every step below is a fraction of the ceiling: one step lost to
		// a stall of the host must not set it. In one make bench the
		// first step, at 4,000/s, failed once; the search settled on
		// 3,500/s, and the "150%" step was a fifth of what the server
		// answers.
		search.Confirm, search.Log = true, o.Log
		ceil := r.Scenario(ctx, Xdhcpd{Bin: o.Bin, QueueTarget: o.QueueTarget}, search)
		rep.CeilingSteps = ceil.Steps
		if ceil.Err != "" || ceil.Best.Rate == 0 {
			rep.Err = fmt.Sprintf("finding the ceiling: %s", ceil.Err)
			return rep
		}
		rep.Ceiling = ceil.Best.Rate
		o.Log.printf("  ceiling %.0f %s/s within 1%% loss\n", rep.Ceiling, o.Scenario)
	} else {
		o.Log.printf("  ceiling %.0f %s/s as given\n", rep.Ceiling, o.Scenario)
	}
	for _, s := range []Server{Xdhcpd{Bin: o.Bin, QueueTarget: o.QueueTarget}, Xdhcpd{Bin: o.Bin, Unbounded: true}} {
		if len(o.Servers) > 0 && !slices.Contains(o.Servers, s.Name()) {
			continue
		}
		for _, f := range o.Fractions {
			so := base
			so.Rate = int(f * rep.Ceiling)
			// Each client has one exchange open at a time, and one the
			// server dropped keeps it for the generator's timeout. A
			// population below the offered rate times that timeout
			// runs out as soon as the server drops, and then the
			// generator, not the server, sets the goodput: with 10,000
			// clients at 150% of a 48,000/s ceiling, a seventh of the
			// step's requests were never sent. (The ceiling is searched
			// with o.Clients: within 1% loss, hardly any are dropped.)
			so.Clients = max(o.Clients, stepClients(so.Rate))
			so.ServerSide = true
			res := r.Scenario(ctx, s, so)
			row := OverloadRow{Server: s.Name(), Fraction: f, Offered: so.Rate, Result: res.Best, Inside: res.ServerSide, Err: res.Err}
			o.Log.printf("  %-28s %3.0f%% (%6d/s offered, %d clients): %8.0f answered/s, loss %5.1f%%, p50 %s µs, p99 %s µs (as read %s µs), %d not sent %s\n", s.Name(), 100*f, so.Rate, so.Clients,
				res.Best.Rate, 100*res.Best.Loss, latency(res, res.Best.P50), latency(res, res.Best.P99), latency(res, res.Best.ReadP99), res.Best.Starved, res.Err)
			if ss := res.ServerSide; ss != nil {
				store := ""
				if ss.StoreP50 > 0 || ss.StoreP99 > 0 {
					store = fmt.Sprintf(", of which in the store p50 %.1f, p99 %.1f ms", ss.StoreP50, ss.StoreP99)
				}
				if ss.OnHorizon > 0 {
					store += fmt.Sprintf(", %.0f%% on the horizon", 100*ss.OnHorizon)
				}
				o.Log.printf("    in the server: socket wait p50 %.1f, p99 %.1f ms; arrival to ACK p50 %.1f, p99 %.1f ms%s; to the reply sent p50 %.1f, p99 %.1f ms; commit p50 %.1f, p99 %.1f, mean %.2f ms, %.0f leases each\n",
					ss.WaitP50, ss.WaitP99, ss.AckP50, ss.AckP99, store, ss.SentP50, ss.SentP99, ss.CommitP50, ss.CommitP99, ss.CommitMean, ss.LeasesPerTx)
			}
			rep.Rows = append(rep.Rows, row)
			if ctx.Err() != nil {
				return rep
			}
		}
	}
	return rep
}

// stepClients is the population that an offered rate cannot run out of
// while the server drops: the rate times the generator's timeout, and a
// quarter more for the answers in flight; at most the relay pool's size.
func stepClients(rate int) int {
	return min(int(1.25*float64(rate)*loadgen.DefaultTimeout.Seconds()), relayPoolSize())
}

// relayPoolSize is how many addresses the relayed clients' pool holds.
func relayPoolSize() int {
	return int(lease.AddrUint32(netip.MustParseAddr(poolEnd))-lease.AddrUint32(netip.MustParseAddr(poolStart))) + 1
}

// overloadSection renders the comparisons: in bound order, then in a
// random order.
func (rep *Report) overloadSection(b *strings.Builder) {
	for _, o := range rep.overloads() {
		rep.overloadOne(b, o.report, o.stem)
	}
}

// overloadRun is one of a report's overload comparisons and what its
// chart names add to the report's.
type overloadRun struct {
	report *OverloadReport
	stem   string
}

// overloads are the report's comparisons, each with its chart stem. The
// stem goes with the field, not with the order: a report from before
// OverloadScattered holds a random-order run in Overload, and its charts
// keep the names its markdown links.
func (rep *Report) overloads() []overloadRun {
	var out []overloadRun
	if rep.Overload != nil {
		out = append(out, overloadRun{rep.Overload, "-overload"})
	}
	if rep.OverloadScattered != nil {
		out = append(out, overloadRun{rep.OverloadScattered, "-overload-scattered"})
	}
	return out
}

// overloadOne renders one comparison; stem is its charts' (overloads).
func (rep *Report) overloadOne(b *strings.Builder, ov *OverloadReport, stem string) {
	order := ""
	if ov.Scattered {
		order = ", renewals in a random order"
	}
	fmt.Fprintf(b, "\n## Overload: the slow path offered more than it answers (%s, relay, fast path off%s)\n\n", ov.Scenario, order)
	if ov.Err != "" {
		fmt.Fprintf(b, "Not measured: %s\n", ov.Err)
		return
	}
	searched := ""
	if len(ov.CeilingSteps) > 0 {
		var steps []string
		for _, st := range ov.CeilingSteps {
			step := fmt.Sprintf("%d/s %.1f%%", st.TargetRate, 100*st.Loss)
			// As the search judged it (Rig.search): loss, wrong answers,
			// and the generator offering the rate.
			if !within(st, overloadMaxLoss) || offered(ov.Scenario, st) < 0.95*float64(st.TargetRate) {
				step += " failed"
			}
			steps = append(steps, step)
		}
		searched = fmt.Sprintf(" (searched, asked and lost: %s; a step that failed ran once more, and failed only if it failed again; an open-loop phase follows the search and may set the ceiling)", strings.Join(steps, ", "))
	}
	fmt.Fprintf(b, "Ceiling: %.0f/s answered within 1%% loss%s. `xdhcpd` bounds a request's wait (server.max-wait 1s, queue-target %s over queue-interval 100ms); `xdhcpd-unbounded-queue` answers in arrival order whatever the wait, as before issue 19. Goodput is the answered rate as a share of the ceiling.\n\n", ov.Ceiling, searched, cmp.Or(ov.QueueTarget, "10ms")) // reports before the field: 10ms was the default
	if ov.Scattered {
		b.WriteString("The clients renewed in a random order: each renewal dirties a page of the lease tree of its own, as an ISP's renewals do once their timing has spread (`--order scattered`).\n\n")
	} else if ov.Scenario == loadgen.Renew {
		b.WriteString("The clients renewed in the order they were bound, which is the addresses' order: a commit of many renewals writes few pages of the lease tree (`--order bound`; `--order scattered` offers them in a random order).\n\n")
	}
	b.WriteString("Inside xdhcpd (its histograms, read before and after each step; upper bucket bounds): how long the requests it handled waited in the priority socket, how long from their arrival to the ACK queued to leave and to every reply handed to the kernel (the send returned: the wait for the sender, and the send, which through the rig's veth delivers the reply to the generator's socket; empty for a daemon from before f7b1a98), how much of the first from the lease's hand-over to the store until it was on disk and its ACK's callback ran (the commit in flight, its own, the callbacks before it; empty for a daemon without that histogram, before d816b1e, and for ACKs that did not wait for their record), with the share of the ACKs that left on the lease's promise horizon before their record was written (`server.renewal-ack: horizon`, the default from 2026-12-07), how long each lease store transaction took, the requests it dropped per second for their wait in a socket (reasons `stale` and `overload`), and the share of the step it stopped reading because the lease store was behind (0 for a daemon from before that bound).\n\n")
	b.WriteString("Latency is from a request's send to its answer's arrival in the generator's kernel (the socket's SO_TIMESTAMPNS), so the generator's wait to read it is not counted as the server's; in brackets, to when the generator read it, which adds its waits for the CPUs it shares with the server (reports before 2026-12-07 give only that). Whether an answer came in time is still judged when it is read.\n\n")
	b.WriteString("*Clients* is the step's population (at least 1.25 times the offered rate times the generator's 1 s timeout, at most the relay pool, so that requests the server drops do not leave it without idle clients); *not sent* the requests it had no idle client for.\n\n")
	b.WriteString("| server | offered (share of ceiling) | clients, not sent | answered/s | goodput | loss | p50 µs | p99 µs | socket wait p99 ms | arrival to ACK p50 / p99 ms | to reply sent p50 / p99 ms | in the store p50 / p99 ms | commit p50 / p99 ms, leases each | dropped/s stale, overload; reading paused |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range ov.Rows {
		if r.Err != "" {
			fmt.Fprintf(b, "| %s | %d (%.0f%%) | | error: %s | | | | | | | | | | |\n", r.Server, r.Offered, 100*r.Fraction, r.Err)
			continue
		}
		inside := "| | | | | |"
		if ss := r.Inside; ss != nil {
			var store []string
			if ss.StoreP50 > 0 || ss.StoreP99 > 0 {
				store = append(store, fmt.Sprintf("%g / %g", ss.StoreP50, ss.StoreP99))
			}
			if ss.OnHorizon > 0 {
				store = append(store, fmt.Sprintf("%.0f%% on the horizon", 100*ss.OnHorizon))
			}
			sent := ""
			if ss.SentP50 > 0 || ss.SentP99 > 0 {
				sent = fmt.Sprintf("%g / %g", ss.SentP50, ss.SentP99)
			}
			inside = fmt.Sprintf("%g | %g / %g | %s | %s | %g / %g, %.0f | %.0f, %.0f; %.0f%% |", ss.WaitP99, ss.AckP50, ss.AckP99, sent, strings.Join(store, "; "), ss.CommitP50, ss.CommitP99, ss.LeasesPerTx, ss.Stale, ss.Overload, 100*ss.Behind)
		}
		fmt.Fprintf(b, "| %s | %d (%.0f%%) | %d, %d | %.0f | %.0f%% | %.1f%% | %.0f | %s | %s\n", r.Server, r.Offered, 100*r.Fraction, r.Result.Clients, r.Result.Starved, r.Result.Rate,
			100*r.Result.Rate/ov.Ceiling, 100*r.Result.Loss, r.Result.P50, p99Cell(r.Result), inside)
	}
	rep.chartLinks(b, "overload "+ov.Scenario, rep.base()+stem, "-goodput.png", "-p99.png")
}

// p99Cell is a step's p99 latency to the answers' arrival and, in
// brackets, to when the generator read them (when it reported both).
func p99Cell(r loadgen.Result) string {
	if r.ReadP99 == 0 {
		return fmt.Sprintf("%.0f", r.P99)
	}
	return fmt.Sprintf("%.0f (%.0f)", r.P99, r.ReadP99)
}

// progressLog is a section's progress log, a function like fmt.Printf;
// a nil one logs nothing. As an io.Writer it is the scenario search's
// Log (ScenarioOptions.Log).
type progressLog func(format string, args ...any)

func (l progressLog) printf(format string, args ...any) {
	if l != nil {
		l(format, args...)
	}
}

func (l progressLog) Write(p []byte) (int, error) {
	l.printf("%s", p)
	return len(p), nil
}
