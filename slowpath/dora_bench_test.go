package slowpath

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// doraMsg is a relayed request from client i, as xdhcp-bench's generator
// sends it: client-id, parameter list, option 82; a REQUEST names the
// offered address and the server.
func doraMsg(typ uint8, i int, ip, sid netip.Addr) []byte {
	return clientMsg(typ, i, netip.Addr{}, ip, sid)
}

// renewMsg is client i's relayed renewal of ciaddr (RENEWING: no
// requested address, no server id).
func renewMsg(i int, ciaddr netip.Addr) []byte {
	return clientMsg(dhcpwire.Request, i, ciaddr, netip.Addr{}, netip.Addr{})
}

func clientMsg(typ uint8, i int, ciaddr, ip, sid netip.Addr) []byte {
	h := dhcpwire.Header{Op: dhcpwire.BootRequest, HType: 1, HLen: 6, Hops: 1, XID: uint32(i), CIAddr: ciaddr, GIAddr: relayAddr}
	copy(h.CHAddr[:], []byte{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	b := dhcpwire.AppendHeader(nil, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	if typ == dhcpwire.Request && !ciaddr.IsValid() {
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptRequestedIP, ip)
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, sid)
	}
	b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, append([]byte{1}, h.CHAddr[:6]...))
	b = dhcpwire.AppendOption(b, dhcpwire.OptParamRequest, []byte{1, 3, 6, 51, 54, 58, 59})
	var ri []byte
	ri = binary.BigEndian.AppendUint32(append(ri, dhcpwire.SubOptCircuitID, 4), uint32(i))
	ri = append(append(ri, dhcpwire.SubOptRemoteID, 6), h.CHAddr[:6]...)
	b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, ri)
	return append(b, dhcpwire.OptEnd)
}

// benchServer is a server with one relayed /16 and store and sender
// stand-ins; now is its clock.
func benchServer(b *testing.B) (srv *Server, out *capture, now *time.Time) {
	st, out := &memStore{leases: map[netip.Addr]*lease.Lease{}}, &capture{}
	now = new(time.Unix(1_800_000_000, 0))
	relayed := &Subnet{
		Prefix: netip.MustParsePrefix("10.78.0.0/16"), LeaseTime: time.Hour,
		Options: []byte{1, 4, 255, 255, 0, 0, 3, 4, 10, 78, 0, 1, 6, 4, 10, 77, 0, 1},
		Pools:   [][2]netip.Addr{{netip.MustParseAddr("10.78.1.0"), netip.MustParseAddr("10.78.255.254")}},
	}
	srv, err := New(Config{
		Store: st, Sender: out, Now: func() time.Time { return *now },
		Settings: Settings{Authoritative: true, OfferHold: 10 * time.Second, DeclineHold: time.Hour},
		Subnets:  []*Subnet{relayed},
		Ifaces:   []Interface{{Index: 7, Name: "veth-srv", Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return srv, out, now
}

// benchDORA binds client i through srv with its DISCOVER, discover, and
// returns the address.
func benchDORA(b *testing.B, srv *Server, out *capture, discover []byte, i int) netip.Addr {
	src := netip.AddrPortFrom(relayAddr, 67)
	srv.Handle(Incoming{Data: discover, Src: src, Dst: srvAddr, IfIndex: 7})
	o := out.take()
	if len(o) != 1 || o[0].Type != dhcpwire.Offer {
		b.Fatalf("client %d: DISCOVER answered by %v", i, o)
	}
	yi := netip.AddrFrom4([4]byte(o[0].Payload[16:20]))
	srv.Handle(Incoming{Data: doraMsg(dhcpwire.Request, i, yi, srvAddr), Src: src, Dst: srvAddr, IfIndex: 7})
	if o := out.take(); len(o) != 1 || o[0].Type != dhcpwire.Ack {
		b.Fatalf("client %d: REQUEST answered by %v", i, o)
	}
	return yi
}

// BenchmarkDORA is one relayed DORA through Handle (store and sender
// stand-ins), the clients taking leases in turn and then coming back as
// new (as the bench's dora scenario does): what the slow path itself
// costs per lease, allocations included, without the sockets and bbolt.
func BenchmarkDORA(b *testing.B) {
	const clients = 10000
	srv, out, now := benchServer(b)
	discover := make([][]byte, clients)
	for i := range discover {
		discover[i] = doraMsg(dhcpwire.Discover, i, netip.Addr{}, netip.Addr{})
	}
	for i := range clients { // every client bound once, as in a sustained run
		benchDORA(b, srv, out, discover[i], i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		*now = now.Add(time.Millisecond)
		benchDORA(b, srv, out, discover[n%clients], n%clients)
	}
}

// BenchmarkRenewal is one relayed renewal (a REQUEST from a bound client,
// ciaddr set, no server id) through Handle, over 60,000 bound clients in a
// scattered order, as xdhcp-bench's overload step sends them: the lease
// table and the client index are larger than the caches, as in a server.
func BenchmarkRenewal(b *testing.B) {
	const clients = 60000
	srv, out, now := benchServer(b)
	src := netip.AddrPortFrom(relayAddr, 67)
	renew := make([][]byte, clients)
	for i := range clients {
		yi := benchDORA(b, srv, out, doraMsg(dhcpwire.Discover, i, netip.Addr{}, netip.Addr{}), i)
		renew[i] = renewMsg(i, yi)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		*now = now.Add(time.Microsecond)
		i := int(uint32(n) * 2654435761 % clients) // scattered, each client once per round
		srv.Handle(Incoming{Data: renew[i], Src: src, Dst: srvAddr, IfIndex: 7})
		if o := out.take(); len(o) != 1 || o[0].Type != dhcpwire.Ack {
			b.Fatalf("client %d: renewal answered by %v", i, o)
		}
	}
}
