package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"
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
	for i := range msgs {
		ms[i].Buffers = [][]byte{msgs[i].Buf}
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
	}
	return n, nil
}

// Close implements Transport.
func (r *Relay) Close() error { return r.c.Close() }
