package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestFollowsTheServedLink: the served interface is missing when the
// daemon starts (it waits for it and says so), appears (DHCP and XDP work
// on it), is deleted and re-created with a new index (XDP re-attached,
// the client's binding moved to the new index, so its renewals are
// answered by XDP again, never by the slow path), then brought down and
// up (the attachment stays). The map never loses the binding.
func TestFollowsTheServedLink(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:31"
	l, c := fastLabWith(t, "native", "10m", mac, "10.77.0.100-10.77.0.149", false)
	waitOutputCount(t, l.daemon, `msg="served interface missing: waiting for it; nothing is served on it until it appears" interface=vs0`, 1, 5*time.Second)

	connectFastLab(l, c, "native", mac)
	waitOutputCount(t, l.daemon, `msg="XDP attached to a served interface" interface=vs0`, 1, 5*time.Second)
	li := udhcpcLease(t, l, c, mac)
	hw, _ := net.ParseMAC(mac)
	rn := renewer{t, c, netip.MustParseAddr(li.IP), hw}

	// byXDP renews n times and checks every ACK came from XDP.
	byXDP := func(when string, n int) {
		t.Helper()
		reqs, fast := l.requests(), l.fastReplies()
		if got := rn.renew(n); got != n {
			t.Fatalf("%s: %d of %d renewals answered\n%s", when, got, n, l.daemon.Output())
		}
		if got := l.requests(); got != reqs {
			t.Fatalf("%s: the slow path saw renewals: requests %v -> %v\n%s", when, reqs, got, l.daemon.Output())
		}
		if got := l.fastReplies(); got != fast+float64(n) {
			t.Fatalf("%s: XDP replies %v -> %v, want +%d", when, fast, got, n)
		}
	}
	byXDP("on the new interface", 2)
	entries := l.metric("xdhcp_fastpath_leases")

	if err := l.srv.DeleteLink("vs0"); err != nil {
		t.Fatal(err)
	}
	waitOutputCount(t, l.daemon, `msg="served interface missing: waiting for it; nothing is served on it until it appears" interface=vs0`, 2, 5*time.Second)
	connectFastLab(l, c, "native", mac)
	up := time.Now()
	// udhcpc's address went with the old eth0.
	if err := c.AddAddr("eth0", netip.PrefixFrom(rn.ip, 24)); err != nil {
		t.Fatal(err)
	}
	waitOutputCount(t, l.daemon, `msg="XDP re-attached to a re-created interface; its bindings moved to the new index" interface=vs0`, 1, 5*time.Second)
	if took := time.Since(up); took > time.Second {
		t.Errorf("XDP re-attached %v after the link came up, want within 1 s", took)
	}
	if out := l.daemon.Output(); !strings.Contains(out, "bindings=1") {
		t.Errorf("the re-attachment moved no binding:\n%s", out)
	}
	byXDP("after the re-creation", 3)
	if got := l.metric("xdhcp_fastpath_leases"); got != entries {
		t.Fatalf("fast path entries %v -> %v across the re-creation", entries, got)
	}

	l.sh(l.srv, "ip link set vs0 down && ip link set vs0 up")
	time.Sleep(200 * time.Millisecond) // carrier back on both ends
	byXDP("after down and up", 2)
	if n := strings.Count(l.daemon.Output(), "XDP re-attached"); n != 1 {
		t.Fatalf("down and up re-attached XDP (%d re-attachments)", n)
	}

	// Renamed away (missing) and back: the same index, the attachment
	// kept, and reported again.
	for _, r := range [][2]string{{"vs0", "vs9"}, {"vs9", "vs0"}} {
		if err := l.srv.Rename(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the watcher's view settles
	}
	time.Sleep(200 * time.Millisecond) // carrier back on both ends
	byXDP("after a rename away and back", 2)
	if v, ok := l.metricSeries(`xdhcp_fastpath_attached{interface="vs0",mode="native"}`); !ok || v != 1 {
		t.Fatalf("vs0 not reported attached after the rename back (%v, %v)", v, ok)
	}

	// The status page tells the same story: where XDP runs, the pool
	// with the client's binding, and the interface's absence among the
	// last warnings.
	page := l.httpGet("/")
	for _, want := range []string{
		"<td>vs0</td><td>XDP native</td>",
		"<b>10.77.0.0/24</b>",
		`<td>active</td><td class="num">1</td>`,
		"served interface missing: waiting for it",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
}
