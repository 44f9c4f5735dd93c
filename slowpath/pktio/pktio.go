// Package pktio moves DHCP datagrams between the kernel and the server:
// a UDP socket on port 67 for everything received and for replies to
// addresses the kernel can route, and an AF_PACKET socket for replies to
// clients that have no address yet (RFC 2131 §4.1), as ISC dhcpd and Kea do.
package pktio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/slowpath"
)

// timespecLen is a struct timespec's size (SO_TIMESTAMPNS).
const timespecLen = 16

// batch is how many datagrams one recvmmsg/sendmmsg moves.
const batch = 64

// Conn is the server's packet I/O.
type Conn struct {
	udp  *net.UDPConn
	pc   *ipv4.PacketConn
	raw  int // AF_PACKET SOCK_DGRAM, send only
	log  *slog.Logger
	mu   sync.Mutex // serialises writers on the batch buffers
	msgs []ipv4.Message
	// While Serve handles a batch of requests, replies (from it or from
	// commit callbacks) are held here and leave in one sendmmsg at the
	// end of the batch, instead of one system call each.
	collecting bool
	pending    []slowpath.Outgoing
	// A failing send fails for every reply (a full buffer under a flood,
	// a route gone): at most one warning a second, with the count held
	// back (ARCHITECTURE.md 7). Guarded by mu.
	warnedAt   time.Time
	suppressed int
}

// warnLocked logs a send failure, at most once a second.
func (c *Conn) warnLocked(now time.Time, msg string, args ...any) {
	if !c.warnedAt.IsZero() && now.Sub(c.warnedAt) < time.Second && now.Sub(c.warnedAt) >= 0 {
		c.suppressed++
		return
	}
	if c.suppressed > 0 {
		args = append(args, "suppressed", c.suppressed)
	}
	c.warnedAt, c.suppressed = now, 0
	c.log.Warn(msg, args...)
}

// Listen opens UDP port (67 in production) on all addresses and an
// AF_PACKET socket for link-layer sends.
func Listen(ctx context.Context, port int, log *slog.Logger) (*Conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			// The IP header is part of the contract with the fast path
			// (ARCHITECTURE.md invariant 3): DF and TTL as XDP writes
			// them, whatever net.ipv4.ip_no_pmtu_disc and ip_default_ttl
			// say. An unconnected socket's DF datagrams get IP ID 0.
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_WANT); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ReplyTTL); serr != nil {
				return
			}
			// The kernel's receive time of each datagram: how long a
			// request waited for the server (slowpath.Settings.MaxWait).
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
			if serr == nil {
				// Bursts of relayed traffic must not overflow a default-sized buffer.
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pconn, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listening on UDP port %d: %w", port, err)
	}
	udp := pconn.(*net.UDPConn)
	pc := ipv4.NewPacketConn(udp)
	if err := pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		udp.Close()
		return nil, fmt.Errorf("enabling IP_PKTINFO: %w", err)
	}
	raw, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("opening AF_PACKET socket: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{udp: udp, pc: pc, raw: raw, log: log, msgs: make([]ipv4.Message, batch)}
	for i := range c.msgs {
		c.msgs[i].Buffers = [][]byte{nil}
	}
	return c, nil
}

// Close closes both sockets; a blocked Serve returns.
func (c *Conn) Close() error {
	err := c.udp.Close()
	if e := unix.Close(c.raw); err == nil {
		err = e
	}
	return err
}

// Serve reads datagrams in batches and hands each to handle until ctx ends
// or the socket is closed. Ending ctx stops the reading only: replies to
// requests whose leases are still being committed can go out afterwards,
// until Close.
func (c *Conn) Serve(ctx context.Context, handle func(slowpath.Incoming)) error {
	stop := context.AfterFunc(ctx, func() { c.udp.SetReadDeadline(time.Now()) })
	defer stop()
	msgs := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch)
	for i := range msgs {
		bufs[i] = make([]byte, 4096)
		msgs[i].Buffers = [][]byte{bufs[i]}
		// Room for IP_PKTINFO and the receive timestamp.
		msgs[i].OOB = append(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface), make([]byte, unix.CmsgSpace(timespecLen))...)
	}
	var cm ipv4.ControlMessage
	for {
		for i := range msgs {
			msgs[i].OOB = msgs[i].OOB[:cap(msgs[i].OOB)]
		}
		n, err := c.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading DHCP datagrams: %w", err)
		}
		c.mu.Lock()
		c.collecting = true
		c.mu.Unlock()
		for i := range n {
			m := &msgs[i]
			in := slowpath.Incoming{Data: bufs[i][:m.N]}
			if ua, ok := m.Addr.(*net.UDPAddr); ok {
				in.Src = ua.AddrPort()
				in.Src = netip.AddrPortFrom(in.Src.Addr().Unmap(), in.Src.Port())
			}
			if err := cm.Parse(m.OOB[:m.NN]); err == nil {
				in.IfIndex = cm.IfIndex
				if a, ok := netip.AddrFromSlice(cm.Dst.To4()); ok {
					in.Dst = a
				}
			}
			in.Received = receivedAt(m.OOB[:m.NN])
			handle(in)
		}
		c.mu.Lock()
		c.collecting = false
		out := c.pending
		c.pending = nil
		if len(out) > 0 {
			c.sendLocked(out)
		}
		c.mu.Unlock()
	}
}

// receivedAt finds the SO_TIMESTAMPNS control message's time, zero when
// there is none.
func receivedAt(oob []byte) time.Time {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, c := range cms {
		// struct timespec: 64-bit seconds and nanoseconds on the 64-bit
		// architectures this runs on.
		if c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_TIMESTAMPNS && len(c.Data) >= timespecLen {
			return time.Unix(int64(binary.NativeEndian.Uint64(c.Data)), int64(binary.NativeEndian.Uint64(c.Data[8:])))
		}
	}
	return time.Time{}
}

// Send writes replies: routed ones through the UDP socket in one batch,
// link-layer ones through AF_PACKET. Errors are logged, not returned: a
// reply that cannot be sent is a lost datagram, which DHCP retries.
func (c *Conn) Send(out []slowpath.Outgoing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.collecting {
		c.pending = append(c.pending, out...)
		return
	}
	c.sendLocked(out)
}

func (c *Conn) sendLocked(out []slowpath.Outgoing) {
	n := 0
	flush := func() {
		for done := 0; done < n; {
			k, err := c.pc.WriteBatch(c.msgs[done:n], 0)
			if err != nil {
				c.warnLocked(time.Now(), "sending replies", "err", err, "dst", c.msgs[done].Addr)
				k = 1 // skip the one that failed
			}
			done += k
		}
		n = 0
	}
	for _, o := range out {
		if o.HWDst != nil {
			if err := c.sendLink(o); err != nil {
				c.warnLocked(time.Now(), "sending link-layer reply", "err", err, "ifindex", o.IfIndex, "dst", o.Dst)
			}
			continue
		}
		m := &c.msgs[n]
		m.Buffers[0] = o.Payload
		m.Addr = net.UDPAddrFromAddrPort(o.Dst)
		cm := ipv4.ControlMessage{IfIndex: o.IfIndex}
		if o.Src.IsValid() {
			cm.Src = o.Src.AsSlice()
		}
		// A unicast to a relay must be routed, not forced out of the
		// receiving interface.
		if o.Dst.Port() == 67 {
			cm.IfIndex = 0
		}
		m.OOB = cm.Marshal()
		n++
		if n == len(c.msgs) {
			flush()
		}
	}
	flush()
}

// sendLink builds IPv4+UDP around the payload and sends it to a link-layer
// address; the kernel adds the Ethernet header.
func (c *Conn) sendLink(o slowpath.Outgoing) error {
	pkt := BuildIPv4UDP(o.Src, o.Dst.Addr(), 67, o.Dst.Port(), o.Payload)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: o.IfIndex, Halen: uint8(len(o.HWDst))}
	copy(sa.Addr[:], o.HWDst)
	return unix.Sendto(c.raw, pkt, 0, sa)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ReplyTTL is the TTL of every reply, sent through either socket; the
// XDP program's REPLY_TTL is the same, so that both paths' headers match.
const ReplyTTL = 64

// BuildIPv4UDP wraps payload in IPv4 and UDP headers with full checksums.
func BuildIPv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return AppendIPv4UDP(nil, src, dst, sport, dport, payload)
}

// AppendIPv4UDP is BuildIPv4UDP writing onto b, so that a caller framing
// the packet (an Ethernet header first) needs no second buffer.
func AppendIPv4UDP(b []byte, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, 28)...)
	b = append(b, payload...)
	h := b[start:]
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)))
	h[6] = 0x40 // don't fragment
	h[8] = ReplyTTL
	h[9] = unix.IPPROTO_UDP
	s4, d4 := src.As4(), dst.As4()
	copy(h[12:16], s4[:])
	copy(h[16:20], d4[:])
	binary.BigEndian.PutUint16(h[10:], ^fold(sum(h[:20], 0)))
	u := h[20:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	ps := sum(s4[:], 0)
	ps = sum(d4[:], ps)
	ps += unix.IPPROTO_UDP + uint32(8+len(payload))
	cs := ^fold(sum(u, ps))
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return b
}

func sum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
