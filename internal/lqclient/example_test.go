package lqclient_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
)

// A query by MAC address renders as a DHCPLEASEQUERY (RFC 4388 §6.1) with
// the address in chaddr, sent as a relay agent would, from giaddr.
func ExampleQuery_Message() {
	q := lqclient.Query{
		MAC:    net.HardwareAddr{2, 0, 0, 0, 1, 1},
		GIAddr: netip.MustParseAddr("10.77.0.2"),
		XID:    0x1234,
	}
	b, err := q.Message(false)
	if err != nil {
		log.Fatal(err)
	}
	p, err := dhcpwire.Parse(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dhcpwire.MessageName(p.MessageType()), len(b), "bytes")
	fmt.Printf("xid %#x, giaddr %s, chaddr %s (htype %d)\n", p.XID, p.GIAddr, net.HardwareAddr(p.CHAddr()), p.HType)

	// Bulk leasequery (RFC 6926) has no query by IP address.
	_, err = lqclient.Query{IP: netip.MustParseAddr("10.77.0.100")}.Message(true)
	fmt.Println(err)
	// Output:
	// leasequery 244 bytes
	// xid 0x1234, giaddr 10.77.0.2, chaddr 02:00:00:00:01:01 (htype 1)
	// bulk leasequery has no query by IP (RFC 6926)
}

// Decode reads a reply: here a DHCPLEASEACTIVE with the remaining lease
// time (51), the time since the last transaction (91) and the relay agent
// information stored with the lease (82).
func ExampleDecode() {
	b := dhcpwire.AppendHeader(nil, dhcpwire.Header{
		Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: 0x1234,
		CIAddr: netip.MustParseAddr("10.77.0.100"), CHAddr: [16]byte{2, 0, 0, 0, 1, 1},
	})
	b = dhcpwire.AppendOption(b, dhcpwire.OptMessageType, []byte{dhcpwire.LeaseActive})
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr("10.77.0.1"))
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, 3000)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptCLTT, 600)
	b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, dhcpwire.AppendOption(nil, dhcpwire.SubOptCircuitID, []byte("r1")))
	b = append(b, dhcpwire.OptEnd)

	r, err := lqclient.Decode(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r)
	fmt.Println("remaining:", *r.LeaseTime, "s")
	// Output:
	// LEASEACTIVE ip=10.77.0.100 hw=02:00:00:00:01:01 remaining=50m0s last-seen=10m0s ago relay-info=01027231 server=10.77.0.1
	// remaining: 3000 s
}

// Bulk asks over TCP and calls back for each reply up to
// DHCPLEASEQUERYDONE. The server here is a stand-in on loopback that
// answers every query with one binding; xdhcpd's leasequery.tcp-listen
// (or ISC dhcpd's) speaks the same framing (RFC 6926 §6.1).
func ExampleBulk() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- standIn(ln) }()
	defer func() {
		ln.Close()
		if err := <-served; err != nil {
			log.Fatal(err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := lqclient.Query{
		Server: ln.Addr().(*net.TCPAddr).AddrPort(),
		MAC:    net.HardwareAddr{2, 0, 0, 0, 1, 1},
		XID:    7,
	}
	err = lqclient.Bulk(ctx, q, func(r *lqclient.Reply) error {
		fmt.Println(r)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// LEASEACTIVE ip=10.77.0.100 hw=02:00:00:00:01:01 state=active
	// LEASEQUERYDONE hw=02:00:00:00:01:01 status=0 done
}

// standIn serves one bulk leasequery connection: one DHCPLEASEACTIVE for
// the chaddr asked about (option 156, dhcp-state active), then
// DHCPLEASEQUERYDONE with status Success (option 151).
func standIn(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("stand-in: accept: %w", err)
	}
	defer c.Close()
	m, err := lqclient.ReadFrame(c)
	if err != nil {
		return fmt.Errorf("stand-in: reading the query: %w", err)
	}
	q, err := dhcpwire.Parse(m)
	if err != nil {
		return fmt.Errorf("stand-in: the query: %w", err)
	}
	reply := func(typ uint8, ip netip.Addr, opts ...[]byte) []byte {
		h := dhcpwire.ReplyHeader(q)
		h.CIAddr = ip
		b := dhcpwire.AppendHeader(nil, h)
		b = dhcpwire.AppendOption(b, dhcpwire.OptMessageType, []byte{typ})
		for _, o := range opts {
			b = append(b, o...)
		}
		return append(b, dhcpwire.OptEnd)
	}
	active := reply(dhcpwire.LeaseActive, netip.MustParseAddr("10.77.0.100"),
		dhcpwire.AppendOption(nil, dhcpwire.OptDHCPState, []byte{2}))
	done := reply(dhcpwire.LeaseQueryDone, netip.Addr{},
		dhcpwire.AppendOption(nil, dhcpwire.OptStatusCode, append([]byte{0}, "done"...)))
	for _, b := range [][]byte{active, done} {
		if _, err := c.Write(lqclient.Frame(b)); err != nil {
			return fmt.Errorf("stand-in: writing a reply: %w", err)
		}
	}
	return nil
}
