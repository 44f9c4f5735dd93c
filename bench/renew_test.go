package bench

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

func ack(t *testing.T, xid uint32, yiaddr string, lt time.Duration, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithReply(&dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootRequest}),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP(yiaddr)),
		dhcpv4.WithServerIP(net.ParseIP("10.77.0.1")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.1"))),
		dhcpv4.WithLeaseTime(uint32(lt.Seconds())),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.TransactionID = dhcpv4.TransactionID{byte(xid >> 24), byte(xid >> 16), byte(xid >> 8), byte(xid)}
	return m.ToBytes()
}

func TestValidRenewalAck(t *testing.T) {
	leases := []heldLease{
		{mac: mac(0), ip: netip.MustParseAddr("10.80.1.0")},
		{mac: mac(1), ip: netip.MustParseAddr("10.80.1.1")},
	}
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"good", ack(t, 1, "10.80.1.1", time.Hour), true},
		{"cut at the horizon", ack(t, 1, "10.80.1.1", 40*time.Minute), true},
		{"other lease's address", ack(t, 1, "10.80.1.0", time.Hour), false},
		{"unknown xid", ack(t, 7, "10.80.1.1", time.Hour), false},
		{"lease time too long", ack(t, 0, "10.80.1.0", 2*time.Hour), false},
		{"lease time too short", ack(t, 0, "10.80.1.0", time.Minute), false},
		{"NAK", ack(t, 0, "10.80.1.0", time.Hour, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak)), false},
		{"garbage", []byte{2, 1, 6, 0}, false},
	}
	for _, tc := range tests {
		if got := validRenewalAck(tc.p, leases, 3600); got != tc.want {
			t.Errorf("%s: valid = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRenewalFrame(t *testing.T) {
	r := Renewal{
		CIAddr: netip.MustParseAddr("10.78.1.9"), MAC: mac(9), ClientID: []byte{1, 2, 3},
		GIAddr: netip.MustParseAddr("10.78.0.1"), Opt82: []byte{1, 2, 'x', 'y'},
		VLANs: []uint16{100, 200}, Server: netip.MustParseAddr("10.77.0.1"), XID: 0xabcdef01,
	}
	f := r.Frame(mac(1), mac(2))
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
