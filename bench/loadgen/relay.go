package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

// Relay is the relay-mode transport: one UDP socket on giaddr:67, the
// way an access concentrator's relay agent talks to the server, moving
// messages with sendmmsg and recvmmsg.
type Relay struct {
	c      *net.UDPConn
	pc     *ipv4.PacketConn
	server *net.UDPAddr
	// ms and oob are Recv's, kept between calls (one goroutine reads).
	ms  []ipv4.Message
	oob []byte
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
	space := pktio.StampSpace()
	if len(r.ms) < len(msgs) {
		r.ms, r.oob = make([]ipv4.Message, len(msgs)), make([]byte, len(msgs)*space)
		for i := range r.ms {
			r.ms[i].Buffers = make([][]byte, 1)
		}
	}
	ms := r.ms[:len(msgs)]
	for i := range msgs {
		ms[i].Buffers[0] = msgs[i].Buf
		ms[i].OOB = r.oob[i*space : (i+1)*space]
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
		msgs[i].Arrived = pktio.ArrivalTime(ms[i].OOB[:ms[i].NN])
	}
	return n, nil
}

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

// Close implements Transport.
func (r *Relay) Close() error { return r.c.Close() }
