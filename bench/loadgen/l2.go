package loadgen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// L2 is the layer 2 transport: raw frames on an interface, as a BNG's
// access side sees its subscribers. Each client sends from its own MAC
// (with its VLAN tags): DISCOVER and SELECTING REQUEST broadcast from
// 0.0.0.0, renewals and releases unicast from its address to the server.
// It answers ARP for the addresses its clients hold, since a server
// unicasts replies to them.
type L2 struct {
	fd     int
	server netip.Addr

	mu        sync.Mutex
	serverMAC net.HardwareAddr // learned from the first reply; broadcast until then
	owner     func(netip.Addr) (Identity, bool)

	frames [][]byte // receive buffers, used by Recv only
	oob    [][]byte // and their control messages' (SO_TIMESTAMPNS)
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// NewL2 opens a packet socket on ifname in the calling thread's network
// namespace, in promiscuous mode (replies go to the clients' MACs).
func NewL2(ifname string, server netip.Addr) (*L2, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("layer 2 transport: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	fail := func(what string, err error) (*L2, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s: %s: %w", ifname, what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("ignore outgoing", err)
	}
	mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
		return fail("promiscuous", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("receive timeout", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	t := &L2{fd: fd, server: server, frames: make([][]byte, 64), oob: make([][]byte, 64)}
	for i := range t.frames {
		t.frames[i] = make([]byte, 2048)
		t.oob[i] = make([]byte, pktio.StampSpace())
	}
	return t, nil
}

// Name implements Transport.
func (t *L2) Name() string { return "l2" }

func (t *L2) setOwner(f func(netip.Addr) (Identity, bool)) {
	t.mu.Lock()
	t.owner = f
	t.mu.Unlock()
}

// SetServerMAC sets where unicast frames go, for a server that never
// answers from its own address (the selftest's reflector).
func (t *L2) SetServerMAC(mac net.HardwareAddr) {
	t.mu.Lock()
	t.serverMAC = append(net.HardwareAddr{}, mac...)
	t.mu.Unlock()
}

// Frame renders p as the Ethernet frame the client sends; serverMAC is
// the destination of unicast frames.
func Frame(p Packet, server netip.Addr, serverMAC net.HardwareAddr) []byte {
	dst, src, to := broadcastMAC, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})
	if p.CIAddr.IsValid() {
		dst, src, to = serverMAC, p.CIAddr, server
	}
	b := AppendEthernet(make([]byte, 0, 50+len(p.Payload)), dst, p.Client.MAC, p.Client.VLANs, etherIPv4)
	return pktio.AppendIPv4UDP(b, src, to, 68, 67, p.Payload)
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// SendFrames sends each of frames as one datagram on fd (a packet socket
// bound to its interface), with as few sendmmsg calls as it takes, and
// returns how many left.
func SendFrames(fd int, frames [][]byte) (int, error) {
	sent := 0
	for sent < len(frames) {
		_, n, err := mmsg(fd, unix.SYS_SENDMMSG, frames[sent:], nil, 0)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// mmsg moves a batch with sendmmsg or recvmmsg (flags MSG_WAITFORONE:
// block for the first only); oob, when not nil, holds each datagram's
// room for control messages (len(bufs) of them), and a header's
// Controllen says what a receive filled.
func mmsg(fd int, trap uintptr, bufs, oob [][]byte, flags int) ([]mmsghdr, int, error) {
	iov := make([]unix.Iovec, len(bufs))
	hs := make([]mmsghdr, len(bufs))
	for i, b := range bufs {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
		hs[i].hdr.Iov = &iov[i]
		hs[i].hdr.Iovlen = 1
		if oob != nil {
			hs[i].hdr.Control = &oob[i][0]
			hs[i].hdr.SetControllen(len(oob[i]))
		}
	}
	n, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), uintptr(flags), 0, 0)
	runtime.KeepAlive(iov)
	runtime.KeepAlive(bufs)
	runtime.KeepAlive(oob)
	if errno != 0 {
		return hs, 0, errno
	}
	return hs, int(n), nil
}

// Send implements Transport.
func (t *L2) Send(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.mu.Lock()
	smac := t.serverMAC
	t.mu.Unlock()
	if smac == nil {
		smac = broadcastMAC
	}
	frames := make([][]byte, len(pkts))
	for i, p := range pkts {
		frames[i] = Frame(p, t.server, smac)
	}
	sent, err := SendFrames(t.fd, frames)
	if err != nil {
		return sent, fmt.Errorf("layer 2 send: %w", err)
	}
	return sent, nil
}

// Recv implements Transport. The wait is the socket's receive timeout.
func (t *L2) Recv(msgs []Received, _ time.Duration) (int, error) {
	bufs := t.frames[:min(len(msgs), len(t.frames))]
	hs, n, err := mmsg(t.fd, unix.SYS_RECVMMSG, bufs, t.oob[:len(bufs)], unix.MSG_WAITFORONE)
	if err != nil {
		if err == unix.EAGAIN || err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("layer 2 receive: %w", err)
	}
	k := 0
	for i := range n {
		f := bufs[i][:hs[i].n]
		etype, vlans, l3, ok := stripEthernet(f)
		switch {
		case !ok:
		case etype == etherARP:
			t.answerARP(f[6:12], vlans, l3)
		case etype == etherIPv4:
			src, dst, payload, ok := udpPayload(l3)
			if !ok || src.Port() != 67 || dst.Port() != 68 {
				continue
			}
			t.mu.Lock()
			if t.serverMAC == nil && src.Addr() == t.server {
				t.serverMAC = append(net.HardwareAddr{}, f[6:12]...)
			}
			t.mu.Unlock()
			msgs[k].N = copy(msgs[k].Buf, payload)
			msgs[k].Arrived = pktio.ArrivalTime(t.oob[i][:hs[i].hdr.Controllen])
			k++
		}
	}
	return k, nil
}

// answerARP replies to a request for an address one of our clients holds.
func (t *L2) answerARP(from net.HardwareAddr, vlans []uint16, a []byte) {
	// Ethernet/IPv4 ARP request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
	if len(a) < 28 || binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != etherIPv4 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:]) != 1 {
		return
	}
	target := netip.AddrFrom4([4]byte(a[24:28]))
	t.mu.Lock()
	owner := t.owner
	t.mu.Unlock()
	if owner == nil {
		return
	}
	id, ok := owner(target)
	if !ok {
		return
	}
	b := AppendEthernet(make([]byte, 0, 64), from, id.MAC, vlans, etherARP)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 2)
	b = append(append(b, id.MAC...), a[24:28]...)  // sender: the client
	b = append(append(b, a[8:14]...), a[14:18]...) // target: who asked
	unix.Write(t.fd, b)
}

// Close implements Transport.
func (t *L2) Close() error { return unix.Close(t.fd) }
