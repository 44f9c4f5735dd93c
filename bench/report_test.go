package bench

import (
	"os"
	"path/filepath"
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
