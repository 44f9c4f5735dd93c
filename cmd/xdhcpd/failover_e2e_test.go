package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/failover/hba"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testcert"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// The failover end-to-end tests (issue 17): two servers and their clients
// on one bridge, each server in its own namespace. Servers are xdhcpd with
// the fast path on, or ISC dhcpd 4.4 as the partner. Addresses: servers
// 10.79.0.1 and 10.79.0.2, a leasequery requester 10.79.0.5, pool
// 10.79.0.100-10.79.0.139. MCLT is 30 s and max-response-delay 5 s, so
// that a restarted dhcpd's RECOVER-WAIT (it waits MCLT) stays short.

const foMCLT = 30

// foNet is the bridge the servers and clients share.
type foNet struct {
	t  *testing.T
	br *netns.NS
	n  int
	// tls: two xdhcpd talk over mutual TLS with certificates of ca, as
	// an operator should run them (a dhcpd partner speaks no TLS).
	tls bool
	ca  *testcert.CA
}

func newFoNet(t *testing.T) *foNet {
	t.Helper()
	f := &foNet{t: t, br: netns.ForTest(t, "fb"), ca: testcert.NewCA(t, "e2e")}
	if out, err := f.br.Exec(context.Background(), "sh", "-c", "ip link add br0 type bridge && ip link set br0 up"); err != nil {
		t.Fatalf("bridge: %v\n%s", err, out)
	}
	return f
}

// attach puts ns on the bridge as ifname, with addr (if valid) and mac (if
// given).
func (f *foNet) attach(ns *netns.NS, ifname string, addr netip.Prefix, mac string) {
	f.t.Helper()
	f.n++
	peer := fmt.Sprintf("fp%d", f.n)
	if err := netns.Veth(f.br, peer, netip.Prefix{}, ns, ifname, addr); err != nil {
		f.t.Fatal(err)
	}
	if err := f.br.Enslave(peer, "br0"); err != nil {
		f.t.Fatal(err)
	}
	if mac != "" {
		if err := ns.SetMAC(ifname, mac); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := netns.DisableTxOffload(ns, ifname); err != nil {
		f.t.Fatal(err)
	}
}

const foXdhcpdConfig = `server:
  interfaces: [eth0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
fastpath:
  enabled: true
  mode: generic
  min-grant: 10s
  pin-dir: {{PIN}}
leasequery:
  enabled: true
  requesters: [10.79.0.0/24]
subnets:
  - subnet: 10.79.0.0/24
    pools: [10.79.0.100-10.79.0.139]
    lease-time: 10m
    options:
      routers: [10.79.0.1]
failover:
  name: e2e
  role: {{ROLE}}
  listen: {{ADDR}}
  peer: {{PEER}}
  mclt: {{MCLT}}s
  max-response-delay: 5s
  load-balance-max-seconds: 3
  split: 128
`

// xdhcpdPeer runs xdhcpd at addr (10.79.0.x) in role with peer as partner.
func (f *foNet) xdhcpdPeer(role, addr, peer string) *lab {
	f.t.Helper()
	return f.xdhcpdPeerFrom(foXdhcpdConfig, role, addr, peer, foMCLT*time.Second)
}

// xdhcpdPeerFrom is xdhcpdPeer with its own configuration template (see
// foXdhcpdConfig) and MCLT.
func (f *foNet) xdhcpdPeerFrom(tmpl, role, addr, peer string, mclt time.Duration) *lab {
	f.t.Helper()
	xdhcpd, xdhcpctl := binaries(f.t)
	ns := netns.ForTest(f.t, "fs")
	l := &lab{t: f.t, srv: ns, dir: f.t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	f.attach(ns, "eth0", netip.MustParsePrefix(addr+"/24"), "")
	l.pinDir = fmt.Sprintf("/sys/fs/bpf/xdhcp-fo-%d-%s", os.Getpid(), filepath.Base(l.dir))
	f.t.Cleanup(func() { os.RemoveAll(l.pinDir) })
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	cfg := strings.NewReplacer("{{DIR}}", l.dir, "{{PIN}}", l.pinDir, "{{ROLE}}", role, "{{ADDR}}", addr, "{{PEER}}", peer,
		"{{MCLT}}", fmt.Sprint(int(mclt/time.Second))).Replace(tmpl)
	if f.tls {
		cert := f.ca.Issue(role, netip.MustParseAddr(addr))
		cfg += fmt.Sprintf("  tls: {cert: %s, key: %s, ca: %s}\n", cert.Cert, cert.Key, f.ca.File)
	}
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	l.start()
	f.t.Cleanup(func() {
		l.daemon.Stop()
		if out, err := ns.ExecHostMounts(context.Background(), l.xdhcpd, "detach", "--config", l.cfgPath); err != nil {
			f.t.Errorf("detach: %v\n%s", err, out)
		}
	})
	return l
}

// foStatus is the daemon's `xdhcpctl failover status --json`.
func foStatus(l *lab) failover.Status {
	l.t.Helper()
	var s failover.Status
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, l.sock, "failover-status", nil, &s); err != nil {
		l.t.Fatalf("failover status: %v", err)
	}
	return s
}

// waitFoState waits for the daemon to reach state (and the partner
// pstate, when given).
func waitFoState(l *lab, state, pstate string, within time.Duration) failover.Status {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := foStatus(l)
		if s.State == state && (pstate == "" || s.PartnerState == pstate) {
			return s
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("failover state %s (partner %s, %s; waiting for %s), want %s/%s after %s; log:\n%s",
				s.State, s.PartnerState, s.StateReason, s.Waiting, state, pstate, within, tail(l.daemon.Output(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// iscPeer is ISC dhcpd 4.4 as the partner.
type iscPeer struct {
	t      *testing.T
	ns     *netns.NS
	dir    string
	conf   string
	leases string
	proc   *netns.Proc
}

const iscConfig = `ddns-update-style none;
ping-check false;
allow leasequery;
authoritative;
default-lease-time 600;
max-lease-time 600;
failover peer "e2e" {
  {{ROLE}};
  address {{ADDR}};
  port 647;
  peer address {{PEER}};
  peer port 647;
  max-response-delay 5;
  max-unacked-updates 10;
  load balance max seconds 3;
{{PRIMARY}}}
subnet 10.79.0.0 netmask 255.255.255.0 {
  option routers 10.79.0.1;
  pool {
    failover peer "e2e";
    range 10.79.0.100 10.79.0.139;
  }
}
`

func (f *foNet) iscPeer(role, addr, peer string) *iscPeer { return f.iscPeerWith(role, addr, peer, "") }

// iscPeerWith is iscPeer with extra global statements in dhcpd.conf.
func (f *foNet) iscPeerWith(role, addr, peer, extra string) *iscPeer {
	f.t.Helper()
	p := &iscPeer{t: f.t, ns: netns.ForTest(f.t, "fd"), dir: f.t.TempDir()}
	f.attach(p.ns, "eth0", netip.MustParsePrefix(addr+"/24"), "")
	prim := ""
	if role == "primary" {
		prim = fmt.Sprintf("  mclt %d;\n  split 128;\n", foMCLT)
	}
	p.conf = filepath.Join(p.dir, "dhcpd.conf")
	p.leases = filepath.Join(p.dir, "dhcpd.leases")
	cfg := extra + strings.NewReplacer("{{ROLE}}", role, "{{ADDR}}", addr, "{{PEER}}", peer, "{{PRIMARY}}", prim).Replace(iscConfig)
	if err := os.WriteFile(p.conf, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p.leases, nil, 0o600); err != nil {
		f.t.Fatal(err)
	}
	p.start()
	return p
}

func (p *iscPeer) start() {
	p.t.Helper()
	proc, err := p.ns.Start(context.Background(), "dhcpd", "-4", "-f", "-d", "-cf", p.conf, "-lf", p.leases,
		"-pf", filepath.Join(p.dir, "dhcpd.pid"), "eth0")
	if err != nil {
		p.t.Fatal(err)
	}
	p.proc = proc
	p.t.Cleanup(proc.Stop)
}

// waitLog waits for dhcpd to log s (at least n times in all).
func (p *iscPeer) waitLog(s string, n int, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for strings.Count(p.proc.Output(), s) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("dhcpd did not log %q after %s:\n%s", s, within, tail(p.proc.Output(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// iscLease is the last record of one address in dhcpd.leases.
type iscLease struct {
	IP, State, HW string
	Ends          time.Time
}

var iscEnds = regexp.MustCompile(`^\s*ends \d (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d);`)

// leasesFile reads dhcpd's lease file: the last block of each address
// wins (dhcpd appends).
func (p *iscPeer) leasesFile() map[string]iscLease {
	p.t.Helper()
	fh, err := os.Open(p.leases)
	if err != nil {
		p.t.Fatal(err)
	}
	defer fh.Close()
	out := map[string]iscLease{}
	var cur *iscLease
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		switch {
		case len(fs) >= 3 && fs[0] == "lease" && fs[2] == "{":
			cur = &iscLease{IP: fs[1]}
		case cur != nil && line == "}":
			out[cur.IP] = *cur
			cur = nil
		case cur != nil && len(fs) == 3 && fs[0] == "binding" && fs[1] == "state":
			cur.State = strings.TrimSuffix(fs[2], ";")
		case cur != nil && len(fs) == 3 && fs[0] == "hardware" && fs[1] == "ethernet":
			cur.HW = strings.TrimSuffix(fs[2], ";")
		case cur != nil && iscEnds.MatchString(line):
			t, err := time.ParseInLocation("2006/01/02 15:04:05", iscEnds.FindStringSubmatch(line)[1], time.UTC)
			if err == nil {
				cur.Ends = t
			}
		}
	}
	return out
}

// foClient is a client namespace on the bridge with its MAC.
type foClient struct {
	ns  *netns.NS
	mac string
}

// clientsByBucket returns n MACs whose RFC 3074 bucket is the primary's
// (primary true) or the secondary's under split 128, so that a test knows
// which server answers each client when both are up. udhcpc sends a
// client identifier (type 1 and its MAC), which is what both servers hash.
func clientsByBucket(primary bool, n int, base byte) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		mac := net.HardwareAddr{0x02, 0x00, 0x00, base, byte(i >> 8), byte(i)}
		if hba.Split(128).Mine(true, hba.Key(append([]byte{1}, mac...), mac)) == primary {
			out = append(out, mac.String())
		}
	}
	return out
}

func (f *foNet) client(mac string) foClient {
	f.t.Helper()
	ns := netns.ForTest(f.t, "fc")
	f.attach(ns, "eth0", netip.Prefix{}, mac)
	return foClient{ns: ns, mac: mac}
}

var udhcpcObtained = regexp.MustCompile(`lease of (\S+) obtained from (\S+), lease time (\d+)`)

// dora runs one udhcpc DORA and returns the address, the server that
// answered and the lease time.
func (c foClient) dora(t *testing.T) (ip, server string, secs int) {
	t.Helper()
	out, err := c.ns.Exec(context.Background(), "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "6", "-T", "2", "-s", "/bin/true")
	m := udhcpcObtained.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("udhcpc (%s): %v\n%s", c.mac, err, out)
	}
	fmt.Sscan(m[3], &secs)
	return m[1], m[2], secs
}

// lqFrom asks server for ip by leasequery from the requester namespace.
func lqFrom(t *testing.T, ctl string, q *netns.NS, server, ip string) *lqclient.Reply {
	t.Helper()
	out, err := q.Exec(context.Background(), ctl, "leasequery", "--server", server, "--giaddr", "10.79.0.5", "--json", "--wait", "2s", "--ip", ip)
	if err != nil {
		t.Fatalf("leasequery %s for %s: %v\n%s", server, ip, err, out)
	}
	var r lqclient.Reply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("leasequery output %q: %v", out, err)
	}
	return &r
}

// TestFailoverWithDhcpd pairs xdhcpd with ISC dhcpd 4.4, xdhcpd as primary
// and as secondary: both reach NORMAL; each answers the clients of its
// hash bucket and the lease appears in the other's database; leasequery
// to either answers for the other's lease; dhcpd restarted, the pair is
// NORMAL again by itself; dhcpd stopped for good, xdhcpd goes
// COMMUNICATIONS-INTERRUPTED, then PARTNER-DOWN by command and serves
// every client; dhcpd restarted, the pair is NORMAL again.
func TestFailoverWithDhcpd(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "dhcpd", "udhcpc", "ip", "curl")
	for _, c := range []struct{ role, other string }{{"primary", "secondary"}, {"secondary", "primary"}} {
		role, other := c.role, c.other
		t.Run("xdhcpd-"+role, func(t *testing.T) {
			f := newFoNet(t)
			x := f.xdhcpdPeer(role, "10.79.0.1", "10.79.0.2")
			d := f.iscPeer(other, "10.79.0.2", "10.79.0.1")
			waitFoState(x, "normal", "normal", 30*time.Second)
			d.waitLog("Both servers normal", 1, 10*time.Second)
			q := netns.ForTest(t, "fq")
			f.attach(q, "eth0", netip.MustParsePrefix("10.79.0.5/24"), "")

			// Each server answers its own bucket's clients.
			mine := clientsByBucket(role == "primary", 2, 1)
			theirs := clientsByBucket(role != "primary", 2, 2)
			got := map[string]string{} // mac → ip
			for _, mac := range append(append([]string{}, mine...), theirs...) {
				ip, server, _ := f.client(mac).dora(t)
				want := "10.79.0.1"
				if !contains(mine, mac) {
					want = "10.79.0.2"
				}
				if server != want {
					t.Errorf("%s got %s from %s, want from %s (its hash bucket's server)", mac, ip, server, want)
				}
				got[mac] = ip
			}
			// Every lease is in both databases.
			waitFor(t, "dhcpd's lease file to hold xdhcpd's leases", 10*time.Second, func() bool {
				ls := d.leasesFile()
				for _, mac := range mine {
					if l := ls[got[mac]]; l.State != "active" || l.HW != mac {
						return false
					}
				}
				return true
			})
			waitFor(t, "xdhcpd to hold dhcpd's leases", 10*time.Second, func() bool {
				for _, mac := range theirs {
					li, ok := x.leaseFor(mac)
					if !ok || li.State != "active" || li.IP != got[mac] {
						return false
					}
				}
				return true
			})
			// Leasequery to either server answers for the other's lease.
			if r := lqFrom(t, x.ctl, q, "10.79.0.1", got[theirs[0]]); r.Type != "leaseactive" || r.HWAddr != theirs[0] {
				t.Errorf("xdhcpd on dhcpd's lease %s: %+v", got[theirs[0]], r)
			}
			if r := lqFrom(t, x.ctl, q, "10.79.0.2", got[mine[0]]); r.Type != "leaseactive" || r.HWAddr != mine[0] {
				t.Errorf("dhcpd on xdhcpd's lease %s: %+v", got[mine[0]], r)
			}

			// dhcpd restarted mid-stream (no partner-down): the pair
			// returns to NORMAL by itself.
			d.proc.Stop()
			waitFoState(x, "communications-interrupted", "", 15*time.Second)
			d.start()
			waitFoState(x, "normal", "normal", 60*time.Second)
			d.waitLog("Both servers normal", 1, 10*time.Second) // the new process's log

			// dhcpd dies: COMMUNICATIONS-INTERRUPTED; partner-down by
			// command; then xdhcpd answers the other bucket too.
			d.proc.Stop()
			s := waitFoState(x, "communications-interrupted", "", 15*time.Second)
			if !strings.Contains(s.Waiting, "partner-down only by command") {
				t.Errorf("waiting: %q", s.Waiting)
			}
			if out, err := x.srv.Exec(context.Background(), x.ctl, "--socket", x.sock, "failover", "partner-down"); err == nil {
				t.Errorf("partner-down without --yes accepted:\n%s", out)
			}
			if out, err := x.srv.Exec(context.Background(), x.ctl, "--socket", x.sock, "failover", "partner-down", "--yes"); err != nil {
				t.Fatalf("partner-down: %v\n%s", err, out)
			}
			waitFoState(x, "partner-down", "", 5*time.Second)
			late := clientsByBucket(role != "primary", 1, 3)[0]
			ip, server, secs := f.client(late).dora(t)
			if server != "10.79.0.1" || secs != 600 {
				t.Errorf("in partner-down the partner's client got %s from %s for %d s, want from xdhcpd for the full 600 s", ip, server, secs)
			}

			// dhcpd back: it recovers from xdhcpd and the pair is NORMAL.
			d.start()
			waitFoState(x, "normal", "normal", 3*time.Duration(foMCLT)*time.Second)
			waitFor(t, "dhcpd to learn the lease granted in partner-down", 10*time.Second, func() bool {
				l := d.leasesFile()[ip]
				return l.State == "active" && l.HW == late
			})
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// foAck is one ACK a client saw: who got which address from which server,
// and until when, for the double-assignment checker.
type foAck struct {
	mac, ip, server string
	at, until       time.Time
}

// checkNoDoubleAssignment fails the test when one address was ACKed to two
// clients for overlapping times, by what the clients saw and by both
// servers' databases (active records, each with its expiry).
func checkNoDoubleAssignment(t *testing.T, acks []foAck, servers ...*lab) {
	t.Helper()
	type hold struct {
		mac, from  string
		start, end time.Time
	}
	by := map[string][]hold{}
	for _, a := range acks {
		by[a.ip] = append(by[a.ip], hold{a.mac, "ACK from " + a.server, a.at, a.until})
	}
	for _, l := range servers {
		for _, li := range l.leases() {
			if li.State != "active" {
				continue
			}
			end, err := time.Parse(time.RFC3339, li.Expires)
			if err != nil {
				t.Fatalf("lease %+v: expiry %v", li, err)
			}
			by[li.IP] = append(by[li.IP], hold{li.HWAddress, "database of " + l.dir, time.Now(), end})
		}
	}
	for ip, hs := range by {
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				a, b := hs[i], hs[j]
				if a.mac != b.mac && a.start.Before(b.end) && b.start.Before(a.end) {
					t.Errorf("%s held by %s (%s, %s-%s) and %s (%s, %s-%s)", ip, a.mac, a.from, a.start.Format(time.TimeOnly), a.end.Format(time.TimeOnly),
						b.mac, b.from, b.start.Format(time.TimeOnly), b.end.Format(time.TimeOnly))
				}
			}
		}
	}
}

// TestFailoverXdhcpdPair: two xdhcpd (XDP on each) reach NORMAL; udhcpc,
// dhclient and dhcpcd clients get leases from the server of their hash
// bucket; each lease is in the partner's database with the client's vendor
// class, so leasequery to the partner answers for it; a renewal is answered
// by XDP on the server holding the lease; the secondary is killed with -9
// in the middle of DORAs: the primary goes communications-interrupted,
// then partner-down by command and serves everyone; no address is ACKed to
// two clients (the clients' ACKs and both databases); the secondary
// restarts and the pair is NORMAL again.
func TestFailoverXdhcpdPair(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "udhcpc", "dhclient", "dhcpcd", "ip", "curl")
	f := newFoNet(t)
	f.tls = true
	p := f.xdhcpdPeer("primary", "10.79.0.1", "10.79.0.2")
	s := f.xdhcpdPeer("secondary", "10.79.0.2", "10.79.0.1")
	waitFoState(p, "normal", "normal", 30*time.Second)
	if st := waitFoState(s, "normal", "normal", 10*time.Second); !st.TLS {
		t.Fatalf("the pair is normal over plain TCP: %+v", st)
	}
	srv := map[string]*lab{"10.79.0.1": p, "10.79.0.2": s}
	partner := map[string]*lab{"10.79.0.1": s, "10.79.0.2": p}
	q := netns.ForTest(t, "fq")
	f.attach(q, "eth0", netip.MustParsePrefix("10.79.0.5/24"), "")

	var acks []foAck
	var held []foAck // leases to look up in the partner's database
	for i, mac := range append(clientsByBucket(true, 2, 1), clientsByBucket(false, 2, 2)...) {
		t0 := time.Now()
		ip, server, secs := f.client(mac).dora(t)
		if want := map[bool]string{true: "10.79.0.1", false: "10.79.0.2"}[i < 2]; server != want {
			t.Errorf("%s was answered by %s, want %s (its hash bucket's server)", mac, server, want)
		}
		a := foAck{mac, ip, server, t0, t0.Add(time.Duration(secs) * time.Second)}
		acks, held = append(acks, a), append(held, a)
	}
	// dhclient and dhcpcd, answered by whichever server's bucket they
	// fall in.
	dc := f.client("02:00:00:04:00:01")
	lf, pf := filepath.Join(t.TempDir(), "dhclient.leases"), filepath.Join(t.TempDir(), "dhclient.pid")
	if out, err := dc.ns.Exec(context.Background(), "dhclient", "-4", "-1", "-v", "-pf", pf, "-lf", lf, "eth0"); err != nil {
		t.Fatalf("dhclient: %v\n%s", err, out)
	}
	t.Cleanup(func() { dc.ns.Exec(context.Background(), "dhclient", "-4", "-x", "-pf", pf, "-lf", lf, "eth0") })
	ifname := dhcpcdIfname("fo")
	pc := netns.ForTest(t, "fc")
	f.attach(pc, ifname, netip.Prefix{}, "02:00:00:04:00:02")
	conf := filepath.Join(t.TempDir(), "dhcpcd.conf")
	os.WriteFile(conf, []byte("ipv4only\nnoipv4ll\n"), 0o600)
	if out, err := pc.Exec(context.Background(), "dhcpcd", "-4", "-w", "-t", "20", "-f", conf, ifname); err != nil {
		t.Fatalf("dhcpcd: %v\n%s", err, out)
	}
	stopDhcpcd(t, pc, ifname)
	for _, mac := range strings.Fields("02:00:00:04:00:01 02:00:00:04:00:02") {
		var li control.LeaseInfo
		waitFor(t, mac+"'s lease on either server", 10*time.Second, func() bool {
			for _, l := range []*lab{p, s} {
				if x, ok := l.leaseFor(mac); ok && x.State == "active" {
					li = x
					return true
				}
			}
			return false
		})
		held = append(held, foAck{mac: mac, ip: li.IP})
	}
	// Each lease is in both databases; the partner answers leasequery for
	// it, with the vendor class the client sent (xdhcpd partners pass it
	// in binding updates).
	for _, h := range held {
		var holder *lab
		waitFor(t, h.ip+" in both databases", 10*time.Second, func() bool {
			n := 0
			for addr, l := range srv {
				if li, ok := l.leaseFor(h.mac); ok && li.State == "active" && li.IP == h.ip {
					n++
					if h.server == "" || h.server == addr {
						holder = l
					}
				}
			}
			return n == 2
		})
		other := p
		if holder == p {
			other = s
		}
		addr := map[*lab]string{p: "10.79.0.1", s: "10.79.0.2"}[other]
		r := lqFrom(t, p.ctl, q, addr, h.ip)
		if r.Type != "leaseactive" || r.HWAddr != h.mac {
			t.Errorf("leasequery to the partner %s for %s: %+v", addr, h.ip, r)
		}
		if strings.HasPrefix(h.mac, "02:00:00:01") && !strings.HasPrefix(r.VendorClass, "udhcp") {
			t.Errorf("the partner's leasequery answer for %s lacks udhcpc's vendor class: %+v", h.ip, r)
		}
	}

	// A renewal, unicast to the server holding the lease, is answered by
	// its XDP program.
	rc := f.client(clientsByBucket(true, 3, 5)[2])
	dir := t.TempDir()
	env := filepath.Join(dir, "udhcpc.env")
	script := udhcpcScript(t, dir, env, "ip=$ip serverid=$serverid")
	up, err := rc.ns.Start(context.Background(), "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", udhcpcTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Stop)
	bound := waitFileContains(t, env, "bound ip=", 15*time.Second)
	m := regexp.MustCompile(`bound ip=(\S+) serverid=(\S+)`).FindStringSubmatch(bound)
	if m == nil {
		t.Fatalf("udhcpc events: %q", bound)
	}
	holder, other := srv[m[2]], partner[m[2]]
	if holder == nil {
		t.Fatalf("udhcpc bound to %s from unknown server %s", m[1], m[2])
	}
	// The partner's ack of the grant lifts the horizon past min-grant.
	waitFor(t, "the grant acknowledged", 10*time.Second, func() bool { st := foStatus(holder); return st.QueueDepth == 0 && st.Unacked == 0 })
	before, otherBefore := holder.fastReplies(), other.fastReplies()
	if err := up.Signal(sigUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an XDP reply from the lease's server", 10*time.Second, func() bool { return holder.fastReplies() > before })
	if n := other.fastReplies(); n != otherBefore {
		t.Errorf("the partner's XDP answered %v renewals for a lease it does not hold", n-otherBefore)
	}

	// Kill -9 the secondary in the middle of DORAs.
	stop := make(chan struct{})
	done := make(chan []foAck)
	go func() {
		var got []foAck
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- got
				return
			default:
			}
			mac := fmt.Sprintf("02:00:00:06:%02x:%02x", i>>8, i&0xff)
			c := f.client(mac)
			t0 := time.Now()
			out, err := c.ns.Exec(context.Background(), "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", "/bin/true")
			if m := udhcpcObtained.FindStringSubmatch(string(out)); err == nil && m != nil {
				var secs int
				fmt.Sscan(m[3], &secs)
				got = append(got, foAck{mac, m[1], m[2], t0, t0.Add(time.Duration(secs) * time.Second)})
			}
		}
	}()
	time.Sleep(2 * time.Second)
	if err := s.daemon.Signal(sigKILL); err != nil {
		t.Fatal(err)
	}
	s.daemon.Wait()
	waitFoState(p, "communications-interrupted", "", 15*time.Second)
	if out, err := p.srv.Exec(context.Background(), p.ctl, "--socket", p.sock, "failover", "partner-down", "--yes"); err != nil {
		t.Fatalf("partner-down: %v\n%s", err, out)
	}
	waitFoState(p, "partner-down", "", 5*time.Second)
	time.Sleep(3 * time.Second) // DORAs go on, answered by the primary alone
	close(stop)
	load := <-done
	acks = append(acks, load...)
	afterPD := 0
	for _, a := range load {
		if a.server == "10.79.0.2" && a.at.After(time.Now().Add(-2*time.Second)) {
			t.Errorf("%s ACKed by the killed secondary at %s", a.ip, a.at)
		}
		if a.server == "10.79.0.1" {
			afterPD++
		}
	}
	if len(load) == 0 || afterPD == 0 {
		t.Fatalf("DORAs around the kill: %d ACKs, %d from the primary", len(load), afterPD)
	}

	// The secondary restarts with its database: NORMAL again, and the
	// checker finds no address held by two clients.
	s.start()
	waitFoState(s, "normal", "normal", 3*time.Duration(foMCLT)*time.Second)
	waitFoState(p, "normal", "normal", 10*time.Second)
	checkNoDoubleAssignment(t, acks, p, s)
	// Every failover metric README lists is exported (the kill made a
	// disconnect series).
	fm := readmeMetrics(t, func(n string) bool { return strings.HasPrefix(n, "xdhcp_failover_") })
	if len(fm) < 5 {
		t.Fatalf("README lists %d failover metrics: %v", len(fm), fm)
	}
	exportsREADMEMetrics(t, p, fm)
	t.Logf("%d ACKs checked, %d of them in the DORAs around the kill", len(acks), len(load))
}

// TestFailoverDhcpdTakesPartnerDown: dhcpd (primary) is told by its
// operator (OMAPI, omshell) that xdhcpd (secondary) is down while xdhcpd is
// stopped, and serves xdhcpd's clients; xdhcpd restarts, sees its partner
// in PARTNER-DOWN, catches up with what dhcpd granted meanwhile (RECOVER or
// conflict resolution), and the pair returns to NORMAL by itself.
func TestFailoverDhcpdTakesPartnerDown(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "dhcpd", "omshell", "udhcpc", "ip", "curl")
	f := newFoNet(t)
	x := f.xdhcpdPeer("secondary", "10.79.0.1", "10.79.0.2")
	d := f.iscPeerOMAPI("primary", "10.79.0.2", "10.79.0.1")
	waitFoState(x, "normal", "normal", 30*time.Second)
	ip, server, _ := f.client(clientsByBucket(false, 1, 7)[0]).dora(t)
	if server != "10.79.0.1" {
		t.Fatalf("the secondary's client got %s from %s", ip, server)
	}
	waitFor(t, "dhcpd to hold xdhcpd's lease", 10*time.Second, func() bool { return d.leasesFile()[ip].State == "active" })

	x.daemon.Stop()
	d.waitLog("I move from normal to communications-interrupted", 1, 20*time.Second)
	script := `printf 'server 127.0.0.1\nport 7911\nconnect\nnew failover-state\nset name = "e2e"\nopen\nset local-state = 4\nupdate\n' | omshell`
	if out, err := d.ns.Exec(context.Background(), "sh", "-c", script); err != nil {
		t.Fatalf("omshell: %v\n%s", err, out)
	}
	d.waitLog("I move from communications-interrupted to partner-down", 1, 10*time.Second)
	late := clientsByBucket(false, 1, 8)[0]
	lip, lserver, _ := f.client(late).dora(t)
	if lserver != "10.79.0.2" {
		t.Fatalf("in partner-down the secondary's client got %s from %s", lip, lserver)
	}

	x.start()
	waitFoState(x, "normal", "normal", 3*time.Duration(foMCLT)*time.Second)
	// The partner's start-time-of-state decides between RECOVER (it went
	// down after this server stopped) and POTENTIAL-CONFLICT; dhcpd's
	// is not always the time it entered partner-down, and either path
	// brings the pair back with each other's bindings.
	if !regexp.MustCompile(`from=startup to=(recover|potential-conflict) reason="startup \(previous state normal\): the partner is in partner-down"`).MatchString(x.daemon.Output()) {
		t.Errorf("xdhcpd did not take its partner's partner-down into account at startup:\n%s", tail(x.daemon.Output(), 30))
	}
	waitFor(t, "xdhcpd to learn the lease dhcpd granted in partner-down", 10*time.Second, func() bool {
		li, ok := x.leaseFor(late)
		return ok && li.State == "active" && li.IP == lip
	})
}

// iscPeerOMAPI is iscPeer with OMAPI on 127.0.0.1:7911 (in its namespace),
// for omshell.
func (f *foNet) iscPeerOMAPI(role, addr, peer string) *iscPeer {
	f.t.Helper()
	p := f.iscPeerWith(role, addr, peer, "omapi-port 7911;\n")
	if out, err := p.ns.Exec(context.Background(), "ip", "link", "set", "lo", "up"); err != nil {
		f.t.Fatalf("lo: %v\n%s", err, out)
	}
	return p
}
