package store

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
)

// TestInformedRecords: informed clients' records go through the group
// committer (done once on disk), are read back after a reopen, and a nil
// value deletes one.
func TestInformedRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	submit := func(recs map[netip.Addr][]byte) {
		t.Helper()
		ch := make(chan error, 1)
		s.SubmitInformed(recs, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.InformedRecords(); err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v, %v", got, err)
	}
	submit(map[netip.Addr][]byte{a: []byte("one"), b: []byte("two")})
	submit(map[netip.Addr][]byte{b: nil, a: []byte("one again")})
	ch := make(chan error, 1)
	s.SubmitInformed(map[netip.Addr][]byte{netip.MustParseAddr("::1"): []byte("x")}, func(err error) { ch <- err })
	if err := <-ch; err == nil {
		t.Fatal("an IPv6 key was accepted")
	}
	cancel()
	wg.Wait()
	s.Close()

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.InformedRecords()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got[a], []byte("one again")) {
		t.Fatalf("after reopen: %q", got)
	}
}
