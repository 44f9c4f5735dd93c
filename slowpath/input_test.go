package slowpath

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Bad input (issue 14 §4): each message below was answered, or bound a
// lease, before the server checked option formats. Each case is decided
// by the RFC that defines the field; the ones that RFC allows are kept
// and must still be answered.

// rawMsg builds a BOOTREQUEST byte by byte, so that option lengths, the
// header and the END option can be as broken as a sender makes them.
type rawMsg struct {
	htype, hlen    byte
	chaddr         []byte
	ciaddr, giaddr netip.Addr
	opts           [][]byte // each code, length, value as sent
	noEnd          bool
	sname, file    []byte // overwrite the fields (overload)
}

func opt(code byte, val ...byte) []byte { return append([]byte{code, byte(len(val))}, val...) }

func (m rawMsg) bytes() []byte {
	b := make([]byte, 240, 400)
	b[0], b[1], b[2] = 1, m.htype, m.hlen
	binary.BigEndian.PutUint32(b[4:], 0xdeadbe01)
	if m.ciaddr.IsValid() {
		copy(b[12:16], m.ciaddr.AsSlice())
	}
	if m.giaddr.IsValid() {
		copy(b[24:28], m.giaddr.AsSlice())
	}
	copy(b[28:44], m.chaddr)
	copy(b[44:108], m.sname)
	copy(b[108:236], m.file)
	copy(b[236:240], []byte{99, 130, 83, 99})
	for _, o := range m.opts {
		b = append(b, o...)
	}
	if !m.noEnd {
		b = append(b, 255)
	}
	return b
}

var evilMAC = []byte{2, 0xde, 0xad, 0xbe, 0xef, 1}

// client is a broadcast message from evilMAC of type typ.
func client(typ byte, opts ...[]byte) rawMsg {
	return rawMsg{htype: 1, hlen: 6, chaddr: evilMAC, opts: append([][]byte{opt(53, typ)}, opts...)}
}

func (m rawMsg) relayed() rawMsg { m.giaddr = relayAddr; return m }

var (
	wantAddr = opt(50, 10, 77, 0, 105) // in the fixture's pool
	sidOK    = opt(54, 10, 77, 0, 1)
)

type inputCase struct {
	name   string
	m      rawMsg
	reason string // drop counter that must move; "" when answered
	why    string // the rule, for the failure message
}

func inputCases() []inputCase {
	garbageFile := bytes.Repeat([]byte{0x42}, 128) // option 66 claiming 66 bytes, repeated: runs past the field
	fileOpts := append(opt(50, 10, 77, 0, 106), 255)
	return []inputCase{
		{"request_sid_len0_with_50", client(3, rawOpt(54), wantAddr), "malformed_option", "RFC 2132 §9.7: option 54 has length 4"},
		{"request_sid_len3_with_50", client(3, rawOpt(54, 10, 77, 0), wantAddr), "malformed_option", "RFC 2132 §9.7"},
		{"request_50_len3_with_sid", client(3, sidOK, rawOpt(50, 10, 77, 0)), "malformed_option", "RFC 2132 §9.1: option 50 has length 4"},
		{"request_50_len0_init_reboot", client(3, rawOpt(50)), "malformed_option", "RFC 2132 §9.1"},
		{"request_51_len2", client(3, sidOK, wantAddr, rawOpt(51, 0, 60)), "malformed_option", "RFC 2132 §9.2: option 51 has length 4"},
		{"discover_53_len2", rawMsg{htype: 1, hlen: 6, chaddr: evilMAC, opts: [][]byte{rawOpt(53, 1, 1)}}, "malformed_option", "RFC 2132 §9.6: option 53 has length 1"},
		{"discover_57_zero", client(1, opt(57, 0, 0)), "malformed_option", "RFC 2132 §9.10: the minimum legal value is 576"},
		{"discover_57_575", client(1, opt(57, 2, 63)), "malformed_option", "RFC 2132 §9.10"},
		{"discover_57_len1", client(1, rawOpt(57, 5)), "malformed_option", "RFC 2132 §9.10: option 57 has length 2"},
		{"discover_118_len2", client(1, rawOpt(118, 10, 77)), "malformed_option", "RFC 3011 §3: option 118 has length 4"},
		{"discover_61_len1", client(1, rawOpt(61, 1)), "malformed_option", "RFC 2132 §9.14: type and at least one byte"},
		{"discover_82_suboption_past_end", client(1, rawOpt(82, 1, 10, 'p', 'o', 'r', 't')).relayed(), "malformed_option", "RFC 3046 §2.0: sub-options fill the option exactly"},
		{"discover_82_truncated_suboption_header", client(1, rawOpt(82, 1, 2, 'a', 'b', 2)).relayed(), "malformed_option", "RFC 3046 §2.0"},
		{"discover_82_empty", client(1, rawOpt(82)).relayed(), "malformed_option", "RFC 3046 §2.0: at least one sub-option"},
		{"discover_82_link_selection_len3", client(1, rawOpt(82, 5, 3, 10, 77, 0)).relayed(), "malformed_option", "RFC 3527 §3: sub-option 5 has length 4"},
		{"request_82_server_id_override_len2", client(3, sidOK, wantAddr, rawOpt(82, 11, 2, 10, 77)).relayed(), "malformed_option", "RFC 5107 §4: sub-option 11 has length 4"},
		{"discover_hlen0_ethernet", rawMsg{htype: 1, hlen: 0, opts: [][]byte{opt(53, 1)}}, "malformed_header", "RFC 2131 §2: hlen 6 for Ethernet"},
		{"request_hlen0_ethernet_with_client_id", rawMsg{htype: 1, hlen: 0, opts: [][]byte{opt(53, 3), opt(61, 1, 2, 3, 4, 5, 6, 7), wantAddr}}, "malformed_header", "RFC 2131 §2"},
		{"discover_hlen17", rawMsg{htype: 1, hlen: 17, opts: [][]byte{opt(53, 1)}}, "malformed", "RFC 2131 §2: chaddr holds 16 bytes"},
		{"discover_overload_0", client(1, opt(52, 0)), "malformed_option", "RFC 2132 §9.3: values 1, 2, 3"},
		{"discover_overload_4", client(1, opt(52, 4)), "malformed_option", "RFC 2132 §9.3"},
		{"discover_overload_len2", client(1, rawOpt(52, 1, 1)), "malformed_option", "RFC 2132 §9.3: length 1"},
		{"discover_overload_file_garbage", withFile(client(1, opt(52, 1)), garbageFile), "malformed", "RFC 2131 §4.1: the file field holds options"},
		{"discover_overload_sname_garbage", withSname(client(1, opt(52, 2)), bytes.Repeat([]byte{0x0c, 0x7f}, 32)), "malformed", "RFC 2131 §4.1"},
		{"discover_option_past_end", func() rawMsg { m := client(1, rawOpt(12, 'h', 'o')[:3]); m.noEnd = true; return m }(), "malformed", "RFC 2132 §2: an option's length covers its data"},
		// Kept: what the RFCs allow.
		{"discover_no_end", func() rawMsg { m := client(1); m.noEnd = true; return m }(), "", "options ending with their field are unambiguous; ISC dhcpd and Kea accept them"},
		{"discover_overload_file_valid", withFile(client(1, opt(52, 1)), fileOpts), "", "RFC 2131 §4.1: options continue in the file field"},
		{"discover_57_576", client(1, opt(57, 2, 64)), "", "RFC 2132 §9.10: 576 is legal"},
		{"discover_82_well_formed", client(1, opt(82, 1, 4, 'p', 'o', 'r', 't', 2, 3, 'c', 'p', 'e')).relayed(), "", "RFC 3046"},
		{"discover_other_htype_hlen0_client_id", rawMsg{htype: 32, hlen: 0, opts: [][]byte{opt(53, 1), opt(61, 0, 1, 2, 3, 4, 5, 6, 7, 8)}}, "", "RFC 4390: IPoIB sends hlen 0 and a client identifier"},
	}
}

// rawOpt is an option whose length byte is the number of value bytes
// given (the same as opt); named apart to mark the malformed ones.
func rawOpt(code byte, val ...byte) []byte { return opt(code, val...) }

func withFile(m rawMsg, f []byte) rawMsg  { m.file = f; return m }
func withSname(m rawMsg, s []byte) rawMsg { m.sname = s; return m }

// TestMalformedInputChangesNothing sends each case to the server as it
// would arrive and checks that a malformed one gets no reply, stores and
// offers nothing, and moves its drop counter, while an allowed one is
// answered. Each case is also in FuzzHandle's corpus (checked here, so
// the two cannot drift apart; UPDATE_SEEDS=1 rewrites them).
func TestMalformedInputChangesNothing(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b := tc.m.bytes()
			var before float64
			if tc.reason != "" {
				before = testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(tc.reason))
			}
			in := Incoming{Data: b, Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7}
			if tc.m.giaddr.IsValid() {
				in.Src, in.Dst = netip.AddrPortFrom(tc.m.giaddr, 67), srvAddr
			}
			checkSeed(t, "FuzzHandle", tc.name, b)
			f.srv.Handle(in)
			out := f.out.take()
			if tc.reason == "" {
				if len(out) != 1 {
					t.Fatalf("allowed (%s), but %d replies", tc.why, len(out))
				}
				return
			}
			if len(out) != 0 || len(f.store.leases) != 0 || f.store.commits != 0 || len(f.srv.offers) != 0 || f.srv.LeaseCount() != 0 {
				t.Fatalf("malformed (%s) but answered (%d replies) or changed state (%d stored, %d offers)", tc.why, len(out), len(f.store.leases), len(f.srv.offers))
			}
			if got := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(tc.reason)); got != before+1 {
				t.Fatalf("drop counter %q went %v -> %v", tc.reason, before, got)
			}
		})
	}
}

// checkSeed makes sure testdata/fuzz/<target>/<name> holds b.
func checkSeed(t *testing.T, target, name string, b []byte) {
	t.Helper()
	path := filepath.Join("testdata", "fuzz", target, name)
	want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
	got, err := os.ReadFile(path)
	if err == nil && string(got) == want {
		return
	}
	if os.Getenv("UPDATE_SEEDS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("fuzz seed %s is missing or stale (%v); run with UPDATE_SEEDS=1", path, err)
}

// The malformed REQUEST of the issue: option 54 of 3 bytes beside option
// 50 was taken as INIT-REBOOT and bound the address (10.77.0.150 there); a well-formed one
// from the same client right after still works, so the drop is about the
// option, not the client.
func TestMalformedServerIDDoesNotBindButGoodRequestDoes(t *testing.T) {
	f := newFixture(t)
	f.srv.Handle(Incoming{Data: client(3, rawOpt(54, 10, 77, 0), wantAddr).bytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7})
	if len(f.out.take()) != 0 || f.srv.Lookup(netip.MustParseAddr("10.77.0.105")) != nil {
		t.Fatal("malformed REQUEST answered or bound")
	}
	f.srv.Handle(Incoming{Data: client(3, sidOK, wantAddr).bytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7})
	if out := f.out.take(); len(out) != 1 {
		t.Fatalf("well-formed SELECTING REQUEST: %d replies", len(out))
	}
	if l := f.store.leases[netip.MustParseAddr("10.77.0.105")]; l == nil || l.State != lease.Active {
		t.Fatalf("well-formed request not bound: %+v", l)
	}
}

func TestInformWithBadClientAddressIsDropped(t *testing.T) {
	for _, tc := range []struct {
		ciaddr, reason string
	}{
		{"255.255.255.255", "inform_ciaddr_not_unicast"}, // nmap's broadcast-dhcp-discover probe
		{"224.0.0.1", "inform_ciaddr_not_unicast"},
		{"127.0.0.1", "inform_ciaddr_not_unicast"},
		{"10.77.0.0", "inform_ciaddr_not_unicast"},   // the subnet's network address
		{"10.77.0.255", "inform_ciaddr_not_unicast"}, // its broadcast address
		{"192.0.2.7", "inform_ciaddr_outside_subnet"},
		{"10.78.0.9", "inform_ciaddr_outside_subnet"}, // served, but not on this link
	} {
		f := newFixture(t)
		m := msg(t, dhcpv4.MessageTypeInform, mac(1), dhcpv4.WithClientIP(net.ParseIP(tc.ciaddr)))
		f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7})
		if out := f.out.take(); len(out) != 0 {
			t.Fatalf("INFORM with ciaddr %s answered (to %v)", tc.ciaddr, out[0].Dst)
		}
		if got := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(tc.reason)); got != 1 {
			t.Fatalf("INFORM with ciaddr %s: %s counted %v", tc.ciaddr, tc.reason, got)
		}
	}
	// The positive control: a client's own address is answered, unicast.
	f := newFixture(t)
	m := msg(t, dhcpv4.MessageTypeInform, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.9")))
	f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("10.77.0.9:68"), Dst: srvAddr, IfIndex: 7})
	if out := f.out.take(); len(out) != 1 || out[0].Dst.String() != "10.77.0.9:68" {
		t.Fatalf("INFORM from 10.77.0.9: %v", out)
	}
}

// One binding per client per subnet (ARCHITECTURE.md 8): four REQUESTs from one
// MAC for four addresses got four active leases. Now each grant replaces
// the previous one: the old address is released in the store, withdrawn
// from the fast path, back in the pool, and leasequery reports it
// unassigned while the client's query by MAC finds only the new one.
func TestOneBindingPerClientPerSubnet(t *testing.T) {
	f, fp := newFastFixture(t)
	f.srv.set.Leasequery = Leasequery{Enabled: true, Requesters: []netip.Prefix{netip.PrefixFrom(requester, 32)}}
	hw := net.HardwareAddr(evilMAC)
	var ips []netip.Addr
	for i := range 4 {
		ip := netip.AddrFrom4([4]byte{10, 77, 0, byte(100 + 2*i)})
		ips = append(ips, ip)
		acks := f.send(msg(t, dhcpv4.MessageTypeRequest, hw, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))), bcast)
		if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck || addrOf(acks[0].YourIPAddr) != ip {
			t.Fatalf("INIT-REBOOT for %s: %v", ip, acks)
		}
	}
	last := ips[3]
	for _, ip := range ips {
		l := f.store.leases[ip]
		_, inMap := fp.entries[ip]
		if ip == last {
			if l == nil || l.State != lease.Active || !inMap {
				t.Fatalf("newest grant %s: stored %+v, in the fast path %v", ip, l, inMap)
			}
			continue
		}
		if l == nil || l.State == lease.Active || l.ActiveAt(f.now) {
			t.Fatalf("replaced binding %s still active in the store: %+v", ip, l)
		}
		if inMap {
			t.Fatalf("replaced binding %s still in the fast path", ip)
		}
		if r := f.query(requester, dhcpv4.WithClientIP(ip.AsSlice())); r == nil || r.MessageType() != mtLeaseUnassigned {
			t.Fatalf("leasequery for replaced %s: %v", ip, r)
		}
	}
	r := f.query(requester, byMACMod(hw))
	if r == nil || r.MessageType() != mtLeaseActive || addrOf(r.ClientIPAddr) != last {
		t.Fatalf("leasequery by MAC: %v", r)
	}
	if v := r.Options.Get(dhcpv4.OptionCode(optCode(92))); v != nil {
		t.Fatalf("leasequery by MAC lists other addresses %v; the client holds one", v)
	}
	if got := testutil.ToFloat64(f.srv.m.Replaced); got != 3 {
		t.Fatalf("replaced counter %v, want 3", got)
	}
	// The freed addresses go back to the pool: after the sweep another
	// client can be offered them.
	f.srv.Sweep()
	for _, ip := range ips[:3] {
		if l := f.srv.Lookup(ip); l == nil || l.State != lease.Free {
			t.Fatalf("%s after the sweep: %+v", ip, l)
		}
	}
	// A client in another subnet keeps both (one per subnet).
	other := mac(9)
	f.dora(other)
	relayedAck := f.dora(other, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))
	if l := f.srv.Lookup(addrOf(relayedAck.YourIPAddr)); l == nil || l.State != lease.Active {
		t.Fatal("relayed grant not active")
	}
	n := 0
	for _, l := range f.store.leases {
		if l.State == lease.Active && bytes.Equal(l.HWAddr, other) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("client with one binding in each of two subnets holds %d", n)
	}
}

// A grant replaces by client key: the same MAC with another client
// identifier is another client (RFC 2131 §4.2) and keeps its binding.
func TestReplacementFollowsTheClientIdentifier(t *testing.T) {
	f := newFixture(t)
	hw := net.HardwareAddr(evilMAC)
	a := f.dora(hw, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0, 'a'})))
	b := f.dora(hw, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0, 'b'})))
	for _, ack := range []*dhcpv4.DHCPv4{a, b} {
		if l := f.store.leases[addrOf(ack.YourIPAddr)]; l == nil || l.State != lease.Active {
			t.Fatalf("%s: %+v", ack.YourIPAddr, l)
		}
	}
}

func TestChaddrIsLoggedAsAMACAddress(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	f.srv.log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.send(msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 0, 0, 0, 0, 0x23}), bcast)
	if !strings.Contains(buf.String(), "chaddr=02:00:00:00:00:23") {
		t.Fatalf("debug log does not name the chaddr as a MAC address:\n%s", buf.String())
	}
}

// Every DISCOVER dropped for an exhausted pool logged a warning: 918k lines
// in a 20 s flood. Once a second now, with the count held back; the drop
// counter still counts each.
func TestPoolExhaustedWarnsOncePerSecond(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	f.srv.log = slog.New(rec)
	for i := range 10 { // the pool holds 10 addresses
		f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(byte(i))), bcast)
	}
	for i := range 100 {
		f.send(msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 1, 0, 0, 0, byte(i)}), bcast)
	}
	if n, _ := rec.warnings(); n != 1 {
		t.Fatalf("%d warnings for 100 exhausted DISCOVERs in one second, want 1", n)
	}
	if got := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("pool_exhausted")); got != 100 {
		t.Fatalf("pool_exhausted counted %v, want 100", got)
	}
	f.now = f.now.Add(time.Second)
	f.send(msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 2, 0, 0, 0, 1}), bcast)
	if n, sup := rec.warnings(); n != 2 || len(sup) != 1 || sup[0] != 99 {
		t.Fatalf("a second later: %d warnings, suppressed %v; want 2 and [99]", n, sup)
	}
}

// A flood of DISCOVERs from random MACs took every free address of a pool
// as pending offers. With the pool bound, the flood holds at most its
// share, the oldest offers go first, a new client is offered an address
// at once, and its REQUEST is granted even when the flood has pushed its
// offer out in the meantime.
func TestOfferBoundsKeepRoomForRealClients(t *testing.T) {
	f := newFixture(t)
	f.srv.set.OfferPoolShare = 0.5
	flood := func(n int, seed byte) {
		for i := range n {
			f.send(msg(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 0xf1, seed, byte(i >> 8), byte(i), 7}), bcast)
		}
	}
	flood(100, 1)
	pending := func() int {
		n := 0
		for _, o := range f.srv.offers {
			if o.until.After(f.now) {
				n++
			}
		}
		return n
	}
	// 10 addresses, none bound: half of the unbound ones may be offered.
	if n := pending(); n != 5 {
		t.Fatalf("%d offers pending after the flood, want 5 (half the pool)", n)
	}
	if got := testutil.ToFloat64(f.srv.m.OffersWithdrawn.WithLabelValues("pool")); got != 95 {
		t.Fatalf("withdrawn %v, want 95", got)
	}
	if got := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("pool_exhausted")); got != 0 {
		t.Fatalf("%v DISCOVERs dropped as exhausted although offers could be withdrawn", got)
	}
	real := mac(77)
	offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, real), bcast)
	if len(offers) != 1 {
		t.Fatalf("a new client during the flood: %d offers", len(offers))
	}
	flood(50, 2) // its offer is the oldest now, and withdrawn
	if o, ok := f.srv.offers[addrOf(offers[0].YourIPAddr)]; ok && o.client == lease.ClientKey(nil, 1, real) {
		t.Fatal("the flood did not push the client's offer out; the test shows nothing")
	}
	acks := f.send(msg(t, dhcpv4.MessageTypeRequest, real,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier()))), bcast)
	if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the client's REQUEST during the flood: %v", acks)
	}
	if l := f.store.leases[addrOf(offers[0].YourIPAddr)]; l == nil || l.State != lease.Active || !bytes.Equal(l.HWAddr, real) {
		t.Fatalf("stored %+v", l)
	}
	if n := pending(); n > 5 {
		t.Fatalf("%d offers pending, more than the bound", n)
	}
	checkOfferCounts(t, f.srv)
	f.now = f.now.Add(20 * time.Second) // every offer lapses
	f.srv.Sweep()
	checkOfferCounts(t, f.srv)
	if len(f.srv.offerCount) != 0 || len(f.srv.offerFIFO) != 0 {
		t.Fatalf("after every offer lapsed: counts %v, %d queues", f.srv.offerCount, len(f.srv.offerFIFO))
	}
}

// checkOfferCounts holds the bounds' bookkeeping to the offers themselves.
func checkOfferCounts(t *testing.T, s *Server) {
	t.Helper()
	want := map[string]int{}
	for _, o := range s.offers {
		for _, b := range []string{o.pool, o.circuit} {
			if b != "" {
				want[b]++
			}
		}
	}
	if !maps.Equal(want, s.offerCount) {
		t.Fatalf("offer counts %v, the offers make %v", s.offerCount, want)
	}
}

func TestOfferBoundPerRelayCircuit(t *testing.T) {
	f := newFixture(t)
	f.srv.set.OfferPerCircuit = 2
	via := func(circuit string) []dhcpv4.Modifier {
		return viaRelay(append([]byte{1, byte(len(circuit))}, circuit...))
	}
	for i := range 5 {
		if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(byte(i)), via("port-1")...), bcast); len(got) != 1 {
			t.Fatalf("DISCOVER %d on port-1: %d offers", i, len(got))
		}
	}
	other := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(50), via("port-2")...), bcast)
	if len(other) != 1 {
		t.Fatal("port-2 got no offer")
	}
	byCircuit := map[string]int{}
	for _, o := range f.srv.offers {
		byCircuit[o.circuit]++
	}
	if byCircuit["circuit 10.78.0.1 port-1"] != 2 || byCircuit["circuit 10.78.0.1 port-2"] != 1 {
		t.Fatalf("pending offers by circuit %v, want 2 on port-1 and 1 on port-2", byCircuit)
	}
	// The newest two stay: the oldest went first.
	for i := range 5 {
		_, held := f.srv.offerOf[lease.ClientKey(nil, 1, mac(byte(i)))]
		if held != (i >= 3) {
			t.Fatalf("client %d of 5 on port-1: offer held %v", i, held)
		}
	}
	if got := testutil.ToFloat64(f.srv.m.OffersWithdrawn.WithLabelValues("circuit")); got != 3 {
		t.Fatalf("withdrawn for the circuit bound: %v, want 3", got)
	}
	checkOfferCounts(t, f.srv)
}
