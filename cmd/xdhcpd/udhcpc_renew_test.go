package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// udpCounters reads the UDP counters of ns from /proc/net/snmp (absolute
// values, unlike nstat's default of differences since its last run).
func udpCounters(t *testing.T, l *lab, ns *netns.NS) map[string]int {
	t.Helper()
	var names, values []string
	for _, line := range strings.Split(l.sh(ns, "cat /proc/net/snmp"), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(line)[1:]
		} else {
			values = strings.Fields(line)[1:]
		}
	}
	if len(names) == 0 || len(names) != len(values) {
		t.Fatalf("no Udp counters in %s's /proc/net/snmp", ns.Name)
	}
	m := make(map[string]int, len(names))
	for i, n := range names {
		v, err := strconv.Atoi(values[i])
		if err != nil {
			t.Fatalf("Udp %s = %q: %v", n, values[i], err)
		}
		m[n] = v
	}
	return m
}

// TestUdhcpcFirstUnicastRenewalAnswerIsLost pins down what README.md's
// fast-path section documents: busybox udhcpc 1.35 sends its unicast
// renewal from a short-lived UDP socket bound to ciaddr:68 and connected
// to the server's :67. On a veth the XDP answer arrives while that socket
// is still open (inside the client's own write()), the kernel delivers it
// there, being the more specific match than udhcpc's listening socket on
// 0.0.0.0:68, and close() discards it. udhcpc then broadcasts the renewal
// (listening on a packet socket, with no UDP socket on :68, so the kernel
// also answers that ACK with a port unreachable) and takes XDP's second
// answer. If udhcpc or the kernel changes so that the first answer is
// taken, this test fails and the README must be updated with it.
func TestUdhcpcFirstUnicastRenewalAnswerIsLost(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			const mac = "02:00:00:00:0f:06"
			l, c := fastLab(t, mode, "2m", mac)
			p, envFile, li := boundUdhcpc(t, l, c, mac, "ip=$ip lease=$lease")

			reqs, fast := l.requests(), l.fastReplies()
			before := udpCounters(t, l, c)
			mark := len(p.Output())
			p.Signal(sigUSR1)
			waitFileContains(t, envFile, "renew ip="+li.IP+" lease=120", 10*time.Second)
			log := p.Output()[mark:]
			uni := strings.Index(log, "sending renew to server 10.77.0.1")
			bc := strings.Index(log, "broadcasting renew")
			if uni < 0 || bc < uni {
				t.Fatalf("want a unicast renewal, then (its answer lost) a broadcast one; udhcpc said:\n%s", log)
			}
			if strings.Count(log, "sending renew") != 1 || strings.Count(log, "broadcasting renew") != 1 {
				t.Fatalf("want exactly one unicast and one broadcast renewal; udhcpc said:\n%s", log)
			}
			// Both were answered by XDP, none by the slow path.
			if got := l.waitFast(fast+1, 5*time.Second); got != fast+2 {
				t.Fatalf("fast-path replies %v -> %v, want +2 (the unicast and the broadcast renewal)", fast, got)
			}
			if got := l.requests(); got != reqs {
				t.Fatalf("the slow path saw the renewal: requests %v -> %v", reqs, got)
			}
			after := udpCounters(t, l, c)
			// Two ACKs reached the client. One found no UDP socket (the
			// broadcast renewal's: udhcpc reads it from a packet socket),
			// so the other found one but was never read from it: no
			// recvmsg counted it, and udhcpc's listening socket would have.
			if d := after["NoPorts"] - before["NoPorts"]; d != 1 {
				t.Errorf("client UdpNoPorts +%d, want +1 (the broadcast renewal's answer, read by udhcpc's packet socket)", d)
			}
			if d := after["InDatagrams"] - before["InDatagrams"]; d != 0 {
				t.Errorf("client UdpInDatagrams +%d, want +0 (the unicast answer sits unread on udhcpc's sending socket until close)", d)
			}
		})
	}
}

// TestDhclientFirstUnicastRenewalAnswerIsTaken is the contrast: ISC
// dhclient listens and sends on the same socket, so XDP's answer to its
// first unicast renewal at T1 is accepted: one request, one reply.
func TestDhclientFirstUnicastRenewalAnswerIsTaken(t *testing.T) {
	needTools(t, "dhclient", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			const mac = "02:00:00:00:0f:07"
			l, c := fastLab(t, mode, "20s", mac) // T1 10s
			lf := filepath.Join(l.dir, "dhclient.leases")
			pf := filepath.Join(l.dir, "dhclient.pid")
			t0 := time.Now()
			p, err := c.Start(context.Background(), "dhclient", "-4", "-d", "-v", "-pf", pf, "-lf", lf, "eth0")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			li := l.waitLease(mac, "active", t0, 15*time.Second)
			waitOutputCount(t, p, "DHCPACK of "+li.IP, 1, 10*time.Second)
			reqs, fast := l.requests(), l.fastReplies()
			mark := len(p.Output())
			unicast := "DHCPREQUEST for " + li.IP + " on eth0 to 10.77.0.1"
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(p.Output()[mark:], "DHCPACK of "+li.IP) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			log := p.Output()[mark:]
			log = log[:strings.Index(log+"DHCPACK of "+li.IP, "DHCPACK of "+li.IP)]
			if n := strings.Count(log, "DHCPREQUEST"); n != 1 || !strings.Contains(log, unicast) {
				t.Fatalf("want one unicast DHCPREQUEST before the renewal's DHCPACK, got %d:\n%s", n, p.Output()[mark:])
			}
			if got := l.fastReplies(); got != fast+1 {
				t.Fatalf("fast-path replies %v -> %v, want +1", fast, got)
			}
			if got := l.requests(); got != reqs {
				t.Fatalf("the slow path saw the renewal: requests %v -> %v", reqs, got)
			}
		})
	}
}

// TestUdhcpcTimerRenewalFallsBackToHalfLease is the renewal CPEs make: at
// T1, with more than 30 s of lease left, udhcpc 1.35 treats the lost answer
// as no answer, waits half the remaining lease and unicasts again (lost
// again), and broadcasts only once 30 s or less remain. With a 70 s lease
// (and udhcpc's default 3 s timeout): unicast at 35 s, unicast at about
// 54 s, broadcast at about 57 s, answered by XDP. Each of the three was
// answered by XDP; none reached the slow path.
func TestUdhcpcTimerRenewalFallsBackToHalfLease(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:08"
	l, c := fastLab(t, "generic", "70s", mac)
	envFile := filepath.Join(l.dir, "udhcpc.env")
	script := udhcpcScript(t, l.dir, envFile, "ip=$ip lease=$lease")
	t0 := time.Now()
	// No -T: udhcpc's default 3 s wait for an answer, as a CPE runs it.
	p, err := c.Start(context.Background(), "udhcpc", "-f", "-i", "eth0", "-s", script)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	li := l.waitLease(mac, "active", t0, 15*time.Second)
	waitFileContains(t, envFile, "bound ip="+li.IP, 10*time.Second)
	bound := time.Now()
	reqs, fast := l.requests(), l.fastReplies()
	mark := len(p.Output())
	waitFileContains(t, envFile, "renew ip="+li.IP+" lease=70", 75*time.Second)
	renewed := time.Since(bound)
	log := p.Output()[mark:]
	if n := strings.Count(log, "sending renew to server 10.77.0.1"); n != 2 || strings.Count(log, "broadcasting renew") != 1 ||
		strings.LastIndex(log, "sending renew") > strings.Index(log, "broadcasting renew") {
		t.Fatalf("want two unicast renewals (T1, then half the remaining lease later), then one broadcast; udhcpc said:\n%s", log)
	}
	// The broadcast goes out once at most 30 s of the 70 s remain.
	if renewed < 40*time.Second {
		t.Fatalf("renewed %v after binding; udhcpc 1.35 should have broadcast only with 30 s or less left", renewed)
	}
	if got := l.fastReplies(); got != fast+3 {
		t.Fatalf("fast-path replies %v -> %v, want +3 (two unicast renewals and the broadcast)", fast, got)
	}
	if got := l.requests(); got != reqs {
		t.Fatalf("the slow path saw the renewals: requests %v -> %v", reqs, got)
	}
	t.Logf("renewed %v after binding (lease 70 s)", renewed.Round(100*time.Millisecond))
}
