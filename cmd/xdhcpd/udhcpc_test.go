package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// udhcpcTimeout is the -T every udhcpc in these tests runs with: busybox's
// default, not shorter. udhcpc 1.35 sends at most three REQUESTs -T seconds
// apart when selecting, then reports leasefail and pauses for -A (20 s);
// when rebinding it sends at most three broadcast REQUESTs, then drops the
// lease ("lease lost", back to INIT, where a SIGUSR2 sends no RELEASE).
// With -T 1 a server answer later than 3 s (a loaded CI machine; the
// server writes each lease to disk before it ACKs) made udhcpc give up on a
// lease the server had granted. An answer in time costs nothing extra.
const udhcpcTimeout = "3"

// udhcpcScript writes udhcpc's hook script under dir and returns its path.
// With envFile set it first appends "EVENT fields" there (fields names
// udhcpc's variables, e.g. "ip=$ip lease=$lease"). It replaces the address
// rather than flushing and adding it: removing an interface's last IPv4
// address makes the kernel drop every neighbour entry on it (arp_ifdown),
// permanent ones included, so a flush on "renew" lifted the tests' own
// neighbour entries (blockUnicastToServer) and raced with their edits.
func udhcpcScript(t *testing.T, dir, envFile, fields string) string {
	t.Helper()
	s := "#!/bin/sh\n"
	if envFile != "" {
		s += "echo \"$1 " + fields + "\" >> " + envFile + "\n"
	}
	s += "case $1 in bound|renew) ip addr replace $ip/$mask dev $interface;; deconfig) ip addr flush dev $interface;; esac\n"
	path := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// boundUdhcpc runs udhcpc on eth0 in c until the test ends, with a script
// that appends "EVENT fields" to the returned file, and waits until the
// server holds mac's lease active and udhcpc has configured it.
func boundUdhcpc(t *testing.T, l *lab, c *netns.NS, mac, fields string) (*netns.Proc, string, control.LeaseInfo) {
	t.Helper()
	envFile := filepath.Join(l.dir, "udhcpc.env")
	script := udhcpcScript(t, l.dir, envFile, fields)
	t0 := time.Now()
	p, err := c.Start(context.Background(), "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", udhcpcTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	li := l.waitLease(mac, "active", t0, 15*time.Second)
	waitFileContains(t, envFile, "bound ip="+li.IP, 10*time.Second)
	return p, envFile, li
}
