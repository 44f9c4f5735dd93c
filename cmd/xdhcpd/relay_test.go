package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// relayLab adds a router namespace on the bridge (10.77.0.2) owning the
// relay address 10.78.0.1, with the server routing 10.78/16 through it.
func relayLab(t *testing.T) (*lab, *netns.NS) { return relayLabWith(t, nil) }

// relayLabWith is relayLab on newLabWith's prepare.
func relayLabWith(t *testing.T, prepare func(l *lab)) (*lab, *netns.NS) {
	l := newLabWith(t, "1h", prepare)
	r := l.client("rl0", "02:00:00:00:09:01")
	l.sh(r, "ip addr add 10.77.0.2/24 dev rl0 && ip addr add 10.78.0.1/32 dev rl0")
	l.sh(l.srv, "ip route add 10.78.0.0/16 via 10.77.0.2")
	return l, r
}

// exchange sends m from laddr to the server and waits for one reply.
func exchange(t *testing.T, ns *netns.NS, laddr string, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	var reply *dhcpv4.DHCPv4
	err := ns.Do(func() error {
		c, err := net.ListenPacket("udp4", laddr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply, err = dhcpv4.FromBytes(buf[:n])
		return err
	})
	if err != nil {
		t.Fatalf("%s from %s: %v", m.MessageType(), laddr, err)
	}
	return reply
}

// send delivers m from laddr without waiting for a reply.
func send(t *testing.T, ns *netns.NS, laddr string, m *dhcpv4.DHCPv4) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenPacket("udp4", laddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67})
		return err
	})
	if err != nil {
		t.Fatalf("%s from %s: %v", m.MessageType(), laddr, err)
	}
}

func TestRelayedDORAAndUnicastRenewalPastTheRelay(t *testing.T) {
	l, r := relayLab(t)
	hw := net.HardwareAddr{2, 0, 0, 0, 0x0a, 1}
	opt82 := []byte{1, 6, 'e', 't', 'h', '0', '/', '1', 2, 4, 'c', 'p', 'e', '1'}
	relayed := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(hw), dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1)),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}}),
	}
	disc, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))...)
	offer := exchange(t, r, "10.78.0.1:67", disc)
	ip, _ := netip.AddrFromSlice(offer.YourIPAddr.To4())
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !netip.MustParsePrefix("10.78.0.0/16").Contains(ip) {
		t.Fatalf("offer %s", offer.Summary())
	}
	if !bytes.Equal(offer.Options.Get(dhcpv4.OptionRelayAgentInformation), opt82) {
		t.Fatal("option 82 not echoed in the OFFER")
	}
	req, _ := dhcpv4.New(append(relayed, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithTransactionID(disc.TransactionID),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
	ack := exchange(t, r, "10.78.0.1:67", req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ack %s", ack.Summary())
	}
	li, _ := l.leaseFor(hw.String())
	if li.GIAddr != "10.78.0.1" || li.RelayInfo != colonHex(opt82) || li.Subnet != "10.78.0.0/16" {
		t.Fatalf("stored lease %+v", li)
	}
	// The client now renews by unicast from its own address, straight to
	// the server (RFC 2131 §4.4.5), and the answer comes back to it.
	l.sh(r, "ip addr add "+ip.String()+"/32 dev lo")
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(offer.YourIPAddr))
	t0 := time.Now()
	rack := exchange(t, r, ip.String()+":68", renew)
	if rack.MessageType() != dhcpv4.MessageTypeAck || rack.Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Fatalf("unicast renewal: %s", rack.Summary())
	}
	li = l.waitLease(hw.String(), "active", t0, 5*time.Second)
	if li.GIAddr != "10.78.0.1" {
		t.Fatalf("unicast renewal forgot the relay: %+v", li)
	}
}

func TestPerfdhcpRelayedDORA(t *testing.T) {
	needTools(t, "perfdhcp")
	l, r := relayLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// perfdhcp relays from 10.78.0.1 (giaddr) and takes replies on :67.
	out, err := r.Exec(ctx, "perfdhcp", "-4", "-l", "10.78.0.1", "-r", "100", "-R", "500", "-p", "3", "10.77.0.1")
	if err != nil && !bytes.Contains(out, []byte("received packets")) {
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	// perfdhcp prints, per exchange, "sent packets: N" then "received packets: M".
	m := regexp.MustCompile(`received packets: (\d+)`).FindAllSubmatch(out, -1)
	if len(m) < 2 {
		t.Fatalf("perfdhcp output not understood:\n%s", out)
	}
	acks, _ := strconv.Atoi(string(m[1][1]))
	if acks < 100 {
		t.Fatalf("only %d ACKs through the relay:\n%s", acks, out)
	}
	n := 0
	for _, li := range l.leases() {
		if li.State == "active" && li.GIAddr == "10.78.0.1" && li.Subnet == "10.78.0.0/16" {
			n++
		}
	}
	if n < acks {
		t.Fatalf("%d relayed leases stored, perfdhcp got %d ACKs", n, acks)
	}
}
