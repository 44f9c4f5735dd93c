package store

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/auth"
)

// TestReplayFloorSurvivesReopen: the floor is on disk when Store returns,
// never goes back, and a Counter over a reopened store starts above every
// value handed out before, even with the clock stepped back.
func TestReplayFloorSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := s.ReplayFloor()
	if v, err := f.Load(); err != nil || v != 0 {
		t.Fatalf("fresh floor %d, %v", v, err)
	}
	now := time.Unix(1_800_000_000, 0)
	ctr, err := auth.NewCounter(f, auth.CounterOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 5 {
		if last, err = ctr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Store(1); err == nil {
		t.Fatal("the floor went back")
	}
	s.Close()

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now = now.Add(-time.Hour)
	ctr, err = auth.NewCounter(s.ReplayFloor(), auth.CounterOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ctr.Next(); err != nil || v <= last {
		t.Fatalf("after a reopen and the clock stepped back: %d (%v), last before %d", v, err, last)
	}
}

// TestCampaignRecords: a campaign's description and targets written at
// start, progress merged in later writes, all read back after a reopen;
// deleted on request.
func TestCampaignRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if err := s.PutCampaign("c1", []byte(`{"x":1}`), map[netip.Addr][]byte{a: {0, 1}, b: {0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCampaign("c1", nil, map[netip.Addr][]byte{b: {2, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCampaign("", nil, nil); err == nil {
		t.Fatal("an empty campaign id was accepted")
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.CampaignRecords()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != "c1" || string(recs[0].Meta) != `{"x":1}` || len(recs[0].Targets) != 2 ||
		!bytes.Equal(recs[0].Targets[a], []byte{0, 1}) || !bytes.Equal(recs[0].Targets[b], []byte{2, 1}) {
		t.Fatalf("records %+v", recs)
	}
	if err := s.DeleteCampaign("c1"); err != nil {
		t.Fatal(err)
	}
	if recs, err := s.CampaignRecords(); err != nil || len(recs) != 0 {
		t.Fatalf("after delete: %+v, %v", recs, err)
	}
}
