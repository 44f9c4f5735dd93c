package bench

import (
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// chartFixture is a small report with every section that has charts.
func chartFixture() *Report {
	step := func(target int, rate, loss, p99 float64) loadgen.Result {
		return loadgen.Result{TargetRate: target, Seconds: 3, Started: int64(3 * target), Rate: rate, Loss: loss, P50: p99 / 2, P99: p99,
			CPUPerMillion: 20, SoftirqPerMillion: 5}
	}
	sc := func(server, sender string, steps ...loadgen.Result) ScenarioResult {
		return ScenarioResult{Server: server, Scenario: "renew", Mode: "relay", Sender: sender, MaxLoss: 0.001, Best: steps[0], Steps: steps}
	}
	perf := func(rate, acks int) PerfResult {
		return PerfResult{Rate: rate, Duration: 30 * time.Second, DO: Exchange{Sent: 30 * rate}, RA: Exchange{Received: 30 * acks}}
	}
	return &Report{
		Date: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), Host: "test",
		Results: []ServerResult{
			{Server: "xdhcpd", Rate: 8000, Steps: []PerfResult{perf(4000, 4000), perf(8000, 7950), perf(16000, 8100)}},
			{Server: "kea", Rate: 4000, Steps: []PerfResult{perf(4000, 3990), perf(8000, 4500)}},
		},
		Scenarios: []ScenarioResult{
			sc("xdhcpd", SenderSockets, step(8000, 8000, 0, 900), step(16000, 15000, 0.06, 30000)),
			sc("kea", SenderSockets, step(8000, 7000, 0.12, 40000)),
			sc("xdhcpd", SenderXDP, step(100000, 100000, 0, 0)),
		},
		Overload: &OverloadReport{Scenario: "renew", Ceiling: 50000, Rows: []OverloadRow{
			{Server: "xdhcpd", Fraction: 0.5, Offered: 25000, Result: step(25000, 25000, 0, 5000)},
			{Server: "xdhcpd", Fraction: 1.2, Offered: 60000, Result: step(60000, 47000, 0.2, 49000)},
			{Server: "xdhcpd-unbounded-queue", Fraction: 1.2, Offered: 60000, Result: step(60000, 40000, 0.3, 270000)},
		}},
		OverloadScattered: &OverloadReport{Scenario: "renew", Ceiling: 30000, Scattered: true, Rows: []OverloadRow{
			{Server: "xdhcpd", Fraction: 1.2, Offered: 36000, Result: step(36000, 36000, 0, 190000)},
		}},
	}
}

// TestChartsAreDrawnAndLinked: Write draws every chart as a PNG of the
// chart's size beside the report, and the report embeds each one.
func TestChartsAreDrawnAndLinked(t *testing.T) {
	dir := t.TempDir()
	rep := chartFixture()
	md, err := rep.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := rep.base()
	want := []string{base + "-dora.png", base + "-renew-relay-sweep.png", base + "-renew-relay-p99.png", base + "-renew-relay-cpu.png",
		base + "-renew-relay-xdp-sweep.png", base + "-renew-relay-xdp-cpu.png", base + "-overload-goodput.png", base + "-overload-p99.png",
		base + "-overload-scattered-goodput.png", base + "-overload-scattered-p99.png"}
	for _, n := range want {
		if !slices.Contains(rep.Charts, n) {
			t.Errorf("chart %s not drawn (drawn: %v)", n, rep.Charts)
		}
	}
	if slices.Contains(rep.Charts, base+"-renew-relay-xdp-p99.png") {
		t.Error("a latency chart for the xdp sender, which does not time answers")
	}
	text, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Charts {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
			t.Errorf("%s is %dx%d", n, b.Dx(), b.Dy())
		}
		if !strings.Contains(string(text), "]("+n+")") {
			t.Errorf("the report does not embed %s", n)
		}
	}
}

// TestRenderChartsNeedsSteps: a scenario without steps to draw is an error
// named after its chart, not an empty picture.
func TestRenderChartsNeedsSteps(t *testing.T) {
	if _, err := sweepPlot("empty", "x", "y", "limit", []series{{name: "a"}}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("err = %v", err)
	}
}

// Tick labels are short: no trailing zeros, k and M for large values.
func TestShortTicks(t *testing.T) {
	var labels []string
	for _, tk := range (shortTicks{}).Ticks(0, 600000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if !slices.Contains(labels, "300k") || !slices.Contains(labels, "0") {
		t.Fatalf("labels %v", labels)
	}
	for _, tk := range (shortTicks{}).Ticks(0, 0.35) {
		if len(tk.Label) > 4 {
			t.Fatalf("label %q between 0 and 0.35", tk.Label)
		}
	}
	for _, tk := range (shortTicks{}).Ticks(0, 2.5e6) {
		if tk.Label != "" && strings.Contains(tk.Label, ".00") {
			t.Fatalf("label %q", tk.Label)
		}
	}
}

// TestOldReportKeepsItsOverloadChartNames: a report from before
// OverloadScattered holds its random-order run in Overload; drawn again
// (xdhcp-bench charts --from), its charts keep the names its markdown
// links.
func TestOldReportKeepsItsOverloadChartNames(t *testing.T) {
	rep := &Report{Overload: &OverloadReport{Scenario: "renew", Ceiling: 30000, Scattered: true, Rows: []OverloadRow{
		{Server: "xdhcpd", Fraction: 1.2, Offered: 36000, Result: loadgen.Result{TargetRate: 36000, Rate: 36000, P99: 190000}},
	}}}
	names, err := RenderCharts(rep, t.TempDir(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"r-overload-goodput.png", "r-overload-p99.png"}; !slices.Equal(names, want) {
		t.Fatalf("charts %v, want %v", names, want)
	}
}
