package slowpath

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

var requester = netip.MustParseAddr("10.78.0.2")

// RFC 4388 message types (insomniacslk/dhcp names only RFC 2132's).
const (
	mtLeaseQuery      = dhcpv4.MessageType(10)
	mtLeaseUnassigned = dhcpv4.MessageType(11)
	mtLeaseUnknown    = dhcpv4.MessageType(12)
	mtLeaseActive     = dhcpv4.MessageType(13)
)

func lqFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.srv.mu.Lock()
	f.srv.set.Leasequery = Leasequery{Enabled: true, Requesters: []netip.Prefix{netip.PrefixFrom(requester, 32)}}
	f.srv.mu.Unlock()
	return f
}

// query sends a DHCPLEASEQUERY from giaddr and returns the reply, if any.
func (f *fixture) query(giaddr netip.Addr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	f.t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(mtLeaseQuery), dhcpv4.WithHwAddr(nil)}, mods...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	m.ClientHWAddr = nil
	if giaddr.IsValid() {
		m.GatewayIPAddr = giaddr.AsSlice()
	}
	for _, mod := range mods { // modifiers may set a hardware address
		mod(m)
	}
	got := f.send(m, srvAddr)
	switch len(got) {
	case 0:
		return nil
	case 1:
		if f.lastOut.Dst != netip.AddrPortFrom(giaddr, 67) {
			f.t.Fatalf("leasequery reply sent to %s, want %s:67", f.lastOut.Dst, giaddr)
		}
		if got[0].TransactionID != m.TransactionID || !got[0].GatewayIPAddr.Equal(m.GatewayIPAddr) {
			f.t.Fatalf("reply does not match the query (xid, giaddr)")
		}
		return got[0]
	}
	f.t.Fatalf("%d replies", len(got))
	return nil
}

func byMACMod(hw net.HardwareAddr) dhcpv4.Modifier {
	return func(m *dhcpv4.DHCPv4) { m.HWType = 1; m.ClientHWAddr = hw }
}

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0xffffffff
	}
	return binary.BigEndian.Uint32(b)
}

func TestLeasequeryActiveByIPMACAndClientID(t *testing.T) {
	f := lqFixture(t)
	opt82 := []byte{1, 4, 'p', 'o', 'r', 't', 2, 3, 'c', 'p', 'e'}
	cid := []byte{1, 2, 0, 0, 0, 1, 1}
	relayMods := []dhcpv4.Modifier{
		dhcpv4.WithGatewayIP(relayAddr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}}),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("docsis3.1")),
	}
	ack := f.dora(mac(1), relayMods...)
	ip := ack.YourIPAddr
	f.now = f.now.Add(10 * time.Minute)

	check := func(what string, r *dhcpv4.DHCPv4) {
		t.Helper()
		if r == nil || r.MessageType() != mtLeaseActive {
			t.Fatalf("%s: want LEASEACTIVE, got %v", what, r)
		}
		if !r.ClientIPAddr.Equal(ip) || !bytes.Equal(r.ClientHWAddr, mac(1)) || r.HWType != 1 {
			t.Fatalf("%s: ciaddr %s chaddr %s", what, r.ClientIPAddr, r.ClientHWAddr)
		}
		if lt := u32(r.Options.Get(dhcpv4.OptionIPAddressLeaseTime)); lt != 3000 {
			t.Errorf("%s: lease time remaining %d, want 3000", what, lt)
		}
		if t1 := u32(r.Options.Get(dhcpv4.OptionRenewTimeValue)); t1 != 1200 {
			t.Errorf("%s: T1 remaining %d, want 1200", what, t1)
		}
		if t2 := u32(r.Options.Get(dhcpv4.OptionRebindingTimeValue)); t2 != 3150-600 {
			t.Errorf("%s: T2 remaining %d", what, t2)
		}
		if since := u32(r.Options.Get(dhcpv4.GenericOptionCode(91))); since != 600 {
			t.Errorf("%s: client-last-transaction-time %d, want 600", what, since)
		}
		if !bytes.Equal(r.Options.Get(dhcpv4.OptionClientIdentifier), cid) || string(r.Options.Get(dhcpv4.OptionClassIdentifier)) != "docsis3.1" {
			t.Errorf("%s: client id %x vendor class %q", what, r.Options.Get(dhcpv4.OptionClientIdentifier), r.Options.Get(dhcpv4.OptionClassIdentifier))
		}
		var order []uint8
		raw := f.lastOut.Payload // as sent: the library re-sorts options
		for i := 240; i < len(raw) && raw[i] != 255; i += 2 + int(raw[i+1]) {
			order = append(order, raw[i])
		}
		if order[0] != 53 || order[1] != 54 || order[len(order)-1] != 82 || !bytes.Equal(r.Options.Get(dhcpv4.OptionRelayAgentInformation), opt82) {
			t.Errorf("%s: option order %v, 82 %x", what, order, r.Options.Get(dhcpv4.OptionRelayAgentInformation))
		}
	}
	check("by IP", f.query(requester, dhcpv4.WithClientIP(ip)))
	check("by MAC", f.query(requester, byMACMod(mac(1))))
	check("by client-id", f.query(requester, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid))))

	// The parameter request list brings the subnet's options along.
	r := f.query(requester, dhcpv4.WithClientIP(ip), dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask))
	if m := r.Options.Get(dhcpv4.OptionSubnetMask); !bytes.Equal(m, []byte{255, 255, 0, 0}) {
		t.Errorf("requested subnet mask: %x", m)
	}
}

func TestLeasequeryMACWithTwoAddressesListsTheOtherIn92(t *testing.T) {
	f := lqFixture(t)
	first := f.dora(mac(2)) // on the LAN
	f.now = f.now.Add(time.Minute)
	second := f.dora(mac(2), dhcpv4.WithGatewayIP(relayAddr.AsSlice())) // and behind the relay
	r := f.query(requester, byMACMod(mac(2)))
	if r == nil || r.MessageType() != mtLeaseActive || !r.ClientIPAddr.Equal(second.YourIPAddr) {
		t.Fatalf("want ACTIVE for the newest binding %s, got %v", second.YourIPAddr, r)
	}
	if a := r.Options.Get(dhcpv4.GenericOptionCode(92)); !bytes.Equal(a, first.YourIPAddr.To4()) {
		t.Fatalf("associated-ip %v, want %s", a, first.YourIPAddr)
	}
	// A query by IP never lists associated addresses.
	if r := f.query(requester, dhcpv4.WithClientIP(first.YourIPAddr)); r.Options.Has(dhcpv4.GenericOptionCode(92)) {
		t.Fatal("option 92 in a reply to a query by IP")
	}
}

// By client-id the same: the older binding is found through the history
// the move from one subnet to the other wrote.
func TestLeasequeryClientIDWithTwoAddressesListsTheOtherIn92(t *testing.T) {
	f := lqFixture(t)
	cid := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0, 'm', 'o', 'v', 'e'}))
	first := f.dora(mac(6), cid)
	f.now = f.now.Add(time.Minute)
	second := f.dora(mac(7), cid, dhcpv4.WithGatewayIP(relayAddr.AsSlice()))
	r := f.query(requester, cid)
	if r == nil || r.MessageType() != mtLeaseActive || !r.ClientIPAddr.Equal(second.YourIPAddr) {
		t.Fatalf("want ACTIVE for the newest binding %s, got %v", second.YourIPAddr, r)
	}
	if a := r.Options.Get(dhcpv4.GenericOptionCode(92)); !bytes.Equal(a, first.YourIPAddr.To4()) {
		t.Fatalf("associated-ip %v, want %s", a, first.YourIPAddr)
	}
}

func TestLeasequeryUnassignedAndUnknown(t *testing.T) {
	f := lqFixture(t)
	released := f.dora(mac(3))
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(3), dhcpv4.WithClientIP(released.YourIPAddr)), srvAddr)
	expired := f.dora(mac(4))
	f.now = f.now.Add(2 * time.Hour)
	f.srv.Sweep()

	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		want dhcpv4.MessageType
	}{
		{"free pool address", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{10, 77, 0, 108})}, mtLeaseUnassigned},
		{"reserved, not leased", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{10, 77, 0, 42})}, mtLeaseUnassigned},
		{"released", []dhcpv4.Modifier{dhcpv4.WithClientIP(released.YourIPAddr)}, mtLeaseUnassigned},
		{"expired", []dhcpv4.Modifier{dhcpv4.WithClientIP(expired.YourIPAddr)}, mtLeaseUnassigned},
		{"foreign", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{192, 0, 2, 1})}, mtLeaseUnknown},
		// In a served subnet but never handed out: not a binding of ours.
		{"the router", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{10, 77, 0, 1})}, mtLeaseUnknown},
		{"the network address", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{10, 77, 0, 0})}, mtLeaseUnknown},
		{"outside the pools", []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IP{10, 77, 0, 200})}, mtLeaseUnknown},
		{"unknown MAC", []dhcpv4.Modifier{byMACMod(mac(99))}, mtLeaseUnknown},
		{"MAC of an expired lease", []dhcpv4.Modifier{byMACMod(mac(4))}, mtLeaseUnknown},
		{"unknown client-id", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{0, 1, 2}))}, mtLeaseUnknown},
	} {
		r := f.query(requester, tc.mods...)
		if r == nil || r.MessageType() != tc.want {
			t.Errorf("%s: got %v, want %s", tc.name, r, tc.want)
			continue
		}
		if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Errorf("%s: lease time in a %s", tc.name, tc.want)
		}
	}
}

// Between a lease's expiry and the next sweep the record still says
// ACTIVE; the reply must not.
func TestLeasequeryExpiredBeforeTheSweep(t *testing.T) {
	f := lqFixture(t)
	ack := f.dora(mac(5))
	f.now = f.now.Add(time.Hour + time.Second) // no Sweep
	if r := f.query(requester, dhcpv4.WithClientIP(ack.YourIPAddr)); r == nil || r.MessageType() != mtLeaseUnassigned {
		t.Fatalf("by IP, past expiry: %v, want %s", r, mtLeaseUnassigned)
	}
	if r := f.query(requester, byMACMod(mac(5))); r == nil || r.MessageType() != mtLeaseUnknown {
		t.Fatalf("by MAC, past expiry: %v, want %s", r, mtLeaseUnknown)
	}
}

func TestLeasequeryTimersFitTheLeaseAfterAReload(t *testing.T) {
	f := lqFixture(t)
	setTimes := func(lt, t1, t2 time.Duration) {
		f.srv.mu.Lock()
		for _, sn := range f.srv.subs.list {
			sn.LeaseTime, sn.T1, sn.T2 = lt, t1, t2
		}
		f.srv.mu.Unlock()
	}
	setTimes(10*time.Minute, 0, 0)
	ip := f.dora(mac(1)).YourIPAddr
	f.now = f.now.Add(time.Minute)
	for _, tc := range []struct {
		name           string
		lt, t1, t2     time.Duration
		wantT1, wantT2 uint32
	}{
		// Longer configured times now than the 10m lease the client holds:
		// a grant shorter than the lease time gets T1 and T2 scaled by
		// grant/lease time (grantTimes, as bpf/xdp_dhcp.c scales them),
		// which keeps them inside the lease and in order.
		{"lease time raised with T1/T2", 2 * time.Hour, time.Hour, 105 * time.Minute, 300 - 60, 525 - 60},
		{"lease time raised, default T1/T2", 2 * time.Hour, 0, 0, 300 - 60, 525 - 60},
		// Configured T1/T2 are scaled too, not kept because they would fit
		// (the approximation this test asserted before grantTimes: 2m and
		// 4m configured were reported as 120 and 240).
		{"T1/T2 scaled", 2 * time.Hour, 48 * time.Minute, 96 * time.Minute, 240 - 60, 480 - 60},
	} {
		setTimes(tc.lt, tc.t1, tc.t2)
		r := f.query(requester, dhcpv4.WithClientIP(ip))
		lt, t1, t2 := u32(r.Options.Get(dhcpv4.OptionIPAddressLeaseTime)), u32(r.Options.Get(dhcpv4.OptionRenewTimeValue)), u32(r.Options.Get(dhcpv4.OptionRebindingTimeValue))
		if lt != 540 || t1 != tc.wantT1 || t2 != tc.wantT2 {
			t.Errorf("%s: lease time %d T1 %d T2 %d, want 540 %d %d", tc.name, lt, t1, t2, tc.wantT1, tc.wantT2)
		}
		if !(t1 < t2 && t2 < lt) {
			t.Errorf("%s: T1 %d, T2 %d and lease time %d out of order", tc.name, t1, t2, lt)
		}
	}
}

func TestLeasequeryVendorClassOnce(t *testing.T) {
	f := lqFixture(t)
	// A PXE setup sends its own option 60; a leasequery reply's 60 is the
	// client's.
	f.srv.mu.Lock()
	for _, sn := range f.srv.subs.list {
		sn.Options = append(sn.Options, 60, 9, 'P', 'X', 'E', 'C', 'l', 'i', 'e', 'n', 't')
	}
	f.srv.mu.Unlock()
	withVC := f.dora(mac(1), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("docsis3.1"))).YourIPAddr
	without := f.dora(mac(2)).YourIPAddr
	count := func(code uint8) (n int, last []byte) {
		raw := f.lastOut.Payload
		for i := 240; i+1 < len(raw) && raw[i] != 255; i += 2 + int(raw[i+1]) {
			if raw[i] == code {
				n, last = n+1, raw[i+2:i+2+int(raw[i+1])]
			}
		}
		return n, last
	}
	prl := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionClassIdentifier, dhcpv4.OptionIPAddressLeaseTime)
	f.query(requester, dhcpv4.WithClientIP(withVC), prl)
	if n, v := count(60); n != 1 || string(v) != "docsis3.1" {
		t.Errorf("client with a vendor class: option 60 %d times, last %q", n, v)
	}
	if n, _ := count(51); n != 1 {
		t.Errorf("option 51 %d times", n)
	}
	if n, _ := count(1); n != 1 {
		t.Errorf("requested subnet mask %d times", n)
	}
	f.query(requester, dhcpv4.WithClientIP(without), prl)
	if n, v := count(60); n != 0 {
		t.Errorf("client without a vendor class: option 60 %q", v)
	}
}

func TestLeasequeryRefusals(t *testing.T) {
	f := lqFixture(t)
	ack := f.dora(mac(5))
	ip := ack.YourIPAddr
	for _, tc := range []struct {
		name   string
		giaddr netip.Addr
		mods   []dhcpv4.Modifier
		reason string
	}{
		{"no giaddr", netip.Addr{}, []dhcpv4.Modifier{dhcpv4.WithClientIP(ip)}, "leasequery_no_giaddr"},
		{"requester not allowed", netip.MustParseAddr("10.78.0.3"), []dhcpv4.Modifier{dhcpv4.WithClientIP(ip)}, "leasequery_denied"},
		{"two keys", requester, []dhcpv4.Modifier{dhcpv4.WithClientIP(ip), byMACMod(mac(5))}, "leasequery_ambiguous"},
		{"no key", requester, nil, "leasequery_no_key"},
	} {
		before := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(tc.reason))
		if r := f.query(tc.giaddr, tc.mods...); r != nil {
			t.Errorf("%s: answered %v", tc.name, r)
		}
		if got := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues(tc.reason)); got != before+1 {
			t.Errorf("%s: %s counted %v -> %v", tc.name, tc.reason, before, got)
		}
	}
	f.srv.mu.Lock()
	f.srv.set.Leasequery.Enabled = false
	f.srv.mu.Unlock()
	if r := f.query(requester, dhcpv4.WithClientIP(ip)); r != nil {
		t.Error("answered with leasequery disabled")
	}
}

// FuzzLeasequery sends arbitrary bytes as a DHCPLEASEQUERY from an allowed
// requester's address to a server holding bindings of every kind: the
// whole lease table is unchanged afterwards, and each answer is the one
// that table gives (checkLeasequery).
func FuzzLeasequery(f *testing.F) {
	seed := func(mods ...dhcpv4.Modifier) []byte {
		m, _ := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(mtLeaseQuery), dhcpv4.WithGatewayIP(requester.AsSlice())}, mods...)...)
		return m.ToBytes()
	}
	f.Add(seed(dhcpv4.WithClientIP(net.IP{10, 77, 0, 100})))
	f.Add(seed(dhcpv4.WithHwAddr(mac(1))))
	f.Add(seed(dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3}))))
	f.Fuzz(func(t *testing.T, b []byte) { checkLeasequery(t, b) })
}

// BenchmarkLeasequeryByIP is the handler's cost per UDP query, without I/O.
func BenchmarkLeasequeryByIP(b *testing.B) {
	f := lqFixture(&testing.T{})
	ack := f.dora(mac(1))
	m, _ := dhcpv4.New(dhcpv4.WithMessageType(mtLeaseQuery), dhcpv4.WithClientIP(ack.YourIPAddr), dhcpv4.WithGatewayIP(requester.AsSlice()))
	m.ClientHWAddr = nil
	in := Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("10.78.0.2:67"), Dst: srvAddr, IfIndex: 7}
	b.ReportAllocs()
	for b.Loop() {
		f.srv.Handle(in)
		f.out.take()
	}
}

// A renewal XDP granted and the slow path has not folded yet keeps a
// lease bound past its stored expiry, but only for the client that holds
// the address: a copy read before the address changed hands must not
// borrow the new holder's grant.
func TestEffectiveExpiryTakesTheFastPathGrantOnlyForTheSameClient(t *testing.T) {
	f, fp := newFastFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	old := f.srv.Lookup(ip)
	stored := old.Expiry
	f.now = f.now.Add(time.Hour + time.Second)
	fp.granted[ip] = f.now.Add(30 * time.Minute)
	if exp := f.srv.effectiveExpiry(old); !exp.Equal(fp.granted[ip]) || !bound(old, exp, f.now) {
		t.Fatalf("a lease XDP renewed past its stored expiry: effective expiry %v, want the grant %v", exp, fp.granted[ip])
	}
	if !old.Expiry.Equal(stored) {
		t.Fatalf("asking for the effective expiry changed the record: %v, was %v", old.Expiry, stored)
	}
	f.srv.mu.Lock()
	f.srv.leases.Put(&lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: mac(2), Expiry: f.now.Add(30 * time.Minute)})
	f.srv.mu.Unlock()
	if exp := f.srv.effectiveExpiry(old); !exp.Equal(stored) || bound(old, exp, f.now) {
		t.Fatalf("the previous holder's record took the new holder's grant: %v", exp)
	}
}

// TestLeasequeryReportsAShortGrantsTimers: a renewal the fast path cut
// short at the horizon told the client T1 and T2 scaled by grant/lease
// time; leasequery reports the same (grantTimes), not the configured ones.
func TestLeasequeryReportsAShortGrantsTimers(t *testing.T) {
	f := lqFixture(t)
	f.srv.mu.Lock()
	for _, sn := range f.srv.subs.list {
		sn.T1, sn.T2 = 10*time.Minute, 20*time.Minute
	}
	f.srv.mu.Unlock()
	ack := f.dora(mac(1))
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	f.now = f.now.Add(40 * time.Minute)
	// XDP granted 25 minutes of the hour (cut at the horizon): T1
	// 600*1500/3600 = 250, T2 1200*1500/3600 = 500, where the configured
	// 600 and 1200 would still fit.
	f.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(1), XID: 5, At: f.now, Expiry: f.now.Add(25 * time.Minute)}})
	r := f.query(requester, dhcpv4.WithClientIP(ack.YourIPAddr))
	if r == nil || r.MessageType() != mtLeaseActive {
		t.Fatalf("reply %v", r)
	}
	lt, t1, t2 := u32(r.Options.Get(dhcpv4.OptionIPAddressLeaseTime)), u32(r.Options.Get(dhcpv4.OptionRenewTimeValue)), u32(r.Options.Get(dhcpv4.OptionRebindingTimeValue))
	if lt != 1500 || t1 != 250 || t2 != 500 {
		t.Fatalf("lease time %d T1 %d T2 %d, want 1500 250 500", lt, t1, t2)
	}
}
