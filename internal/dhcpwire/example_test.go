package dhcpwire_test

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// A renewal udhcpc sent (captured with tcpdump, testdata/README.md): the
// header, the message type and the options a server reads.
func ExampleParse() {
	b, err := os.ReadFile("testdata/packets/udhcpc_request_renewing.bin")
	if err != nil {
		log.Fatal(err)
	}
	p, err := dhcpwire.Parse(b)
	if err != nil {
		log.Fatal(err)
	}
	// Parse accepts what is well-formed; Validate checks the options a
	// server acts on (lengths and values from their RFCs).
	if err := p.Validate(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("type:", dhcpwire.MessageName(p.MessageType()))
	fmt.Printf("xid: %#08x\n", p.XID)
	fmt.Println("ciaddr:", p.CIAddr)
	fmt.Println("chaddr:", net.HardwareAddr(p.CHAddr()))
	fmt.Println("options:", p.Codes())
	cid, _ := p.Option(dhcpwire.OptClientID)
	fmt.Printf("client-id: % x\n", cid)
	vc, _ := p.Option(dhcpwire.OptVendorClass)
	fmt.Printf("vendor class: %q\n", vc)
	fmt.Println("max message size:", p.MaxMessageSize())
	_, requested := p.AddrOption(dhcpwire.OptRequestedIP)
	fmt.Println("requested-ip present:", requested)
	// Output:
	// type: request
	// xid: 0xdaba6c6d
	// ciaddr: 10.77.0.100
	// chaddr: 02:00:00:00:01:01
	// options: [53 57 55 60 61]
	// client-id: 01 02 00 00 00 01 01
	// vendor class: "udhcp 1.35.0"
	// max message size: 576
	// requested-ip present: false
}

// A DISCOVER relayed by ISC dhcrelay -a (captured): giaddr and hops set by
// the relay, and the sub-options of the option 82 it added.
func ExamplePacket_RelaySubOption() {
	b, err := os.ReadFile("testdata/packets/dhcrelay_udhcpc_discover_opt82.bin")
	if err != nil {
		log.Fatal(err)
	}
	p, err := dhcpwire.Parse(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("type:", dhcpwire.MessageName(p.MessageType()))
	fmt.Println("giaddr:", p.GIAddr, "hops:", p.Hops)
	circuit, ok := p.RelaySubOption(dhcpwire.SubOptCircuitID)
	fmt.Printf("circuit-id: %q %v\n", circuit, ok)
	_, ok = p.RelaySubOption(dhcpwire.SubOptRemoteID)
	fmt.Println("remote-id present:", ok)
	// Output:
	// type: discover
	// giaddr: 10.78.0.1 hops: 1
	// circuit-id: "r1" true
	// remote-id present: false
}

// Building a reply: the header fields RFC 2131 table 3 copies from the
// request, then options written in exactly the order given (the slow path
// writes them in the fast path's order, docs/ARCHITECTURE.md invariant 3).
func ExampleAppendOption() {
	req, err := dhcpwire.Parse(mustRead("testdata/packets/udhcpc_request_renewing.bin"))
	if err != nil {
		log.Fatal(err)
	}
	h := dhcpwire.ReplyHeader(req)
	h.CIAddr, h.YIAddr = req.CIAddr, req.CIAddr
	b := dhcpwire.AppendHeader(nil, h)
	b = dhcpwire.AppendOption(b, dhcpwire.OptMessageType, []byte{dhcpwire.Ack})
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr("10.77.0.1"))
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, 3600)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRenewalTime, 1800)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRebindingTime, 3150)
	b = dhcpwire.AppendOption(b, dhcpwire.OptSubnetMask, []byte{255, 255, 255, 0})
	b = append(b, dhcpwire.OptEnd)

	ack, err := dhcpwire.Parse(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(b), "bytes:", dhcpwire.MessageName(ack.MessageType()), "to", net.HardwareAddr(ack.CHAddr()))
	fmt.Printf("op %d, xid %#08x, yiaddr %s\n", ack.Op, ack.XID, ack.YIAddr)
	fmt.Println("options:", ack.Codes())
	sid, _ := ack.AddrOption(dhcpwire.OptServerID)
	fmt.Println("server-id:", sid)
	// Output:
	// 274 bytes: ack to 02:00:00:00:01:01
	// op 2, xid 0xdaba6c6d, yiaddr 10.77.0.100
	// options: [53 54 51 58 59 1]
	// server-id: 10.77.0.1
}

// An option longer than 255 bytes is split into several instances (RFC
// 3396), which Parse joins again.
func ExampleOptionLen() {
	long := make([]byte, 300)
	b := dhcpwire.AppendOption(nil, dhcpwire.OptDomainName, long)
	fmt.Println(len(b), dhcpwire.OptionLen(len(long)))
	fmt.Println("instances:", b[0], b[1], "and", b[257], b[258])
	// Output:
	// 304 304
	// instances: 15 255 and 15 45
}

// Validate refuses a message that parses but breaks an option's format: a
// 3-byte requested address would turn a SELECTING request into an
// INIT-REBOOT one, so the whole message is dropped.
func ExamplePacket_Validate() {
	b := dhcpwire.AppendHeader(nil, dhcpwire.Header{Op: dhcpwire.BootRequest, HType: 1, HLen: 6, XID: 7})
	b = dhcpwire.AppendOption(b, dhcpwire.OptMessageType, []byte{dhcpwire.Request})
	b = dhcpwire.AppendOption(b, dhcpwire.OptRequestedIP, []byte{10, 77, 0})
	b = append(b, dhcpwire.OptEnd)
	p, err := dhcpwire.Parse(b)
	fmt.Println("parse:", err)
	fmt.Println("validate:", p.Validate())
	// Output:
	// parse: <nil>
	// validate: malformed message: option 50 of 3 bytes, want 4
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	return b
}
