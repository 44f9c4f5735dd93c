package bench

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// Renewal describes one RENEWING-state DHCPREQUEST as it travels.
type Renewal struct {
	CIAddr   netip.Addr
	MAC      net.HardwareAddr
	ClientID []byte     // option 61; nil for none
	GIAddr   netip.Addr // relay address; invalid for a direct client
	Opt82    []byte     // relay agent information, relayed only
	VLANs    []uint16   // outer first; the outer tag is 802.1ad when two
	Server   netip.Addr
	XID      uint32
}

// Payload renders the DHCP message.
func (r Renewal) Payload() []byte {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(r.MAC),
		dhcpv4.WithClientIP(r.CIAddr.AsSlice()),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer),
	}
	if r.ClientID != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(r.ClientID)))
	}
	if r.GIAddr.IsValid() {
		mods = append(mods, dhcpv4.WithGatewayIP(r.GIAddr.AsSlice()))
		if r.Opt82 != nil {
			mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, r.Opt82))
		}
	}
	m, _ := dhcpv4.New(mods...)
	binary.BigEndian.PutUint32(m.TransactionID[:], r.XID)
	return m.ToBytes()
}

// Frame renders the request as an Ethernet frame from src to dst MAC.
func (r Renewal) Frame(src, dst net.HardwareAddr) []byte {
	b := append(append([]byte{}, dst...), src...)
	for i, v := range r.VLANs {
		tpid := uint16(0x8100)
		if i == 0 && len(r.VLANs) == 2 {
			tpid = 0x88a8
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	from, sport := r.CIAddr, uint16(68)
	if r.GIAddr.IsValid() {
		from, sport = r.GIAddr, 67
	}
	return append(b, pktio.BuildIPv4UDP(from, r.Server, sport, 67, r.Payload())...)
}
