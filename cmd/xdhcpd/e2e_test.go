package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// The end-to-end tests run the real daemon in a network namespace with a
// bridge (10.77.0.1/24) and real DHCP clients in their own namespaces.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds xdhcpd and xdhcpctl once per test run.
func binaries(t *testing.T) (xdhcpd, xdhcpctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "xdhcp-e2e-bin")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "github.com/xdhcp/xdhcp/cmd/xdhcpd", "github.com/xdhcp/xdhcp/cmd/xdhcpctl").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "xdhcpd"), filepath.Join(binDir, "xdhcpctl")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needTools skips the test when a client or tool is missing, and fails it
// under CI=true (testenv).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	testenv.RequireCommands(t, tools...)
}

// stopDhcpcd stops dhcpcd on ifname when the test ends and forgets the
// lease it saved. dhcpcd keeps leases in the host's /var/lib/dhcpcd by
// interface name, so a later run on a same-named interface would otherwise
// start by asking for an address from a server that no longer exists.
// dhcpcdIfname names a client interface for dhcpcd, unique to this test
// process: dhcpcd keeps its lease (/var/lib/dhcpcd/IF.lease), pid file and
// control socket (/run/dhcpcd) in the host's directories, named by
// interface, so a fixed name collides with another test run's dhcpcd (a
// second one refuses to start) and with the host's own interfaces.
func dhcpcdIfname(prefix string) string { return fmt.Sprintf("%s%d", prefix, os.Getpid()) }

func stopDhcpcd(t *testing.T, c *netns.NS, ifname string) {
	t.Cleanup(func() {
		c.Exec(context.Background(), "dhcpcd", "-4", "-x", ifname)
		os.Remove(filepath.Join("/var/lib/dhcpcd", ifname+".lease"))
	})
}

// lab is a server namespace with a bridge and the daemon, plus helpers to
// attach client namespaces.
type lab struct {
	t       *testing.T
	srv     *netns.NS
	dir     string
	cfgPath string
	sock    string
	ctl     string
	xdhcpd  string
	daemon  *netns.Proc
	clients int
	pinDir  string // the fast path's bpffs pins, when it is on
}

const labConfig = `server:
  interfaces: [br0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.149]
    lease-time: {{LEASE}}
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.53]
      domain-name: example.net
    reservations:
      - hw-address: 02:00:00:00:00:42
        ip: 10.77.0.42
  - subnet: 10.78.0.0/16
    pools: [10.78.1.0-10.78.255.254]
    lease-time: 1h
    options:
      routers: [10.78.0.1]
`

func newLab(t *testing.T, leaseTime string) *lab { return newLabWith(t, leaseTime, nil) }

// newLabWith is newLab with prepare, when given, called with the lab
// before the daemon starts (to put its state directory, l.dir/state, on a
// file system of its own).
func newLabWith(t *testing.T, leaseTime string, prepare func(l *lab)) *lab {
	t.Helper()
	xdhcpd, xdhcpctl := binaries(t)
	srv := netns.ForTest(t, "xs")
	l := &lab{t: t, srv: srv, dir: t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	l.sh(srv, "ip link add br0 type bridge && ip addr add 10.77.0.1/24 dev br0 && ip link set br0 up")
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	cfg := strings.NewReplacer("{{DIR}}", l.dir, "{{LEASE}}", leaseTime).Replace(labConfig)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(l)
	}
	l.start()
	return l
}

func (l *lab) sh(ns *netns.NS, script string) string {
	l.t.Helper()
	out, err := ns.Exec(context.Background(), "sh", "-c", script)
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

func (l *lab) start() {
	l.t.Helper()
	p, err := l.srv.StartHostMounts(context.Background(), l.xdhcpd, "--config", l.cfgPath)
	if err != nil {
		l.t.Fatal(err)
	}
	l.daemon = p
	l.t.Cleanup(func() { p.Stop() })
	l.waitReady()
}

func (l *lab) waitReady() {
	l.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Call(ctx, l.sock, "stats", nil, nil)
		cancel()
		// With the fast path on, ready also means every lease loaded
		// at start is in its map (it is written while the daemon
		// serves; the tests expect XDP to answer at once).
		if out := l.daemon.Output(); err == nil && (!strings.Contains(out, "fast path reconciled") || strings.Contains(out, "fast path published")) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("xdhcpd not ready after 15s; log:\n%s", l.daemon.Output())
}

// client adds a namespace on the bridge with one interface named ifname.
func (l *lab) client(ifname, mac string) *netns.NS { return l.clientOn(l.srv, "br0", ifname, mac) }

// clientOn is a client namespace whose ifname, with address mac, is a
// veth into the bridge in ns (the server's br0, or a router's segment).
func (l *lab) clientOn(ns *netns.NS, bridge, ifname, mac string) *netns.NS {
	l.t.Helper()
	l.clients++
	c := netns.ForTest(l.t, "xc")
	peer := fmt.Sprintf("p%d", l.clients)
	if err := netns.Veth(ns, peer, netip.Prefix{}, c, ifname, netip.Prefix{}); err != nil {
		l.t.Fatal(err)
	}
	if err := ns.Enslave(peer, bridge); err != nil {
		l.t.Fatal(err)
	}
	if err := c.SetMAC(ifname, mac); err != nil {
		l.t.Fatal(err)
	}
	return c
}

func (l *lab) leases() []control.LeaseInfo {
	l.t.Helper()
	var ls []control.LeaseInfo
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, l.sock, "leases", nil, &ls); err != nil {
		l.t.Fatal(err)
	}
	return ls
}

func (l *lab) leaseFor(mac string) (control.LeaseInfo, bool) {
	for _, li := range l.leases() {
		if li.HWAddress == mac {
			return li, true
		}
	}
	return control.LeaseInfo{}, false
}

// waitLease waits until mac holds a lease in state (or one of "a|b")
// whose CLTT is after since.
func (l *lab) waitLease(mac, state string, since time.Time, timeout time.Duration) control.LeaseInfo {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	var last control.LeaseInfo
	for time.Now().Before(deadline) {
		if li, ok := l.leaseFor(mac); ok {
			last = li
			cltt, _ := time.Parse(time.RFC3339, li.CLTT)
			if strings.Contains("|"+state+"|", "|"+li.State+"|") && !cltt.Before(since.Truncate(time.Second)) {
				return li
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("%s: no %s lease with CLTT after %s within %v; last %+v\nserver log:\n%s", mac, state, since.Format(time.RFC3339), timeout, last, l.daemon.Output())
	return last
}

// metric reads one series from the daemon's Prometheus endpoint and fails
// the test when the series is absent: reading it as 0 would let a renamed
// or unregistered metric keep "did not move" checks green.
func (l *lab) metric(name string) float64 {
	l.t.Helper()
	v, ok := l.metricSeries(name)
	if !ok {
		l.t.Fatalf("metric series %s is not exported", name)
	}
	return v
}

// metricOrZero is metric for a labelled series that legitimately does not
// exist yet: a counter vector's series appears with its first increment
// (xdhcp_slowpath_offers_withdrawn_total{bound="pool"} before any
// withdrawal). Callers say so by calling it; the family itself must be
// registered, which TestMetricsREADMEListsAreExported checks.
func (l *lab) metricOrZero(name string) float64 {
	l.t.Helper()
	v, _ := l.metricSeries(name)
	return v
}

// scrape returns the daemon's /metrics text.
func (l *lab) scrape() string {
	l.t.Helper()
	return l.httpGet("/metrics")
}

// httpGet reads path from the metrics listener.
func (l *lab) httpGet(path string) string {
	l.t.Helper()
	out, err := l.srv.Exec(context.Background(), "curl", "-sS", "--fail", "http://127.0.0.1:9467"+path)
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", path, err, out)
	}
	return string(out)
}

func (l *lab) metricSeries(name string) (float64, bool) {
	l.t.Helper()
	for _, line := range strings.Split(l.scrape(), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				l.t.Fatalf("metric %s: value %q: %v", name, rest, err)
			}
			return v, true
		}
	}
	return 0, false
}

// blockUnicastToServer points the client's ARP entry for the server at a
// MAC nobody has, so unicast renewals vanish and the client falls through
// RENEWING into REBINDING (broadcast), as when a server becomes unreachable.
func (l *lab) blockUnicastToServer(c *netns.NS, ifname string) {
	l.sh(c, "ip neigh replace 10.77.0.1 lladdr 02:de:ad:00:00:01 dev "+ifname+" nud permanent")
}

func (l *lab) unblockUnicastToServer(c *netns.NS, ifname string) {
	l.sh(c, "ip neigh del 10.77.0.1 dev "+ifname+" 2>/dev/null || true")
}

// debugLog turns the daemon's log level to debug by a reload, so that
// each message it receives is logged with its source and destination.
func (l *lab) debugLog() {
	l.t.Helper()
	cfg, err := os.ReadFile(l.cfgPath)
	if err != nil {
		l.t.Fatal(err)
	}
	os.WriteFile(l.cfgPath, bytes.Replace(cfg, []byte("server:\n"), []byte("server:\n  log-level: debug\n"), 1), 0o600)
	n := strings.Count(l.daemon.Output(), "configuration reloaded")
	l.daemon.Signal(sigHUP)
	waitOutputCount(l.t, l.daemon, "configuration reloaded", n+1, 5*time.Second)
}

// waitMessage waits for the daemon's debug log to show a received message
// with all the given key=value fields, after the first skip bytes of its
// output, and returns where that line ends.
func (l *lab) waitMessage(skip int, timeout time.Duration, fields ...string) int {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := l.daemon.Output()
		at := skip
		for _, line := range strings.SplitAfter(out[min(skip, len(out)):], "\n") {
			at += len(line)
			if !strings.Contains(line, "msg=message ") {
				continue
			}
			if !slices.ContainsFunc(fields, func(f string) bool {
				return !strings.Contains(line, " "+f+" ") && !strings.HasSuffix(strings.TrimSpace(line), " "+f)
			}) {
				return at
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("no message with %v in the server log within %v:\n%s", fields, timeout, out[min(skip, len(out)):])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func inPool(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && !a.Less(netip.MustParseAddr("10.77.0.100")) && !netip.MustParseAddr("10.77.0.149").Less(a)
}

func TestUdhcpc(t *testing.T) {
	needTools(t, "udhcpc", "curl")
	l := newLab(t, "30s") // T1 15s, T2 26s
	const mac = "02:00:00:00:01:01"
	c := l.client("eth1", mac)
	envFile := filepath.Join(l.dir, "udhcpc.env")
	script := udhcpcScript(t, l.dir, envFile, "ip=$ip router=$router dns=$dns domain=$domain lease=$lease serverid=$serverid")
	t0 := time.Now()
	p, err := c.Start(context.Background(), "udhcpc", "-f", "-i", "eth1", "-s", script, "-t", "10", "-T", udhcpcTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	li := l.waitLease(mac, "active", t0, 15*time.Second)
	if !inPool(li.IP) || li.Subnet != "10.77.0.0/24" {
		t.Fatalf("lease %+v not from the pool", li)
	}
	env := l.waitClientFile(p, envFile, "bound ", 10*time.Second)
	want := fmt.Sprintf("bound ip=%s router=10.77.0.1 dns=10.77.0.53 domain=example.net lease=30 serverid=10.77.0.1", li.IP)
	if !strings.Contains(env, want) {
		t.Fatalf("udhcpc was given:\n%s\nwant %q", env, want)
	}

	// Renew: SIGUSR1 makes udhcpc renew at once, unicast to the server.
	l.debugLog()
	acks := l.metric(`xdhcp_slowpath_replies_total{type="ack"}`)
	mark := len(l.daemon.Output())
	t1 := time.Now()
	p.Signal(sigUSR1)
	l.waitLease(mac, "active", t1, 10*time.Second)
	mark = l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+li.IP, "dst=10.77.0.1")
	l.waitClientFile(p, envFile, "renew ip="+li.IP, 10*time.Second)
	if got := l.metric(`xdhcp_slowpath_replies_total{type="ack"}`); got <= acks {
		t.Fatalf("renewal: ACK count %v -> %v", acks, got)
	}

	// Rebind: with unicast blocked, udhcpc 1.35's unicast renewal at T1
	// (15 s after the renewal above) goes unanswered; after -T seconds it
	// broadcasts (it does not wait for T2) and keeps its address. A CLTT
	// 5 s past the block can only come from that exchange.
	l.blockUnicastToServer(c, "eth1")
	t2 := time.Now()
	l.waitLease(mac, "active", t2.Add(5*time.Second), 30*time.Second)
	if li2, _ := l.leaseFor(mac); li2.IP != li.IP {
		t.Fatalf("rebind changed the address %s -> %s", li.IP, li2.IP)
	}
	l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+li.IP, "dst=255.255.255.255")
	if got := l.sh(c, "ip neigh show 10.77.0.1 dev eth1"); !strings.Contains(got, "PERMANENT") {
		t.Fatalf("the unicast block did not survive the rebind (ip neigh: %q)", got)
	}

	// Release: SIGUSR2. udhcpc unicasts RELEASE to the server (RFC 2131
	// §4.4.6), so the server must be reachable again first; with the
	// neighbour entry still pointing nowhere the RELEASE is lost and the
	// test would depend on when the lease happens to expire.
	l.unblockUnicastToServer(c, "eth1")
	t3 := time.Now()
	p.Signal(sigUSR2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if li, _ := l.leaseFor(mac); li.State == "released" || li.State == "free" {
			break
		}
		if time.Now().After(deadline) {
			li, _ := l.leaseFor(mac)
			t.Fatalf("no RELEASE within 10s of SIGUSR2 (sent %s): lease %+v\nudhcpc:\n%s\nserver log:\n%s", t3.Format(time.StampMilli), li, p.Output(), l.daemon.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDhcpcd(t *testing.T) {
	needTools(t, "dhcpcd", "curl")
	l := newLab(t, "30s") // T1 15s, T2 26s
	const mac = "02:00:00:00:02:01"
	ifname := dhcpcdIfname("dc")
	c := l.client(ifname, mac)
	t0 := time.Now()
	// As Debian's stock dhcpcd.conf does, send a DUID client-id (RFC 4361):
	// the lease is keyed by it, not by chaddr.
	conf := filepath.Join(l.dir, "dhcpcd.conf")
	os.WriteFile(conf, []byte("duid\nipv4only\nnoipv4ll\noption domain_name_servers, domain_name, routers\n"), 0o600)
	if out, err := c.Exec(context.Background(), "dhcpcd", "-4", "-w", "-t", "20", "-f", conf, ifname); err != nil {
		t.Fatalf("dhcpcd: %v\n%s\nserver:\n%s", err, out, l.daemon.Output())
	}
	stopDhcpcd(t, c, ifname)
	li := l.waitLease(mac, "active", t0, 10*time.Second)
	if !inPool(li.IP) || !strings.HasPrefix(li.ClientID, "ff:") {
		t.Fatalf("lease %+v: want a pool address keyed by an RFC 4361 client-id", li)
	}
	if got := l.sh(c, "ip -4 -br addr show dev "+ifname); !strings.Contains(got, li.IP+"/24") {
		t.Fatalf("dhcpcd configured %q, lease %s", got, li.IP)
	}
	vars := l.sh(c, "dhcpcd -4 -U "+ifname)
	for _, w := range []string{"routers=10.77.0.1", "domain_name_servers=10.77.0.53", "domain_name=example.net"} {
		if !strings.Contains(vars, w) {
			t.Fatalf("dhcpcd lease lacks %s:\n%s", w, vars)
		}
	}
	// Renew (-N): a REQUEST from the leased address, unicast to the server.
	l.debugLog()
	mark := len(l.daemon.Output())
	t1 := time.Now()
	l.sh(c, "dhcpcd -4 -N "+ifname)
	l.waitLease(mac, "active", t1, 10*time.Second)
	mark = l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+li.IP, "dst=10.77.0.1")
	// Rebind: with unicast to the server blocked, the renewal at T1 is
	// lost and dhcpcd broadcasts from its address at T2 (RFC 2131 §4.4.5).
	l.blockUnicastToServer(c, ifname)
	t2 := time.Now()
	if li2 := l.waitLease(mac, "active", t2.Add(5*time.Second), 40*time.Second); li2.IP != li.IP {
		t.Fatalf("rebind moved %s -> %s", li.IP, li2.IP)
	}
	l.waitMessage(mark, 5*time.Second, "type=request", "ciaddr="+li.IP, "dst=255.255.255.255")
	// dhcpcd -k sends the RELEASE (unicast: lift the block), then sometimes
	// reports that its daemon was slow to exit; the server's record is
	// what matters here.
	l.unblockUnicastToServer(c, ifname)
	time.Sleep(time.Second) // let dhcpcd finish processing the rebind's ACK
	c.Exec(context.Background(), "dhcpcd", "-4", "-k", ifname)
	l.waitLease(mac, "released|free", t2, 10*time.Second)
}

func TestDhclient(t *testing.T) {
	needTools(t, "dhclient", "curl")
	l := newLab(t, "20s") // T1 10s, T2 17.5s
	const mac = "02:00:00:00:03:01"
	c := l.client("dh1", mac)
	lf := filepath.Join(l.dir, "dhclient.leases")
	pf := filepath.Join(l.dir, "dhclient.pid")
	t0 := time.Now()
	p, err := c.Start(context.Background(), "dhclient", "-4", "-d", "-v", "-pf", pf, "-lf", lf, "dh1")
	if err != nil {
		t.Fatal(err)
	}
	li := l.waitLease(mac, "active", t0, 15*time.Second)
	if !inPool(li.IP) {
		t.Fatalf("lease %+v", li)
	}
	leases := waitFileContains(t, lf, "option routers 10.77.0.1;", 5*time.Second)
	for _, w := range []string{"fixed-address " + li.IP + ";", `option domain-name "example.net";`, "option domain-name-servers 10.77.0.53;", "option dhcp-lease-time 20;"} {
		if !strings.Contains(leases, w) {
			t.Fatalf("dhclient lease file lacks %q:\n%s", w, leases)
		}
	}
	// dhclient renews by unicast at T1 (10 s).
	t1 := time.Now()
	l.waitLease(mac, "active", t1.Add(5*time.Second), 15*time.Second)
	if !strings.Contains(p.Output(), "DHCPREQUEST for "+li.IP+" on dh1 to 10.77.0.1") {
		t.Fatalf("no unicast renewal in dhclient's log:\n%s", p.Output())
	}
	// Block unicast: the next renewal fails and dhclient rebinds by broadcast at T2.
	l.blockUnicastToServer(c, "dh1")
	t2 := time.Now()
	l.waitLease(mac, "active", t2.Add(3*time.Second), 30*time.Second)
	if !strings.Contains(p.Output(), "DHCPREQUEST for "+li.IP+" on dh1 to 255.255.255.255") {
		t.Fatalf("no broadcast rebind in dhclient's log:\n%s", p.Output())
	}
	// The server's ACK is durable before dhclient has read it. Stopping
	// dhclient before it binds leaves the previous lease in its file, which
	// at T2 of a 20 s lease expires within 2.5 s, and dhclient -r does not
	// release an expired lease. Bound three times: DORA, renewal, rebind.
	waitOutputCount(t, p, "bound to "+li.IP, 3, 10*time.Second)
	p.Stop()
	// dhclient -r releases (unicast; lift the block first).
	l.unblockUnicastToServer(c, "dh1")
	if out, err := c.Exec(context.Background(), "dhclient", "-4", "-r", "-pf", pf, "-lf", lf, "dh1"); err != nil {
		t.Fatalf("dhclient -r: %v %s", err, out)
	}
	l.waitLease(mac, "released|free", t2, 10*time.Second)
}

func TestReservedMACGetsReservedAddress(t *testing.T) {
	needTools(t, "udhcpc")
	l := newLab(t, "1h")
	c := l.client("eth1", "02:00:00:00:00:42")
	if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", "eth1", "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	li, ok := l.leaseFor("02:00:00:00:00:42")
	if !ok || li.IP != "10.77.0.42" || li.State != "active" {
		t.Fatalf("reserved client got %+v", li)
	}
}

func TestInitRebootForeignAddressGetsNak(t *testing.T) {
	needTools(t, "dhclient", "curl")
	l := newLab(t, "1h")
	const mac = "02:00:00:00:04:01"
	c := l.client("nk1", mac)
	lf := filepath.Join(l.dir, "dhclient.leases")
	// A lease dhclient remembers from another network: it starts in
	// INIT-REBOOT asking for 10.78.1.5, which is not on this link.
	os.WriteFile(lf, []byte(`lease {
  interface "nk1";
  fixed-address 10.78.1.5;
  option subnet-mask 255.255.0.0;
  option dhcp-lease-time 3600;
  option dhcp-server-identifier 10.78.0.1;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
`), 0o600)
	t0 := time.Now()
	p, err := c.Start(context.Background(), "dhclient", "-4", "-d", "-v", "-pf", filepath.Join(l.dir, "pid"), "-lf", lf, "nk1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	li := l.waitLease(mac, "active", t0, 20*time.Second)
	if !inPool(li.IP) {
		t.Fatalf("after the NAK the client got %+v", li)
	}
	if !strings.Contains(p.Output(), "DHCPNAK from 10.77.0.1") {
		t.Fatalf("dhclient saw no NAK:\n%s", p.Output())
	}
	if n := l.metric(`xdhcp_slowpath_replies_total{type="nak"}`); n < 1 {
		t.Fatalf("NAK count %v", n)
	}
}

func TestDeclineTakesAddressOutOfUse(t *testing.T) {
	l, r := relayLab(t)
	hw := net.HardwareAddr{2, 0, 0, 0, 0x0b, 1}
	relayed := []dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1))}
	disc, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))...)
	offer := exchange(t, r, "10.78.0.1:67", disc)
	req, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
	if ack := exchange(t, r, "10.78.0.1:67", req); ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("no ACK: %s", ack.Summary())
	}
	// The client finds the address in use and declines it (no reply expected).
	dec, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
	send(t, r, "10.78.0.1:67", dec)
	ip := offer.YourIPAddr.String()
	deadline := time.Now().Add(5 * time.Second)
	var got control.LeaseInfo
	for time.Now().Before(deadline) {
		for _, li := range l.leases() {
			if li.IP == ip {
				got = li
			}
		}
		if got.State == "abandoned" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.State != "abandoned" || got.HWAddress != "" {
		t.Fatalf("declined %s: %+v", ip, got)
	}
	// Neither the declining client nor anyone else gets it again.
	for i := range 3 {
		d, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0x0b, byte(i)}), dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1)), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
		if o := exchange(t, r, "10.78.0.1:67", d); o.YourIPAddr.Equal(offer.YourIPAddr) {
			t.Fatalf("declined address %s offered again", ip)
		}
	}
}

func TestDhcpcdAvoidsAddressInUse(t *testing.T) {
	needTools(t, "dhcpcd")
	l := newLab(t, "1h")
	// A squatter already uses the first pool address. dhcpcd probes with
	// ARP (RFC 5227) and declines it if the server hands it out.
	sq := l.client("sq1", "02:00:00:00:05:99")
	l.sh(sq, "ip addr add 10.77.0.100/24 dev sq1")
	const mac = "02:00:00:00:05:01"
	ifname := dhcpcdIfname("dd")
	c := l.client(ifname, mac)
	if out, err := c.Exec(context.Background(), "dhcpcd", "-4", "-1", "-t", "40", "-f", "/dev/null", ifname); err != nil {
		t.Fatalf("dhcpcd: %v\n%s", err, out)
	}
	stopDhcpcd(t, c, ifname)
	li, _ := l.leaseFor(mac)
	if li.IP == "10.77.0.100" || !inPool(li.IP) || li.State != "active" {
		t.Fatalf("client lease %+v; leases %+v", li, l.leases())
	}
	for _, o := range l.leases() {
		if o.IP == "10.77.0.100" && o.State != "abandoned" {
			t.Fatalf("the address in use is %s, want abandoned or untouched", o.State)
		}
	}
}

func TestLeasesSurviveRestartAndKill9(t *testing.T) {
	needTools(t, "udhcpc")
	l := newLab(t, "1h")
	// Folds a minute apart: the kill finds the leases in the journal
	// only, and the start after it must fold them from there.
	cfg, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(l.cfgPath, bytes.Replace(cfg, []byte("server:\n"), []byte("server:\n  journal-fold-every: 1m\n"), 1), 0o600)
	l.daemon.Stop()
	l.start()
	var macs []string
	for i := range 3 {
		mac := fmt.Sprintf("02:00:00:00:06:%02x", i+1)
		c := l.client(fmt.Sprintf("k%d", i), mac)
		if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", fmt.Sprintf("k%d", i), "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout); err != nil {
			t.Fatalf("udhcpc: %v\n%s", err, out)
		}
		macs = append(macs, mac)
	}
	before := map[string]string{}
	for _, m := range macs {
		li, ok := l.leaseFor(m)
		if !ok {
			t.Fatalf("%s has no lease", m)
		}
		before[m] = li.IP
	}
	var st struct {
		Store struct {
			Unfolded int `json:"unfolded"`
		} `json:"store"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, l.sock, "stats", nil, &st); err != nil || st.Store.Unfolded < len(macs) {
		t.Fatalf("before the kill, %d changes wait in the journal (%v); want at least %d", st.Store.Unfolded, err, len(macs))
	}
	// kill -9: every ACKed lease was on disk before its ACK.
	l.daemon.Signal(sigKILL)
	l.daemon.Wait()
	l.start()
	for _, m := range macs {
		if li, ok := l.leaseFor(m); !ok || li.IP != before[m] || li.State != "active" {
			t.Fatalf("after kill -9, %s: %+v, want active %s", m, li, before[m])
		}
	}
	// Clean restart (SIGTERM) keeps them too.
	l.daemon.Stop()
	l.start()
	for _, m := range macs {
		if li, ok := l.leaseFor(m); !ok || li.IP != before[m] {
			t.Fatalf("after restart, %s: %+v", m, li)
		}
	}
}

func TestReloadRefusesBadConfigAndAppliesGoodOne(t *testing.T) {
	needTools(t, "udhcpc")
	l := newLab(t, "1h")
	good, _ := os.ReadFile(l.cfgPath)
	os.WriteFile(l.cfgPath, append(bytes.Clone(good), []byte("bogus-key: 1\n")...), 0o600)
	l.daemon.Signal(sigHUP)
	time.Sleep(500 * time.Millisecond)
	if !strings.Contains(l.daemon.Output(), "bogus-key") {
		t.Fatalf("bad config not reported:\n%s", l.daemon.Output())
	}
	c := l.client("r1", "02:00:00:00:07:01")
	if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", "r1", "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout); err != nil {
		t.Fatalf("old config stopped serving: %v\n%s", err, out)
	}
	// A good new config (shorter lease) is applied.
	os.WriteFile(l.cfgPath, bytes.Replace(good, []byte("lease-time: 1h\n    options:\n      routers: [10.77.0.1]"), []byte("lease-time: 7m\n    options:\n      routers: [10.77.0.1]"), 1), 0o600)
	l.daemon.Signal(sigHUP)
	time.Sleep(500 * time.Millisecond)
	c2 := l.client("r2", "02:00:00:00:07:02")
	out, err := c2.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", "r2", "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout)
	if err != nil {
		t.Fatalf("udhcpc after reload: %v\n%s", err, out)
	}
	li, _ := l.leaseFor("02:00:00:00:07:02")
	exp, _ := time.Parse(time.RFC3339, li.Expires)
	if d := time.Until(exp); d > 8*time.Minute || d < 5*time.Minute {
		t.Fatalf("after reload the lease runs %v, want about 7m", d)
	}
}

func TestCtlLeasesJSON(t *testing.T) {
	needTools(t, "udhcpc")
	l := newLab(t, "1h")
	c := l.client("j1", "02:00:00:00:08:01")
	if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", "j1", "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout, "-x", "hostname:cpe-j1"); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	out, err := exec.Command(l.ctl, "--socket", l.sock, "leases", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ls []map[string]any
	if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 {
		t.Fatalf("leases --json: %v\n%s", err, out)
	}
	for _, k := range []string{"ip", "hw-address", "client-id", "state", "expires", "client-last-transaction-time", "subnet"} {
		if _, ok := ls[0][k]; !ok {
			t.Fatalf("JSON lease lacks %q: %s", k, out)
		}
	}
	if _, err := time.Parse(time.RFC3339, ls[0]["expires"].(string)); err != nil || ls[0]["hostname"] != "cpe-j1" {
		t.Fatalf("lease %v", ls[0])
	}
	cid, _ := ls[0]["client-id"].(string)
	if !strings.HasPrefix(cid, "01:02:00:00:00:08:01") {
		t.Fatalf("udhcpc sends client-id 01+MAC; lease shows %q", cid)
	}
	if n := l.metric(`xdhcp_pool_addresses{state="active",subnet="10.77.0.0/24"}`); n != 1 {
		t.Fatalf("xdhcp_pool_addresses active = %v, want 1", n)
	}
	for _, key := range []string{ls[0]["ip"].(string), "02:00:00:00:08:01", cid} {
		out, err := exec.Command(l.ctl, "--socket", l.sock, "lease", "get", key).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ls[0]["ip"].(string)) {
			t.Fatalf("lease get %s: %v\n%s", key, err, out)
		}
	}
	if out, err := exec.Command(l.ctl, "--socket", l.sock, "lease", "get", "not-a-key").CombinedOutput(); err == nil || !strings.Contains(string(out), "not an IP address") {
		t.Fatalf("bad key: %v %s", err, out)
	}
}

func TestCheckConfigCLI(t *testing.T) {
	xdhcpd, _ := binaries(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("server:\n  interfaces: [eth0]\n  state-dir: /tmp/x\nsubnets:\n  - subnet: 10.77.0.0/24\n    pools: [10.77.0.100-10.77.1.5]\n    lease-tim: 1h\n"), 0o600)
	out, err := exec.Command(xdhcpd, "check-config", "--config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check-config on a bad file: %v, want exit status 1\n%s", err, out)
	}
	for _, w := range []string{bad + ":6: subnets[0].pools[0]: 10.77.0.100-10.77.1.5 is outside subnet 10.77.0.0/24", bad + ":7: subnets[0].lease-tim: unknown key"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("check-config output lacks %q:\n%s", w, out)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("server:\n  interfaces: [lo]\n  state-dir: /tmp/x\nsubnets:\n  - subnet: 10.77.0.0/24\n    pools: [10.77.0.100-10.77.0.150]\n"), 0o600)
	if out, err := exec.Command(xdhcpd, "check-config", "--config", good).CombinedOutput(); err != nil {
		t.Fatalf("check-config on a good file: %v\n%s", err, out)
	}
	// A valid file naming an interface this host lacks is ok with a
	// warning: the daemon waits for it (the systemd unit runs check-config
	// before starting the daemon, perhaps before the VLAN exists), and the
	// warning is for a name that is wrong.
	absent := filepath.Join(dir, "absent.yaml")
	os.WriteFile(absent, []byte("server:\n  interfaces:\n    - lo\n    - xdhcp-absent0\n  state-dir: /tmp/x\nsubnets:\n  - subnet: 10.77.0.0/24\n    pools: [10.77.0.100-10.77.0.150]\n"), 0o600)
	out, err = exec.Command(xdhcpd, "check-config", "--config", absent).CombinedOutput()
	if want := "warning: " + absent + `:4: server.interfaces[1]: interface "xdhcp-absent0" does not exist here now`; err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "xdhcpd will wait for it") || !strings.Contains(string(out), ": ok") {
		t.Fatalf("check-config with an absent interface: %v\n%s\nwant exit status 0 and %q", err, out, want)
	}
	if out, err := exec.Command(xdhcpd, "check-config", "--config", filepath.Join(dir, "missing.yaml")).CombinedOutput(); err == nil || !strings.Contains(string(out), "missing.yaml") {
		t.Fatalf("check-config on a missing file: %v\n%s", err, out)
	}
}

// waitOutputCount waits until p's output holds want at least n times.
func waitOutputCount(t *testing.T, p *netns.Proc, want string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.Output(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q appeared %d times, want %d, within %v:\n%s", want, strings.Count(p.Output(), want), n, timeout, p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFileContains(t *testing.T, path, want string, timeout time.Duration) string {
	t.Helper()
	b, ok := fileContains(path, want, timeout)
	if !ok {
		t.Fatalf("%s never contained %q:\n%s", path, want, b)
	}
	return b
}

// waitClientFile is waitFileContains for a client's hook output: failing,
// it also shows what the client printed and the server's log.
func (l *lab) waitClientFile(client *netns.Proc, path, want string, timeout time.Duration) string {
	l.t.Helper()
	b, ok := fileContains(path, want, timeout)
	if !ok {
		l.t.Fatalf("%s never contained %q:\n%s\nclient output:\n%s\nserver log:\n%s", path, want, b, client.Output(), l.daemon.Output())
	}
	return b
}

// fileContains polls path until it contains want or timeout passes, and
// returns its last contents.
func fileContains(path, want string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b), true
		}
		if time.Now().After(deadline) {
			return string(b), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeaseOfARemovedSubnetExpires: a reload that removes a client's
// subnet leaves its lease to end at its expiry, as an operator who
// renumbers expects; it stayed ACTIVE until the subnet came back.
func TestLeaseOfARemovedSubnetExpires(t *testing.T) {
	needTools(t, "udhcpc")
	l := newLab(t, "12s")
	const mac = "02:00:00:00:09:01"
	since := time.Now()
	c := l.client("g1", mac)
	if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-n", "-f", "-i", "g1", "-s", "/bin/true", "-t", "5", "-T", udhcpcTimeout); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	li := l.waitLease(mac, "active", since, 10*time.Second)
	// The same file without the client's subnet (10.77.0.0/24, the
	// first block).
	cfg, _ := os.ReadFile(l.cfgPath)
	first, second := bytes.Index(cfg, []byte("  - subnet: 10.77.0.0/24")), bytes.Index(cfg, []byte("  - subnet: 10.78.0.0/16"))
	if first < 0 || second < first {
		t.Fatalf("lab config without its subnets:\n%s", cfg)
	}
	if err := os.WriteFile(l.cfgPath, append(bytes.Clone(cfg[:first]), cfg[second:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	l.daemon.Signal(sigHUP)
	// Expired at its expiry (12 s after the grant) and FREE a sweep
	// later; a lease kept ACTIVE would time this out.
	got := l.waitLease(mac, "expired|free", since, 30*time.Second)
	if got.IP != li.IP {
		t.Fatalf("lease %+v, want %s", got, li.IP)
	}
	if exp, _ := time.Parse(time.RFC3339, li.Expires); time.Now().Before(exp) {
		t.Fatalf("%s ended at %v, before its expiry %v", li.IP, time.Now(), exp)
	}
}
