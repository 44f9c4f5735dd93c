package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// lq runs `xdhcpctl leasequery` in ns from giaddr and returns the decoded
// reply, or nil when nothing came back.
func (l *lab) lq(ns *netns.NS, giaddr string, key ...string) *lqclient.Reply {
	l.t.Helper()
	args := append([]string{l.ctl, "leasequery", "--server", "10.77.0.1", "--giaddr", giaddr, "--json", "--wait", "1500ms"}, key...)
	out, err := ns.Exec(context.Background(), args...)
	if err != nil {
		if strings.Contains(string(out), "no reply") {
			return nil
		}
		l.t.Fatalf("xdhcpctl leasequery %v: %v\n%s", key, err, out)
	}
	var r lqclient.Reply
	if err := json.Unmarshal(out, &r); err != nil {
		l.t.Fatalf("leasequery output %q: %v", out, err)
	}
	return &r
}

// release sends a DHCPRELEASE for ip from the client namespace.
func release(t *testing.T, ns *netns.NS, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenPacket("udp4", ip.String()+":68")
		if err != nil {
			return err
		}
		defer c.Close()
		m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(mac), dhcpv4.WithClientIP(ip.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, mac...))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1))))
		_, err = c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// askAll asks a server the test's questions about the lease ip held by mac
// (udhcpc's: client-id 01+MAC), releasing it half-way, and returns the
// replies by question.
func askAll(l *lab, c *netns.NS, ip, mac string) map[string]*lqclient.Reply {
	l.t.Helper()
	got := map[string]*lqclient.Reply{}
	ask := func(name string, key ...string) { got[name] = l.lq(c, "10.77.0.2", key...) }
	ask("active by IP", "--ip", ip)
	ask("active by MAC", "--mac", mac)
	ask("active by client-id", "--client-id", "01:"+mac)
	ask("free address", "--ip", "10.77.0.148")
	ask("reserved address", "--ip", "10.77.0.42")
	ask("router address", "--ip", "10.77.0.1")
	ask("foreign address", "--ip", "192.0.2.1")
	ask("unknown MAC", "--mac", "02:00:00:00:ee:ee")
	hw, _ := net.ParseMAC(mac)
	release(l.t, c, netip.MustParseAddr(ip), hw)
	time.Sleep(500 * time.Millisecond)
	ask("released address", "--ip", ip)
	ask("MAC after release", "--mac", mac)
	return got
}

// wantTypes is what RFC 4388 prescribes for askAll's questions.
var wantTypes = map[string]string{
	"active by IP": "leaseactive", "active by MAC": "leaseactive", "active by client-id": "leaseactive",
	"free address": "leaseunassigned", "reserved address": "leaseunassigned", "router address": "leaseunknown",
	"foreign address": "leaseunknown", "unknown MAC": "leaseunknown",
	"released address": "leaseunassigned", "MAC after release": "leaseunknown",
}

// near reports whether p holds a value within tol of want.
func near(p *uint32, want, tol int64) bool {
	return p != nil && int64(*p) >= want-tol && int64(*p) <= want+tol
}

// checkTimers checks a LEASEACTIVE's remaining times against a lease of
// lt seconds whose last transaction was SinceLast seconds ago: within tol
// of the RFC 2131 defaults, and in order.
func checkTimers(t *testing.T, what string, r *lqclient.Reply, lt, tol int64) {
	t.Helper()
	if r.SinceLast == nil || r.LeaseTime == nil || r.T1 == nil || r.T2 == nil {
		t.Errorf("%s: lease time, T1, T2 or 91 missing: %+v", what, r)
		return
	}
	since := int64(*r.SinceLast)
	if !near(r.LeaseTime, lt-since, tol) || !near(r.T1, lt/2-since, tol) || !near(r.T2, lt*7/8-since, tol) {
		t.Errorf("%s: lease time %d, T1 %d, T2 %d, %ds after the last transaction; want about %d, %d, %d",
			what, *r.LeaseTime, *r.T1, *r.T2, since, lt-since, lt/2-since, lt*7/8-since)
	}
	if !(*r.T1 < *r.T2 && *r.T2 < *r.LeaseTime) {
		t.Errorf("%s: T1 %d, T2 %d, lease time %d out of order", what, *r.T1, *r.T2, *r.LeaseTime)
	}
}

// relayedLeasequeryCases adds a reservation (10.77.0.42) and a 10 s lease
// time on the relayed subnet to the running lab, has a relay in c
// (10.78.0.1) obtain a lease for mac with option 82 and a vendor class,
// and checks what leasequery says about it while it is active (beside
// the direct lease otherIP of the same MAC) and once it has expired.
func relayedLeasequeryCases(t *testing.T, l *lab, c *netns.NS, mac, otherIP string) (relayedIP string) {
	b, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "      domain-name: example.net\n",
		"      domain-name: example.net\n    reservations:\n      - hw-address: 02:00:00:00:00:42\n        ip: 10.77.0.42\n", 1)
	cfg = strings.Replace(cfg, "    lease-time: 1h\n", "    lease-time: 10s\n", 1)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Call(ctx, l.sock, "reload", nil, nil); err != nil {
		t.Fatalf("reload: %v\n%s", err, l.daemon.Output())
	}
	l.sh(c, "ip addr add 10.78.0.1/32 dev eth0")
	l.sh(l.srv, "ip route add 10.78.0.0/16 via 10.77.0.2")

	hw, _ := net.ParseMAC(mac)
	opt82 := []byte{1, 7, 'o', 'l', 't', '1', '/', '1', '7', 2, 3, 'c', 'p', 'e'}
	relayed := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(hw), dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("lq-e2e/1.0")),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}}),
	}
	disc, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))...)
	offer := exchange(t, c, "10.78.0.1:67", disc)
	req, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithTransactionID(disc.TransactionID),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
	ack := exchange(t, c, "10.78.0.1:67", req)
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("relayed DORA: %s", ack.Summary())
	}
	acked := time.Now()
	ip := ack.YourIPAddr.String()

	r := l.lq(c, "10.77.0.2", "--ip", ip)
	if r == nil || r.Type != "leaseactive" || r.IP != ip || r.HWAddr != mac || r.VendorClass != "lq-e2e/1.0" || r.RelayInfo != hex.EncodeToString(opt82) {
		t.Fatalf("relayed lease by IP: %+v", r)
	}
	checkTimers(t, "relayed lease by IP", r, 10, 1)
	if len(r.AssociatedIPs) != 0 {
		t.Errorf("option 92 in a reply to a query by IP: %v", r.AssociatedIPs)
	}
	// By MAC: the newest binding, the other address of the same MAC in 92.
	r = l.lq(c, "10.77.0.2", "--mac", mac)
	if r == nil || r.Type != "leaseactive" || r.IP != ip || len(r.AssociatedIPs) != 1 || r.AssociatedIPs[0] != otherIP {
		t.Fatalf("by MAC with two bindings: %+v, want %s with %s in option 92", r, ip, otherIP)
	}

	// Expired: its 10 s are up (the sweeper may still hold the record
	// until the promise horizon passes; the answer follows the expiry).
	time.Sleep(time.Until(acked.Add(11 * time.Second)))
	if r = l.lq(c, "10.77.0.2", "--ip", ip); r == nil || r.Type != "leaseunassigned" || r.LeaseTime != nil {
		t.Errorf("expired relayed lease by IP: %+v", r)
	}
	if r = l.lq(c, "10.77.0.2", "--mac", mac); r == nil || r.Type != "leaseactive" || r.IP != otherIP || len(r.AssociatedIPs) != 0 {
		t.Errorf("by MAC after the relayed lease expired: %+v, want only %s", r, otherIP)
	}
	return ip
}

func TestLeasequery(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	const mac = "02:00:00:00:0f:10"
	l, c := fastLab(t, "native", "10m", mac)
	li := udhcpcLease(t, l, c, mac)
	// The requester's addresses, added after udhcpc configured its own.
	l.sh(c, "ip addr add 10.77.0.2/24 dev eth0 && ip addr add 10.77.0.3/24 dev eth0")
	hw, _ := net.ParseMAC(mac)

	// Renew through XDP, then ask a second later: the answer reflects it
	// (without the renewal the last transaction would be 5 s old).
	time.Sleep(4 * time.Second)
	fast := l.fastReplies()
	if got := (renewer{t, c, netip.MustParseAddr(li.IP), hw}).renew(1); got != 1 || l.fastReplies() <= fast {
		t.Fatal("renewal not answered by XDP")
	}
	time.Sleep(time.Second)
	r := l.lq(c, "10.77.0.2", "--ip", li.IP)
	if r == nil || r.Type != "leaseactive" || r.IP != li.IP || r.HWAddr != mac || r.ClientID != "01:"+mac || r.ServerID != "10.77.0.1" {
		t.Fatalf("by IP after an XDP renewal: %+v", r)
	}
	if r.SinceLast == nil || *r.SinceLast > 2 || r.LeaseTime == nil || *r.LeaseTime < 597 {
		t.Fatalf("the reply does not reflect the XDP renewal a second ago: since %v, remaining %v", r.SinceLast, r.LeaseTime)
	}
	checkTimers(t, "by IP after an XDP renewal", r, 600, 2)
	// udhcpc names itself in option 60; it was relayed by no one (no 82).
	if !strings.HasPrefix(r.VendorClass, "udhcp") || r.RelayInfo != "" {
		t.Errorf("vendor class %q, relay info %q", r.VendorClass, r.RelayInfo)
	}

	relayedIP := relayedLeasequeryCases(t, l, c, mac, li.IP)

	// A requester not in the list gets nothing, and is counted.
	if r := l.lq(c, "10.77.0.3", "--ip", li.IP); r != nil {
		t.Fatalf("answered a requester not in the list: %+v", r)
	}
	if l.metric(`xdhcp_slowpath_dropped_total{reason="leasequery_denied"}`) != 1 {
		t.Fatal("refused query not counted")
	}
	// The server stays silent; xdhcpctl says what that may mean.
	out, err := c.Exec(context.Background(), l.ctl, "leasequery", "--server", "10.77.0.1", "--giaddr", "10.77.0.3", "--ip", li.IP, "--wait", "500ms")
	if err == nil || !strings.Contains(string(out), "10.77.0.3 is listed under leasequery.requesters") {
		t.Fatalf("a refused query's timeout gives no hint: %v\n%s", err, out)
	}

	// Bulk over TCP (RFC 6926), by MAC and by client-id: the MAC also
	// names the expired relayed binding, the client-id (udhcpc's) does not.
	bulk := func(args ...string) []lqclient.Reply {
		t.Helper()
		out, err := c.Exec(context.Background(), append([]string{l.ctl, "leasequery", "--bulk", "--server", "10.77.0.1", "--giaddr", "10.77.0.2", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("bulk %v: %v\n%s", args, err, out)
		}
		var reps []lqclient.Reply
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r lqclient.Reply
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("bulk %v: %q: %v", args, line, err)
			}
			reps = append(reps, r)
		}
		if last := reps[len(reps)-1]; last.Type != "leasequerydone" || last.Status != nil || last.BaseTime == nil || last.ServerID == "" && len(reps) == 1 {
			t.Fatalf("bulk %v ends with %+v", args, last)
		}
		return reps
	}
	for _, tc := range []struct {
		key  []string
		want string
	}{
		{[]string{"--mac", mac}, "leaseactive " + li.IP + " active, leaseunassigned " + relayedIP + " expired, leasequerydone, "},
		{[]string{"--client-id", "01:" + mac}, "leaseactive " + li.IP + " active, leasequerydone, "},
	} {
		var got strings.Builder
		for _, r := range bulk(tc.key...) {
			// The sweeper frees an expired binding a second after it
			// marks it: either is right for the relayed one by now.
			st := strings.Replace(r.State, "available", "expired", 1)
			fmt.Fprintf(&got, "%s, ", strings.Join(strings.Fields(r.Type+" "+r.IP+" "+st), " "))
		}
		if got.String() != tc.want {
			t.Errorf("bulk %v: %s\nwant %s", tc.key, got.String(), tc.want)
		}
	}
	// Nothing has changed since now: DONE alone, with the server's id.
	if reps := bulk("--mac", mac, "--start-time", strconv.FormatInt(time.Now().Unix()+1, 10)); len(reps) != 1 || reps[0].ServerID != "10.77.0.1" {
		t.Errorf("bulk with a start time in the future: %+v", reps)
	}

	got := askAll(l, c, li.IP, mac)
	for q, want := range wantTypes {
		if got[q] == nil || got[q].Type != want {
			t.Errorf("%s: got %+v, want %s", q, got[q], want)
		}
	}
	if a := got["active by MAC"]; a != nil && (a.IP != li.IP || a.LeaseTime == nil || a.SinceLast == nil) {
		t.Errorf("active by MAC: %+v", a)
	}
	if t.Failed() {
		return
	}

	// The same questions to ISC dhcpd about an equivalent lease.
	isc := iscLeasequeryLab(t, mac)
	for q := range wantTypes {
		x, d := got[q], isc.replies[q]
		if d == nil {
			t.Errorf("%s: ISC dhcpd did not answer (xdhcpd: %s)", q, x.Type)
			continue
		}
		if x.Type != d.Type {
			// RFC 4388 leaves the MAC query of a client with no active
			// lease open; ISC answers UNASSIGNED when it knows a past
			// lease, xdhcpd UNKNOWN as Kea does (and as the RFC's
			// definition of UNASSIGNED, an address, suggests).
			if q == "MAC after release" && d.Type == "leaseunassigned" {
				t.Logf("%s: xdhcpd %s, ISC %s (allowed difference)", q, x.Type, d.Type)
				continue
			}
			// UNASSIGNED is for an address the server administers but has
			// not leased. A reserved address is one xdhcpd administers (it
			// would hand it to its client), so it says UNASSIGNED; ISC
			// keeps lease objects only for its ranges and knows nothing of
			// a host's fixed-address until it is in use, so it says
			// UNKNOWN. The router address, neither pooled nor reserved, is
			// UNKNOWN to both.
			if q == "reserved address" && x.Type == "leaseunassigned" && d.Type == "leaseunknown" {
				t.Logf("%s: xdhcpd %s, ISC %s (allowed difference)", q, x.Type, d.Type)
				continue
			}
			t.Errorf("%s: xdhcpd %s, ISC dhcpd %s", q, x.Type, d.Type)
			continue
		}
		if x.Type == "leaseactive" {
			// Both name the binding the same way; the address differs only
			// because they are different servers' pools.
			if x.HWAddr != d.HWAddr || x.ClientID != d.ClientID || (x.LeaseTime == nil) != (d.LeaseTime == nil) || (x.SinceLast == nil) != (d.SinceLast == nil) {
				t.Errorf("%s: fields differ:\n xdhcpd %+v\n dhcpd  %+v", q, x, d)
			}
			// Both hold 600 s leases with default T1/T2. The leases were
			// taken at different moments, so compare each as remaining
			// time plus time since the last transaction: the duration the
			// client was told.
			told := func(v, since *uint32) int64 {
				if v == nil || since == nil {
					return -1
				}
				return int64(*v) + int64(*since)
			}
			for _, f := range []struct {
				name string
				x, d *uint32
			}{{"lease time", x.LeaseTime, d.LeaseTime}, {"T1", x.T1, d.T1}, {"T2", x.T2, d.T2}} {
				xv, dv := told(f.x, x.SinceLast), told(f.d, d.SinceLast)
				if xv < 0 || xv-dv > 2 || dv-xv > 2 {
					t.Errorf("%s: %s told %d s by xdhcpd, %d s by ISC dhcpd", q, f.name, xv, dv)
				}
				t.Logf("%s: %s %d s (xdhcpd), %d s (ISC dhcpd)", q, f.name, xv, dv)
			}
			if x.VendorClass != d.VendorClass || x.RelayInfo != d.RelayInfo {
				t.Errorf("%s: vendor class %q / %q, relay info %q / %q (xdhcpd / dhcpd)", q, x.VendorClass, d.VendorClass, x.RelayInfo, d.RelayInfo)
			}
		}
		t.Logf("%s: both %s", q, x.Type)
	}
}

type iscLab struct {
	replies map[string]*lqclient.Reply
}

// iscLeasequeryLab runs ISC dhcpd with `allow leasequery;` on the same
// topology, has udhcpc take a lease, and asks askAll's questions.
func iscLeasequeryLab(t *testing.T, mac string) iscLab {
	t.Helper()
	_, xdhcpctl := binaries(t)
	srv := netns.ForTest(t, "xs")
	c := netns.ForTest(t, "xc")
	if err := netns.Veth(srv, "vs0", netip.MustParsePrefix("10.77.0.1/24"), c, "eth0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, srv: srv, dir: t.TempDir(), ctl: xdhcpctl}
	if err := c.SetMAC("eth0", mac); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(l.dir, "dhcpd.conf")
	os.WriteFile(conf, []byte(`ping-check false;
authoritative;
allow leasequery;
default-lease-time 600;
max-lease-time 600;
subnet 10.77.0.0 netmask 255.255.255.0 {
  range 10.77.0.100 10.77.0.149;
  option routers 10.77.0.1;
}
host reserved {
  hardware ethernet 02:00:00:00:00:42;
  fixed-address 10.77.0.42;
}
`), 0o600)
	leases := filepath.Join(l.dir, "dhcpd.leases")
	os.WriteFile(leases, nil, 0o600)
	p, err := srv.Start(context.Background(), "dhcpd", "-4", "-f", "-d", "-cf", conf, "-lf", leases, "-pf", filepath.Join(l.dir, "dhcpd.pid"), "vs0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	l.daemon = p
	var out []byte
	for try := 0; try < 10; try++ {
		if out, err = c.Exec(context.Background(), "udhcpc", "-q", "-f", "-n", "-i", "eth0", "-t", "5", "-T", udhcpcTimeout); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond) // dhcpd still starting
	}
	m := regexp.MustCompile(`lease of (\S+) obtained`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("udhcpc got no lease from dhcpd:\n%s\ndhcpd:\n%s", out, p.Output())
	}
	l.sh(c, "ip addr add 10.77.0.2/24 dev eth0")
	return iscLab{replies: askAll(l, c, m[1], mac)}
}

func deref(p *uint32) any {
	if p == nil {
		return nil
	}
	return *p
}
