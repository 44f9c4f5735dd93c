package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Relay is the relay-mode transport: one UDP socket on giaddr:67, the
// way an access concentrator's relay agent talks to the server, moving
// messages with sendmmsg and recvmmsg.
type Relay struct {
	c      *net.UDPConn
	pc     *ipv4.PacketConn
	server *net.UDPAddr
}

// NewRelay opens the relay socket on giaddr:67 in the calling thread's
// network namespace; messages go to server:67.
func NewRelay(giaddr, server netip.Addr) (*Relay, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(giaddr, 67)))
	if err != nil {
		return nil, fmt.Errorf("relay socket on %v:67: %w", giaddr, err)
	}
	// Deep buffers: a burst of answers must not be lost in our own socket.
	c.SetReadBuffer(16 << 20)
	c.SetWriteBuffer(16 << 20)
	if err := setTimestamps(c); err != nil {
		c.Close()
		return nil, err
	}
	return &Relay{c: c, pc: ipv4.NewPacketConn(c), server: net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 67))}, nil
}

// Name implements Transport.
func (r *Relay) Name() string { return "relay" }

// Send implements Transport.
func (r *Relay) Send(pkts []Packet) (int, error) {
	ms := make([]ipv4.Message, len(pkts))
	for i, p := range pkts {
		ms[i] = ipv4.Message{Buffers: [][]byte{p.Payload}, Addr: r.server}
	}
	sent := 0
	for sent < len(ms) {
		n, err := r.pc.WriteBatch(ms[sent:], 0)
		sent += n
		if err != nil {
			return sent, fmt.Errorf("relay send: %w", err)
		}
	}
	return sent, nil
}

// Recv implements Transport.
func (r *Relay) Recv(msgs []Received, wait time.Duration) (int, error) {
	ms := make([]ipv4.Message, len(msgs))
	oob := make([]byte, len(msgs)*stampSpace)
	for i := range msgs {
		ms[i].Buffers = [][]byte{msgs[i].Buf}
		ms[i].OOB = oob[i*stampSpace : (i+1)*stampSpace]
	}
	r.c.SetReadDeadline(time.Now().Add(wait))
	n, err := r.pc.ReadBatch(ms, 0)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil
		}
		return 0, fmt.Errorf("relay receive: %w", err)
	}
	for i := range n {
		msgs[i].N = ms[i].N
		msgs[i].Arrived = kernelStamp(ms[i].OOB[:ms[i].NN])
	}
	return n, nil
}

// stampSpace is the control message room SO_TIMESTAMPNS needs: one
// struct timespec.
var stampSpace = unix.CmsgSpace(16)

// setTimestamps has the kernel stamp each datagram c receives.
func setTimestamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("relay socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return fmt.Errorf("relay socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("relay socket: SO_TIMESTAMPNS: %w", serr)
	}
	return nil
}

// kernelStamp is the SO_TIMESTAMPNS time in a datagram's control
// messages, zero when there is none.
func kernelStamp(oob []byte) time.Time {
	// x/sys reads a header before it checks the length.
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return time.Time{}
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			// struct timespec: 64-bit seconds, then nanoseconds.
			return time.Unix(int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:])))
		}
		oob = rest
	}
	return time.Time{}
}

// Close implements Transport.
func (r *Relay) Close() error { return r.c.Close() }
