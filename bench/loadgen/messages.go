// Package loadgen is xdhcp-bench's traffic generator: a population of
// emulated DHCP clients, driven through scenarios (DORA, renewals, a mix,
// releases) over a relay socket or raw frames, in batches, with every
// answer validated and its latency recorded.
package loadgen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
)

// Identity is what makes one emulated client distinct on the wire.
type Identity struct {
	MAC      net.HardwareAddr
	ClientID []byte   // option 61; nil for none
	Opt82    []byte   // relay agent information the relay adds; nil for none
	VLANs    []uint16 // layer 2 only: outer first; two tags make the outer 802.1ad
}

// Population derives client identities from their index, so that no
// table of them is kept and every run names the same clients.
type Population struct {
	ClientIDs bool // send option 61 (type 1 + MAC, as dhclient does)
	Opt82     bool // relay mode: circuit-id and remote-id per client
	VLANs     int  // layer 2 mode: 0, 1 or 2 tags per client
	// Salt varies the MACs between populations that share a segment.
	Salt byte
}

// MAC is client i's hardware address: locally administered, unicast.
func (p Population) MAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xb0 | p.Salt&0x0f, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// Identity returns client i's identity.
func (p Population) Identity(i int) Identity {
	id := Identity{MAC: p.MAC(i)}
	if p.ClientIDs {
		id.ClientID = append([]byte{1}, id.MAC...)
	}
	if p.Opt82 {
		circuit := fmt.Appendf(nil, "bench/%d/%d", i>>12, i&0xfff)
		remote := id.MAC
		o := append([]byte{dhcpwire.SubOptCircuitID, byte(len(circuit))}, circuit...)
		id.Opt82 = append(append(o, dhcpwire.SubOptRemoteID, byte(len(remote))), remote...)
	}
	switch p.VLANs {
	case 1:
		id.VLANs = []uint16{uint16(100 + i%4000)}
	case 2:
		id.VLANs = []uint16{uint16(100 + (i/4000)%4000), uint16(100 + i%4000)}
	}
	return id
}

// Message is one request to render.
type Message struct {
	Type      uint8 // dhcpwire.Discover, Request or Release
	XID       uint32
	ID        Identity
	CIAddr    netip.Addr // renewing or releasing client's address
	Requested netip.Addr // option 50 (SELECTING)
	ServerID  netip.Addr // option 54 (SELECTING, RELEASE)
	GIAddr    netip.Addr // relay mode
	Broadcast bool       // the B flag
	// Secs is the seconds since the client began this acquisition or
	// renewal (RFC 2131 §2): 0 on a first try, counted up in the
	// retransmissions, as udhcpc, dhclient and dhcpcd do.
	Secs uint16
	// NonceCapable adds option 145 listing HMAC-MD5 (RFC 6704): the
	// client takes a FORCERENEW key.
	NonceCapable bool
}

// prl is the parameter request list every client sends.
var prl = []byte{dhcpwire.OptSubnetMask, dhcpwire.OptRouters, dhcpwire.OptDNS, dhcpwire.OptLeaseTime,
	dhcpwire.OptServerID, dhcpwire.OptRenewalTime, dhcpwire.OptRebindingTime}

// Append renders m as a DHCP message onto b.
func (m Message) Append(b []byte) []byte {
	h := dhcpwire.Header{Op: dhcpwire.BootRequest, HType: 1, HLen: 6, XID: m.XID, Secs: m.Secs, CIAddr: m.CIAddr, GIAddr: m.GIAddr}
	if m.GIAddr.IsValid() {
		h.Hops = 1
	}
	if m.Broadcast {
		h.Flags = dhcpwire.FlagBroadcast
	}
	copy(h.CHAddr[:], m.ID.MAC)
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, m.Type)
	if m.Requested.IsValid() {
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptRequestedIP, m.Requested)
	}
	if m.ServerID.IsValid() {
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, m.ServerID)
	}
	if m.ID.ClientID != nil {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, m.ID.ClientID)
	}
	if m.Type != dhcpwire.Release {
		b = dhcpwire.AppendOption(b, dhcpwire.OptParamRequest, prl)
	}
	if m.NonceCapable {
		b = auth.AppendNonceCapable(b)
	}
	// A relay appends option 82 last (RFC 3046 §2.1).
	if m.GIAddr.IsValid() && m.ID.Opt82 != nil {
		b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, m.ID.Opt82)
	}
	return append(b, dhcpwire.OptEnd)
}

// Ethernet types the layer 2 transport writes and reads.
const (
	etherIPv4  = 0x0800
	etherARP   = 0x0806
	ether8021Q = 0x8100
	ether8021A = 0x88a8
)

// AppendEthernet writes an Ethernet header from src to dst with the given
// VLAN tags (outer first; the outer of two is 802.1ad) and ethertype.
func AppendEthernet(b []byte, dst, src net.HardwareAddr, vlans []uint16, etype uint16) []byte {
	b = append(append(b, dst...), src...)
	for i, v := range vlans {
		tpid := uint16(ether8021Q)
		if i == 0 && len(vlans) == 2 {
			tpid = ether8021A
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v&0x0fff)
	}
	return binary.BigEndian.AppendUint16(b, etype)
}

// stripEthernet returns the ethertype, VLAN tags and payload of a frame.
func stripEthernet(f []byte) (etype uint16, vlans []uint16, payload []byte, ok bool) {
	if len(f) < 14 {
		return 0, nil, nil, false
	}
	off := 12
	etype = binary.BigEndian.Uint16(f[off:])
	for (etype == ether8021Q || etype == ether8021A) && len(vlans) < 2 {
		if len(f) < off+6 {
			return 0, nil, nil, false
		}
		vlans = append(vlans, binary.BigEndian.Uint16(f[off+2:])&0x0fff)
		off += 4
		etype = binary.BigEndian.Uint16(f[off:])
	}
	return etype, vlans, f[off+2:], true
}

// udpPayload returns the source and destination of an IPv4/UDP packet
// and its payload; ok is false for anything else or a fragment.
func udpPayload(p []byte) (src, dst netip.AddrPort, payload []byte, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 17 {
		return src, dst, nil, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl+8 || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
		return src, dst, nil, false
	}
	u := p[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if ulen < 8 || ulen > len(u) {
		return src, dst, nil, false
	}
	src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(u[0:]))
	dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(u[2:]))
	return src, dst, u[8:ulen], true
}
