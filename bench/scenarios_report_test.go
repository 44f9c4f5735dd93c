package bench

import (
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// TestScenarioVsFasterKea: a scenario table's "vs kea" column is against
// the faster of the Kea rows measured in it (kea or kea-mt), a Kea row has
// none, and the kea-mt note appears only where kea-mt ran.
func TestScenarioVsFasterKea(t *testing.T) {
	row := func(server string, rate float64) ScenarioResult {
		return ScenarioResult{Server: server, Scenario: loadgen.DORA, Mode: "relay", MaxLoss: 0.025, Best: loadgen.Result{Rate: rate}}
	}
	for _, c := range []struct {
		name   string
		rows   []ScenarioResult
		want   []string // cells "| server | rate ... | vs kea | vs xdhcpd |"
		noteMT bool
	}{
		{
			name: "kea only",
			rows: []ScenarioResult{row("xdhcpd-xdp-native", 30000), row("xdhcpd", 20000), row("kea", 10000)},
			want: []string{"| 3.0× | 1.5× |", "| 2.0× | - |", "| - | 0.5× |"},
		},
		{
			name:   "kea-mt faster",
			rows:   []ScenarioResult{row("xdhcpd-xdp-native", 30000), row("xdhcpd", 20000), row("kea", 10000), row("kea-mt", 12000)},
			want:   []string{"| 2.5× | 1.5× |", "| 1.7× | - |", "| - | 0.5× |", "| - | 0.6× |"},
			noteMT: true,
		},
		{
			name:   "kea faster",
			rows:   []ScenarioResult{row("xdhcpd", 24000), row("kea-mt", 6000), row("kea", 8000)},
			want:   []string{"| 3.0× | - |", "| - | 0.2× |", "| - | 0.3× |"},
			noteMT: true,
		},
		{
			name:   "kea-mt alone",
			rows:   []ScenarioResult{row("xdhcpd", 24000), row("kea-mt", 12000)},
			want:   []string{"| 2.0× | - |", "| - | 0.5× |"},
			noteMT: true,
		},
		{
			name: "no kea",
			rows: []ScenarioResult{row("xdhcpd-xdp-native", 30000), row("xdhcpd", 20000)},
			want: []string{"| - | 1.5× |", "| - | - |"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			md := (&Report{Scenarios: c.rows}).Markdown()
			var got []string
			for _, l := range strings.Split(md, "\n") {
				for _, r := range c.rows {
					if strings.HasPrefix(l, "| "+r.Server+" | ") {
						cells := strings.Split(strings.TrimSuffix(l, "|"), " | ")
						got = append(got, "| "+strings.Join(cells[len(cells)-2:], " | ")+"|")
						break
					}
				}
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("vs kea / vs xdhcpd cells:\n%s\nwant\n%s\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"), md)
			}
			if has := strings.Contains(md, keaMTNote); has != c.noteMT {
				t.Errorf("kea-mt note present %v, want %v:\n%s", has, c.noteMT, md)
			}
		})
	}
}

// TestFasterKea: the base of "vs kea" in both DORA tables.
func TestFasterKea(t *testing.T) {
	for _, c := range []struct {
		rates map[string]float64
		want  float64
	}{
		{map[string]float64{"xdhcpd": 9}, 0},
		{map[string]float64{"kea": 3}, 3},
		{map[string]float64{"kea-mt": 4}, 4},
		{map[string]float64{"kea": 3, "kea-mt": 4, "xdhcpd": 9}, 4},
		{map[string]float64{"kea": 5, "kea-mt": 4}, 5},
	} {
		if got := fasterKea(c.rates); got != c.want {
			t.Errorf("fasterKea(%v) = %v, want %v", c.rates, got, c.want)
		}
	}
}

// TestRenewOrderNote: a renewal table says in which order the clients
// renewed (it decides what xdhcpd's slow path writes); a DORA table does
// not.
func TestRenewOrderNote(t *testing.T) {
	for _, c := range []struct {
		scenario  string
		scattered bool
		want      string
	}{
		{loadgen.Renew, false, "`--order bound`"},
		{loadgen.Renew, true, "`--order scattered`):"},
		{loadgen.DORA, false, ""},
	} {
		// The first row errored (no best phase): the note reads the others.
		md := (&Report{Scenarios: []ScenarioResult{{Server: "kea", Scenario: c.scenario, Mode: "relay", MaxLoss: 0.001, Err: "failed"},
			{Server: "xdhcpd", Scenario: c.scenario, Mode: "relay", MaxLoss: 0.001, Best: loadgen.Result{Rate: 1000, Scattered: c.scattered}}}}).Markdown()
		has := strings.Contains(md, "renewed in")
		if c.want == "" && has || c.want != "" && !strings.Contains(md, c.want) {
			t.Errorf("%s scattered=%v: the order note, want %q:\n%s", c.scenario, c.scattered, c.want, md)
		}
	}
}
