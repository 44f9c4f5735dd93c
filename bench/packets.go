package bench

import (
	"net"
	"net/netip"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// Renewal describes one RENEWING-state DHCPREQUEST as it travels, for
// the XDP cost measurement (which feeds frames to the program directly).
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

// Payload renders the DHCP message as the generator does.
func (r Renewal) Payload() []byte {
	id := loadgen.Identity{MAC: r.MAC, ClientID: r.ClientID, Opt82: r.Opt82}
	return loadgen.Message{Type: dhcpwire.Request, XID: r.XID, ID: id, CIAddr: r.CIAddr, GIAddr: r.GIAddr}.Append(nil)
}

// Frame renders the request as an Ethernet frame from src to dst MAC: from
// the client (port 68) or, relayed, from the relay (port 67).
func (r Renewal) Frame(src, dst net.HardwareAddr) []byte {
	b := loadgen.AppendEthernet(nil, dst, src, r.VLANs, 0x0800)
	from, sport := r.CIAddr, uint16(68)
	if r.GIAddr.IsValid() {
		from, sport = r.GIAddr, 67
	}
	return pktio.AppendIPv4UDP(b, from, r.Server, sport, 67, r.Payload())
}
