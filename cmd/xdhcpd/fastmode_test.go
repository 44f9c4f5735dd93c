package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestFastPathModeFollowsConfigAcrossRestart: fastpath.mode auto on a
// veth whose peer has no XDP program attaches generic, and udhcpc's
// renewals are answered by XDP; a reload that changes the mode warns that
// it needs a restart, each time it is reloaded while the running mode
// differs, and not once the file again says what runs; a restart with
// mode native re-attaches natively (ip link: xdp) and one with generic
// moves back (xdpgeneric), renewals answered by XDP after each.
func TestFastPathModeFollowsConfigAcrossRestart(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:0d"
	l, c := fastLab(t, "auto", "10m", mac)
	p, envFile, li := boundUdhcpc(t, l, c, mac, "ip=$ip")

	xdpMode := func() string { return l.xdpMode("vs0") }
	// renew has udhcpc renew and checks that XDP answered it.
	renewals := 0
	renew := func(what string) {
		t.Helper()
		renewals++
		reqs, fast := l.requests(), l.fastReplies()
		p.Signal(sigUSR1)
		l.waitFast(fast, 10*time.Second)
		b, _ := os.ReadFile(envFile)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(string(b), "renew ip="+li.IP+"\n") < renewals {
			if time.Now().After(deadline) {
				t.Fatalf("%s: udhcpc did not renew (%d renewals wanted):\n%s\nserver log:\n%s", what, renewals, b, l.daemon.Output())
			}
			time.Sleep(100 * time.Millisecond)
			b, _ = os.ReadFile(envFile)
		}
		if got := l.requests(); got != reqs {
			t.Fatalf("%s: the slow path saw the renewal: requests %v -> %v", what, reqs, got)
		}
	}
	if m := xdpMode(); m != "generic" {
		t.Fatalf("auto on a veth without a peer program attached %s, want generic", m)
	}
	renew("auto")
	if n := l.metric(`xdhcp_fastpath_tx_errors_total{interface="vs0"}`); n != 0 {
		t.Fatalf("generic mode: %v tx errors", n)
	}

	setMode := func(mode string) { setFastMode(t, l, mode) }
	const pending = "take effect only after a restart"
	reload := func(mode string, warnings int) {
		t.Helper()
		setMode(mode)
		n := strings.Count(l.daemon.Output(), "configuration reloaded")
		l.daemon.Signal(sigHUP)
		waitOutputCount(t, l.daemon, "configuration reloaded", n+1, 5*time.Second)
		// The warning, if any, is logged before the reloaded line.
		out := l.daemon.Output()
		if got := strings.Count(out, pending); got != warnings {
			t.Fatalf("after reloading mode %s: %d restart-pending warnings, want %d:\n%s", mode, got, warnings, out)
		}
		if warnings > 0 && !strings.Contains(out[strings.LastIndex(out, pending):], "fastpath.mode") {
			t.Fatalf("the restart-pending warning does not name fastpath.mode:\n%s", out)
		}
	}
	reload("native", 1)
	reload("native", 2) // still not what runs
	reload("auto", 2)   // what runs again: nothing pending
	if m := xdpMode(); m != "generic" {
		t.Fatalf("a reload changed the attachment to %s", m)
	}

	// Restart native: the peer gets a program, as native XDP_TX on a
	// veth needs.
	attachPass(t, c, "eth0")
	setMode("native")
	l.daemon.Stop()
	l.start()
	if m := xdpMode(); m != "native" {
		t.Fatalf("restarted with mode native, ip link shows %s\n%s", m, l.daemon.Output())
	}
	if !strings.Contains(l.daemon.Output(), "XDP re-attached in the configured mode") {
		t.Fatalf("no re-attach logged:\n%s", l.daemon.Output())
	}
	renew("native after restart")

	setMode("generic")
	l.daemon.Stop()
	l.start()
	if m := xdpMode(); m != "generic" {
		t.Fatalf("restarted with mode generic, ip link shows %s\n%s", m, l.daemon.Output())
	}
	renew("generic after restart")

	// The same mode again is swapped in place.
	l.daemon.Stop()
	l.start()
	if !strings.Contains(l.daemon.Output(), "XDP program swapped in place") {
		t.Fatalf("a restart in the running mode did not swap in place:\n%s", l.daemon.Output())
	}
	renew("generic, swapped in place")
}

// setFastMode rewrites fastpath.mode in the lab's configuration file.
func setFastMode(t *testing.T, l *lab, mode string) {
	t.Helper()
	b, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "  mode: ")
	j := i + strings.Index(s[i:], "\n")
	if err := os.WriteFile(l.cfgPath, []byte(s[:i]+"  mode: "+mode+s[j:]), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFastPathTxErrorsCountedAndWarned: native XDP on a veth whose peer
// has no XDP program answers udhcpc's renewal (the program counts a
// reply), but the kernel drops it: xdhcp_fastpath_tx_errors_total counts
// it, the daemon warns, and udhcpc sees no ACK.
func TestFastPathTxErrorsCountedAndWarned(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:0e"
	l, c := fastLab(t, "generic", "10m", mac)
	p, envFile, _ := boundUdhcpc(t, l, c, mac, "ip=$ip")

	setFastMode(t, l, "native")
	l.daemon.Stop()
	l.start()
	if out := l.sh(l.srv, "ip link show vs0"); !strings.Contains(out, " xdp ") {
		t.Fatalf("restarted native, ip link shows:\n%s", out)
	}
	const txerrs = `xdhcp_fastpath_tx_errors_total{interface="vs0"}`
	if n := l.metric(txerrs); n != 0 {
		t.Fatalf("%v tx errors before any renewal", n)
	}
	fast := l.fastReplies()
	p.Signal(sigUSR1)
	l.waitFast(fast, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for l.metric(txerrs) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the dropped reply was not counted; server log:\n%s", l.daemon.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitOutputCount(t, l.daemon, "XDP_TX failed", 1, 5*time.Second)
	if out := l.daemon.Output(); !strings.Contains(out[strings.Index(out, "XDP_TX failed"):], "interface=vs0") {
		t.Fatalf("the warning does not name vs0:\n%s", out)
	}
	if b, _ := os.ReadFile(envFile); strings.Contains(string(b), "renew ip=") {
		t.Fatalf("udhcpc got a reply the kernel is said to have dropped:\n%s", b)
	}
}

// xdpMode is what ip link says runs on the server's interface ifname:
// "generic", "native" or "none".
func (l *lab) xdpMode(ifname string) string {
	l.t.Helper()
	out := l.sh(l.srv, "ip link show "+ifname)
	switch {
	case strings.Contains(out, "xdpgeneric"):
		return "generic"
	case strings.Contains(out, " xdp "):
		return "native"
	case strings.Contains(out, ": "+ifname+"@"):
		return "none"
	}
	l.t.Fatalf("ip link show %s does not describe the link:\n%s", ifname, out)
	return ""
}
