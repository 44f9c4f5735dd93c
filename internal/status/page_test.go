package status

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fixture is a registry with the daemon's metric names and labels, a fake
// clock, and a page over them.
type fixture struct {
	reg                *prometheus.Registry
	fast, slowReplies  prometheus.Counter
	pool               *prometheus.GaugeVec
	punts, drops, msgs *prometheus.CounterVec
	replies            *prometheus.CounterVec
	attached, state    *prometheus.GaugeVec
	now                time.Time
	recent             *Recent
	page               *Page
	log                *slog.Logger
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{reg: prometheus.NewRegistry(), now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	f.fast = prometheus.NewCounter(prometheus.CounterOpts{Name: "xdhcp_fastpath_replies_total", Help: "h"})
	f.replies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xdhcp_slowpath_replies_total", Help: "h"}, []string{"type"})
	f.msgs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xdhcp_slowpath_messages_total", Help: "h"}, []string{"type"})
	f.pool = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xdhcp_pool_addresses", Help: "h"}, []string{"subnet", "state"})
	f.punts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xdhcp_fastpath_punts_total", Help: "h"}, []string{"reason"})
	f.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xdhcp_slowpath_dropped_total", Help: "h"}, []string{"reason"})
	f.attached = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xdhcp_fastpath_attached", Help: "h"}, []string{"interface", "mode"})
	f.state = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xdhcp_failover_state", Help: "h"}, []string{"side", "state"})
	persistent := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xdhcp_fastpath_pins_persistent", Help: "h"})
	leases := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xdhcp_fastpath_leases", Help: "h"})
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{Name: "xdhcp_fastpath_lease_capacity", Help: "h"})
	f.reg.MustRegister(f.fast, f.replies, f.msgs, f.pool, f.punts, f.drops, f.attached, f.state, persistent, leases, capacity)
	persistent.Set(1)
	leases.Set(120)
	capacity.Set(1000)
	var logs bytes.Buffer
	f.recent = NewRecent(slog.NewTextHandler(&logs, nil), 3)
	f.log = slog.New(f.recent)
	f.page = New(f.reg, f.recent, Options{Interval: time.Hour, Now: func() time.Time { return f.now }})
	return f
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	f.page.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.String()
}

func TestPageShowsWhatTheMetricsSay(t *testing.T) {
	f := newFixture(t)
	for st, n := range map[string]float64{"free": 60, "offered": 5, "active": 30, "expired": 5, "total": 100} {
		f.pool.WithLabelValues("10.77.0.0/24", st).Set(n)
	}
	f.pool.WithLabelValues("10.78.0.0/16", "free").Set(65000)
	f.punts.WithLabelValues("no_lease").Add(7)
	f.punts.WithLabelValues("not_renewal").Add(0)
	f.drops.WithLabelValues("stale").Add(3)
	f.msgs.WithLabelValues("leasequery").Add(4)
	f.replies.WithLabelValues("leaseactive").Add(3)
	f.attached.WithLabelValues("vs0", "native").Set(1)
	f.state.WithLabelValues("local", "normal").Set(1)
	f.state.WithLabelValues("local", "startup").Set(0)

	// Two samples 10 s apart: 500 XDP answers and 100 slow-path ones.
	f.page.Sample()
	f.fast.Add(500)
	f.replies.WithLabelValues("ack").Add(100)
	f.now = f.now.Add(10 * time.Second)
	f.page.Sample()
	f.log.Warn("address declined, quarantined", "ip", "10.77.0.101", "client", "<script>")
	f.log.Info("not kept")

	code, body := f.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<b>10.77.0.0/24</b> (100 pool addresses)`,
		`<td>active</td><td class="num">30</td><td><span class="track"><span class="fill active" style="width:30.0%">`,
		`<td>free</td><td class="num">60</td>`,
		`<b>10.78.0.0/16</b> (65000 pool addresses)`, // no total: the sum of the states
		`XDP (fast path) 50/s`, `slow path 10/s`,     // 100 acks over 10 s
		`<polyline`,
		`<td>vs0</td><td>XDP native</td>`, `yes: renewals are answered while the daemon is down`, `120 of 1000`,
		`<td>no_lease</td><td class="num">7</td>`,
		`<td>stale</td><td class="num">3</td>`,
		`<td>leasequery received</td><td class="num">4</td>`, `<td>leaseactive sent</td><td class="num">3</td>`,
		`<td>local: normal</td>`,
		`address declined, quarantined`, `client=&lt;script&gt;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, unwanted := range []string{"not_renewal", "local: startup", "not kept", "<script>", "<td>total</td>"} {
		if strings.Contains(body, unwanted) {
			t.Errorf("page has %q", unwanted)
		}
	}
	if code, _ := f.get(t, "/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d, want 404", code)
	}
}

// Before two samples there is no rate to draw, and a counter that went
// back (the daemon's counters never do, but a registry may be rebuilt)
// gives no negative rate.
func TestRatesNeedTwoSamplesAndSkipResets(t *testing.T) {
	f := newFixture(t)
	f.fast.Add(10)
	f.page.Sample()
	if _, body := f.get(t, "/"); !strings.Contains(body, "Rates appear after two samples.") {
		t.Error("a chart from one sample")
	}
	f.now = f.now.Add(5 * time.Second)
	f.page.samples = append(f.page.samples, sample{at: f.now, fast: 0})
	if rs := f.page.rates(); len(rs) != 0 {
		t.Fatalf("rates across a reset: %+v", rs)
	}
}

// Run samples until its context ends, and keeps only Window of samples.
func TestRunStopsAndKeepsTheWindow(t *testing.T) {
	f := newFixture(t)
	f.page.o.Window = 30 * time.Second
	for range 10 {
		f.page.Sample()
		f.now = f.now.Add(10 * time.Second)
	}
	if n := len(f.page.samples); n != 4 {
		t.Fatalf("%d samples kept, want 4 (30 s of 10 s samples)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.page.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// Recent keeps the last n warnings and errors, newest first, with the
// attributes of derived loggers.
func TestRecentKeepsTheLastWarnings(t *testing.T) {
	var out bytes.Buffer
	r := NewRecent(slog.NewTextHandler(&out, nil), 2)
	log := slog.New(r).With("failover", "pair")
	log.Warn("one")
	log.Error("two")
	log.Warn("three", "n", 3)
	log.Info("four")
	got := r.Last()
	if len(got) != 2 || got[0].Msg != "three" || got[1].Msg != "two" || got[0].Attrs != "failover=pair n=3" || got[1].Level != slog.LevelError {
		t.Fatalf("kept %+v", got)
	}
	if !strings.Contains(out.String(), "msg=four") {
		t.Fatal("a record was not passed on")
	}
}

// Empty states other than free, offered, active and expired are left out.
func TestEmptyRareStatesAreLeftOut(t *testing.T) {
	f := newFixture(t)
	for st, n := range map[string]float64{"free": 10, "active": 0, "reset": 0, "abandoned": 2, "total": 12} {
		f.pool.WithLabelValues("10.77.0.0/24", st).Set(n)
	}
	_, body := f.get(t, "/")
	for _, want := range []string{"<td>active</td>", "<td>abandoned</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<td>reset</td>") {
		t.Error("an empty reset state is shown")
	}
}

// A registry that fails to gather is said once a minute, not at every
// sample: the warning would fill the list the page shows.
func TestGatherErrorsAreSaidOnceAMinute(t *testing.T) {
	f := newFixture(t)
	f.page.g = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("counters unreadable") })
	f.page.o.Logger = f.log
	for range 12 { // a minute of 5 s samples
		f.page.Sample()
		f.now = f.now.Add(5 * time.Second)
	}
	if n := len(f.recent.Last()); n != 1 {
		t.Fatalf("%d warnings in a minute, want 1", n)
	}
	f.page.Sample()
	if n := len(f.recent.Last()); n != 2 {
		t.Fatalf("%d warnings after a minute, want 2", n)
	}
}
