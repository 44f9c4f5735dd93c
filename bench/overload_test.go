package bench

import (
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// TestOverloadSection: goodput is the answered rate over the ceiling; the
// unbounded server is named as such; each row has its population and the
// requests it could not send.
func TestOverloadSection(t *testing.T) {
	rep := &Report{Overload: &OverloadReport{Scenario: "renew", Ceiling: 10000, Rows: []OverloadRow{
		{Server: Xdhcpd{}.Name(), Fraction: 1.2, Offered: 12000, Result: loadgen.Result{Clients: 12000, Rate: 9700, Loss: 0.19, P50: 900, P99: 8000}},
		{Server: Xdhcpd{Unbounded: true}.Name(), Fraction: 1.2, Offered: 12000, Result: loadgen.Result{Clients: 12000, Starved: 431, Rate: 8000, Loss: 0.33, P50: 150000, P99: 300000}},
	}}}
	var b strings.Builder
	rep.overloadSection(&b)
	for _, want := range []string{"| xdhcpd | 12000 (120%) | 12000, 0 | 9700 | 97% | 19.0% | 900 | 8000 |",
		"| xdhcpd-unbounded-queue | 12000 (120%) | 12000, 431 | 8000 | 80% | 33.0% | 150000 | 300000 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, b.String())
		}
	}
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
