package status

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`xdhcp_[a-z0-9_]+`)

// TestGrafanaDashboardUsesExportedMetrics: examples/grafana-dashboard.json
// parses, and every metric its queries use is a name the daemon's packages
// register (a string literal in their sources), so a renamed metric
// cannot leave a panel silently empty.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	for _, dir := range []string{"cmd/xdhcpd", "fastpath", "slowpath", "failover", "loader"} {
		files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range regexp.MustCompile(`"(xdhcp_[a-z0-9_]+)"`).FindAllSubmatch(b, -1) {
				exported[string(m[1])] = true
			}
		}
	}
	raw, err := os.ReadFile("../../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if len(d.Panels) < 10 {
		t.Fatalf("%d panels", len(d.Panels))
	}
	used := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := metricName.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q uses no xdhcp metric", p.Title, q.Expr)
			}
			for _, n := range names {
				used++
				if !exported[n] {
					t.Errorf("panel %q uses %s, which the daemon does not export", p.Title, n)
				}
			}
		}
	}
	if !exported["xdhcp_fastpath_replies_total"] || used == 0 {
		t.Fatal("the scan of the sources found nothing")
	}
}
