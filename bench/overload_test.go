package bench

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// TestOverloadSection: goodput is the answered rate over the ceiling; the
// unbounded server is named as such; each row has its population and the
// requests it could not send; the p99 as the generator read it is in
// brackets when the step has it (not in reports from before it).
func TestOverloadSection(t *testing.T) {
	rep := &Report{Overload: &OverloadReport{Scenario: "renew", Ceiling: 10000, Rows: []OverloadRow{
		{Server: Xdhcpd{}.Name(), Fraction: 1.2, Offered: 12000, Result: loadgen.Result{Clients: 12000, Rate: 9700, Loss: 0.19, P50: 900, P99: 8000, ReadP99: 9100}},
		{Server: Xdhcpd{Unbounded: true}.Name(), Fraction: 1.2, Offered: 12000, Result: loadgen.Result{Clients: 12000, Starved: 431, Rate: 8000, Loss: 0.33, P50: 150000, P99: 300000}},
		// The server's side: every ACK on its horizon (no store wait),
		// then a mix.
		{Server: Xdhcpd{}.Name(), Fraction: 0.8, Offered: 8000, Result: loadgen.Result{Clients: 10000, Rate: 8000, P50: 800, P99: 5000},
			Inside: &ServerSide{WaitP99: 5, AckP50: 1, AckP99: 7.5, SentP50: 2, SentP99: 15, CommitP50: 1, CommitP99: 5, LeasesPerTx: 40, OnHorizon: 1}},
		{Server: Xdhcpd{}.Name(), Fraction: 0.5, Offered: 5000, Result: loadgen.Result{Clients: 10000, Rate: 5000, P50: 700, P99: 4000},
			Inside: &ServerSide{WaitP99: 5, AckP50: 1, AckP99: 10, StoreP50: 2, StoreP99: 7.5, CommitP50: 1, CommitP99: 5, LeasesPerTx: 20, OnHorizon: 0.5}},
	}}}
	var b strings.Builder
	rep.overloadSection(&b)
	mustContain(t, "section", b.String(),
		"| xdhcpd | 12000 (120%) | 12000, 0 | 9700 | 97% | 19.0% | 900 | 8000 (9100) |",
		"| xdhcpd-unbounded-queue | 12000 (120%) | 12000, 431 | 8000 | 80% | 33.0% | 150000 | 300000 |",
		"| 5 | 1 / 7.5 | 2 / 15 | 100% on the horizon | 1 / 5, 40 |",
		// A daemon from before the reply histogram: an empty cell.
		"| 5 | 1 / 10 |  | 2 / 7.5; 50% on the horizon | 1 / 5, 20 |")
	if strings.Contains(b.String(), "searched") {
		t.Errorf("a ceiling given is not said to be searched:\n%s", b.String())
	}
	// A searched ceiling shows its steps, those that failed marked: by
	// loss, or by the generator offering less than asked.
	rep.Overload.CeilingSteps = []loadgen.Result{
		{TargetRate: 4000, Loss: 0.031, Answered: 19380, Started: 20000, Seconds: 5},
		{TargetRate: 4000, Answered: 20000, Started: 20000, Seconds: 5},
		{TargetRate: 8000, Loss: 0.0042, Answered: 39832, Started: 40000, Seconds: 5},
		{TargetRate: 16000, Answered: 50000, Started: 50000, Seconds: 5},
	}
	b.Reset()
	rep.overloadSection(&b)
	if want := "(searched, asked and lost: 4000/s 3.1% failed, 4000/s 0.0%, 8000/s 0.4%, 16000/s 0.0% failed;"; !strings.Contains(b.String(), want) {
		t.Errorf("section lacks %q:\n%s", want, b.String())
	}
	rep.Overload.CeilingSteps = nil
	// The renewals' order is said, since it decides what a commit writes.
	if !strings.Contains(b.String(), "in the order they were bound") {
		t.Errorf("section does not say the renewals came in bound order:\n%s", b.String())
	}
	// A full run's two orders: two sections, each with its own charts.
	sc := *rep.Overload
	sc.Scattered = true
	rep.OverloadScattered = &sc
	rep.name = "r"
	rep.Charts = []string{"r-overload-goodput.png", "r-overload-p99.png", "r-overload-scattered-goodput.png", "r-overload-scattered-p99.png"}
	b.Reset()
	rep.overloadSection(&b)
	md := b.String()
	if !strings.Contains(md, "renewed in a random order") || strings.Count(md, "## Overload") != 2 {
		t.Errorf("want a section per order, the second saying the renewals came scattered:\n%s", md)
	}
	for _, c := range rep.Charts {
		if strings.Count(md, "("+c+")") != 1 {
			t.Errorf("chart %s linked %d times, want once:\n%s", c, strings.Count(md, "("+c+")"), md)
		}
	}
}

// TestStepClients: a step's population covers its offered rate for the
// generator's timeout and a quarter more, within the relay pool (130,815
// addresses).
func TestStepClients(t *testing.T) {
	for _, c := range []struct{ rate, want int }{{57600, 72000}, {0, 0}, {1000, 1250}, {200000, relayPoolSize()}} {
		if got := stepClients(c.rate); got != c.want {
			t.Errorf("stepClients(%d) = %d, want %d (timeout %v)", c.rate, got, c.want, loadgen.DefaultTimeout)
		}
	}
}

func TestRelayPoolSize(t *testing.T) {
	if n := relayPoolSize(); n != 130815 {
		t.Fatalf("relay pool %s-%s: %d addresses, want 130815", poolStart, poolEnd, n)
	}
}

// TestConfirmedSearch: with failed steps confirmed, a rate that fails once
// among passes does not end the doubling, one that fails twice does, and
// each retry is logged; without, the one-off failure sets the ceiling.
func TestConfirmedSearch(t *testing.T) {
	ctx := context.Background()
	run := func(confirm bool) (at int, tried []int, log string) {
		var b strings.Builder
		phase := stallingHost(-1, &tried)
		try := func(rate int) (float64, float64) {
			ph, _ := phase(rate)
			return ph.Rate, ph.Loss
		}
		if confirm {
			try = confirmed(ctx, 0.01, &b, try)
		}
		_, _, at = findRate(ctx, 4000, 0.01, 3, try)
		return at, tried, b.String()
	}
	if at, tried, _ := run(false); at != 3500 {
		t.Fatalf("unconfirmed: ceiling %d after %v, want the stall's 3500", at, tried)
	}
	at, tried, log := run(true)
	// 4000 (stall), 4000, 8000, 16000, 32000, 32000 (confirmed), then
	// bisecting: 24000, 28000, 30000.
	if want := []int{4000, 4000, 8000, 16000, 32000, 32000, 24000, 28000, 30000}; at != 30000 || !slices.Equal(tried, want) {
		t.Fatalf("confirmed: ceiling %d after %v, want 30000 after %v", at, tried, want)
	}
	if strings.Count(log, "once more to confirm") != 2 || !strings.Contains(log, "4000/s failed") {
		t.Fatalf("log %q", log)
	}
}

// stallingHost is a phase against a server that answers up to
// stallingCapacity/s, on a host that stalls once, in the first step at
// 4,000/s (half of it lost); at errAt the run fails. calls gets each rate.
func stallingHost(errAt int, calls *[]int) func(rate int) (loadgen.Result, error) {
	stalled := false
	return func(rate int) (loadgen.Result, error) {
		*calls = append(*calls, rate)
		if rate == errAt {
			return loadgen.Result{}, errors.New("server gone")
		}
		ph := loadgen.Result{TargetRate: rate, Seconds: 1, Started: int64(max(rate, 1)), Answered: int64(max(rate, 1))}
		switch {
		case rate == 4000 && !stalled:
			stalled = true
			ph.Answered, ph.Loss = 2000, 0.5
		case rate > stallingCapacity:
			ph.Answered, ph.Loss = stallingCapacity, 1-float64(stallingCapacity)/float64(rate)
		}
		ph.Rate = float64(ph.Answered)
		return ph, nil
	}
}

const stallingCapacity = 30000

// TestSearchConfirms: the rig's search with Confirm keeps every step,
// the confirmation included, and takes the best; a run's error ends the
// search at once, with no confirmation and no step after it, and is the
// result's error, named in the step's log line.
func TestSearchConfirms(t *testing.T) {
	o := ScenarioOptions{Scenario: loadgen.Renew, MaxLoss: 0.01, StartRate: 4000, Confirm: true, settle: time.Nanosecond}
	var calls []int
	var log strings.Builder
	o.Log = &log
	res := (&Rig{}).search(context.Background(), o, ScenarioResult{Scenario: loadgen.Renew}, "xdhcpd", stallingHost(-1, &calls))
	if res.Err != "" || res.Best.Rate != stallingCapacity || len(res.Steps) != 9 || strings.Count(log.String(), "once more") != 2 {
		t.Fatalf("err %q, best %.0f, %d steps (calls %v), log:\n%s", res.Err, res.Best.Rate, len(res.Steps), calls, log.String())
	}
	calls, log = nil, strings.Builder{}
	o.Log = &log
	res = (&Rig{}).search(context.Background(), o, ScenarioResult{Scenario: loadgen.Renew}, "xdhcpd", stallingHost(8000, &calls))
	if !strings.Contains(res.Err, "server gone") || !slices.Equal(calls, []int{4000, 4000, 8000}) ||
		strings.Contains(log.String(), "8000/s failed") || !strings.Contains(log.String(), "rate    8000/s: server gone") {
		t.Fatalf("err %q, calls %v, log:\n%s", res.Err, calls, log.String())
	}
}

// TestXDPOverloadSection: a row per step, the renewals alone without
// DORAs, each with the renewals' loss and latency; an error in its row.
func TestXDPOverloadSection(t *testing.T) {
	rep := &Report{XDPOverload: &XDPOverloadReport{Ceiling: 16000, RenewRate: 10000, RenewClients: 20000, Rows: []XDPOverloadRow{
		{Fraction: 0, Renew: loadgen.Result{Rate: 9999, P50: 95, P99: 559, ReadP99: 610}},
		{Fraction: 1.2, DORAOffered: 19200, DORA: loadgen.Result{Rate: 12572, Loss: 0.345}, Renew: loadgen.Result{Rate: 9990, Loss: 0.001, P50: 111, P99: 4479, ReadP99: 5000}},
		{Fraction: 1.5, DORAOffered: 24000, Err: "relay receive: boom"},
	}}}
	var b strings.Builder
	rep.xdpOverloadSection(&b)
	mustContain(t, "section", b.String(),
		"20000 bound clients renew at 10000/s",
		"(16000/s, given)",
		"| 0 (0%) | none | – | 9999 | 0.00% | 95 | 559 (610) |",
		"| 19200 (120%) | 12572 | 34.5% | 9990 | 0.10% | 111 | 4479 (5000) |",
		"| 24000 (150%) | error: relay receive: boom |")
	b.Reset()
	(&Report{}).xdpOverloadSection(&b)
	if b.Len() != 0 {
		t.Errorf("a report without the section renders %q", b.String())
	}
}
