package slowpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Every reply carries its request's arrival, the OFFER and the ACK as
// the server makes them, so that the Sender can report each one's time
// to the wire (xdhcp_slowpath_reply_seconds); ObserveSent counts those
// that have one, at their time since it.
func TestRepliesCarryTheirRequestsArrival(t *testing.T) {
	f := newFixture(t)
	hw := mac(1)
	arrived := time.Now().Add(-30 * time.Millisecond)
	handle := func(m *dhcpv4.DHCPv4) Outgoing {
		t.Helper()
		f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: bcast, IfIndex: 7, Received: arrived})
		out := f.out.take()
		if len(out) != 1 {
			t.Fatalf("%v: %d replies, want 1", m.MessageType(), len(out))
		}
		return out[0]
	}
	offer := handle(msg(t, dhcpv4.MessageTypeDiscover, hw))
	o, err := dhcpv4.FromBytes(offer.Payload)
	if err != nil {
		t.Fatal(err)
	}
	ack := handle(msg(t, dhcpv4.MessageTypeRequest, hw,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(o.ServerIdentifier()))))
	for _, r := range []Outgoing{offer, ack} {
		if !r.Received.Equal(arrived) {
			t.Errorf("%s carries arrival %v, want its request's %v", dhcpv4.MessageType(r.Type), r.Received, arrived)
		}
	}

	m := NewMetrics()
	sent := arrived.Add(20 * time.Millisecond)
	m.ObserveSent([]Outgoing{offer, ack, {Type: 9}}, sent) // the last one unasked (FORCERENEW)
	if n := sampleCount(t, m.ReplyLatency); n != 2 {
		t.Fatalf("%d observed, want the two replies to requests", n)
	}
	if got := histogramOf(t, m.ReplyLatency).GetSampleSum(); got < 0.0399 || got > 0.0401 {
		t.Fatalf("sum %v s, want 2 × 20 ms", got)
	}
}

// A leasequery's reply carries the query's arrival too.
func TestLeasequeryReplyCarriesItsQuerysArrival(t *testing.T) {
	f := lqFixture(t)
	ack := f.dora(mac(1))
	m, err := dhcpv4.New(dhcpv4.WithMessageType(mtLeaseQuery), dhcpv4.WithHwAddr(nil))
	if err != nil {
		t.Fatal(err)
	}
	m.ClientHWAddr = nil
	m.ClientIPAddr = ack.YourIPAddr
	m.GatewayIPAddr = requester.AsSlice()
	arrived := time.Now().Add(-10 * time.Millisecond)
	f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.AddrPortFrom(requester, 67), Dst: srvAddr, IfIndex: 7, Received: arrived})
	out := f.out.take()
	if len(out) != 1 || out[0].Type != uint8(mtLeaseActive) {
		t.Fatalf("%d replies (%+v), want one DHCPLEASEACTIVE", len(out), out)
	}
	if !out[0].Received.Equal(arrived) {
		t.Fatalf("the reply carries arrival %v, want the query's %v", out[0].Received, arrived)
	}
}
