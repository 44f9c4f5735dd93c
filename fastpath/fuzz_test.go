package fastpath_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// capturedLeases are the bindings behind the renewals captured from real
// clients that seed FuzzXDP (testdata/fuzz/FuzzXDP): busybox udhcpc 1.35
// renewing directly in the e2e fast-path run, and udhcpc behind ISC
// dhcrelay -a (option 82 circuit-id "r1") renewing through the relay and
// straight to the server. Published beside the rig's own leases, they make
// the real frames answerable, so the fuzzer starts from real answered
// renewals. The seeds' IP packets are as captured; their Ethernet headers
// are rebuilt (a capture on "any" keeps the sender's MAC, not the
// destination's): the rig's server MAC, or broadcast for a broadcast.
func capturedLeases() []fastpath.Lease {
	now := time.Now()
	direct := fastpath.Lease{
		IP: netip.MustParseAddr("10.77.0.100"), Expiry: now.Add(30 * time.Minute), Horizon: now.Add(4 * time.Hour),
		HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0x0f, 1}, ClientID: []byte{1, 2, 0, 0, 0, 0x0f, 1},
		ServerID: serverID, IfIndex: loIndex, LeaseTime: 3600, T1: 1800, T2: 3150, Serve: true, Template: template(),
	}
	relayed := direct
	relayed.IP, relayed.GIAddr, relayed.IfIndex = netip.MustParseAddr("10.78.1.0"), relayIP, 0
	relayed.HWAddr, relayed.ClientID = net.HardwareAddr{2, 0, 0, 0, 0x0c, 1}, []byte{1, 2, 0, 0, 0, 0x0c, 1}
	relayed.RelayInfo = []byte{1, 2, 'r', '1'}
	return []fastpath.Lease{direct, relayed}
}

// requestIn locates the DHCP message in an Ethernet frame (up to two VLAN
// tags, IPv4, UDP), with the IP source and whether it got that far.
func requestIn(pkt []byte) (dhcp []byte, src netip.Addr, ok bool) {
	p := 12
	for p+2 <= len(pkt) {
		et := binary.BigEndian.Uint16(pkt[p:])
		if et == 0x8100 || et == 0x88a8 {
			p += 4
			continue
		}
		if et != 0x0800 {
			return nil, src, false
		}
		p += 2
		break
	}
	if p+20 > len(pkt) {
		return nil, src, false
	}
	ip := pkt[p:]
	ihl := int(ip[0]&15) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || tot > len(ip) || tot < ihl+8 {
		return nil, src, false
	}
	src = netip.AddrFrom4([4]byte(ip[12:16]))
	return ip[ihl+8 : tot], src, true
}

// checkAnswer holds an XDP_TX'd frame to ARCHITECTURE.md invariant 5 and to RFC
// 2131: the request was a RENEWING or REBINDING DHCPREQUEST that the slow
// path's parser reads without complaint, for a lease in the map whose
// client it names; the reply is a well-formed DHCPACK (parseReply checks
// framing, both checksums and insomniacslk/dhcp's parse) for that request
// (xid, chaddr) and that lease (yiaddr, 54, 82), granting no more than the
// lease time and no later than the horizon, sent where RFC 2131 §4.1 says.
func checkAnswer(t *testing.T, r *rig, leases map[netip.Addr]fastpath.Lease, in, out []byte) {
	t.Helper()
	d, src, ok := requestIn(in)
	if !ok {
		t.Fatalf("answered a frame that carries no IPv4/UDP datagram: % x", in)
	}
	req, err := dhcpwire.Parse(d)
	if err != nil {
		t.Fatalf("answered a request the slow path cannot parse: %v", err)
	}
	l, ok := leases[req.CIAddr]
	switch {
	case req.Op != dhcpwire.BootRequest || req.MessageType() != dhcpwire.Request:
		t.Fatalf("answered op %d message type %d", req.Op, req.MessageType())
	case req.Has(dhcpwire.OptRequestedIP) || req.Has(dhcpwire.OptServerID):
		t.Fatal("answered a request carrying option 50 or 54 (SELECTING or INIT-REBOOT)")
	case !ok:
		t.Fatalf("answered a renewal of %s, which has no lease in the map", req.CIAddr)
	case req.HType != l.HWType || !bytes.Equal(req.CHAddr(), l.HWAddr):
		t.Fatalf("answered %s for chaddr % x, the lease's is % x", req.CIAddr, req.CHAddr(), l.HWAddr)
	}
	if cid, has := req.Option(dhcpwire.OptClientID); has != (l.ClientID != nil) || len(cid) != len(l.ClientID) {
		t.Fatalf("answered %s for client-id % x, the lease's is % x", req.CIAddr, cid, l.ClientID)
	}
	// A malformed option makes the message one the slow path drops
	// (ARCHITECTURE.md 7; RFC 2132 lengths): answering it here would make the
	// two paths disagree (ARCHITECTURE.md 3).
	for code, n := range map[uint8]int{dhcpwire.OptMessageType: 1, dhcpwire.OptMaxMessageSize: 2, dhcpwire.OptLeaseTime: 4} {
		if v, has := req.Option(code); has && len(v) != n {
			t.Fatalf("answered a request whose option %d has %d bytes", code, len(v))
		}
	}
	if ri, has := req.Option(dhcpwire.OptRelayAgentInfo); has {
		for i := 0; i < len(ri); i += 2 + int(ri[i+1]) {
			if i+2 > len(ri) || i+2+int(ri[i+1]) > len(ri) {
				t.Fatalf("answered a request whose option 82 sub-options run past it: % x", ri)
			}
		}
	}
	relayed := !req.GIAddr.IsUnspecified()
	if relayed && req.GIAddr != l.GIAddr {
		t.Fatalf("answered %s relayed by %s, granted through %s", req.CIAddr, req.GIAddr, l.GIAddr)
	}
	if !relayed && l.GIAddr.IsValid() && src != req.CIAddr {
		t.Fatalf("answered relayed lease %s from %s, neither its relay nor itself", req.CIAddr, src)
	}

	rp := parseReply(t, out)
	m := rp.msg
	yi, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
	sid, _ := netip.AddrFromSlice(m.ServerIdentifier().To4())
	switch {
	case m.MessageType() != 5 || rp.codes[len(rp.codes)-1] != 255:
		t.Fatalf("answer is not a DHCPACK ending in END: %v", rp.codes)
	case m.OpCode != 2 || binary.BigEndian.Uint32(m.TransactionID[:]) != req.XID || !bytes.Equal(m.ClientHWAddr, req.CHAddr()):
		t.Fatalf("answer op %d xid %x chaddr %s, request xid %x chaddr % x", m.OpCode, m.TransactionID, m.ClientHWAddr, req.XID, req.CHAddr())
	case yi != l.IP || sid != l.ServerID:
		t.Fatalf("answer yiaddr %s server-id %s, lease %s from %s", yi, sid, l.IP, l.ServerID)
	case m.IPAddressLeaseTime(0) > time.Duration(l.LeaseTime)*time.Second:
		t.Fatalf("answer grants %v, lease time is %ds", m.IPAddressLeaseTime(0), l.LeaseTime)
	}
	if g, ok := r.maps.Granted(l.IP); !ok || g.After(l.Horizon) {
		t.Fatalf("granted until %v (%v), past the horizon %v", g, ok, l.Horizon)
	}
	// RFC 3046 §2.2: the server echoes the option 82 it received (as the
	// slow path does, relayed or not), and none when it received none; a
	// relayed renewal whose 82 differs from the stored one is the slow
	// path's to store (punted).
	ri := rawOption(rp.dhcp, 82)
	got82, has82 := req.Option(dhcpwire.OptRelayAgentInfo)
	switch {
	case has82 != (ri != nil) || !bytes.Equal(ri, got82):
		t.Fatalf("request's option 82 % x (present %v) answered with % x", got82, has82, ri)
	case relayed && has82 && !bytes.Equal(got82, l.RelayInfo):
		t.Fatalf("relayed renewal with option 82 % x answered, stored % x", got82, l.RelayInfo)
	}
	wantDst := netip.AddrPortFrom(req.CIAddr, 68)
	if relayed {
		wantDst = netip.AddrPortFrom(req.GIAddr, 67)
	}
	if got := netip.AddrPortFrom(rp.dst, rp.dport); got != wantDst {
		t.Fatalf("answer sent to %s, RFC 2131 §4.1 says %s", got, wantDst)
	}
}
