package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdhcp/xdhcp/bpf"
)

// TestLostRingEventIsRecoveredByTheMapScan: XDP answers a renewal while the
// daemon is stopped (SIGSTOP, a reader that fell behind), and before it
// reads the event every CPU's ring is lapped: each slot overwritten with an
// event for no lease, each head moved a full ring on. The renewal's event
// is gone; the daemon must count the loss, scan the lease map, and record
// in bbolt the CLTT and expiry that the program granted.
func TestLostRingEventIsRecoveredByTheMapScan(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:0a"
	l, rn := udhcpcRenewer(t, mac)
	before, ok := l.leaseFor(mac)
	if !ok {
		t.Fatal("no lease after udhcpc")
	}
	lostBefore := l.metric("xdhcp_fastpath_events_lost_total")

	open := func(name string) *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(filepath.Join(l.pinDir, name), nil)
		if err != nil {
			t.Fatalf("pinned map %s: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	leases, grants, ring, heads := open("xdhcp_leases"), open("xdhcp_grants"), open("xdhcp_evring"), open("xdhcp_evheads")
	cpus := heads.MaxEntries()
	slots := ring.MaxEntries() / cpus

	// A second on, so the renewal's CLTT differs from the stored one.
	for time.Now().Unix() <= mustTime(t, before.CLTT).Unix() {
		time.Sleep(100 * time.Millisecond)
	}
	if err := l.daemon.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP the daemon: %v", err)
	}
	t.Cleanup(func() { l.daemon.Signal(syscall.SIGCONT) })
	// kill returns before every thread has stopped: under load a thread
	// still reading the rings could fold the renewal's event before the
	// ring is overwritten (the loss then uncounted, or counted after the
	// scan it should trigger). Wait until each one is stopped.
	waitStopped(t, l.daemon.Pid())
	if got := rn.renew(1); got != 1 {
		t.Fatal("XDP did not answer the renewal while the daemon was stopped")
	}
	var entry bpf.XdpXdhcpLease
	if err := leases.Lookup(rn.ip.As4(), &entry); err != nil {
		t.Fatalf("lease entry: %v", err)
	}
	var granted bpf.XdpXdhcpGrant
	if err := grants.Lookup(entry.GrantSlot, &granted); err != nil || granted.Gen != entry.Gen {
		t.Fatalf("the program's grant: %+v in slot %d, want generation %d (%v)", granted, entry.GrantSlot, entry.Gen, err)
	}
	// The listing shows whole seconds, as the disk keeps them.
	cltt, expiry := time.Unix(0, int64(granted.ClttNs)), time.Unix(int64(max(entry.Expiry, granted.Expiry)), 0)
	if !cltt.After(mustTime(t, before.CLTT)) {
		t.Fatalf("the program's CLTT %v is not after the stored %s: no renewal to lose", cltt, before.CLTT)
	}

	now := uint64(time.Now().Unix())
	junk := bpf.XdpXdhcpEvent{AtNs: now * 1e9, Expiry: now + 3600, Hlen: 6} // 0.0.0.0: no lease
	for c := range cpus {
		for i := range slots {
			if err := ring.Update(c*slots+i, &junk, ebpf.UpdateExist); err != nil {
				t.Fatalf("ring slot %d/%d: %v", c, i, err)
			}
		}
		var h bpf.XdpXdhcpEvhead
		if err := heads.Lookup(c, &h); err != nil {
			t.Fatalf("head %d: %v", c, err)
		}
		h.Head += uint64(slots)
		if err := heads.Update(c, &h, ebpf.UpdateExist); err != nil {
			t.Fatalf("head %d: %v", c, err)
		}
	}
	if err := l.daemon.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT the daemon: %v", err)
	}

	// The minute's routine scan is far off (the daemon started seconds
	// ago); only the scan the loss triggers can record the renewal in time.
	deadline := time.Now().Add(20 * time.Second)
	for {
		li, _ := l.leaseFor(mac)
		if li.CLTT != "" && mustTime(t, li.CLTT).Equal(cltt.Truncate(time.Second)) && mustTime(t, li.Expires).Equal(expiry) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lost renewal (CLTT %v, expiry %v) was not recovered: stored %+v; events lost %v -> %v, renewals folded %v\n%s", cltt, expiry, li,
				lostBefore, l.metric("xdhcp_fastpath_events_lost_total"), l.metricOrZero("xdhcp_fastpath_renewals_folded_total"), l.daemon.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The map scan and the ring's reader run apart: the lease can be
	// recovered before the reader has counted the lapped ring (CI on
	// 8869225 read the counter in between), so the count gets a while.
	for lostBy := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lost := l.metric("xdhcp_fastpath_events_lost_total")
		if lost > lostBefore {
			break
		}
		if time.Now().After(lostBy) {
			t.Fatalf("events_lost %v -> %v: the loss was not counted", lostBefore, lost)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return v
}

// waitStopped waits until every thread of process pid is stopped (state T
// in /proc/PID/task/TID/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		running := 0
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				continue // the thread exited
			}
			// "TID (comm) S ...": the state follows the last ')'.
			if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				running++
			}
		}
		if running == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d threads of the daemon not stopped after SIGSTOP", running, len(tasks))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
