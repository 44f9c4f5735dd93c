package store

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// A disk that fills, for real: the store on a tmpfs of 4 MiB, written
// until its commits fail. A commit that fails acknowledges nothing, and
// reads keep showing what was acknowledged; once there is room again (the
// tmpfs made larger, as an operator frees space) commits succeed again
// without a restart; after a restart every acknowledged lease reads back,
// as acknowledged or as a later write that was attempted.
func TestFullDiskLosesNothingAcknowledged(t *testing.T) {
	testenv.RequireRoot(t, "mounts a tmpfs and fills it")
	dir := t.TempDir()
	// huge=never: a tmpfs of 2 MiB pages would fill after a page or two.
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m,huge=never"); err != nil {
		testenv.Skipf(t, "mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "l.db")
	s, stop := open(t, path, Options{FoldEvery: 10 * time.Millisecond, JournalMax: 4096})
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// acked: each address's version last acknowledged; tried: every
	// version attempted for it, acknowledged or not.
	acked := map[netip.Addr]byte{}
	tried := map[netip.Addr]map[byte]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	var addrs []netip.Addr
	next := uint32(1)
	put := func(version byte) error {
		var batch []*lease.Lease
		for range 50 { // new addresses
			batch = append(batch, big(next, version))
			addrs = append(addrs, ipN(next))
			next++
		}
		for range 50 { // some written before, again
			ip := addrs[rng.IntN(len(addrs))]
			batch = append(batch, big(uint32(ip.As4()[1])<<16|uint32(ip.As4()[2])<<8|uint32(ip.As4()[3]), version))
		}
		for _, l := range batch {
			if tried[l.IP] == nil {
				tried[l.IP] = map[byte]bool{}
			}
			tried[l.IP][version] = true
		}
		err := s.Put(ctx, batch...)
		if err == nil {
			for _, l := range batch {
				acked[l.IP] = version
			}
		}
		return err
	}
	var full error
	refused := 0
	for round := 0; refused < 30; round++ {
		if ctx.Err() != nil || round >= 200 { // versions 200 on are for after
			t.Fatalf("the tmpfs never filled: %d leases acknowledged", len(acked))
		}
		if err := put(byte(round)); err != nil {
			refused++
			if full == nil {
				full = err
			}
		}
	}
	// The journal's own write fails, or the tree fills first: folds
	// fail, and the journal fills up to JournalMax.
	if !strings.Contains(full.Error(), "no space left on device") && !strings.Contains(full.Error(), "folding it into the lease tree fails") {
		t.Fatalf("the first refused commit says %q, not that the disk is full", full)
	}
	t.Logf("full after %d leases acknowledged: %v; stats %+v", len(acked), full, s.Stats())
	if len(acked) < 1000 {
		t.Fatalf("the disk filled after %d leases: too few to test anything", len(acked))
	}
	// While it runs, the store shows what it acknowledged and nothing
	// else (a refused commit is not to be served); after a restart a
	// write that was refused may still have reached the disk.
	check := func(when string, s *Store, restarted bool) {
		t.Helper()
		for ip := range tried {
			if _, ok := acked[ip]; ok {
				continue
			}
			if l, err := s.Get(ip); err != nil || l != nil && !restarted {
				t.Fatalf("%s: %s, never acknowledged, reads %+v (%v)", when, ip, l, err)
			}
		}
		for ip, v := range acked {
			l, err := s.Get(ip)
			if err != nil || l == nil {
				t.Fatalf("%s: acknowledged %s reads %v (%v)", when, ip, l, err)
			}
			if got := l.HWAddr[5]; got != v && !(restarted && got > v && tried[ip][got]) {
				t.Fatalf("%s: %s reads version %d, acknowledged %d", when, ip, got, v)
			}
		}
	}
	check("disk full", s, false)

	// Room again: commits go on without a restart.
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatalf("making the tmpfs larger: %v", err)
	}
	for { // version 200 for every try: refused tries leave nothing
		err := put(200)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("commits still fail with room on the disk: %v (stats %+v)", err, s.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Folded(ctx); err != nil {
		t.Fatalf("the journal does not fold once there is room: %v (stats %+v)", err, s.Stats())
	}
	check("room again", s, false)
	stop()
	stopped = true

	s, stop = open(t, path, Options{})
	defer stop()
	check("restarted", s, true)
}

// big is lease n at version v (its hardware address's last byte) with a
// long host name, so that a few thousand fill a small disk.
func big(n uint32, v byte) *lease.Lease {
	l := active(n, v)
	l.Hostname = strings.Repeat("h", 200)
	return l
}
