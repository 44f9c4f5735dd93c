package fastpath_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/loader"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// XDP verdicts, as BPF_PROG_TEST_RUN returns them.
const (
	xdpDrop = uint32(bpf.XdpXdpActionXDP_DROP)
	xdpPass = uint32(bpf.XdpXdpActionXDP_PASS)
	xdpTx   = uint32(bpf.XdpXdpActionXDP_TX)
)

// rig is the XDP program loaded without pinning, with its maps.
type rig struct {
	objs *bpf.XdpObjects
	maps *fastpath.Maps
}

// loIndex is the loopback interface: BPF_PROG_TEST_RUN wants a real
// ingress device.
const loIndex = 1

var (
	serverMAC = net.HardwareAddr{0x02, 0x53, 0, 0, 0, 1}
	ifaceMAC  = net.HardwareAddr{0x02, 0x53, 0, 0, 0, 2}
	relayMAC  = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 1}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	serverID  = netip.MustParseAddr("10.77.0.1")
	clientIP  = netip.MustParseAddr("10.77.0.123")
	relayIP   = netip.MustParseAddr("10.78.0.1")
	relayedIP = netip.MustParseAddr("10.78.1.7")
	clientID  = []byte{1, 2, 0, 0, 0, 0, 0x11}
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP programs needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
}

func loadRig(t testing.TB) *rig {
	t.Helper()
	needRoot(t)
	objs, err := loader.LoadUnpinned(1024)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{objs: objs}
	t.Cleanup(func() { r.objs.Close() })
	if r.maps, err = fastpath.New(&r.objs.XdpMaps); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.maps.Close() })
	if err := r.maps.SetSettings(fastpath.Settings{Answer: true, MinGrant: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := r.maps.SetInterface(loIndex, ifaceMAC); err != nil {
		t.Fatal(err)
	}
	return r
}

// template is a subnet option block as the slow path renders it.
func template() []byte {
	var b []byte
	b = dhcpwire.AppendOption(b, dhcpwire.OptSubnetMask, []byte{255, 255, 255, 0})
	b = dhcpwire.AppendOption(b, dhcpwire.OptRouters, []byte{10, 77, 0, 1})
	b = dhcpwire.AppendOption(b, dhcpwire.OptDNS, []byte{10, 77, 0, 53})
	b = dhcpwire.AppendOption(b, dhcpwire.OptDomainName, []byte("example.net"))
	return b
}

// directLease is an hour-long lease for clientMAC on loopback.
func directLease() fastpath.Lease {
	now := time.Now()
	return fastpath.Lease{
		IP: clientIP, Expiry: now.Add(30 * time.Minute), Horizon: now.Add(4 * time.Hour),
		HWType: 1, HWAddr: clientMAC, ClientID: clientID, ServerID: serverID, IfIndex: loIndex,
		LeaseTime: 3600, T1: 1800, T2: 3150, Serve: true, Template: template(),
	}
}

// relayedLease is granted through relayIP, which added relayInfo.
func relayedLease() fastpath.Lease {
	l := directLease()
	l.IP, l.GIAddr, l.IfIndex, l.RelayInfo = relayedIP, relayIP, 0, relayInfo
	return l
}

func (r *rig) publish(t testing.TB, ls ...fastpath.Lease) {
	t.Helper()
	if err := r.maps.Publish(ls); err != nil {
		t.Fatal(err)
	}
}

// request is a DHCPREQUEST in RENEWING state (or REBINDING when sent to
// broadcast), built with insomniacslk/dhcp.
func request(t testing.TB, ciaddr netip.Addr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(clientMAC),
		dhcpv4.WithClientIP(net.IP(ciaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(clientID)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.TransactionID = dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}
	return m
}

// frameOpts says how a request travels.
type frameOpts struct {
	ethSrc, ethDst net.HardwareAddr
	vlans          []uint16 // outer first; the outer tag is 802.1ad when two
	src, dst       netip.Addr
	sport          uint16
}

func direct(ci netip.Addr) frameOpts {
	return frameOpts{ethSrc: clientMAC, ethDst: serverMAC, src: ci, dst: serverID, sport: 68}
}

func broadcast(ci netip.Addr) frameOpts {
	return frameOpts{ethSrc: clientMAC, ethDst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src: ci, dst: netip.MustParseAddr("255.255.255.255"), sport: 68}
}

func relayed() frameOpts {
	return frameOpts{ethSrc: relayMAC, ethDst: serverMAC, src: relayIP, dst: serverID, sport: 67}
}

func frame(o frameOpts, payload []byte) []byte {
	b := append([]byte{}, o.ethDst...)
	b = append(b, o.ethSrc...)
	for i, v := range o.vlans {
		tpid := uint16(0x8100)
		if i == 0 && len(o.vlans) == 2 {
			tpid = 0x88a8
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	return append(b, pktio.BuildIPv4UDP(o.src, o.dst, o.sport, 67, payload)...)
}

// run runs the program once on pkt arriving on ifindex and returns the
// verdict and the frame as the program left it.
func (r *rig) run(t testing.TB, pkt []byte, ifindex uint32) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{
		Data: pkt, DataOut: make([]byte, len(pkt)+2048),
		Context: bpf.XdpXdpMd{DataEnd: uint32(len(pkt)), IngressIfindex: ifindex},
	}
	ret, err := r.objs.XdpDhcp.Run(opts)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

func (r *rig) counters(t testing.TB) map[string]uint64 {
	t.Helper()
	c, err := r.maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reply is a parsed XDP answer.
type reply struct {
	ethDst, ethSrc net.HardwareAddr
	vlans          []uint16
	ip             []byte // IPv4 header
	src, dst       netip.Addr
	sport, dport   uint16
	dhcp           []byte
	msg            *dhcpv4.DHCPv4
	codes          []uint8 // option codes in order, END included
}

// parseReply checks framing and both checksums, and decodes the message.
func parseReply(t testing.TB, b []byte) reply {
	t.Helper()
	var r reply
	r.ethDst, r.ethSrc = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	p := 12
	for {
		et := binary.BigEndian.Uint16(b[p:])
		if et == 0x8100 || et == 0x88a8 {
			r.vlans = append(r.vlans, binary.BigEndian.Uint16(b[p+2:])&0xfff)
			p += 4
			continue
		}
		if et != 0x0800 {
			t.Fatalf("reply ethertype %#x", et)
		}
		p += 2
		break
	}
	ip := b[p:]
	if ip[0] != 0x45 || ip[9] != 17 {
		t.Fatalf("reply IP header % x", ip[:20])
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot != len(ip) {
		t.Fatalf("IP total length %d, frame carries %d", tot, len(ip))
	}
	if s := csum(ip[:20], 0); s != 0xffff {
		t.Fatalf("IP header checksum wrong (sum %#x)", s)
	}
	r.ip = ip[:20]
	r.src, r.dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	u := ip[20:tot]
	r.sport, r.dport = binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:])
	if int(binary.BigEndian.Uint16(u[4:])) != len(u) {
		t.Fatalf("UDP length %d, datagram %d", binary.BigEndian.Uint16(u[4:]), len(u))
	}
	ps := csum(ip[12:20], 0) + 17 + uint32(len(u))
	if s := csum(u, ps); s != 0xffff {
		t.Fatalf("UDP checksum wrong (sum %#x)", s)
	}
	r.dhcp = u[8:]
	m, err := dhcpv4.FromBytes(r.dhcp)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	r.msg = m
	r.codes = optionCodes(t, r.dhcp)
	return r
}

// optionCodes lists the options in wire order, up to and including END.
func optionCodes(t testing.TB, d []byte) []uint8 {
	var codes []uint8
	for i := 240; i < len(d); {
		c := d[i]
		if c == 0 {
			i++
			continue
		}
		codes = append(codes, c)
		if c == 255 {
			// Padding up to the BOOTP minimum is zeros, as the slow path writes it.
			if j := bytes.IndexFunc(d[i+1:], func(r rune) bool { return r != 0 }); j >= 0 {
				t.Fatalf("non-zero byte after END at %d: % x", i+1+j, d[i+1:])
			}
			return codes
		}
		i += 2 + int(d[i+1])
	}
	t.Fatalf("no END in % x", d)
	return nil
}

// rawOption returns the bytes of the first instance of code.
func rawOption(d []byte, code uint8) []byte {
	for i := 240; i+1 < len(d); {
		c := d[i]
		if c == 0 {
			i++
			continue
		}
		if c == 255 {
			return nil
		}
		n := int(d[i+1])
		if c == code {
			return d[i+2 : i+2+n]
		}
		i += 2 + n
	}
	return nil
}

func csum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
