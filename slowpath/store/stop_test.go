package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestStopMark: a clean stop (MarkStopped after Run) is seen by the next
// Open only, with the fast path's bit; a stop that is not marked, a run
// with a failed commit and one with a submission after Run returned are
// not clean; MarkStopped refuses a running store.
func TestStopMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	// run opens the store, submits ls, stops it and marks the stop (mark),
	// submitting late after Run returned; it returns LastStop as found and
	// what MarkStopped said.
	run := func(mark, fast, late bool, ls ...*lease.Lease) (last Stop, clean bool) {
		t.Helper()
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		last = s.LastStop()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		if _, err := s.MarkStopped(fast); err == nil {
			t.Error("MarkStopped succeeded while Run runs")
		}
		for _, l := range ls {
			s.Submit([]*lease.Lease{l}, nil)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if late {
			s.Submit([]*lease.Lease{active(7, 1)}, nil)
		}
		if mark {
			if clean, err = s.MarkStopped(fast); err != nil {
				t.Fatal(err)
			}
		}
		return last, clean
	}
	steps := []struct {
		name             string
		mark, fast, late bool
		leases           []*lease.Lease
		wantLast         Stop
		wantClean        bool
	}{
		{name: "first open, marked with the fast path", mark: true, fast: true, leases: []*lease.Lease{active(1, 1)}, wantLast: Stop{}, wantClean: true},
		{name: "marked without it", mark: true, leases: []*lease.Lease{active(2, 1)}, wantLast: Stop{Clean: true, FastPath: true}, wantClean: true},
		{name: "not marked (a crash)", wantLast: Stop{Clean: true}},
		{name: "a commit failed", mark: true, leases: []*lease.Lease{{State: lease.Active}}, wantLast: Stop{}},
		{name: "a submission after Run", mark: true, late: true, wantLast: Stop{}},
		{name: "clean again", mark: true, wantLast: Stop{}, wantClean: true},
		{name: "after it", wantLast: Stop{Clean: true}},
	}
	for _, st := range steps {
		last, clean := run(st.mark, st.fast, st.late, st.leases...)
		if last != st.wantLast || clean != st.wantClean {
			t.Fatalf("%s: found %+v and marked clean %v, want %+v and %v", st.name, last, clean, st.wantLast, st.wantClean)
		}
	}
}
