package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFastPathReloadReachesXDPReplies: with the fast path on, a reload
// that changes a subnet's options (dns-servers) reaches the replies XDP
// sends: udhcpc's renewal after the reload is answered by XDP (the slow
// path does not see it, the fast path's reply count moves) and its env
// carries the new DNS server. Reloaded by SIGHUP in one mode and by
// xdhcpctl reload in the other.
func TestFastPathReloadReachesXDPReplies(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	for _, tc := range []struct{ mode, how string }{{"native", "xdhcpctl"}, {"generic", "SIGHUP"}} {
		t.Run(tc.mode+"/"+tc.how, func(t *testing.T) {
			const mac = "02:00:00:00:0f:0b"
			l, c := fastLab(t, tc.mode, "10m", mac)
			p, envFile, li := boundUdhcpc(t, l, c, mac, "ip=$ip dns=$dns")
			waitFileContains(t, envFile, "bound ip="+li.IP+" dns=10.77.0.53\n", 10*time.Second)

			// renew has udhcpc renew and checks that XDP answered it with
			// dns, the n-th renewal in the env file.
			renew := func(n int, dns string) {
				t.Helper()
				reqs, fast := l.requests(), l.fastReplies()
				p.Signal(sigUSR1)
				l.waitFast(fast, 10*time.Second)
				want := "renew ip=" + li.IP + " dns=" + dns + "\n"
				env := waitOutputLines(t, envFile, "renew ", n, 10*time.Second)
				if !strings.HasSuffix(env, want) {
					t.Fatalf("renewal %d: udhcpc's env, want it to end with %q:\n%s", n, want, env)
				}
				if got := l.requests(); got != reqs {
					t.Fatalf("renewal %d: the slow path saw it (requests %v -> %v)\n%s", n, reqs, got, env)
				}
			}
			renew(1, "10.77.0.53")

			cfg, err := os.ReadFile(l.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			changed := bytes.Replace(cfg, []byte("dns-servers: [10.77.0.53]"), []byte("dns-servers: [10.77.0.54]"), 1)
			if bytes.Equal(changed, cfg) {
				t.Fatal("test edit did not apply")
			}
			if err := os.WriteFile(l.cfgPath, changed, 0o600); err != nil {
				t.Fatal(err)
			}
			n := strings.Count(l.daemon.Output(), "configuration reloaded")
			switch tc.how {
			case "SIGHUP":
				l.daemon.Signal(sigHUP)
			default:
				if out, err := exec.Command(l.ctl, "--socket", l.sock, "reload").CombinedOutput(); err != nil {
					t.Fatalf("xdhcpctl reload: %v\n%s", err, out)
				}
			}
			waitOutputCount(t, l.daemon, "configuration reloaded", n+1, 5*time.Second)
			renew(2, "10.77.0.54")
		})
	}
}

// waitOutputLines waits until the file at path holds at least n lines
// starting with prefix and returns its content.
func waitOutputLines(t *testing.T, path, prefix string, n int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		got := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, prefix) {
				got++
			}
		}
		if got >= n {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d lines starting %q within %v, want %d:\n%s", path, got, prefix, timeout, n, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
