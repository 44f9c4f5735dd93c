package fastpath_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// relayInfo is an option 82 value: circuit-id and remote-id.
var relayInfo = []byte{1, 4, 'p', 'o', 'r', 't', 2, 6, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}

// viaRelay makes a request relayed through relayIP, with option 82 when
// info is not nil.
func viaRelay(info []byte) []dhcpv4.Modifier {
	ms := []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice()))}
	if info != nil {
		ms = append(ms, dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, info))
	}
	return ms
}

func TestXDPAnswers(t *testing.T) {
	tests := []struct {
		name    string
		lease   func() fastpath.Lease
		ciaddr  netip.Addr
		mods    []dhcpv4.Modifier
		how     func() frameOpts
		vlans   []uint16
		wantSrc netip.Addr
		wantDst netip.AddrPort
		wantMAC net.HardwareAddr // reply source MAC
	}{
		{
			name: "direct renewal", lease: directLease, ciaddr: clientIP,
			how: func() frameOpts { return direct(clientIP) }, wantSrc: serverID,
			wantDst: netip.AddrPortFrom(clientIP, 68), wantMAC: serverMAC,
		},
		{
			name: "broadcast rebind", lease: directLease, ciaddr: clientIP,
			how: func() frameOpts { return broadcast(clientIP) }, wantSrc: serverID,
			wantDst: netip.AddrPortFrom(clientIP, 68), wantMAC: ifaceMAC,
		},
		{
			name: "relayed with option 82", lease: relayedLease, ciaddr: relayedIP,
			mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice())), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, relayInfo)},
			how:  relayed, wantSrc: serverID, wantDst: netip.AddrPortFrom(relayIP, 67), wantMAC: serverMAC,
		},
		{
			// Option 82 is not compared: the slow path keeps the stored
			// one for a relayed request without it too.
			name: "relayed without option 82", lease: relayedLease, ciaddr: relayedIP, mods: viaRelay(nil),
			how: relayed, wantSrc: serverID, wantDst: netip.AddrPortFrom(relayIP, 67), wantMAC: serverMAC,
		},
		{
			// A layer-2 relay agent (giaddr 0): the slow path stores no
			// option 82 for a directly attached client, so none is compared.
			name: "direct with option 82", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, relayInfo)},
			how: func() frameOpts { return direct(clientIP) }, wantSrc: serverID,
			wantDst: netip.AddrPortFrom(clientIP, 68), wantMAC: serverMAC,
		},
		{
			name: "relayed lease renewed past the relay", lease: relayedLease, ciaddr: relayedIP,
			how: func() frameOpts {
				o := direct(relayedIP)
				o.ethSrc = relayMAC // the router in front of the client
				return o
			},
			wantSrc: serverID, wantDst: netip.AddrPortFrom(relayedIP, 68), wantMAC: serverMAC,
		},
		{
			name: "one VLAN tag", ciaddr: clientIP, vlans: []uint16{100},
			lease: func() fastpath.Lease { l := directLease(); l.VLANs = [2]uint16{100, 0}; return l },
			how:   func() frameOpts { return direct(clientIP) }, wantSrc: serverID,
			wantDst: netip.AddrPortFrom(clientIP, 68), wantMAC: serverMAC,
		},
		{
			name: "two VLAN tags, relayed with option 82", ciaddr: relayedIP, vlans: []uint16{200, 3001},
			lease: relayedLease,
			mods:  []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice())), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, relayInfo)},
			how:   relayed, wantSrc: serverID, wantDst: netip.AddrPortFrom(relayIP, 67), wantMAC: serverMAC,
		},
		{
			name: "two VLAN tags, direct", ciaddr: clientIP, vlans: []uint16{200, 3001},
			lease: func() fastpath.Lease { l := directLease(); l.VLANs = [2]uint16{200, 3001}; return l },
			how:   func() frameOpts { return direct(clientIP) }, wantSrc: serverID,
			wantDst: netip.AddrPortFrom(clientIP, 68), wantMAC: serverMAC,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := loadRig(t)
			l := tc.lease()
			r.publish(t, l)
			req := request(t, tc.ciaddr, tc.mods...)
			o := tc.how()
			o.vlans = tc.vlans
			pkt := frame(o, req.ToBytes())
			before := time.Now().Unix()
			verdict, out := r.run(t, pkt, loIndex)
			if verdict != xdpTx {
				t.Fatalf("verdict %d, want XDP_TX; counters %v", verdict, r.counters(t))
			}
			rp := parseReply(t, out)
			if !bytes.Equal(rp.ethDst, o.ethSrc) || !bytes.Equal(rp.ethSrc, tc.wantMAC) {
				t.Errorf("MACs %s <- %s, want %s <- %s", rp.ethDst, rp.ethSrc, o.ethSrc, tc.wantMAC)
			}
			if !slices.Equal(rp.vlans, tc.vlans) {
				t.Errorf("VLAN tags %v, want %v", rp.vlans, tc.vlans)
			}
			if l3 := 14 + 4*len(tc.vlans); !bytes.Equal(out[12:l3], pkt[12:l3]) {
				t.Errorf("tags and type % x, want them as received: % x", out[12:l3], pkt[12:l3])
			}
			if rp.src != tc.wantSrc || netip.AddrPortFrom(rp.dst, rp.dport) != tc.wantDst || rp.sport != 67 {
				t.Errorf("IP %s:%d -> %s:%d, want %s:67 -> %s", rp.src, rp.sport, rp.dst, rp.dport, tc.wantSrc, tc.wantDst)
			}
			m := rp.msg
			if m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck || m.TransactionID != req.TransactionID ||
				!m.YourIPAddr.Equal(req.ClientIPAddr) || !m.ClientIPAddr.Equal(req.ClientIPAddr) || !m.GatewayIPAddr.Equal(req.GatewayIPAddr) ||
				!bytes.Equal(m.ClientHWAddr, clientMAC) || m.HopCount != 0 || m.NumSeconds != 0 || !m.ServerIPAddr.IsUnspecified() {
				t.Errorf("reply header wrong:\n%s", m.Summary())
			}
			if !m.ServerIdentifier().Equal(net.IP(serverID.AsSlice())) {
				t.Errorf("server id %v", m.ServerIdentifier())
			}
			if lt := m.IPAddressLeaseTime(0); lt != time.Hour {
				t.Errorf("lease time %v, want 1h", lt)
			}
			if t1, t2 := m.IPAddressRenewalTime(0), m.IPAddressRebindingTime(0); t1 != 30*time.Minute || t2 != 3150*time.Second {
				t.Errorf("T1 %v T2 %v", t1, t2)
			}
			want := []uint8{53, 54, 51, 58, 59, 1, 3, 6, 15, 61}
			has82 := req.Options.Has(dhcpv4.OptionRelayAgentInformation)
			if has82 {
				want = append(want, 82)
			}
			want = append(want, 255)
			if !slices.Equal(rp.codes, want) {
				t.Errorf("option order %v, want %v", rp.codes, want)
			}
			if !bytes.Equal(rawOption(rp.dhcp, 61), clientID) {
				t.Errorf("client-id echoed as % x", rawOption(rp.dhcp, 61))
			}
			if has82 && !bytes.Equal(rawOption(rp.dhcp, 82), relayInfo) {
				t.Errorf("option 82 echoed as % x, want % x", rawOption(rp.dhcp, 82), relayInfo)
			}
			if !bytes.Equal(rawOption(rp.dhcp, 15), []byte("example.net")) {
				t.Errorf("template options not copied: % x", rp.dhcp[240:])
			}
			if len(rp.dhcp) < 300 {
				t.Errorf("reply of %d bytes, shorter than the BOOTP minimum", len(rp.dhcp))
			}
			// The grant is remembered in the entry, for Granted and the scan.
			// The program reads the coarse clock, up to a tick behind the
			// wall clock: taken just after a second turns, before can be one
			// second ahead of the program's now.
			g, ok := r.maps.Granted(l.IP)
			if !ok || g.Unix() < before-1+3600 || g.Unix() > time.Now().Unix()+3600 {
				t.Errorf("granted expiry %v, want now+1h", g)
			}
			if c := r.counters(t); c["answered"] != 1 {
				t.Errorf("counters %v", c)
			}
		})
	}
}

func TestXDPPunts(t *testing.T) {
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	tests := []struct {
		name   string
		lease  func() fastpath.Lease
		ciaddr netip.Addr
		mods   []dhcpv4.Modifier
		how    func() frameOpts
		vlans  []uint16
		ifidx  uint32
		reason string
	}{
		{name: "wrong chaddr", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithHwAddr(other)}, reason: "identity"},
		{name: "wrong client-id", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3}))}, reason: "identity"},
		{name: "client-id missing", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{func(m *dhcpv4.DHCPv4) { m.Options.Del(dhcpv4.OptionClientIdentifier) }}, reason: "identity"},
		{name: "other interface", lease: func() fastpath.Lease { l := directLease(); l.IfIndex = 9999; return l }, ciaddr: clientIP, reason: "where"},
		{name: "other VLAN", lease: func() fastpath.Lease { l := directLease(); l.VLANs = [2]uint16{100, 0}; return l }, ciaddr: clientIP, vlans: []uint16{101}, reason: "where"},
		{name: "untagged for a tagged lease", lease: func() fastpath.Lease { l := directLease(); l.VLANs = [2]uint16{100, 0}; return l }, ciaddr: clientIP, reason: "where"},
		{
			name: "other relay", lease: relayedLease, ciaddr: relayedIP, how: relayed, reason: "where",
			mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP{10, 78, 0, 9})},
		},
		{name: "relayed lease broadcast on the server's link", lease: relayedLease, ciaddr: relayedIP, how: func() frameOpts { return broadcast(relayedIP) }, reason: "where"},
		{name: "relayed lease from elsewhere", lease: relayedLease, ciaddr: relayedIP, how: func() frameOpts { o := direct(relayedIP); o.src = netip.MustParseAddr("10.78.1.8"); return o }, reason: "where"},
		{name: "direct lease through a relay", lease: directLease, ciaddr: clientIP, how: relayed, mods: []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice()))}, reason: "where"},
		{name: "to another server", lease: directLease, ciaddr: clientIP, how: func() frameOpts { o := direct(clientIP); o.dst = netip.MustParseAddr("10.77.0.2"); return o }, reason: "where"},
		{name: "unknown address", lease: directLease, ciaddr: netip.MustParseAddr("10.77.0.124"), how: func() frameOpts { return direct(netip.MustParseAddr("10.77.0.124")) }, reason: "no_lease"},
		{name: "expired lease", lease: func() fastpath.Lease { l := directLease(); l.Expiry = time.Now().Add(-time.Second); return l }, ciaddr: clientIP, reason: "expired"},
		{name: "horizon too near", lease: func() fastpath.Lease { l := directLease(); l.Horizon = time.Now().Add(30 * time.Second); return l }, ciaddr: clientIP, reason: "horizon"},
		{name: "serving flag off", lease: func() fastpath.Lease { l := directLease(); l.Serve = false; return l }, ciaddr: clientIP, reason: "not_serving"},
		{name: "requested address (INIT-REBOOT)", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(clientIP.AsSlice())))}, reason: "not_renewal"},
		{name: "server id (SELECTING)", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(serverID.AsSlice())))}, reason: "not_renewal"},
		{name: "DISCOVER", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)}, reason: "not_renewal"},
		{name: "RELEASE", lease: directLease, ciaddr: clientIP, mods: []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease)}, reason: "not_renewal"},
		{
			// The subscriber moved port on the same relay: the stored
			// option 82 must follow (leasequery reports it).
			name: "relayed, circuit-id changed", lease: relayedLease, ciaddr: relayedIP, how: relayed, reason: "relay_info",
			mods: viaRelay([]byte{1, 4, 'p', 'o', 'r', 'u', 2, 6, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}),
		},
		{
			name: "relayed, remote-id added", lease: relayedLease, ciaddr: relayedIP, how: relayed, reason: "relay_info",
			mods: viaRelay(append(bytes.Clone(relayInfo), 9, 0)),
		},
		{
			name: "relayed with option 82, none stored", ciaddr: relayedIP, how: relayed, reason: "relay_info",
			lease: func() fastpath.Lease { l := relayedLease(); l.RelayInfo = nil; return l },
			mods:  viaRelay(relayInfo),
		},
		{
			// The slow path drops an empty 82 as malformed (dhcpwire checkRelayInfo).
			name: "relayed with an empty option 82, one stored", lease: relayedLease, ciaddr: relayedIP, how: relayed, reason: "malformed",
			mods: viaRelay([]byte{}),
		},
		// Options the slow path's Validate drops: XDP must not answer them.
		{name: "option 57 of 0 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{})}},
		{name: "option 57 of 3 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{0x05, 0xdc, 0})}},
		{name: "option 57 below 576", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{0x02, 0x3f})}},
		{name: "option 51 of 36 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionIPAddressLeaseTime, make([]byte, 36))}},
		{name: "option 51 of 0 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionIPAddressLeaseTime, []byte{})}},
		{name: "direct with an empty option 82", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{})}},
		{name: "direct with an option 82 sub-option past its end", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 4, 'p', 'o', 'r', 't', 2, 7, 1, 2, 3})}},
		{name: "direct with an option 82 ending in half a sub-option header", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 1, 'p', 2})}},
		{name: "direct with option 82.5 of 3 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 1, 'p', 5, 3, 10, 0, 0})}},
		{name: "direct with option 82.11 of 5 bytes", lease: directLease, ciaddr: clientIP, reason: "malformed",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{11, 5, 10, 0, 0, 1, 0})}},
		{
			name: "subnet selection (118), which the slow path echoes", lease: directLease, ciaddr: clientIP, reason: "unsupported",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionSubnetSelection, []byte{10, 77, 0, 0})},
		},
		{
			name: "relayed with subnet selection (118)", lease: relayedLease, ciaddr: relayedIP, how: relayed, reason: "unsupported",
			mods: append(viaRelay(relayInfo), dhcpv4.WithGeneric(dhcpv4.OptionSubnetSelection, []byte{10, 78, 0, 0})),
		},
		{name: "no ciaddr", lease: directLease, ciaddr: netip.IPv4Unspecified(), how: func() frameOpts { return broadcast(netip.IPv4Unspecified()) }, reason: "not_renewal"},
		{
			name: "reply larger than the client takes", ciaddr: clientIP, reason: "too_big",
			lease: func() fastpath.Lease {
				l := directLease()
				for range 3 {
					l.Template = append(l.Template, 43, 100)
					l.Template = append(l.Template, make([]byte, 100)...)
				}
				return l
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := loadRig(t)
			r.publish(t, tc.lease())
			req := request(t, tc.ciaddr, tc.mods...)
			how := tc.how
			if how == nil {
				how = func() frameOpts { return direct(tc.ciaddr) }
			}
			o := how()
			o.vlans = tc.vlans
			pkt := frame(o, req.ToBytes())
			ifidx := tc.ifidx
			if ifidx == 0 {
				ifidx = loIndex
			}
			orig := bytes.Clone(pkt)
			verdict, out := r.run(t, pkt, ifidx)
			if verdict != xdpPass {
				t.Fatalf("verdict %d, want XDP_PASS", verdict)
			}
			if !bytes.Equal(out, orig) {
				t.Fatalf("a passed packet was altered")
			}
			c := r.counters(t)
			if c[tc.reason] != 1 || c["answered"] != 0 {
				t.Fatalf("counters %v, want %s = 1", c, tc.reason)
			}
		})
	}
}

// TestXDPMaxMessageSize: a client that takes larger messages gets the
// big reply from XDP, its checksum summed over more than one chunk.
func TestXDPMaxMessageSize(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	for range 4 {
		l.Template = append(l.Template, 43, 100)
		l.Template = append(l.Template, make([]byte, 100)...)
	}
	// Up to the template limit: options reach past BOOTP_LEN + 512.
	l.Template = append(l.Template, 224, byte(fastpath.MaxTemplate-len(l.Template)-2))
	l.Template = append(l.Template, make([]byte, fastpath.MaxTemplate-len(l.Template))...)
	r.publish(t, l)
	req := request(t, clientIP, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500)))
	verdict, out := r.run(t, frame(direct(clientIP), req.ToBytes()), loIndex)
	if verdict != xdpTx {
		t.Fatalf("verdict %d; counters %v", verdict, r.counters(t))
	}
	rp := parseReply(t, out)
	if got := rawOption(rp.dhcp, 43); len(got) != 100 {
		t.Fatalf("option 43 of %d bytes", len(got))
	}
	if len(rp.dhcp) <= 236+512 {
		t.Fatalf("a reply of %d bytes checksums in one chunk", len(rp.dhcp))
	}
}

// TestXDPShortGrant: near the horizon the grant is cut to it, and T1/T2
// shrink in proportion.
func TestXDPShortGrant(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	l.Horizon = time.Now().Add(20 * time.Minute)
	r.publish(t, l)
	verdict, out := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex)
	ran := time.Now()
	if verdict != xdpTx {
		t.Fatalf("verdict %d; counters %v", verdict, r.counters(t))
	}
	m := parseReply(t, out).msg
	lt, t1, t2 := m.IPAddressLeaseTime(0), m.IPAddressRenewalTime(0), m.IPAddressRebindingTime(0)
	// The grant runs to the horizon from when the program ran, which is
	// before ran (bracketed, not a fixed slack a stalled machine exceeds;
	// a second for the whole seconds the program counts in).
	if lt > 20*time.Minute || lt < l.Horizon.Sub(ran)-time.Second || t1 != lt/2 || t2 > lt*7/8+time.Second || t2 < lt*7/8-time.Second {
		t.Fatalf("lease %v (horizon %v after the run) T1 %v T2 %v", lt, l.Horizon.Sub(ran), t1, t2)
	}
}

// TestXDPPuntRateLimit: per client MAC, punts beyond the bucket are dropped.
func TestXDPPuntRateLimit(t *testing.T) {
	r := loadRig(t)
	if err := r.maps.SetSettings(fastpath.Settings{Answer: true, MinGrant: time.Minute, PuntRate: 1, PuntBurst: 3}); err != nil {
		t.Fatal(err)
	}
	disc := request(t, netip.IPv4Unspecified(), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	pkt := frame(broadcast(netip.IPv4Unspecified()), disc.ToBytes())
	var verdicts []uint32
	for range 5 {
		v, _ := r.run(t, bytes.Clone(pkt), loIndex)
		verdicts = append(verdicts, v)
	}
	if want := []uint32{xdpPass, xdpPass, xdpPass, xdpDrop, xdpDrop}; !slices.Equal(verdicts, want) {
		t.Fatalf("verdicts %v, want %v", verdicts, want)
	}
	// Another client has its own bucket.
	disc.ClientHWAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x12}
	if v, _ := r.run(t, frame(broadcast(netip.IPv4Unspecified()), disc.ToBytes()), loIndex); v != xdpPass {
		t.Fatalf("another client's punt: verdict %d", v)
	}
	if c := r.counters(t); c["rate_limited"] != 2 {
		t.Fatalf("counters %v", c)
	}
}

// TestXDPEvents: each answer is reported on the event rings.
func TestXDPEvents(t *testing.T) {
	r := loadRig(t)
	r.publish(t, relayedLease())
	req := request(t, relayedIP, dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice())))
	o := relayed()
	o.vlans = []uint16{7, 8}
	if v, _ := r.run(t, frame(o, req.ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	var got []fastpath.Renewal
	ctx, cancel := contextWithTimeout(2 * time.Second)
	defer cancel()
	err := r.maps.ReadEvents(ctx, func(rs []fastpath.Renewal) {
		got = append(got, rs...)
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	e := got[0]
	if e.IP != relayedIP || !bytes.Equal(e.HWAddr, clientMAC) || e.XID != binary.BigEndian.Uint32(req.TransactionID[:]) ||
		e.GIAddr != relayIP || e.VLANs != [2]uint16{7, 8} || e.IfIndex != loIndex || e.Expiry.Sub(e.At.Truncate(time.Second)) != time.Hour {
		t.Fatalf("event %+v", e)
	}
	// The scan finds the same renewal in the map.
	var scanned []fastpath.Renewal
	if _, err := r.maps.Scan(func(rn fastpath.Renewal) { scanned = append(scanned, rn) }); err != nil {
		t.Fatal(err)
	}
	if len(scanned) != 1 || scanned[0].XID != e.XID || !scanned[0].Expiry.Equal(e.Expiry) || !scanned[0].At.Equal(e.At) || scanned[0].GIAddr != relayIP {
		t.Fatalf("scan %+v, event %+v", scanned, e)
	}
	// A scan of the renewals since a time finds it from its CLTT on, and
	// not from a nanosecond after.
	for _, c := range []struct {
		since time.Time
		want  int
	}{{e.At.Add(-time.Minute), 1}, {e.At, 1}, {e.At.Add(time.Nanosecond), 0}} {
		n := 0
		if err := r.maps.ScanRenewals(c.since, func(rn fastpath.Renewal) {
			if rn.XID == e.XID && rn.At.Equal(e.At) {
				n++
			}
		}); err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("renewals since %v (renewed at %v): %d, want %d", c.since, e.At, n, c.want)
		}
	}
}

// TestXDPClockFollowsOffset: the program's unix time is the daemon's
// clock offset applied to CLOCK_MONOTONIC, and a new offset (the daemon's
// tick after a clock step) takes effect at the next packet, not at the
// next second the program caches.
func TestXDPClockFollowsOffset(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	l.Expiry = time.Now().Add(3 * time.Hour)
	l.Horizon = time.Now().Add(5 * time.Hour)
	r.publish(t, l)
	// renew runs a renewal and says whether the CLTT the program stored
	// lies between the wall clock, moved by ahead, just before and just
	// after the run (a second's slack for whole seconds), so a stalled
	// machine cannot fail it.
	renew := func(ahead time.Duration) {
		t.Helper()
		before := time.Now().Add(ahead).Truncate(time.Second).Add(-time.Second)
		if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
			t.Fatalf("verdict %d; counters %v", v, r.counters(t))
		}
		after := time.Now().Add(ahead).Add(time.Second)
		var at time.Time
		if _, err := r.maps.Scan(func(rn fastpath.Renewal) { at = rn.At }); err != nil {
			t.Fatal(err)
		}
		if at.Before(before) || at.After(after) {
			t.Fatalf("clock %v ahead: renewed at %v, want between %v and %v", ahead, at, before, after)
		}
	}
	renew(0)
	var cfg bpf.XdpXdhcpSettings
	if err := r.objs.XdhcpConfig.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.WallOffsetNs += int64(time.Hour)
	if err := r.objs.XdhcpConfig.Put(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	renew(time.Hour)

	// Clock says what the program reads: the time of the last Tick's
	// offset (here the daemon's clock, two hours ahead) on the monotonic
	// clock.
	r.maps.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	if err := r.maps.Tick(); err != nil {
		t.Fatal(err)
	}
	renew(2 * time.Hour)
	if c, ok := r.maps.Clock(); !ok || c.Sub(time.Now().Add(2*time.Hour)).Abs() > time.Second {
		t.Fatalf("Clock %v (%v), want the program's time, two hours ahead", c, ok)
	}
}

// TestPublishKeepsLaterGrant: republishing a lease the program renewed
// meanwhile must not shorten what the client was granted.
func TestPublishKeepsLaterGrant(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	r.publish(t, l)
	if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	g, _ := r.maps.Granted(clientIP)
	r.publish(t, l) // stale expiry from the slow path
	if g2, _ := r.maps.Granted(clientIP); !g2.Equal(g) {
		t.Fatalf("grant %v shortened to %v", g, g2)
	}
	// A new client for the address replaces it.
	l2 := l
	l2.HWAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	r.publish(t, l2)
	if g3, _ := r.maps.Granted(clientIP); !g3.Equal(time.Unix(l2.Expiry.Unix(), 0)) {
		t.Fatalf("new client's entry has expiry %v", g3)
	}
	if n := r.maps.Templates(); n != 1 {
		t.Fatalf("%d templates for leases sharing one", n)
	}
}

// TestXDPClientIDLengths compares identifiers of every length class
// against the entry's zero-padded copy, a word at a time under a mask:
// equal ones are answered and echoed, and a difference in the first or
// the last byte or one byte more is caught.
func TestXDPClientIDLengths(t *testing.T) {
	r := loadRig(t)
	for _, n := range []int{2, 7, 8, 9, 15, 16, 17, 24, 25, 31, 32} {
		id := make([]byte, n)
		for i := range id {
			id[i] = byte(0xa0 + i)
		}
		l := directLease()
		l.ClientID = id
		r.publish(t, l)
		send := func(cid []byte) (uint32, []byte) {
			req := request(t, clientIP, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
			return r.run(t, frame(direct(clientIP), req.ToBytes()), loIndex)
		}
		verdict, out := send(id)
		if verdict != xdpTx {
			t.Fatalf("%d-byte client-id: verdict %d, want XDP_TX; counters %v", n, verdict, r.counters(t))
		}
		if got := rawOption(parseReply(t, out).dhcp, 61); !bytes.Equal(got, id) {
			t.Errorf("%d-byte client-id echoed as % x", n, got)
		}
		last := bytes.Clone(id)
		last[n-1] ^= 1
		first := bytes.Clone(id)
		first[0] ^= 1
		longer := append(bytes.Clone(id), 0)
		for name, cid := range map[string][]byte{"first byte differs": first, "last byte differs": last, "one byte longer": longer, "one byte shorter": id[:n-1]} {
			if len(cid) < 2 || len(cid) > 32 {
				continue
			}
			before := r.counters(t)["identity"]
			if verdict, _ := send(cid); verdict != xdpPass || r.counters(t)["identity"] != before+1 {
				t.Errorf("%d-byte client-id, %s: verdict %d, identity punts %d -> %d", n, name, verdict, before, r.counters(t)["identity"])
			}
		}
	}
}

// TestTemplateSlotsReused: templates live in an array. A slot freed by
// PruneTemplates is reused by the next new template, replies carry the
// new bytes, and a daemon that opens the maps again adopts exactly the
// slots in use.
func TestTemplateSlotsReused(t *testing.T) {
	r := loadRig(t)
	withDomain := func(name string) []byte {
		return dhcpwire.AppendOption(template()[:0:0], dhcpwire.OptDomainName, []byte(name))
	}
	a, b := directLease(), relayedLease()
	a.Template, b.Template = withDomain("a.example"), withDomain("b.example")
	r.publish(t, a, b)
	b.Template = withDomain("c.example") // b moves to a new template; b's old one is unused
	r.publish(t, b)
	if err := r.maps.PruneTemplates(); err != nil {
		t.Fatal(err)
	}
	a.Template = withDomain("d.example") // takes the freed slot
	r.publish(t, a)
	if err := r.maps.PruneTemplates(); err != nil {
		t.Fatal(err)
	}
	if n := r.maps.Templates(); n != 2 {
		t.Fatalf("%d templates in use, want 2", n)
	}
	var used []uint32
	var id uint32
	var tm bpf.XdpXdhcpTemplate
	for it := r.objs.XdhcpTmpls.Iterate(); it.Next(&id, &tm); {
		if tm.Used != 0 {
			used = append(used, id)
		}
	}
	// a, b and c took slots 1, 2, 3; d took b's freed slot 2; the second
	// prune freed a's slot 1.
	if !slices.Equal(used, []uint32{2, 3}) {
		t.Fatalf("slots in use %v, want [2 3]: freed slots must be reused", used)
	}
	viaRelay := dhcpv4.WithGatewayIP(net.IP(relayIP.AsSlice()))
	for _, c := range []struct {
		ip     netip.Addr
		fo     frameOpts
		req    *dhcpv4.DHCPv4
		domain string
	}{
		{clientIP, direct(clientIP), request(t, clientIP), "d.example"},
		{relayedIP, relayed(), request(t, relayedIP, viaRelay), "c.example"},
	} {
		v, out := r.run(t, frame(c.fo, c.req.ToBytes()), loIndex)
		if v != xdpTx {
			t.Fatalf("%s: verdict %d; counters %v", c.ip, v, r.counters(t))
		}
		if got := string(rawOption(parseReply(t, out).dhcp, dhcpwire.OptDomainName)); got != c.domain {
			t.Errorf("%s: domain %q in the reply, want %q", c.ip, got, c.domain)
		}
	}
	// A slot holding the same bytes as another (entries may name either)
	// is kept from reuse until the next prune frees it.
	var dup bpf.XdpXdhcpTemplate
	if err := r.objs.XdhcpTmpls.Lookup(uint32(2), &dup); err != nil {
		t.Fatal(err)
	}
	if err := r.objs.XdhcpTmpls.Put(uint32(1), &dup); err != nil {
		t.Fatal(err)
	}
	again, err := fastpath.New(&r.objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if n := again.Templates(); n != 2 {
		t.Fatalf("a second daemon adopted %d templates, want the 2 in use", n)
	}
	e := relayedLease()
	e.IP, e.Template = netip.MustParseAddr("10.78.1.8"), withDomain("e.example")
	if err := again.Publish([]fastpath.Lease{e}); err != nil {
		t.Fatal(err)
	}
	// Slots 1 and 2 hold the same bytes: the first is adopted, the second
	// kept as an orphan; so e goes to slot 4, past b's 3.
	for _, id := range []uint32{1, 2} {
		var got bpf.XdpXdhcpTemplate
		if err := r.objs.XdhcpTmpls.Lookup(id, &got); err != nil || got != dup {
			t.Fatalf("slot %d was reused before a prune (%v)", id, err)
		}
	}
	var slot bpf.XdpXdhcpTemplate
	if err := r.objs.XdhcpTmpls.Lookup(uint32(4), &slot); err != nil || slot.Used == 0 {
		t.Fatalf("the new template is not in slot 4 (%v)", err)
	}
	if err := again.PruneTemplates(); err != nil {
		t.Fatal(err)
	}
	if err := r.objs.XdhcpTmpls.Lookup(uint32(2), &slot); err != nil || slot.Used != 0 {
		t.Fatalf("the orphaned slot 2 is still in use after a prune (%v)", err)
	}
}

// TestRelayInfoFingerprintAgrees holds RelayInfoFingerprint (Go, in the
// entry) and relay_fp (the program, over the request) to the same
// function: for option 82 bodies of every length and of random content,
// a relayed renewal carrying the stored body is answered and echoes it,
// and one with a bit flipped, a byte more or a byte less is punted.
func TestRelayInfoFingerprintAgrees(t *testing.T) {
	r := loadRig(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	// Bodies are well-formed (RFC 3046 sub-options; 82.5 and 82.11 never
	// appear, since their length is fixed): the program passes up a
	// malformed 82 as malformed, before any fingerprint.
	var bodies [][]subOpt
	for n := range 254 {
		bodies = append(bodies, []subOpt{{1, make([]byte, n)}}) // all zeros: only the length tells them apart
	}
	for range 512 {
		var b []subOpt
		for room := rng.IntN(256); room >= 2; {
			data := make([]byte, rng.IntN(room-1))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			code := byte(rng.IntN(256))
			if code == 5 || code == 11 {
				code = 1
			}
			b = append(b, subOpt{code, data})
			room -= 2 + len(data)
		}
		if len(b) == 0 {
			b = []subOpt{{2, nil}}
		}
		bodies = append(bodies, b)
	}
	send := func(body []byte) (uint32, []byte) {
		req := request(t, relayedIP, append(viaRelay(body), dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500)))...)
		return r.run(t, frame(relayed(), req.ToBytes()), loIndex)
	}
	for _, subs := range bodies {
		body := encodeSubOpts(subs)
		l := relayedLease()
		l.RelayInfo = body
		r.publish(t, l)
		v, out := send(body)
		if v != xdpTx {
			t.Fatalf("seed %d: %d-byte option 82 % x as stored: verdict %d, want XDP_TX; counters %v", seed, len(body), body, v, r.counters(t))
		}
		if got := rawOption(parseReply(t, out).dhcp, 82); !bytes.Equal(got, body) {
			t.Fatalf("seed %d: option 82 echoed as % x, want % x", seed, got, body)
		}
		// Each other body is well-formed too, and differs in the last
		// sub-option's data.
		last := len(subs) - 1
		with := func(data []byte) []byte {
			o := slices.Clone(subs)
			o[last].data = data
			return encodeSubOpts(o)
		}
		others := map[string][]byte{}
		if len(body) < 255 {
			others["a zero byte more"] = with(append(bytes.Clone(subs[last].data), 0))
		}
		if d := subs[last].data; len(d) > 0 {
			flipped := bytes.Clone(d)
			flipped[rng.IntN(len(d))] ^= 1 << rng.IntN(8)
			others["a bit flipped"] = with(flipped)
			others["a byte less"] = with(d[:len(d)-1])
		}
		for what, other := range others {
			before := r.counters(t)["relay_info"]
			if v, _ := send(other); v != xdpPass || r.counters(t)["relay_info"] != before+1 {
				t.Fatalf("seed %d: %d-byte option 82 % x stored, renewal with %s: verdict %d, relay_info punts %d -> %d",
					seed, len(body), body, what, v, before, r.counters(t)["relay_info"])
			}
		}
	}
	if k := r.maps.FingerprintKey(); fastpath.RelayInfoFingerprint(k, nil) != 0 || fastpath.RelayInfoFingerprint(k, []byte{}) != 0 {
		t.Fatal("no option 82 must fingerprint as 0, as an entry without one")
	}
}

// subOpt is an option 82 sub-option (RFC 3046 §2.0).
type subOpt struct {
	code byte
	data []byte
}

func encodeSubOpts(subs []subOpt) []byte {
	var b []byte
	for _, o := range subs {
		b = append(append(b, o.code, byte(len(o.data))), o.data...)
	}
	return b
}

// TestFingerprintKeyIsKeptWithTheMap: a new map gets a random, non-zero
// option 82 fingerprint key; a daemon that opens the same (pinned) maps
// again takes the key they hold, so the entries' fingerprints stay valid
// across a restart; the settings it writes keep it.
func TestFingerprintKeyIsKeptWithTheMap(t *testing.T) {
	r := loadRig(t)
	k := r.maps.FingerprintKey()
	if k == 0 {
		t.Fatal("no fingerprint key")
	}
	again, err := fastpath.New(&r.objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.FingerprintKey() != k {
		t.Fatalf("reopened maps have key %#x, the map holds %#x", again.FingerprintKey(), k)
	}
	if err := again.SetSettings(fastpath.Settings{Answer: true, MinGrant: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var v bpf.XdpXdhcpSettings
	if err := r.objs.XdhcpConfig.Lookup(uint32(0), &v); err != nil || v.FpKey != k {
		t.Fatalf("settings written with key %#x, want %#x (%v)", v.FpKey, k, err)
	}
	if other := loadRig(t).maps.FingerprintKey(); other == k {
		t.Fatalf("two new maps chose the same key %#x", k)
	}
	// A relayed renewal whose entry the reopened maps published is
	// answered: they fingerprint as the program does.
	l := relayedLease()
	l.RelayInfo = dhcpwire.AppendOption(nil, dhcpwire.SubOptCircuitID, []byte("olt-7/port-1"))
	if err := again.Publish([]fastpath.Lease{l}); err != nil {
		t.Fatal(err)
	}
	req := request(t, relayedIP, append(viaRelay(l.RelayInfo), dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500)))...)
	if v, _ := r.run(t, frame(relayed(), req.ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("relayed renewal with the stored option 82: verdict %d; counters %v", v, r.counters(t))
	}
}

// TestRefusedRepublishWithdrawsTheEntry: a lease the map can no longer
// hold as it is now (a reload grew its subnet's options past what an
// entry carries) loses its entry: the program passes its renewals up to
// the slow path, which answers with the new options, instead of answering
// from the entry's old ones.
func TestRefusedRepublishWithdrawsTheEntry(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	r.publish(t, l)
	req := frame(direct(clientIP), request(t, clientIP).ToBytes())
	if v, _ := r.run(t, req, loIndex); v != xdpTx {
		t.Fatalf("published: verdict %d, want XDP_TX", v)
	}
	grown := l
	grown.Template = make([]byte, fastpath.MaxTemplate+1)
	if err := r.maps.Publish([]fastpath.Lease{grown}); err == nil {
		t.Fatal("a template past MaxTemplate was published")
	}
	if v, _ := r.run(t, req, loIndex); v != xdpPass {
		t.Fatalf("after a refused republish: verdict %d, want XDP_PASS (the old entry withdrawn)", v)
	}
	if _, ok := r.maps.Granted(clientIP); ok {
		t.Fatal("the refused lease still has a grant slot")
	}
}
