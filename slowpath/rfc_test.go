package slowpath

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Paths of RFC 2131 and its extensions that the main handler tests do not
// reach: relayed NAKs, the broadcast bit, RFC 3011 and RFC 5107, DHCPINFORM
// without ciaddr, a non-authoritative server, and addresses changing hands.

func opt82(data []byte) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: data}})
}

func viaRelay(data []byte) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{dhcpv4.WithGatewayIP(relayAddr.AsSlice()), opt82(data)}
}

func parsed(t *testing.T, o Outgoing) *dhcpwire.Packet {
	t.Helper()
	var p dhcpwire.Packet
	if err := p.Parse(o.Payload); err != nil {
		t.Fatal(err)
	}
	return &p
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

func TestAddressChangingHandsCarriesNothingOfThePreviousClient(t *testing.T) {
	f := newFixture(t)
	first := f.dora(mac(1), append(viaRelay([]byte{1, 5, 'a', 'l', 'i', 'c', 'e'}),
		dhcpv4.WithOption(dhcpv4.OptHostName("alice")),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("vendor-a")))...)
	ip := addrOf(first.YourIPAddr)
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(first.YourIPAddr)), srvAddr)

	// Another subscriber behind the same relay, whose relay adds no 82
	// and who sends no name or vendor class, asks for that address.
	f.dora(mac(2), dhcpv4.WithGatewayIP(relayAddr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(first.YourIPAddr)))
	l := f.store.leases[ip]
	if l == nil || l.State != lease.Active || !bytes.Equal(l.HWAddr, mac(2)) {
		t.Fatalf("second client did not get %s: %+v", ip, l)
	}
	if l.Hostname != "" || l.VendorClass != nil || l.RelayInfo != nil {
		t.Fatalf("lease of the new client kept the old one's data: hostname %q vendor %q relay info %x", l.Hostname, l.VendorClass, l.RelayInfo)
	}
	if !l.Start.Equal(f.now) {
		t.Fatalf("new binding start %v, want now", l.Start)
	}
}

func TestLapsedOfferBoundByAnotherIsNotOfferedAgain(t *testing.T) {
	f := newFixture(t)
	offered := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)[0].YourIPAddr
	f.now = f.now.Add(11 * time.Second) // the hold lapses; no sweep has run yet
	if got := f.dora(mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offered))).YourIPAddr; !got.Equal(offered) {
		t.Fatalf("second client asked for the lapsed offer %s and got %s", offered, got)
	}
	again := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)
	if len(again) != 1 || again[0].YourIPAddr.Equal(offered) {
		t.Fatalf("first client offered %v, which is now bound to another", again)
	}
	if ack := f.dora(mac(1)); ack.YourIPAddr.Equal(offered) {
		t.Fatal("first client bound to the other's address")
	}
}

func TestRelayedNakGoesToTheRelayWithEchoes(t *testing.T) {
	f := newFixture(t)
	ri := []byte{1, 3, 'p', '/', '1'}
	cid := []byte{1, 2, 0, 0, 0, 1, 9}
	taken := f.dora(mac(3), viaRelay(ri)...).YourIPAddr
	got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(2), append(viaRelay(ri),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(taken)),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))...), relayAddr)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("INIT-REBOOT for another client's address through a relay: %v", got)
	}
	if f.lastOut.Dst.String() != "10.78.0.1:67" || f.lastOut.HWDst != nil {
		t.Fatalf("relayed NAK sent to %v (hw %v), want the relay at 10.78.0.1:67", f.lastOut.Dst, f.lastOut.HWDst)
	}
	if !got[0].IsBroadcast() {
		t.Fatal("relayed NAK without the broadcast bit: the relay would unicast it to a client with no address (RFC 2131 §4.1)")
	}
	p := parsed(t, f.lastOut)
	codes := p.Codes()
	if v, _ := p.Option(dhcpwire.OptClientID); !bytes.Equal(v, cid) {
		t.Fatalf("NAK does not echo the client-id: %x", v)
	}
	if v, _ := p.Option(dhcpwire.OptRelayAgentInfo); !bytes.Equal(v, ri) || codes[len(codes)-1] != dhcpwire.OptRelayAgentInfo {
		t.Fatalf("NAK's option 82 %x, options %v: want it echoed, last", v, codes)
	}
}

func TestBroadcastBitAndClientIDEchoInOffer(t *testing.T) {
	f := newFixture(t)
	cid := []byte{1, 2, 0, 0, 0, 1, 7}
	got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(7), dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid))), bcast)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER: %v", got)
	}
	if f.lastOut.Dst.String() != "255.255.255.255:68" || f.lastOut.HWDst.String() != "ff:ff:ff:ff:ff:ff" {
		t.Fatalf("B flag set: OFFER sent to %v / %v, want a broadcast", f.lastOut.Dst, f.lastOut.HWDst)
	}
	if !bytes.Equal(got[0].Options.Get(dhcpv4.OptionClientIdentifier), cid) {
		t.Fatal("OFFER does not echo the client-id (RFC 6842)")
	}
}

func TestSubnetSelectionOptionSelectsAndIsEchoed(t *testing.T) {
	f := newFixture(t)
	sel := dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionSubnetSelection, Value: dhcpv4.IP(net.ParseIP("10.78.0.0"))})
	ri := []byte{1, 1, 'x'}
	// Relayed through 10.78.0.1 but asking for the LAN by RFC 3011.
	lan := dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionSubnetSelection, Value: dhcpv4.IP(net.ParseIP("10.77.0.0"))})
	for _, tc := range []struct {
		name   string
		mods   []dhcpv4.Modifier
		prefix string
		want   []byte
	}{
		{"direct, asking for the relayed subnet", []dhcpv4.Modifier{sel}, "10.78.", []byte{10, 78, 0, 0}},
		{"relayed, asking for the LAN", append(viaRelay(ri), lan), "10.77.", []byte{10, 77, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := f.dora(mac(20+byte(len(tc.name))), tc.mods...)
			if !bytes.HasPrefix([]byte(ack.YourIPAddr.String()), []byte(tc.prefix)) {
				t.Fatalf("got %s, want an address in %s*", ack.YourIPAddr, tc.prefix)
			}
			p := parsed(t, f.lastOut)
			v, ok := p.Option(dhcpwire.OptSubnetSelection)
			if !ok || !bytes.Equal(v, tc.want) {
				t.Fatalf("option 118 not echoed (RFC 3011 §3): %x %v", v, ok)
			}
			if codes := p.Codes(); p.GIAddr.IsValid() && !p.GIAddr.IsUnspecified() && codes[len(codes)-1] != dhcpwire.OptRelayAgentInfo {
				t.Fatalf("82 must stay last: %v", codes)
			}
		})
	}
}

func TestServerIDOverrideIsTheServerID(t *testing.T) {
	f := newFixture(t)
	override := []byte{11, 4, 10, 78, 0, 1}
	offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(30), viaRelay(override)...), bcast)
	if len(offers) != 1 || !offers[0].ServerIdentifier().Equal(net.ParseIP("10.78.0.1")) {
		t.Fatalf("RFC 5107: OFFER's server id %v, want the override 10.78.0.1", offers)
	}
	acks := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(30), append(viaRelay(override),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.78.0.1"))))...), relayAddr)
	if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST naming the override as server id: %v", acks)
	}
	if l := f.store.leases[addrOf(offers[0].YourIPAddr)]; l.ServerID != relayAddr {
		t.Fatalf("lease remembers server id %s; renewals must repeat the override", l.ServerID)
	}
}

func TestInformWithoutClientAddress(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		src, want string
		hw        string
	}{
		{"10.77.0.9:68", "10.77.0.9:68", ""},
		{"0.0.0.0:68", "255.255.255.255:68", "ff:ff:ff:ff:ff:ff"},
	} {
		m := msg(t, dhcpv4.MessageTypeInform, mac(1))
		f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort(tc.src), Dst: srvAddr, IfIndex: 7})
		out := f.out.take()
		if len(out) != 1 {
			t.Fatalf("INFORM from %s: %d replies", tc.src, len(out))
		}
		if out[0].Dst.String() != tc.want || out[0].HWDst.String() != tc.hw {
			t.Fatalf("INFORM from %s without ciaddr answered to %v (hw %q), want %s (hw %q)", tc.src, out[0].Dst, out[0].HWDst, tc.want, tc.hw)
		}
	}
}

func TestNonAuthoritativeServerStaysSilent(t *testing.T) {
	f := newFixture(t)
	f.srv.mu.Lock()
	f.srv.set.Authoritative = false
	f.srv.mu.Unlock()
	for name, m := range map[string]*dhcpv4.DHCPv4{
		"init-reboot, other network":  msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.7")))),
		"init-reboot, unknown client": msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.105")))),
		"renewing, unknown client":    msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.105"))),
	} {
		if got := f.send(m, bcast); len(got) != 0 {
			t.Errorf("%s: a non-authoritative server answered %v", name, got[0].MessageType())
		}
	}
	if len(f.store.leases) != 0 {
		t.Fatal("silent answers changed state")
	}
	// An address another client holds is as unknown; its own client is
	// answered.
	f.srv.mu.Lock()
	f.srv.set.Authoritative = true
	f.srv.mu.Unlock()
	ip := f.dora(mac(2)).YourIPAddr
	f.srv.mu.Lock()
	f.srv.set.Authoritative = false
	f.srv.mu.Unlock()
	for _, tc := range []struct {
		name string
		hw   net.HardwareAddr
		mod  dhcpv4.Modifier
		want int
	}{
		{"renewing, another client's address", mac(1), dhcpv4.WithClientIP(ip), 0},
		{"init-reboot, another client's address", mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), 0},
		{"renewing, its own address", mac(2), dhcpv4.WithClientIP(ip), 1},
		{"init-reboot, its own address", mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), 1},
	} {
		got := f.send(msg(t, dhcpv4.MessageTypeRequest, tc.hw, tc.mod), bcast)
		if len(got) != tc.want || tc.want == 1 && got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Errorf("%s: answered %v, want %d ACK", tc.name, got, tc.want)
		}
	}
}

func TestSelectingAnotherServerReturnsTheOffer(t *testing.T) {
	f := newFixture(t)
	offered := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)[0].YourIPAddr
	f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.200"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.2")))), bcast)
	st := f.srv.PoolStats()[netip.MustParsePrefix("10.77.0.0/24")]
	if st["offered"] != 0 || st["free"] != 10 {
		t.Fatalf("offer of %s not returned when the client chose another server: %v", offered, st)
	}
}

func TestExpirySweepsInBatches(t *testing.T) {
	f := newFixture(t)
	n := sweepBatch*2 + 5
	base := netip.MustParseAddr("10.78.1.0").As4()
	for i := range n {
		a := base
		a[2] += byte(i >> 8)
		a[3] = byte(i)
		ip := netip.AddrFrom4(a)
		f.store.leases[ip] = &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 1, 0, 0, byte(i >> 8), byte(i)},
			Start: f.now, CLTT: f.now, Expiry: f.now.Add(time.Minute)}
	}
	f.srv = f.build()
	f.now = f.now.Add(2 * time.Minute)
	count := func() (ended int) {
		for _, l := range f.store.leases {
			if l.State == lease.Expired || l.State == lease.Free {
				ended++
			}
		}
		return
	}
	for i, want := range []int{sweepBatch, 2 * sweepBatch, n} {
		f.srv.Sweep()
		if got := count(); got != want {
			t.Fatalf("after sweep %d: %d expired, want %d (one batch per sweep)", i+1, got, want)
		}
	}
}

// Option 82 is kept as last received: a renewal through the same relay
// without it keeps it, one through another relay without it drops it.
func TestRelayInfoFollowsTheRelay(t *testing.T) {
	f := newFixture(t)
	ri := []byte{1, 4, 'p', 'o', 'r', 't'}
	ack := f.dora(mac(40), viaRelay(ri)...)
	ip := addrOf(ack.YourIPAddr)
	renew := func(giaddr string) {
		t.Helper()
		got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(40), dhcpv4.WithClientIP(ack.YourIPAddr),
			dhcpv4.WithGatewayIP(net.ParseIP(giaddr))), netip.MustParseAddr(giaddr))
		if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("renewal through %s: %v", giaddr, got)
		}
	}
	renew("10.78.0.1")
	if l := f.store.leases[ip]; !bytes.Equal(l.RelayInfo, ri) {
		t.Fatalf("same relay, no 82: stored %x, want %x kept", l.RelayInfo, ri)
	}
	renew("10.78.0.9")
	if l := f.store.leases[ip]; l.RelayInfo != nil || l.GIAddr != netip.MustParseAddr("10.78.0.9") {
		t.Fatalf("another relay, no 82: stored %x via %s, want none via 10.78.0.9", l.RelayInfo, l.GIAddr)
	}
}
