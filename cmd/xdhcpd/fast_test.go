package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

const fastLabConfig = `server:
  interfaces: [vs0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
fastpath:
  enabled: true
  mode: {{MODE}}
  min-grant: 10s
  pin-dir: {{PIN}}
leasequery:
  enabled: true
  requesters: [10.77.0.2/32]
subnets:
  - subnet: 10.77.0.0/24
    pools: [{{POOL}}]
    lease-time: {{LEASE}}
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.53]
      domain-name: example.net
  - subnet: 10.78.0.0/16
    pools: [10.78.1.0-10.78.255.254]
    lease-time: 1h
    options:
      routers: [10.78.0.1]
`

// fastLab is a server namespace joined to one client namespace by a veth
// pair (vs0 - eth0), with xdhcpd attaching XDP to vs0 in mode. In native
// mode the client end gets an XDP_PASS program, without which veth does
// not deliver frames sent with XDP_TX.
func fastLab(t *testing.T, mode, leaseTime, mac string) (*lab, *netns.NS) {
	t.Helper()
	return fastLabPool(t, mode, leaseTime, mac, "10.77.0.100-10.77.0.149")
}

func fastLabPool(t *testing.T, mode, leaseTime, mac, pool string) (*lab, *netns.NS) {
	t.Helper()
	return fastLabWith(t, mode, leaseTime, mac, pool, true)
}

// fastLabWith is fastLabPool; without link, vs0 and eth0 are left for the
// test to make (connectFastLab) once the daemon runs.
func fastLabWith(t *testing.T, mode, leaseTime, mac, pool string, link bool) (*lab, *netns.NS) {
	t.Helper()
	xdhcpd, xdhcpctl := binaries(t)
	srv := netns.ForTest(t, "xs")
	c := netns.ForTest(t, "xc")
	l := &lab{t: t, srv: srv, dir: t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	if link {
		connectFastLab(l, c, mode, mac)
	}
	pin := fmt.Sprintf("/sys/fs/bpf/xdhcp-test-%d-%s", os.Getpid(), filepath.Base(l.dir))
	l.pinDir = pin
	t.Cleanup(func() { os.RemoveAll(pin) })
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	cfg := strings.NewReplacer("{{DIR}}", l.dir, "{{LEASE}}", leaseTime, "{{MODE}}", mode, "{{PIN}}", pin, "{{POOL}}", pool).Replace(fastLabConfig)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start()
	t.Cleanup(func() {
		l.daemon.Stop()
		out, err := srv.ExecHostMounts(context.Background(), l.xdhcpd, "detach", "--config", l.cfgPath)
		if err != nil {
			t.Errorf("detach: %v\n%s", err, out)
		}
	})
	return l, c
}

// connectFastLab joins the lab's server namespace (vs0, 10.77.0.1/24) and
// the client's (eth0 with mac) by a veth pair, as XDP_TX on a veth needs.
func connectFastLab(l *lab, c *netns.NS, mode, mac string) {
	l.t.Helper()
	if err := netns.Veth(l.srv, "vs0", netip.MustParsePrefix("10.77.0.1/24"), c, "eth0", netip.Prefix{}); err != nil {
		l.t.Fatal(err)
	}
	if err := c.SetMAC("eth0", mac); err != nil {
		l.t.Fatal(err)
	}
	for _, e := range []struct {
		ns *netns.NS
		If string
	}{{l.srv, "vs0"}, {c, "eth0"}} {
		if err := netns.DisableTxOffload(e.ns, e.If); err != nil {
			l.t.Fatal(err)
		}
	}
	if mode == "native" {
		attachPass(l.t, c, "eth0")
	}
}

// attachPass puts an XDP_PASS program on ifname in ns for the test.
func attachPass(t *testing.T, ns *netns.NS, ifname string) {
	t.Helper()
	c, err := netns.AttachXDPPass(ns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

func (l *lab) requests() float64 {
	return l.metric(`xdhcp_slowpath_messages_total{type="request"}`)
}

func (l *lab) fastReplies() float64 { return l.metric("xdhcp_fastpath_replies_total") }

// waitFast waits until the fast path has answered more than n renewals.
func (l *lab) waitFast(n float64, timeout time.Duration) float64 {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if v := l.fastReplies(); v > n {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("the fast path answered no renewal within %v (replies %v)\nserver log:\n%s", timeout, n, l.daemon.Output())
	return 0
}

func TestFastPathUdhcpc(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			const mac = "02:00:00:00:0f:01"
			l, c := fastLab(t, mode, "2m", mac)
			p, envFile, li := boundUdhcpc(t, l, c, mac, "ip=$ip lease=$lease serverid=$serverid")

			reqs, fast := l.requests(), l.fastReplies()
			t1 := time.Now()
			p.Signal(sigUSR1)
			l.waitFast(fast, 10*time.Second)
			env := waitFileContains(t, envFile, "renew ip="+li.IP+" lease=120 serverid=10.77.0.1", 10*time.Second)
			if got := l.requests(); got != reqs {
				t.Fatalf("the slow path saw the renewal: requests %v -> %v\n%s", reqs, got, env)
			}
			// The event reaches bbolt: CLTT moves.
			l.waitLease(mac, "active", t1, 5*time.Second)
		})
	}
}

func TestFastPathDhcpcd(t *testing.T) {
	needTools(t, "dhcpcd", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { testFastPathDhcpcd(t, mode) })
	}
}

func testFastPathDhcpcd(t *testing.T, mode string) {
	const mac = "02:00:00:00:0f:02"
	l, c := fastLab(t, mode, "10m", mac)
	// Not "eth0": dhcpcd's files would collide with the host's.
	ifname := dhcpcdIfname("xf" + mode[:1])
	if err := c.Rename("eth0", ifname); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(l.dir, "dhcpcd.conf")
	os.WriteFile(conf, []byte("duid\nipv4only\nnoipv4ll\noption domain_name_servers, domain_name, routers\n"), 0o600)
	t0 := time.Now()
	if out, err := c.Exec(context.Background(), "dhcpcd", "-4", "-w", "-t", "20", "-f", conf, ifname); err != nil {
		t.Fatalf("dhcpcd: %v\n%s\nserver:\n%s", err, out, l.daemon.Output())
	}
	stopDhcpcd(t, c, ifname)
	li := l.waitLease(mac, "active", t0, 10*time.Second)
	for _, step := range []struct{ what, flag string }{{"renew", "-N"}, {"rebind", "-n"}} {
		reqs, fast := l.requests(), l.fastReplies()
		ts := time.Now()
		l.sh(c, "dhcpcd -4 "+step.flag+" "+ifname)
		l.waitFast(fast, 10*time.Second)
		if li2 := l.waitLease(mac, "active", ts, 5*time.Second); li2.IP != li.IP {
			t.Fatalf("%s moved %s -> %s", step.what, li.IP, li2.IP)
		}
		if got := l.requests(); got != reqs {
			t.Fatalf("%s: the slow path saw it (requests %v -> %v)", step.what, reqs, got)
		}
		time.Sleep(500 * time.Millisecond) // let dhcpcd settle before the next command
	}
	if vars := l.sh(c, "dhcpcd -4 -U "+ifname); !strings.Contains(vars, "dhcp_lease_time=600") || !strings.Contains(vars, "ip_address="+li.IP) {
		t.Fatalf("dhcpcd's lease after the XDP ACKs:\n%s", vars)
	}
}

func TestFastPathDhclient(t *testing.T) {
	needTools(t, "dhclient", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { testFastPathDhclient(t, mode) })
	}
}

func testFastPathDhclient(t *testing.T, mode string) {
	const mac = "02:00:00:00:0f:03"
	l, c := fastLab(t, mode, "20s", mac) // T1 10s, T2 17.5s
	lf := filepath.Join(l.dir, "dhclient.leases")
	pf := filepath.Join(l.dir, "dhclient.pid")
	t0 := time.Now()
	p, err := c.Start(context.Background(), "dhclient", "-4", "-d", "-v", "-pf", pf, "-lf", lf, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	li := l.waitLease(mac, "active", t0, 15*time.Second)
	reqs, fast := l.requests(), l.fastReplies()
	// Unicast renewal at T1, answered in XDP.
	fast = l.waitFast(fast, 15*time.Second)
	if !strings.Contains(p.Output(), "DHCPREQUEST for "+li.IP+" on eth0 to 10.77.0.1") || !strings.Contains(p.Output(), "DHCPACK of "+li.IP) {
		t.Fatalf("dhclient's log:\n%s", p.Output())
	}
	// Broadcast rebind at T2 once unicast is blocked, also answered in XDP.
	l.blockUnicastToServer(c, "eth0")
	bcast := "DHCPREQUEST for " + li.IP + " on eth0 to 255.255.255.255"
	selecting := strings.Count(p.Output(), bcast)
	deadline := time.Now().Add(40 * time.Second)
	for strings.Count(p.Output(), bcast) == selecting && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	l.waitFast(fast, 10*time.Second)
	if got := l.requests(); got != reqs {
		t.Fatalf("the slow path saw renewals (requests %v -> %v)\n%s", reqs, got, p.Output())
	}
	waitOutputCount(t, p, "DHCPACK of "+li.IP, 3, 5*time.Second)
}

func TestFastPathPerfdhcpRelayedRenewals(t *testing.T) {
	needTools(t, "perfdhcp", "curl", "ethtool")
	l, r := fastLab(t, "native", "1h", "02:00:00:00:0f:04")
	l.sh(r, "ip addr add 10.77.0.2/24 dev eth0 && ip addr add 10.78.0.1/32 dev eth0")
	l.sh(l.srv, "ip route add 10.78.0.0/16 via 10.77.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.Exec(ctx, "perfdhcp", "-4", "-l", "10.78.0.1", "-r", "50", "-f", "50", "-R", "200", "-p", "4", "10.77.0.1")
	if err != nil && !strings.Contains(string(out), "received packets") {
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	// The third exchange perfdhcp reports is renew-request/reply.
	m := regexp.MustCompile(`received packets: (\d+)`).FindAllStringSubmatch(string(out), -1)
	if len(m) < 3 {
		t.Fatalf("perfdhcp output not understood:\n%s", out)
	}
	renewed, _ := strconv.Atoi(m[2][1])
	fast := l.fastReplies()
	if renewed == 0 || fast < float64(renewed) {
		m, _ := l.srv.Exec(context.Background(), "sh", "-c", "curl -s http://127.0.0.1:9467/metrics | grep fastpath_punts")
		t.Fatalf("perfdhcp got %d renewal replies, XDP answered %v:\n%s\n%s", renewed, fast, out, m)
	}
	t.Logf("perfdhcp: %d relayed renewals answered, all by XDP (%v)", renewed, fast)
}

// renewer sends RENEWING-state requests from a client namespace, as the
// client that holds ip would, and counts the ACKs.
type renewer struct {
	t   *testing.T
	ns  *netns.NS
	ip  netip.Addr
	mac net.HardwareAddr
}

func (rn renewer) renew(n int) (acks int) {
	rn.t.Helper()
	err := rn.ns.Do(func() error {
		c, err := net.ListenPacket("udp4", rn.ip.String()+":68")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1500)
		for range n {
			m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(rn.mac),
				dhcpv4.WithClientIP(rn.ip.AsSlice()), dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, rn.mac...))))
			if _, err := c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67}); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				continue
			}
			if r, err := dhcpv4.FromBytes(buf[:k]); err == nil && r.MessageType() == dhcpv4.MessageTypeAck && r.TransactionID == m.TransactionID {
				acks++
			}
		}
		return nil
	})
	if err != nil {
		rn.t.Fatal(err)
	}
	return acks
}

// udhcpcLease takes a lease with udhcpc, which configures it and quits.
func udhcpcLease(t *testing.T, l *lab, c *netns.NS, mac string) control.LeaseInfo {
	t.Helper()
	t0 := time.Now()
	if out, err := c.Exec(context.Background(), "udhcpc", "-q", "-f", "-n", "-i", "eth0", "-t", "10", "-T", udhcpcTimeout); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	return l.waitLease(mac, "active", t0, 10*time.Second)
}

// udhcpcRenewer takes a lease with udhcpc in a native-mode fast-path lab
// and returns the lab and a renewer for that lease.
func udhcpcRenewer(t *testing.T, mac string) (*lab, renewer) {
	t.Helper()
	l, c := fastLab(t, "native", "10m", mac)
	li := udhcpcLease(t, l, c, mac)
	hw, _ := net.ParseMAC(mac)
	return l, renewer{t, c, netip.MustParseAddr(li.IP), hw}
}

func TestFastPathKeepsAnsweringAcrossKill9(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	l, rn := udhcpcRenewer(t, "02:00:00:00:0f:05")
	if got := rn.renew(20); got != 20 {
		t.Fatalf("%d of 20 renewals ACKed with the daemon up", got)
	}
	before := l.fastReplies()

	// Renewals keep being answered from the pinned maps while the daemon is dead.
	l.daemon.Signal(syscall.SIGKILL)
	l.daemon.Wait()
	tDown := time.Now()
	if got := rn.renew(50); got != 50 {
		t.Fatalf("%d of 50 renewals ACKed with the daemon killed", got)
	}

	// The restart is also an upgrade: an older version's reply-template
	// hash is pinned beside the maps. The old program answers no renewal
	// while the new daemon rewrites the lease entries for its template
	// array, and the new one answers once it is swapped in.
	oldT, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 516, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer oldT.Close()
	if err := oldT.Pin(filepath.Join(l.pinDir, "xdhcp_templates")); err != nil {
		t.Fatal(err)
	}

	// After restart the renewals made meanwhile are in bbolt and the
	// counters continued from where they were.
	l.start()
	li2 := l.waitLease(rn.mac.String(), "active", tDown, 10*time.Second)
	if li2.IP != rn.ip.String() {
		t.Fatalf("lease moved %s -> %s", rn.ip, li2.IP)
	}
	if after := l.fastReplies(); after < before+50 {
		t.Fatalf("fast path replies %v before the kill, %v after restart", before, after)
	}
	fast := l.fastReplies()
	if got := rn.renew(10); got != 10 {
		t.Fatalf("%d of 10 renewals ACKed after restart", got)
	}
	if got := l.fastReplies() - fast; got != 10 {
		t.Fatalf("the fast path answered %v of 10 renewals after the upgrade", got)
	}
	if !strings.Contains(l.daemon.Output(), "upgrading the XDP program") {
		t.Fatalf("the retired template hash was not treated as an upgrade:\n%s", l.daemon.Output())
	}
	if !strings.Contains(l.daemon.Output(), "XDP program swapped in place") {
		t.Fatalf("the restarted daemon did not reuse the pinned link:\n%s", l.daemon.Output())
	}
	if !strings.Contains(l.daemon.Output(), "fast path reconciled") {
		t.Fatalf("no reconciliation logged:\n%s", l.daemon.Output())
	}
}

// offered sends one broadcast DISCOVER for mac from ns and returns the
// address offered, if any, within a second and a half.
func offered(t *testing.T, ns *netns.NS, mac net.HardwareAddr) (netip.Addr, bool) {
	t.Helper()
	var got netip.Addr
	err := ns.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
			return serr
		}}
		c, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
		if err != nil {
			return err
		}
		defer c.Close()
		m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(mac), dhcpv4.WithBroadcast(true))
		if _, err := c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return nil // nothing offered
			}
			if r, err := dhcpv4.FromBytes(buf[:n]); err == nil && r.TransactionID == m.TransactionID && r.MessageType() == dhcpv4.MessageTypeOffer {
				got, _ = netip.AddrFromSlice(r.YourIPAddr.To4())
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, got.IsValid()
}

// TestHorizonHoldsAddressesAfterLosingEverything: the fast path granted a
// renewal, then the daemon died before folding it and the maps were lost
// with it (events withheld for good, as across a reboot). bbolt's record
// expires before the grant does, yet the address must not be offered to
// anyone else before the granted expiry: the durable horizon bounds it.
func TestHorizonHoldsAddressesAfterLosingEverything(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:06"
	// Two addresses: the client's, held to the horizon, and a free one
	// that another client must be offered every time it asks. The free
	// one is the positive control: a daemon that answers nothing, or
	// offers nothing because the pool looks exhausted, fails.
	l, c := fastLabPool(t, "native", "30s", mac, "10.77.0.100-10.77.0.101")
	t0 := time.Now()
	li := udhcpcLease(t, l, c, mac)
	free := netip.MustParseAddr("10.77.0.101")
	if li.IP == free.String() {
		free = netip.MustParseAddr("10.77.0.100")
	}
	// Two other clients take turns: the pool's offer bound (one pending
	// offer here) withdraws the first's offer to make room for the
	// second's, putting its address behind every other free one, so a
	// held address that had wrongly gone free would be the one offered.
	others := []net.HardwareAddr{{0x02, 0, 0, 0, 0x0f, 0x07}, {0x02, 0, 0, 0, 0x0f, 0x09}}
	offersFree := func(when string) {
		t.Helper()
	clients:
		for _, other := range others {
			// Three tries: a DISCOVER may meet a loaded machine; an
			// answer naming the held address fails at once.
			for range 3 {
				if ip, ok := offered(t, c, other); ok {
					if ip != free {
						t.Fatalf("%s: %s (held by %s) offered to %s, want the free %s\n%s", when, ip, mac, other, free, l.daemon.Output())
					}
					continue clients
				}
			}
			t.Fatalf("%s: the free %s was not offered to %s in three DISCOVERs\n%s", when, free, other, l.daemon.Output())
		}
	}
	offersFree("before the kill")

	time.Sleep(10 * time.Second)
	l.daemon.Signal(syscall.SIGKILL)
	l.daemon.Wait()
	hw, _ := net.ParseMAC(mac)
	granted := time.Now().Add(30 * time.Second)
	if got := (renewer{t, c, netip.MustParseAddr(li.IP), hw}).renew(1); got != 1 {
		t.Fatal("the fast path did not answer the renewal with the daemon dead")
	}
	if out, err := l.srv.ExecHostMounts(context.Background(), l.xdhcpd, "detach", "--config", l.cfgPath); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	l.start()

	// bbolt says the lease ends at t0+30s; the client holds it until
	// granted. Nobody may be offered the address in between.
	for time.Now().Before(t0.Add(32 * time.Second)) {
		time.Sleep(500 * time.Millisecond)
	}
	checks := 0
	for time.Now().Before(granted.Add(-2 * time.Second)) {
		offersFree(fmt.Sprintf("%v before the fast path's grant ran out", time.Until(granted).Round(time.Second)))
		checks++
		time.Sleep(time.Second)
	}
	if checks == 0 {
		t.Fatal("no DISCOVER was sent between bbolt's expiry and the fast path's grant")
	}
	if !strings.Contains(l.daemon.Output(), "held until their promise horizon") {
		t.Fatalf("daemon did not hold leases to the horizon:\n%s", l.daemon.Output())
	}
}

// TestFastPathRelayInfoFollowsTheRelay: a subscriber moves to another port
// of the same relay, whose renewals then carry another circuit-id. XDP
// passes the first of them up; the slow path answers it, stores the new
// option 82 (which leasequery reports as last received) and republishes
// the entry, and XDP answers the next ones again.
func TestFastPathRelayInfoFollowsTheRelay(t *testing.T) {
	needTools(t, "curl", "ethtool")
	l, r := fastLab(t, "native", "1h", "02:00:00:00:0f:08")
	l.sh(r, "ip addr add 10.77.0.2/24 dev eth0 && ip addr add 10.78.0.1/32 dev eth0")
	l.sh(l.srv, "ip route add 10.78.0.0/16 via 10.77.0.2")
	hw := net.HardwareAddr{2, 0, 0, 0, 0x0a, 8}
	relayed := func(opt82 []byte, ms ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1)),
			dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}})}, ms...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	port1 := []byte{1, 6, 'e', 't', 'h', '0', '/', '1', 2, 4, 'c', 'p', 'e', '1'}
	port2 := []byte{1, 6, 'e', 't', 'h', '0', '/', '2', 2, 4, 'c', 'p', 'e', '1'}
	disc := relayed(port1, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	offer := exchange(t, r, "10.78.0.1:67", disc)
	ack := exchange(t, r, "10.78.0.1:67", relayed(port1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithTransactionID(disc.TransactionID),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier()))))
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("relayed DORA: %s", ack.Summary())
	}
	const puntName = `xdhcp_fastpath_punts_total{reason="relay_info"}`
	// renew sends a relayed renewal with opt82 and says which path answered.
	renew := func(opt82 []byte) string {
		t.Helper()
		reqs, fast := l.requests(), l.fastReplies()
		a := exchange(t, r, "10.78.0.1:67", relayed(opt82, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ack.YourIPAddr)))
		if a.MessageType() != dhcpv4.MessageTypeAck || !a.YourIPAddr.Equal(ack.YourIPAddr) || !bytes.Equal(a.Options.Get(dhcpv4.OptionRelayAgentInformation), opt82) {
			t.Fatalf("relayed renewal: %s", a.Summary())
		}
		switch dr, df := l.requests()-reqs, l.fastReplies()-fast; {
		case dr == 0 && df == 1:
			return "xdp"
		case dr == 1 && df == 0:
			return "slow"
		default:
			t.Fatalf("slow path requests +%v, XDP replies +%v for one renewal", dr, df)
			return ""
		}
	}
	if got := renew(port1); got != "xdp" {
		t.Fatalf("renewal with the option 82 stored answered by the %s path", got)
	}
	if got := renew(port2); got != "slow" || l.metric(puntName) != 1 {
		t.Fatalf("renewal from another port answered by the %s path, %s %v", got, puntName, l.metric(puntName))
	}
	if li, _ := l.leaseFor(hw.String()); li.RelayInfo != colonHex(port2) || li.GIAddr != "10.78.0.1" {
		t.Fatalf("stored lease after the move: relay info %s, giaddr %s; want %s", li.RelayInfo, li.GIAddr, colonHex(port2))
	}
	for range 3 {
		if got := renew(port2); got != "xdp" {
			t.Fatalf("renewal with the new option 82 answered by the %s path (%s %v)", got, puntName, l.metric(puntName))
		}
	}
}

// TestFastPathUpgradeFromAnotherLeaseLayout: the daemon restarts over pins
// an older version left whose lease entries had another layout (8 bytes
// shorter, as before the option 82 fingerprint). It retires that map
// instead of refusing to start, holds the leases to their horizons (what
// the old map granted is not readable), keeps the old program from
// answering until the new one is swapped in, and the new one then answers
// from the rebuilt map.
func TestFastPathUpgradeFromAnotherLeaseLayout(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	l, rn := udhcpcRenewer(t, "02:00:00:00:0f:09")
	if got := rn.renew(5); got != 5 {
		t.Fatalf("%d of 5 renewals ACKed before the upgrade", got)
	}
	l.daemon.Signal(syscall.SIGKILL)
	l.daemon.Wait()
	// The program in the pinned link keeps its own lease map; the pin now
	// names one of the older layout.
	path := filepath.Join(l.pinDir, "xdhcp_leases")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: uint32(unsafe.Sizeof(bpf.XdpXdhcpLease{})) - 8,
		MaxEntries: 1 << 21, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(path); err != nil {
		t.Fatal(err)
	}
	l.start()
	for _, want := range []string{"retired a pinned map whose layout differs", "upgrading the XDP program", "held until their promise horizon", "XDP program swapped in place"} {
		if !strings.Contains(l.daemon.Output(), want) {
			t.Fatalf("no %q in the daemon's log:\n%s", want, l.daemon.Output())
		}
	}
	fast := l.fastReplies()
	if got := rn.renew(5); got != 5 {
		t.Fatalf("%d of 5 renewals ACKed after the upgrade", got)
	}
	if got := l.fastReplies() - fast; got != 5 {
		t.Fatalf("the fast path answered %v of 5 renewals after the upgrade", got)
	}
}
