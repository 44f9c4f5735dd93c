package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOnlyAFullRunIsLatest: one command's report is written beside the
// others but leaves latest.md (the README's link) to the last full run.
func TestOnlyAFullRunIsLatest(t *testing.T) {
	dir := t.TempDir()
	latest := filepath.Join(dir, "latest.md")
	one := &Report{Date: time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC), Catchup: []CatchupRow{{Allocation: "independent", Leases: 1}}}
	md, err := one.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(md); err != nil {
		t.Fatalf("the report itself: %v", err)
	}
	if _, err := os.Stat(latest); !os.IsNotExist(err) {
		t.Fatalf("one command's report became latest.md (%v)", err)
	}
	full := &Report{Date: time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC), Full: true}
	md, err = full.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(md)
	b, err := os.ReadFile(latest)
	if err != nil || string(a) != string(b) {
		t.Fatalf("latest.md is not the full run's report (%v)", err)
	}
}

// TestReportsOfOneMinuteKeepTheirOwnFiles: a second command started in
// the same minute writes beside the first's report, not over it, and
// each report embeds its own chart.
func TestReportsOfOneMinuteKeepTheirOwnFiles(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 6, 10, 54, 0, 0, time.UTC)
	first := &Report{Date: at, Host: "vm", Scale: scaleFixture()}
	second := &Report{Date: at, Host: "vm", Scale: scaleFixture()[:1]}
	a, err := first.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := second.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(a) != "2026-12-06T1054-vm.md" || filepath.Base(b) != "2026-12-06T1054-vm-2.md" {
		t.Fatalf("reports written to %s and %s", a, b)
	}
	for path, rows := range map[string]int{a: len(scaleFixture()), b: 1} {
		stem := strings.TrimSuffix(path, ".md")
		var got Report
		if j, err := os.ReadFile(stem + ".json"); err != nil || json.Unmarshal(j, &got) != nil || len(got.Scale) != rows {
			t.Fatalf("%s.json does not hold its own report (%v)", stem, err)
		}
		chart := filepath.Base(stem) + "-scale.png"
		if md, _ := os.ReadFile(path); !strings.Contains(string(md), "]("+chart+")") {
			t.Errorf("%s does not embed %s", path, chart)
		}
		if _, err := os.Stat(filepath.Join(dir, chart)); err != nil {
			t.Errorf("its chart: %v", err)
		}
	}
}

// TestVsKeaIsTheFasterKea: the DORA table's "vs Kea" is against the faster
// of Kea's rows, and a Kea row has none.
func TestVsKeaIsTheFasterKea(t *testing.T) {
	rep := &Report{Results: []ServerResult{
		{Server: "xdhcpd", Rate: 8000}, {Server: "kea", Rate: 4000}, {Server: "kea-mt", Rate: 5000}, {Server: "dhcpd", Rate: 50},
	}}
	md := rep.Markdown()
	mustContain(t, "report", md,
		"| xdhcpd |  | 8000 | 0 | 100.0% | 0.000 | 1.60× | 160.00× |",
		"| kea |  | 4000 | 0 | 100.0% | 0.000 | - | 80.00× |",
		"| kea-mt |  | 5000 | 0 | 100.0% | 0.000 | - | 100.00× |",
		"| dhcpd |  | 50 | 0 | 100.0% | 0.000 | 0.01× | - |",
		"kea-mt is Kea with multi-threading on")
}

// TestFailedSectionsAreNamed: a full run whose section failed says which
// and why, above the sections that were measured.
func TestFailedSectionsAreNamed(t *testing.T) {
	rep := &Report{Failed: []string{"failover: dhcpd did not start"}, Results: []ServerResult{{Server: "xdhcpd", Rate: 1}}}
	md := rep.Markdown()
	i := strings.Index(md, "**Section not measured: failover: dhcpd did not start**")
	if i < 0 || i > strings.Index(md, "## DORA") {
		t.Fatalf("the failed section is not named first:\n%s", md)
	}
}

// mustContain fails t for each of wants that got, a report or one of its
// sections (what), lacks.
func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, got)
		}
	}
}
