package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// FORCERENEW end to end (issue 16): the real daemon, driven by the real
// xdhcpctl, and real clients. dhcpcd runs with its defaults for
// FORCERENEW (it sends option 145 and requires authentication); noarp
// only spares each binding dhcpcd's ARP probe.

const frLabConfig = `server:
  interfaces: [br0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
  log-level: debug
subnets:
  - subnet: 10.77.0.0/24
    pools: [{{POOLS}}]
    lease-time: 1h
    options:
      routers: [10.77.0.1]
    forcerenew:
      retransmit-start: 300ms
      retransmit-count: 3{{FORCERENEW}}
`

const (
	frOldPool = "10.77.0.100-10.77.0.149"
	frNewPool = "10.77.0.200-10.77.0.249"
	// frDhcpcdConf is dhcpcd's configuration in these tests: a DUID
	// client-id as Debian's stock file has, IPv4 only, no ARP probe.
	frDhcpcdConf = "duid\nipv4only\nnoipv4ll\nnoarp\n"
	// dhcpcd 9.4.1 logs "IF: Force Renew from from 10.77.0.1" (sic).
	frDhcpcdLine = "Force Renew from"
)

// frConfig renders the lab's configuration. The lease time is an hour,
// so no client renews on its own during a test: every renewal seen is
// one a FORCERENEW asked for.
func frConfig(dir, pools, forcerenew string) string {
	return strings.NewReplacer("{{DIR}}", dir, "{{POOLS}}", pools, "{{FORCERENEW}}", forcerenew).Replace(frLabConfig)
}

// newFRLab is newLab with frLabConfig.
func newFRLab(t *testing.T) *lab {
	t.Helper()
	needTools(t, "curl")
	xdhcpd, xdhcpctl := binaries(t)
	srv := netns.ForTest(t, "xs")
	l := &lab{t: t, srv: srv, dir: t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	l.sh(srv, "ip link add br0 type bridge && ip addr add 10.77.0.1/24 dev br0 && ip link set br0 up")
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	l.writeConfig(frConfig(l.dir, frOldPool, ""))
	l.start()
	return l
}

func (l *lab) writeConfig(cfg string) {
	l.t.Helper()
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// ctlReload reloads the configuration with `xdhcpctl reload`.
func (l *lab) ctlReload() {
	l.t.Helper()
	if out, err := exec.Command(l.ctl, "--socket", l.sock, "reload").CombinedOutput(); err != nil {
		l.t.Fatalf("xdhcpctl reload: %v\n%s", err, out)
	}
}

// forceRenew runs `xdhcpctl forcerenew ARGS --json` and returns the
// campaign it printed and its exit status.
func (l *lab) forceRenew(timeout time.Duration, args ...string) (control.CampaignInfo, int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append(append([]string{"--socket", l.sock, "forcerenew"}, args...), "--json")
	cmd := exec.CommandContext(ctx, l.ctl, argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("xdhcpctl %q: %v\n%s", argv, err, stderr.String())
	}
	var ci control.CampaignInfo
	if err := json.Unmarshal(out, &ci); err != nil {
		l.t.Fatalf("xdhcpctl %q (exit %d): %v\nstdout %s\nstderr %s\nserver log:\n%s", argv, code, err, out, stderr.String(), l.daemon.Output())
	}
	return ci, code
}

// campaign reads a campaign's status over the control socket.
func (l *lab) campaign(id string) control.CampaignInfo {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ci control.CampaignInfo
	if err := control.Call(ctx, l.sock, "forcerenew-status", control.CampaignID{ID: id}, &ci); err != nil {
		l.t.Fatal(err)
	}
	return ci
}

// waitCampaign polls a campaign until ok says so.
func (l *lab) waitCampaign(id string, timeout time.Duration, what string, ok func(control.CampaignInfo) bool) control.CampaignInfo {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ci := l.campaign(id)
		if ok(ci) {
			return ci
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("campaign %s: not %s within %v: %+v\nserver log:\n%s", id, what, timeout, ci, l.daemon.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dhcpcdClient is dhcpcd running in the foreground with debug logging
// (its log is the process output) on its own namespace's interface.
type dhcpcdClient struct {
	l      *lab
	ns     *netns.NS
	ifname string
	mac    string
	conf   string
	p      *netns.Proc
}

// newDhcpcd adds a client namespace and starts dhcpcd there. dhcpcd keeps
// its lease, pid file and control sockets in the host's /var/lib/dhcpcd
// and /run/dhcpcd by interface name, so the name is unique to this test
// process and the files are removed when the test ends, including those a
// kill -9 leaves behind.
func (l *lab) newDhcpcd(prefix, mac string) *dhcpcdClient {
	l.t.Helper()
	needTools(l.t, "dhcpcd")
	d := &dhcpcdClient{l: l, ifname: dhcpcdIfname(prefix), mac: mac, conf: filepath.Join(l.dir, prefix+"-dhcpcd.conf")}
	d.ns = l.client(d.ifname, mac)
	if err := os.WriteFile(d.conf, []byte(frDhcpcdConf), 0o600); err != nil {
		l.t.Fatal(err)
	}
	removeDhcpcdFiles(l.t, d.ifname)
	d.start()
	return d
}

// removeDhcpcdFiles removes, when the test ends, what dhcpcd on ifname
// leaves in the host's directories. Registered before dhcpcd's own
// cleanup, it runs after dhcpcd has stopped.
func removeDhcpcdFiles(t *testing.T, ifname string) {
	t.Cleanup(func() {
		os.Remove(filepath.Join("/var/lib/dhcpcd", ifname+".lease"))
		for _, f := range []string{".pid", ".sock", ".unpriv.sock"} {
			os.Remove(filepath.Join("/run/dhcpcd", ifname+f))
			os.Remove(filepath.Join("/run/dhcpcd", ifname+"-4"+f))
		}
	})
}

func (d *dhcpcdClient) start() {
	d.l.t.Helper()
	p, err := d.ns.Start(context.Background(), "dhcpcd", "-4", "-B", "-d", "-f", d.conf, d.ifname)
	if err != nil {
		d.l.t.Fatal(err)
	}
	d.p = p
	t := d.l.t
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("dhcpcd on %s (pid %d):\n%s", d.ifname, p.Pid(), p.Output())
		}
	})
}

// waitLog waits for the n-th line of dhcpcd's log containing s.
func (d *dhcpcdClient) waitLog(s string, n int, timeout time.Duration) {
	d.l.t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(d.p.Output(), s) < n {
		if d.p.Exited() || time.Now().After(deadline) {
			d.l.t.Fatalf("dhcpcd on %s: %q appeared %d times, want %d (exited %v)\ndhcpcd:\n%s\nserver log:\n%s",
				d.ifname, s, strings.Count(d.p.Output(), s), n, d.p.Exited(), d.p.Output(), d.l.daemon.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bound waits until dhcpcd holds a lease the server has active, took the
// key from the ACK (the n-th time), and listens on its address for the
// unicast FORCERENEW (dhcpcd with privilege separation spawns that
// listener only once bound).
func (d *dhcpcdClient) bound(since time.Time, nth int) control.LeaseInfo {
	d.l.t.Helper()
	li := d.l.waitLease(d.mac, "active", since, 30*time.Second)
	d.waitLog("leased "+li.IP, 1, 10*time.Second)
	d.waitLog("accepted reconfigure key", nth, 5*time.Second)
	d.waitLog("spawned listener "+li.IP, 1, 5*time.Second)
	return li
}

func (d *dhcpcdClient) forced() int { return strings.Count(d.p.Output(), frDhcpcdLine) }

// TestForceRenewDhcpcd: dhcpcd with its default configuration is given a
// key and, on `xdhcpctl forcerenew`, renews; after kill -9 and a restart
// (INIT-REBOOT) it is given a new key and a FORCERENEW still works; with
// the old pool draining, `--pool OLD --move` moves it into the new pool.
func TestForceRenewDhcpcd(t *testing.T) {
	l := newFRLab(t)
	const mac = "02:00:00:00:16:01"
	t0 := time.Now()
	d := l.newDhcpcd("fr", mac)
	li := d.bound(t0, 1)
	if !inPool(li.IP) || !strings.HasPrefix(li.ClientID, "ff:") {
		t.Fatalf("lease %+v: want one from %s keyed by dhcpcd's DUID client-id", li, frOldPool)
	}

	forceOne := func(t *testing.T, d *dhcpcdClient, ip string, selector ...string) {
		t.Helper()
		mark := len(l.daemon.Output())
		answered := l.metric("xdhcp_forcerenew_answered_total")
		sent := l.metric("xdhcp_forcerenew_sent_total")
		before := d.forced()
		t1 := time.Now()
		ci, code := l.forceRenew(20*time.Second, append(selector, "--wait")...)
		if code != 0 || !ci.Done || ci.Total != 1 || ci.Sent != 1 || ci.Renewed != 1 || ci.Moved+ci.NoAnswer+ci.NoKey+ci.Remaining != 0 || len(ci.NotForced) != 0 {
			t.Fatalf("forcerenew %q: exit %d, campaign %+v; want done, 1 sent and renewed", selector, code, ci)
		}
		// dhcpcd says so, and renews unicast from its address to ours.
		d.waitLog(frDhcpcdLine, before+1, 5*time.Second)
		l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+ip, "dst=10.77.0.1")
		if li := l.waitLease(d.mac, "active", t1, 5*time.Second); li.IP != ip {
			t.Fatalf("a FORCERENEW without --move moved the client %s -> %s", ip, li.IP)
		}
		if got := l.metric("xdhcp_forcerenew_answered_total"); got != answered+1 {
			t.Errorf("xdhcp_forcerenew_answered_total %v -> %v, want +1", answered, got)
		}
		if got := l.metric("xdhcp_forcerenew_sent_total"); got < sent+1 {
			t.Errorf("xdhcp_forcerenew_sent_total %v -> %v, want at least +1", sent, got)
		}
		t.Logf("forcerenew %q: %d FORCERENEW(s) sent, renewed", selector, ci.Transmissions)
	}

	if !t.Run("renews", func(t *testing.T) { forceOne(t, d, li.IP, "--ip", li.IP) }) {
		return
	}

	if !t.Run("after kill -9 and INIT-REBOOT", func(t *testing.T) {
		if err := d.p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.p.Wait()
		mark := len(l.daemon.Output())
		t1 := time.Now()
		d.start()
		// dhcpcd comes back asking for its address (INIT-REBOOT: option
		// 50 and no ciaddr); the ACK carries a new key, which it takes.
		l.waitMessage(mark, 20*time.Second, "type=request", "ciaddr=0.0.0.0", "chaddr="+mac)
		if li2 := d.bound(t1, 1); li2.IP != li.IP {
			t.Fatalf("after the restart dhcpcd holds %s, had %s", li2.IP, li.IP)
		}
		if strings.Contains(d.p.Output(), "soliciting a DHCP lease") {
			t.Fatalf("the restarted dhcpcd went through DISCOVER, not INIT-REBOOT:\n%s", d.p.Output())
		}
		forceOne(t, d, li.IP, "--mac", mac)
	}) {
		return
	}

	t.Run("move out of a draining pool", func(t *testing.T) {
		l.writeConfig(frConfig(l.dir, "{range: "+frOldPool+", drain: true}, "+frNewPool, ""))
		l.ctlReload()
		const draining = `xdhcp_pool_addresses{state="draining",subnet="10.77.0.0/24"}`
		if n := l.metric(draining); n != 1 {
			t.Fatalf("%s = %v after the reload, want 1 (dhcpcd's lease)", draining, n)
		}
		moved := d.forced()
		t1 := time.Now()
		ci, code := l.forceRenew(30*time.Second, "--pool", frOldPool, "--move", "--wait")
		if code != 0 || !ci.Done || !ci.Move || ci.Total != 1 || ci.Moved != 1 || len(ci.NotForced) != 0 {
			t.Fatalf("forcerenew --pool %s --move: exit %d, campaign %+v; want done with 1 moved", frOldPool, code, ci)
		}
		d.waitLog(frDhcpcdLine, moved+1, 5*time.Second)
		// dhcpcd renewing listens only on a UDP socket bound to its
		// address, port 68: the NAK must reach it there, or it goes on
		// renewing (and is NAKed unheard) until it rebinds at T2.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.p.Output(), "NAK: "); {
			if time.Now().After(deadline) {
				t.Fatalf("dhcpcd heard no NAK within 5s of renewing on the FORCERENEW (a NAK broadcast to 255.255.255.255 does not reach its socket bound to %s:68)\ndhcpcd:\n%s\nserver log:\n%s",
					li.IP, d.p.Output(), l.daemon.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The old address stays listed (released), so look for the new one.
		inNew := func(ip string) bool {
			a, err := netip.ParseAddr(ip)
			return err == nil && !a.Less(netip.MustParseAddr("10.77.0.200")) && !netip.MustParseAddr("10.77.0.249").Less(a)
		}
		var li2 control.LeaseInfo
		deadline := time.Now().Add(20 * time.Second)
		for li2.IP == "" {
			for _, o := range l.leases() {
				if o.HWAddress == mac && o.State == "active" && inNew(o.IP) {
					li2 = o
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no active lease in %s for %s within 20s of the move (started %s); leases %+v\nserver log:\n%s",
					frNewPool, mac, t1.Format(time.StampMilli), l.leases(), l.daemon.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
		d.waitLog("leased "+li2.IP, 1, 10*time.Second)
		if got := l.sh(d.ns, "ip -4 -br addr show dev "+d.ifname); !strings.Contains(got, li2.IP+"/24") || strings.Contains(got, li.IP+"/") {
			t.Fatalf("dhcpcd configured %q, want %s only", got, li2.IP)
		}
		if n := l.metric(draining); n != 0 {
			t.Fatalf("%s = %v after the move, want 0", draining, n)
		}
		for _, o := range l.leases() {
			if inPool(o.IP) && o.State == "active" {
				t.Fatalf("the draining pool still holds an active lease: %+v", o)
			}
		}
	})
}

// TestForceRenewFastPathPunts: with the fast path on, dhcpcd's lease is
// in the XDP map and its renewals are answered there; while a FORCERENEW
// is pending the entry stops serving, so the REQUEST it provokes is
// passed up (not_serving) and answered by the slow path; afterwards XDP
// answers again.
func TestForceRenewFastPathPunts(t *testing.T) {
	needTools(t, "dhcpcd", "curl", "ethtool")
	const mac = "02:00:00:00:16:11"
	l, c := fastLab(t, "generic", "10m", mac)
	// Short retransmissions, as in frLabConfig (fastLabConfig has none).
	cfg, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	withFR := strings.Replace(string(cfg), "    lease-time: 10m\n", "    lease-time: 10m\n    forcerenew:\n      retransmit-start: 300ms\n      retransmit-count: 3\n", 1)
	if withFR == string(cfg) {
		t.Fatalf("fastLabConfig changed: no 10.77.0.0/24 lease-time line to add forcerenew settings after:\n%s", cfg)
	}
	l.writeConfig(withFR)
	l.ctlReload()
	ifname := dhcpcdIfname("xr")
	if err := c.Rename("eth0", ifname); err != nil {
		t.Fatal(err)
	}
	d := &dhcpcdClient{l: l, ns: c, ifname: ifname, mac: mac, conf: filepath.Join(l.dir, "dhcpcd.conf")}
	if err := os.WriteFile(d.conf, []byte(frDhcpcdConf), 0o600); err != nil {
		t.Fatal(err)
	}
	removeDhcpcdFiles(t, ifname)
	t0 := time.Now()
	d.start()
	li := d.bound(t0, 1)

	renewByXDP := func(what string) {
		t.Helper()
		reqs, fast := l.requests(), l.fastReplies()
		ts := time.Now()
		l.sh(c, "dhcpcd -4 -N "+ifname)
		l.waitFast(fast, 10*time.Second)
		l.waitLease(mac, "active", ts, 5*time.Second)
		if got := l.requests(); got != reqs {
			t.Fatalf("%s: the slow path saw the renewal (requests %v -> %v)", what, reqs, got)
		}
	}
	// The renewal XDP answers must be folded into the lease, since its
	// xid is the one the FORCERENEW must carry (dhcpcd ignores any other).
	// XDP reports when it answered to the nanosecond, so a renewal right
	// after the ACK, in the same second, is folded too (no wait here).
	renewByXDP("before the FORCERENEW")

	const notServing = `xdhcp_fastpath_punts_total{reason="not_serving"}`
	punts, reqs, fast := l.metricOrZero(notServing), l.requests(), l.fastReplies()
	ci, code := l.forceRenew(20*time.Second, "--ip", li.IP, "--wait")
	if code != 0 || !ci.Done || ci.Renewed != 1 {
		t.Fatalf("forcerenew: exit %d, campaign %+v", code, ci)
	}
	d.waitLog(frDhcpcdLine, 1, 5*time.Second)
	if got := l.metric(notServing); got <= punts {
		t.Fatalf("%s %v -> %v: the forced renewal was not passed up for not serving", notServing, punts, got)
	}
	if got := l.requests(); got <= reqs {
		t.Fatalf("the slow path saw no REQUEST (requests %v -> %v)", reqs, got)
	}
	if got := l.fastReplies(); got != fast {
		t.Fatalf("XDP answered the forced renewal (replies %v -> %v)", fast, got)
	}
	// The campaign is done: the entry serves again.
	renewByXDP("after the FORCERENEW")
}

// TestForceRenewResumesAfterRestart: a campaign over two dhcpcd clients
// at one client per 10 s; the daemon is restarted after the first has
// renewed, and the campaign resumes and forces the second.
func TestForceRenewResumesAfterRestart(t *testing.T) {
	l := newFRLab(t)
	t0 := time.Now()
	a := l.newDhcpcd("fa", "02:00:00:00:16:21")
	b := l.newDhcpcd("fb", "02:00:00:00:16:22")
	a.bound(t0, 1)
	b.bound(t0, 1)
	ci, code := l.forceRenew(10*time.Second, "--subnet", "10.77.0.0/24", "--rate", "6/m")
	if code != 0 || ci.Total != 2 || ci.Done {
		t.Fatalf("forcerenew: exit %d, campaign %+v; want 2 clients, under way", code, ci)
	}
	first := l.waitCampaign(ci.ID, 10*time.Second, "1 renewed", func(c control.CampaignInfo) bool { return c.Renewed == 1 })
	if first.Remaining != 1 {
		t.Fatalf("after the first renewal: %+v, want 1 remaining (rate 6/m)", first)
	}
	// dhcpcd logs through its own logger process: the line may come
	// after the REQUEST the server counted.
	for deadline := time.Now().Add(5 * time.Second); a.forced()+b.forced() == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	which, other := a, b
	if b.forced() == 1 {
		which, other = b, a
	}
	if which.forced() != 1 || other.forced() != 0 {
		t.Fatalf("FORCERENEWs seen: %s %d, %s %d; want one each side of the restart", a.ifname, a.forced(), b.ifname, b.forced())
	}
	l.daemon.Stop()
	l.start()
	if !strings.Contains(l.daemon.Output(), "forcerenew campaign resumed") {
		t.Fatalf("the restarted daemon did not say it resumed the campaign:\n%s", l.daemon.Output())
	}
	end := l.waitCampaign(ci.ID, 20*time.Second, "done", func(c control.CampaignInfo) bool { return c.Done })
	if end.Renewed != 2 || end.Total != 2 || end.Remaining != 0 || len(end.NotForced) != 0 {
		t.Fatalf("after the restart the campaign ended %+v; want both renewed", end)
	}
	other.waitLog(frDhcpcdLine, 1, 5*time.Second)
	// The finished client was recorded as such before the restart: the
	// resumed campaign does not force it again.
	if n := which.forced(); n != 1 {
		t.Errorf("%s was forced %d times; its renewal before the restart should have counted", which.ifname, n)
	}
	// The campaign is listed, done, by `xdhcpctl forcerenew status`.
	out, err := exec.Command(l.ctl, "--socket", l.sock, "forcerenew", "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ci.ID+"  done") {
		t.Fatalf("forcerenew status: %v\n%s", err, out)
	}
}

// TestForceRenewClientsWithoutKey: udhcpc and dhclient never send option
// 145. By default the report lists them as having no key and nothing is
// sent; with allow-unauthenticated they get unsigned FORCERENEWs, which
// they ignore, and retransmission stops at the bound (3 here).
func TestForceRenewClientsWithoutKey(t *testing.T) {
	needTools(t, "udhcpc", "dhclient")
	l := newFRLab(t)
	const udhcpcMAC, dhclientMAC = "02:00:00:00:16:31", "02:00:00:00:16:32"
	uc := l.client("eth0", udhcpcMAC)
	boundUdhcpc(t, l, uc, udhcpcMAC, "ip=$ip")
	dc := l.client("dh1", dhclientMAC)
	t0 := time.Now()
	p, err := dc.Start(context.Background(), "dhclient", "-4", "-d", "-v", "-pf", filepath.Join(l.dir, "dhclient.pid"), "-lf", filepath.Join(l.dir, "dhclient.leases"), "dh1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	l.waitLease(dhclientMAC, "active", t0, 15*time.Second)
	waitOutputCount(t, p, "bound to ", 1, 10*time.Second)

	sent := l.metric("xdhcp_forcerenew_sent_total")
	ci, code := l.forceRenew(20*time.Second, "--subnet", "10.77.0.0/24", "--wait")
	if code != 3 || !ci.Done || ci.Total != 2 || ci.NoKey != 2 || ci.Sent != 0 || len(ci.NotForced) != 2 {
		t.Fatalf("forcerenew without keys: exit %d, campaign %+v; want exit 3, 2 without key, none sent", code, ci)
	}
	for _, u := range ci.NotForced {
		if u.Reason != "no-key" || (u.HWAddress != udhcpcMAC && u.HWAddress != dhclientMAC) {
			t.Fatalf("not forced: %+v", ci.NotForced)
		}
	}
	if got := l.metric("xdhcp_forcerenew_sent_total"); got != sent {
		t.Fatalf("FORCERENEWs went to clients without a key: sent %v -> %v", sent, got)
	}
	// The human report names them too.
	out, _ := exec.Command(l.ctl, "--socket", l.sock, "forcerenew", "status", ci.ID).CombinedOutput()
	for _, w := range []string{udhcpcMAC, dhclientMAC, "no key (client sent no option 145)"} {
		if !strings.Contains(string(out), w) {
			t.Fatalf("forcerenew status %s lacks %q:\n%s", ci.ID, w, out)
		}
	}

	l.writeConfig(frConfig(l.dir, frOldPool, "\n      allow-unauthenticated: true"))
	l.ctlReload()
	gaveUp := l.metric("xdhcp_forcerenew_gave_up_total")
	ci, code = l.forceRenew(30*time.Second, "--subnet", "10.77.0.0/24", "--wait")
	if code != 3 || !ci.Done || ci.Sent != 2 || ci.NoAnswer != 2 || ci.NoKey != 0 || ci.Transmissions != 2*3 {
		t.Fatalf("unauthenticated forcerenew: exit %d, campaign %+v; want 2 sent 3 times each, 2 without answer", code, ci)
	}
	for _, u := range ci.NotForced {
		if u.Reason != "no-answer" {
			t.Fatalf("not forced: %+v", ci.NotForced)
		}
	}
	if got := l.metric("xdhcp_forcerenew_gave_up_total"); got != gaveUp+2 {
		t.Fatalf("xdhcp_forcerenew_gave_up_total %v -> %v, want +2", gaveUp, got)
	}
	// Retransmission stopped at the bound: nothing more goes out.
	after := l.metric("xdhcp_forcerenew_sent_total")
	if after != sent+6 {
		t.Fatalf("xdhcp_forcerenew_sent_total %v -> %v, want +6", sent, after)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the last backoff step (1.2 s)
	if got := l.metric("xdhcp_forcerenew_sent_total"); got != after {
		t.Fatalf("FORCERENEWs still sent after the bound: %v -> %v", after, got)
	}
	// Both still hold their leases (they will renew at T1 as usual).
	for _, m := range []string{udhcpcMAC, dhclientMAC} {
		if li, ok := l.leaseFor(m); !ok || li.State != "active" {
			t.Fatalf("%s: %+v after the campaign", m, li)
		}
	}
}

// TestForceRenewMoveWithoutKeyAtRenewal: a move campaign cannot force a
// client that sent no option 145 (udhcpc); it is counted no-key, and once
// it renews on its own (SIGUSR1 makes udhcpc renew at once) it is NAKed,
// gets an address of the new pool, and the campaign's moved-at-renewal
// count (xdhcpctl forcerenew status, --json and report) says so.
func TestForceRenewMoveWithoutKeyAtRenewal(t *testing.T) {
	needTools(t, "udhcpc")
	l := newFRLab(t)
	const mac = "02:00:00:00:16:41"
	c := l.client("eth0", mac)
	p, _, li := boundUdhcpc(t, l, c, mac, "ip=$ip")
	if !strings.HasPrefix(li.IP, "10.77.0.1") {
		t.Fatalf("lease %+v not from %s", li, frOldPool)
	}
	l.writeConfig(frConfig(l.dir, "{range: "+frOldPool+", drain: true}, "+frNewPool, ""))
	l.ctlReload()
	ci, code := l.forceRenew(20*time.Second, "--pool", frOldPool, "--move", "--wait")
	if code != 3 || !ci.Done || ci.Total != 1 || ci.NoKey != 1 || ci.MovedAtRenewal != 0 {
		t.Fatalf("forcerenew --move without a key: exit %d, campaign %+v; want exit 3, 1 no-key, 0 moved at renewal", code, ci)
	}

	p.Signal(sigUSR1)
	// The lease's times have whole seconds, as the bind did a moment ago:
	// wait for the address to change rather than for a later CLTT.
	newLease := func() (control.LeaseInfo, bool) {
		for _, li := range l.leases() {
			if li.HWAddress == mac && li.State == "active" && strings.HasPrefix(li.IP, "10.77.0.2") {
				return li, true
			}
		}
		return control.LeaseInfo{}, false
	}
	deadline := time.Now().Add(15 * time.Second)
	_, ok := newLease()
	for ; !ok && time.Now().Before(deadline); _, ok = newLease() {
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("after its renewal: leases %+v, want an active one from %s\nserver log:\n%s", l.leases(), frNewPool, l.daemon.Output())
	}
	deadline = time.Now().Add(5 * time.Second)
	for ci = l.campaign(ci.ID); ci.MovedAtRenewal != 1 && time.Now().Before(deadline); ci = l.campaign(ci.ID) {
		time.Sleep(100 * time.Millisecond)
	}
	if ci.MovedAtRenewal != 1 || ci.NoKey != 1 {
		t.Fatalf("campaign after the client's renewal: %+v; want moved-at-renewal 1", ci)
	}
	out, _ := exec.Command(l.ctl, "--socket", l.sock, "forcerenew", "status", ci.ID).CombinedOutput()
	if !strings.Contains(string(out), "no key 1, moved at renewal 1/1, remaining 0") {
		t.Fatalf("forcerenew status %s:\n%s\nwant it to count the client moved at its renewal", ci.ID, out)
	}
}

// TestForceRenewDhcpcdInform: dhcpcd configured by DHCPINFORM (the
// address set by hand, `dhcpcd -s ADDR/24`: it only INFORMs) is given a
// key in its INFORM's ACK and remembered (xdhcp_informed_clients);
// `xdhcpctl forcerenew --ip ADDR` sends it a FORCERENEW with that INFORM's
// xid, signed under that key, which dhcpcd accepts. dhcpcd 9.4.1 is bound
// once its INFORM is ACKed, so it answers by renewing (a unicast REQUEST
// with ciaddr), not with a new INFORM; the server answers that as an
// INFORM (configuration only), and dhcpcd approves its address again
// ("received approval") and keeps it: a NAK would make it drop the
// address. The campaign ends with the client counted informed. A second
// FORCERENEW works too: the REQUEST's xid was recorded and the key kept.
func TestForceRenewDhcpcdInform(t *testing.T) {
	l := newFRLab(t)
	needTools(t, "dhcpcd")
	const mac, addr = "02:00:00:00:16:31", "10.77.0.60" // outside the pool: configured by hand
	d := &dhcpcdClient{l: l, ifname: dhcpcdIfname("fi"), mac: mac, conf: filepath.Join(l.dir, "fi-dhcpcd.conf")}
	d.ns = l.client(d.ifname, mac)
	// A host configured by hand. (dhcpcd 9.4.1 left to add the address
	// itself with noarp never sends its INFORM here.)
	l.sh(d.ns, "ip addr add "+addr+"/24 dev "+d.ifname)
	if err := os.WriteFile(d.conf, []byte(frDhcpcdConf), 0o600); err != nil {
		t.Fatal(err)
	}
	removeDhcpcdFiles(t, d.ifname)
	mark := len(l.daemon.Output())
	p, err := d.ns.Start(context.Background(), "dhcpcd", "-4", "-B", "-d", "-f", d.conf, "-s", addr+"/24", d.ifname)
	if err != nil {
		t.Fatal(err)
	}
	d.p = p
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("dhcpcd on %s (pid %d):\n%s", d.ifname, p.Pid(), p.Output())
		}
	})
	l.waitMessage(mark, 30*time.Second, "type=inform", "ciaddr="+addr)
	d.waitLog("accepted reconfigure key", 1, 10*time.Second)
	if n := l.metric("xdhcp_informed_clients"); n != 1 {
		t.Fatalf("xdhcp_informed_clients %v, want 1", n)
	}
	if _, ok := l.leaseFor(mac); ok {
		t.Fatal("an INFORM created a lease")
	}

	for round := 1; round <= 2; round++ {
		mark := len(l.daemon.Output())
		answered := l.metric("xdhcp_forcerenew_answered_total")
		informs := l.metric(`xdhcp_slowpath_messages_total{type="inform"}`)
		ci, code := l.forceRenew(20*time.Second, "--ip", addr, "--wait")
		if code != 0 || !ci.Done || ci.Total != 1 || ci.Sent != 1 || ci.Informed != 1 || ci.Renewed+ci.Moved+ci.NoAnswer+ci.NoKey+ci.Remaining != 0 || len(ci.NotForced) != 0 {
			t.Fatalf("round %d: forcerenew --ip %s: exit %d, campaign %+v; want done, 1 sent and informed\ndhcpcd:\n%s", round, addr, code, ci, d.p.Output())
		}
		// dhcpcd took it and renewed, unicast from its address; the
		// configuration-only ACK approved its address again.
		d.waitLog(frDhcpcdLine, round, 5*time.Second)
		l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+addr, "dst=10.77.0.1")
		d.waitLog("received approval for "+addr, round+1, 5*time.Second)
		if got := l.metric("xdhcp_forcerenew_answered_total"); got != answered+1 {
			t.Errorf("round %d: xdhcp_forcerenew_answered_total %v -> %v, want +1", round, answered, got)
		}
		if got := l.metric(`xdhcp_slowpath_messages_total{type="inform"}`); got != informs {
			t.Errorf("round %d: INFORMs %v -> %v: dhcpcd informed again rather than renewing", round, informs, got)
		}
		t.Logf("round %d: %d FORCERENEW(s) sent, answered by a REQUEST, ACKed as an INFORM", round, ci.Transmissions)
	}
	out := d.p.Output()
	if strings.Contains(out, "NAK") {
		t.Fatalf("dhcpcd was NAKed:\n%s", out)
	}
	if got := l.sh(d.ns, "ip -4 -o addr show dev "+d.ifname); !strings.Contains(got, addr+"/24") {
		t.Fatalf("dhcpcd's interface lost %s: %s", addr, got)
	}
	if n := l.metricOrZero(`xdhcp_slowpath_replies_total{type="nak"}`); n != 0 {
		t.Fatalf("%v NAKs sent", n)
	}
	if strings.Contains(d.p.Output(), "authentication failed") {
		t.Fatalf("dhcpcd refused a message's authentication:\n%s", d.p.Output())
	}
}
