package bench

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

func TestRenewalFrame(t *testing.T) {
	r := Renewal{
		CIAddr: netip.MustParseAddr("10.78.1.9"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, ClientID: []byte{1, 2, 3},
		GIAddr: netip.MustParseAddr("10.78.0.1"), Opt82: []byte{1, 2, 'x', 'y'},
		VLANs: []uint16{100, 200}, Server: netip.MustParseAddr("10.77.0.1"), XID: 0xabcdef01,
	}
	f := r.Frame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2})
	if f[12] != 0x88 || f[13] != 0xa8 || f[16] != 0x81 || f[17] != 0x00 || f[20] != 0x08 || f[21] != 0 {
		t.Fatalf("tags/ethertype % x", f[12:22])
	}
	ip := f[22:]
	want := pktio.BuildIPv4UDP(r.GIAddr, r.Server, 67, 67, r.Payload())
	if string(ip) != string(want) {
		t.Fatal("IP/UDP part differs from a direct build")
	}
	m, err := dhcpv4.FromBytes(ip[28:])
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageType() != dhcpv4.MessageTypeRequest || !m.ClientIPAddr.Equal(net.ParseIP("10.78.1.9")) ||
		!m.GatewayIPAddr.Equal(net.ParseIP("10.78.0.1")) || m.TransactionID != (dhcpv4.TransactionID{0xab, 0xcd, 0xef, 0x01}) ||
		m.Options.Has(dhcpv4.OptionRequestedIPAddress) || m.Options.Has(dhcpv4.OptionServerIdentifier) ||
		string(m.Options.Get(dhcpv4.OptionRelayAgentInformation)) != "\x01\x02xy" {
		t.Fatalf("not a relayed RENEWING request:\n%s", m.Summary())
	}
}
