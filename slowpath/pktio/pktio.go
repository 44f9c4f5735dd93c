// Package pktio moves DHCP datagrams between the kernel and the server:
// two UDP sockets on port 67 for everything received, sorted by message
// type (Listen), the first of which also sends replies to addresses the
// kernel can route, and an AF_PACKET socket for replies to clients that
// have no address yet (RFC 2131 §4.1), as ISC dhcpd and Kea do.
package pktio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/slowpath"
)

// timespecLen is a struct timespec's size (SO_TIMESTAMPNS) on the
// 64-bit architectures this runs on: 64-bit seconds and nanoseconds.
const timespecLen = 16

// StampSpace is the control message room a datagram's SO_TIMESTAMPNS
// time takes.
func StampSpace() int { return unix.CmsgSpace(timespecLen) }

// KernelTime is the time in an SCM_TIMESTAMPNS control message's data (a
// struct timespec, wall clock), and false when data is too short for one.
func KernelTime(data []byte) (time.Time, bool) {
	if len(data) < timespecLen {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:]))), true
}

// ArrivalTime is the SO_TIMESTAMPNS time among a datagram's control
// messages, zero when there is none.
func ArrivalTime(oob []byte) time.Time {
	// x/sys reads a header before it checks the length.
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS {
			if t, ok := KernelTime(data); ok {
				return t
			}
		}
		oob = rest
	}
	return time.Time{}
}

// batch is how many datagrams one recvmmsg/sendmmsg moves.
const batch = 64

// Conn is the server's packet I/O.
type Conn struct {
	// udp is the priority socket, which also sends; bulk the other of
	// the pair (Listen).
	udp    *net.UDPConn
	pc     *ipv4.PacketConn
	bulk   *net.UDPConn
	bulkPC *ipv4.PacketConn
	raw    int // AF_PACKET SOCK_DGRAM, send only
	// settings and counts are bpf/steer.c's maps: the holdoffs the
	// server sets, and what they dropped and the retransmitted
	// DISCOVERs let first.
	settings, counts *ebpf.Map
	closeOnce        sync.Once

	log *slog.Logger
	// mu guards holds, pending, spare, sending and the warning state. It
	// is never held across a send: sendmmsg through a veth or a busy NIC
	// can take milliseconds for a commit's ACKs, and while the
	// lease store's callbacks sent under it, Serve waited up to 18 ms to
	// begin its next batch (an execution trace at 60,000 renewals/s)
	// while requests waited in the socket.
	mu sync.Mutex
	// msgs are the batch buffers of sendmmsg: the sender's alone, as are
	// slot, the reply each of msgs holds, and sentOut, the replies one
	// sendmmsg sent, for onSent.
	msgs    []ipv4.Message
	slot    []int
	sentOut []slowpath.Outgoing
	// onSent, when set, is told of replies once the kernel has them
	// (SetSent).
	onSent func(out []slowpath.Outgoing, sent time.Time)
	// While Serve handles a batch of requests, or the lease store runs a
	// transaction's callbacks (Hold), replies are held here and leave in
	// one sendmmsg when either ends, instead of one system call each.
	// Each end sends all that is held (or leaves it to a send in
	// progress): with the two overlapping all the time under load,
	// waiting for both to end could hold replies long.
	holds   int
	pending []slowpath.Outgoing
	// spare is the array of the last batch sent, for pending to reuse.
	spare []slowpath.Outgoing
	// sending is true while one goroutine sends what was pending
	// (flushLocked); another with replies to send leaves them pending
	// for it instead of waiting. Whenever replies are pending and none
	// is sending, a Hold is open, and its end sends them.
	sending bool
	// sent, when set (tests), is called after each of the sender's
	// rounds, without mu.
	sent func()
	// A failing send fails for every reply (a full buffer under a flood,
	// a route gone): at most one warning a second, with the count held
	// back (ARCHITECTURE.md 7). Guarded by mu.
	warnedAt   time.Time
	suppressed int

	// free holds reply buffers that were sent and may be lent again
	// (Payload), at most maxFreePayloads of them.
	freeMu sync.Mutex
	free   [][]byte
}

// payloadCap is the capacity of the reply buffers a Conn lends: a DHCP
// reply seldom needs more than 600 bytes; a larger one gets a buffer of
// its own.
const payloadCap = 1024

// maxFreePayloads bounds the buffers kept for reuse (4 MiB): more than
// the replies a busy server has waiting for their commits at once.
const maxFreePayloads = 4096

// The server builds its replies in buffers the Conn lends.
var _ slowpath.PayloadBuffers = (*Conn)(nil)

// Payload lends an empty reply buffer with room for n bytes
// (slowpath.PayloadBuffers). Send takes it back once the reply marked
// Reuse has left.
func (c *Conn) Payload(n int) []byte {
	if n > payloadCap {
		return make([]byte, 0, n)
	}
	c.freeMu.Lock()
	defer c.freeMu.Unlock()
	if k := len(c.free); k > 0 {
		b := c.free[k-1]
		c.free[k-1] = nil
		c.free = c.free[:k-1]
		return b
	}
	return make([]byte, 0, payloadCap)
}

// reclaim takes back the buffers of sent replies marked Reuse.
func (c *Conn) reclaim(out []slowpath.Outgoing) {
	c.freeMu.Lock()
	defer c.freeMu.Unlock()
	for _, o := range out {
		if o.Reuse && cap(o.Payload) == payloadCap && len(c.free) < maxFreePayloads {
			c.free = append(c.free, o.Payload[:0])
		}
	}
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

// Socket buffer sizes (the kernel doubles them). The priority socket's
// is large: bursts of relayed REQUESTs must not overflow it. The bulk
// socket's is smaller: a DHCPDISCOVER that waited long is answered after
// its client retransmitted (the server drops it: slowpath.Settings), and
// under a flood the kernel drops the excess here at no cost to the
// server.
const (
	priorityRcvbuf = 8 << 20
	bulkRcvbuf     = 1 << 20
	sndbuf         = 8 << 20
)

// Listen opens UDP port (67 in production) on all addresses as a pair of
// sockets in one SO_REUSEPORT group, and an AF_PACKET socket for
// link-layer sends. A BPF program (bpf/steer.c) sorts what arrives: the
// priority socket takes DHCPREQUEST, DHCPDECLINE, DHCPRELEASE and
// DHCPLEASEQUERY, the bulk socket DHCPDISCOVER, DHCPINFORM and anything
// else, and Serve reads the priority socket first. A flood of DISCOVERs
// then fills the bulk socket's buffer, not the queue the REQUESTs that
// finish a DORA or renew a lease wait in (issue 19). A unicast
// DISCOVER whose client retransmits (secs above 0) goes to the priority
// socket too, RetriesFirstPerSecond at most, so that a relayed client's
// retries are not lost with a flood's first tries in the bulk socket.
func Listen(ctx context.Context, port int, log *slog.Logger) (*Conn, error) {
	var objs bpf.SteerObjects
	if err := bpf.LoadSteerObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("loading the request steering program (bpf/steer.c): %w", err)
	}
	// The sockets hold their own references to the programs; the Conn
	// keeps the maps it writes and reads.
	settings, counts := objs.SteerSettings, objs.SteerCounts
	objs.SteerSettings, objs.SteerCounts = nil, nil
	defer objs.Close()
	ok := false
	defer func() {
		if !ok {
			settings.Close()
			counts.Close()
		}
	}()
	// The group's program and each socket's filter are attached before
	// bind, so that from its first datagram each socket holds only its
	// own class: a broadcast reaches every socket on the port, and a
	// filter attached later would let the other's copies in meanwhile.
	prio, err := listenUDP(ctx, port, priorityRcvbuf, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, objs.SteerReuseport.FD()); err != nil {
			return fmt.Errorf("attaching the reuseport program: %w", err)
		}
		return attachFilter(fd, objs.SteerKeepPriority)
	})
	if err != nil {
		return nil, err
	}
	// Port 0 (tests) picks a port: the bulk socket joins that one.
	port = prio.LocalAddr().(*net.UDPAddr).Port
	bulk, err := listenUDP(ctx, port, bulkRcvbuf, func(fd int) error { return attachFilter(fd, objs.SteerKeepBulk) })
	if err != nil {
		prio.Close()
		return nil, err
	}
	raw, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		prio.Close()
		bulk.Close()
		return nil, fmt.Errorf("opening AF_PACKET socket: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{udp: prio, pc: ipv4.NewPacketConn(prio), bulk: bulk, bulkPC: ipv4.NewPacketConn(bulk), raw: raw, log: log,
		msgs: make([]ipv4.Message, batch), slot: make([]int, batch), settings: settings, counts: counts}
	ok = true
	for _, pc := range []*ipv4.PacketConn{c.pc, c.bulkPC} {
		if err := pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
			c.Close()
			return nil, fmt.Errorf("enabling IP_PKTINFO: %w", err)
		}
	}
	for i := range c.msgs {
		c.msgs[i].Buffers = [][]byte{nil}
	}
	return c, nil
}

// attachFilter puts a socket filter program on fd.
func attachFilter(fd int, prog *ebpf.Program) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, prog.FD()); err != nil {
		return fmt.Errorf("attaching the socket filter %s: %w", prog, err)
	}
	return nil
}

// listenUDP binds one of the pair's sockets to 0.0.0.0:port, running
// steer on it before bind.
func listenUDP(ctx context.Context, port, rcvbuf int, steer func(fd int) error) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(ufd uintptr) {
			fd := int(ufd)
			for _, o := range []struct{ level, opt, v int }{
				{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
				{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
				{unix.SOL_SOCKET, unix.SO_BROADCAST, 1},
				// The IP header is part of the contract with the fast
				// path (ARCHITECTURE.md invariant 3): DF and TTL as XDP
				// writes them, whatever net.ipv4.ip_no_pmtu_disc and
				// ip_default_ttl say. An unconnected socket's DF
				// datagrams get IP ID 0.
				{unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_WANT},
				{unix.IPPROTO_IP, unix.IP_TTL, ReplyTTL},
				// The kernel's receive time of each datagram: how long
				// a request waited for the server
				// (slowpath.Settings.MaxWait).
				{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1},
			} {
				if serr = unix.SetsockoptInt(fd, o.level, o.opt, o.v); serr != nil {
					serr = fmt.Errorf("setsockopt(%d, %d): %w", o.level, o.opt, serr)
					return
				}
			}
			// Best effort: a smaller buffer still works.
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf)
			serr = steer(fd)
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
	return pconn.(*net.UDPConn), nil
}

// Close closes the sockets; a blocked Serve returns. Closing again does
// nothing: the AF_PACKET descriptor's number may be another file's by then.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() { err = c.close() })
	return err
}

func (c *Conn) close() error {
	err := c.udp.Close()
	if e := c.bulk.Close(); err == nil {
		err = e
	}
	if e := unix.Close(c.raw); err == nil {
		err = e
	}
	c.settings.Close()
	c.counts.Close()
	return err
}

// SetHoldoffs sets the kernel's holdoffs (bpf/steer.c), each on (Base >
// 0) or off. While discover is on, a DHCPDISCOVER from a client (by
// chaddr) whose last one reached the bulk socket less than its holdoff
// ago is dropped before it: discover.Base, doubled for each of the
// client's repeats up to discover.Doublings times; while request is on,
// the same for a DHCPREQUEST and the priority socket. A client moving on
// (its REQUEST after a DISCOVER, its DISCOVER after a REQUEST) is let
// off the other holdoff, once its own holdoff; a client with chaddr length 0
// (RFC 4390) is never held off. The server turns each on while it is
// behind with that class (slowpath.Settings.DiscoverHoldoff,
// RequestHoldoff).
func (c *Conn) SetHoldoffs(discover, request slowpath.Holdoff) error {
	set := bpf.SteerSettings{HoldoffNs: uint64(max(discover.Base, 0)), RequestHoldoffNs: uint64(max(request.Base, 0)),
		Doublings: discover.Doublings, RequestDoublings: request.Doublings}
	if err := c.settings.Put(uint32(0), set); err != nil {
		return fmt.Errorf("setting the kernel's holdoffs (DISCOVER %v, REQUEST %v): %w", discover, request, err)
	}
	return nil
}

// HeldDiscovers is how many DISCOVERs the DISCOVER holdoff has dropped.
func (c *Conn) HeldDiscovers() (uint64, error) {
	return c.count(bpf.SteerSteerCountSTEER_HELD_DISCOVER)
}

// HeldRequests is how many REQUESTs the REQUEST holdoff has dropped.
func (c *Conn) HeldRequests() (uint64, error) {
	return c.count(bpf.SteerSteerCountSTEER_HELD_REQUEST)
}

// RetriesAhead is how many retransmitted unicast DISCOVERs (secs above 0)
// the kernel put in the priority socket, ahead of the bulk socket's
// backlog (bpf/steer.c, RetriesFirstPerSecond).
func (c *Conn) RetriesAhead() (uint64, error) {
	return c.count(bpf.SteerSteerCountSTEER_RETRIES_AHEAD)
}

// RetriesOver is how many retransmitted unicast DISCOVERs went to the bulk
// socket as any other: that second's allowance was spent, or a copy of
// the same DISCOVER (client, xid, secs and relay) still had its note.
func (c *Conn) RetriesOver() (uint64, error) {
	return c.count(bpf.SteerSteerCountSTEER_RETRIES_OVER)
}

// RetriesFirstPerSecond is how many retransmitted unicast DISCOVERs a
// second the kernel puts in the priority socket at most.
const RetriesFirstPerSecond = int(bpf.SteerSteerLimitsSTEER_RETRIES_FIRST)

// count sums steer_counts' slot over the CPUs.
func (c *Conn) count(slot bpf.SteerSteerCount) (uint64, error) {
	var perCPU []uint64
	if err := c.counts.Lookup(uint32(slot), &perCPU); err != nil {
		return 0, fmt.Errorf("reading the steering program's count in steer_counts slot %d: %w", slot, err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// inbox is a batch of datagrams read from one socket, handed from its
// reader to Serve and back.
type inbox struct {
	msgs []ipv4.Message
	bufs [][]byte
	n    int
	r    *reader
	// full says more than half the socket's buffer was in use after the
	// read (only a reader that measures: slowpath.Incoming.QueueFull).
	full bool
}

// reader reads one socket into inboxes: two each, so that it reads the
// next batch while Serve handles the last.
type reader struct {
	pc *ipv4.PacketConn
	// priority says this is the priority socket's reader
	// (slowpath.Incoming.Priority).
	priority bool
	free     chan *inbox
	full     chan *inbox
	// fill, when set, is the socket's, to measure its buffer after each
	// full batch read (queueFill); size is that buffer's size, read once
	// (the server never changes it).
	fill syscall.RawConn
	size int
}

func newReader(pc *ipv4.PacketConn, fill syscall.RawConn) *reader {
	r := &reader{pc: pc, free: make(chan *inbox, 2), full: make(chan *inbox, 1), fill: fill}
	if fill != nil {
		fill.Control(func(fd uintptr) { r.size, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	}
	for range 2 {
		b := &inbox{msgs: make([]ipv4.Message, batch), bufs: make([][]byte, batch), r: r}
		for i := range b.msgs {
			b.bufs[i] = make([]byte, 4096)
			b.msgs[i].Buffers = [][]byte{b.bufs[i]}
			// Room for IP_PKTINFO and the receive timestamp.
			b.msgs[i].OOB = append(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface), make([]byte, StampSpace())...)
		}
		r.free <- b
	}
	return r
}

// run reads batches until ctx ends or the socket closes.
func (r *reader) run(ctx context.Context) error {
	for {
		var b *inbox
		select {
		case b = <-r.free:
		case <-ctx.Done():
			return nil
		}
		for i := range b.msgs {
			b.msgs[i].OOB = b.msgs[i].OOB[:cap(b.msgs[i].OOB)]
		}
		n, err := r.pc.ReadBatch(b.msgs, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading DHCP datagrams: %w", err)
		}
		b.n = n
		b.full = false
		// A short read ended on an empty queue: nothing to measure.
		if r.fill != nil && r.size > 0 && n == len(b.msgs) {
			used, ok := queueFill(r.fill)
			b.full = ok && used > r.size/2
		}
		select {
		case r.full <- b:
		case <-ctx.Done():
			return nil
		}
	}
}

// queueFill reads how much of a socket's receive buffer is in use, what
// the kernel compares with the buffer's size (SO_RCVBUF) before it drops
// a datagram for a full buffer. SO_MEMINFO's first value is that
// (SK_MEMINFO_RMEM_ALLOC): read into an int, the kernel copies that one
// alone. UDP gives back what read datagrams took in chunks, up to a
// quarter of the buffer, so the queue itself can be smaller than that.
func queueFill(rc syscall.RawConn) (used int, ok bool) {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		used, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MEMINFO)
	}); cerr != nil || err != nil {
		return 0, false
	}
	return used, true
}

// SetSent has Send report the replies it sent, each chunk when its
// system call has returned, to sent (slowpath.Metrics.ObserveSent, which
// measures each reply's time since its request arrived). Set it before
// the Conn sends; a reply that could not be sent is not reported.
func (c *Conn) SetSent(sent func(out []slowpath.Outgoing, at time.Time)) {
	c.onSent = sent
}

// Serve reads datagrams in batches from both sockets and hands each to
// handle until ctx ends or a socket is closed (Close). A batch from the
// priority socket goes before one from the bulk socket; while handle is
// busy, each reader holds at most one batch and the rest wait in the
// kernel. Before each batch it calls ready, when given, which may hold
// the reading back (slowpath.Server.Ready: while the lease store is
// behind, the backlog waits in the sockets). Ending ctx stops the reading
// only: replies to requests whose leases are still being committed can go
// out afterwards, until Close.
func (c *Conn) Serve(ctx context.Context, handle func(slowpath.Incoming), ready func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		c.udp.SetReadDeadline(time.Now())
		c.bulk.SetReadDeadline(time.Now())
	})
	defer stop()
	// The DISCOVER socket's buffer is measured after each full batch
	// read: more than half in use turns the holdoff on
	// (slowpath.Incoming.QueueFull).
	bulkRaw, err := c.bulk.SyscallConn()
	if err != nil {
		return fmt.Errorf("the DISCOVER socket: %w", err)
	}
	prio, bulk := newReader(c.pc, nil), newReader(c.bulkPC, bulkRaw)
	prio.priority = true
	var wg sync.WaitGroup
	// A reader that ends (an error, or its socket closed) ends Serve,
	// also while ready waits: its context ends with the reader.
	ended := make(chan error, 2)
	readyCtx, readersEnded := context.WithCancel(ctx)
	defer readersEnded()
	for _, r := range []*reader{prio, bulk} {
		wg.Go(func() {
			ended <- r.run(ctx)
			readersEnded()
		})
	}
	defer func() {
		// Ending ctx sets the read deadlines: the other reader returns.
		cancel()
		wg.Wait()
	}()
	for {
		var b *inbox
		select {
		case b = <-prio.full:
		default:
			select {
			case b = <-prio.full:
			case b = <-bulk.full:
			case err := <-ended:
				return err
			case <-ctx.Done():
				return nil
			}
		}
		if ready != nil {
			if err := ready(readyCtx); err != nil {
				b.r.free <- b
				select {
				case err := <-ended:
					return err
				default:
				}
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("waiting to read requests: %w", err)
			}
		}
		c.handleBatch(b, handle)
		b.r.free <- b
		// Under overload a batch is always waiting and this loop never
		// blocks, so it kept its P for Go's 10 ms time slice while the
		// lease store's goroutines, runnable, waited behind it: an
		// execution trace at 60,000 renewals/s showed commits and their
		// callbacks runnable for 9 to 13 ms, time every ACK they carry
		// waits. A request read a little later waits less than that.
		runtime.Gosched()
	}
}

// handleBatch hands a batch's datagrams to handle, holding the replies
// sent meanwhile for one sendmmsg at the end.
func (c *Conn) handleBatch(b *inbox, handle func(slowpath.Incoming)) {
	c.Hold(func() {
		for i := range b.n {
			m := &b.msgs[i]
			in := slowpath.Incoming{Data: b.bufs[i][:m.N], QueueFull: b.full, Priority: b.r.priority}
			if ua, ok := m.Addr.(*net.UDPAddr); ok {
				in.Src = ua.AddrPort()
				in.Src = netip.AddrPortFrom(in.Src.Addr().Unmap(), in.Src.Port())
			}
			readControl(m.OOB[:m.NN], &in)
			handle(in)
		}
	})
}

// Hold runs fn holding the replies sent meanwhile, from any goroutine, and
// sends them in one sendmmsg (as few as it takes) when fn returns: the
// lease store runs each transaction's callbacks, which send its ACKs,
// within it (store.Options.Callbacks). When another goroutine is sending
// at that moment, Hold leaves them to it and returns at once; that sender
// sends them next, or leaves them to the end of a Hold still open.
func (c *Conn) Hold(fn func()) {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.holds--
		if c.sending || len(c.pending) == 0 {
			c.mu.Unlock()
			return
		}
		c.flushLocked()
	}()
	fn()
}

// readControl fills in from a datagram's control messages: IP_PKTINFO's
// interface and header destination address, and SO_TIMESTAMPNS's time
// (zero when there is none). It reads them in place: it runs for every
// datagram, and ipv4.ControlMessage.Parse allocated three times for each.
func readControl(oob []byte, in *slowpath.Incoming) {
	// x/sys reads a header before it checks the length.
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return
		}
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex (int), spec_dst, then addr,
			// the destination in the datagram's header.
			in.IfIndex = int(int32(binary.NativeEndian.Uint32(data)))
			in.Dst = netip.AddrFrom4([4]byte(data[8:12]))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS:
			if t, ok := KernelTime(data); ok {
				in.Received = t
			}
		}
		oob = rest
	}
}

// Send writes replies: routed ones through the UDP socket in one batch,
// link-layer ones through AF_PACKET; within a Hold, when it ends, and
// while another goroutine sends, by that goroutine (so Send may return
// before they left). Errors are logged, not returned: a reply that cannot
// be sent is a lost datagram, which DHCP retries.
func (c *Conn) Send(out []slowpath.Outgoing) {
	c.mu.Lock()
	c.pending = append(c.pending, out...)
	if c.holds > 0 || c.sending {
		c.mu.Unlock()
		return
	}
	c.flushLocked()
}

// flushLocked sends what is pending, outside mu, as the one sender. It is
// called with mu held and no other sender, and returns with mu released.
// It goes on while replies come in meanwhile, unless a Hold is open: its
// end sends them, and a Serve that waits to read while this sends a
// stream of callbacks' ACKs would let requests queue in the socket.
func (c *Conn) flushLocked() {
	c.sending = true
	for len(c.pending) > 0 {
		out := c.pending
		c.pending, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		c.send(out)
		if c.sent != nil {
			c.sent()
		}
		clear(out) // the payloads are the callers' (or lent again) now
		c.mu.Lock()
		if c.spare == nil {
			c.spare = out[:0]
		}
		if c.holds > 0 {
			break
		}
	}
	c.sending = false
	c.mu.Unlock()
}

// warn is warnLocked for the sender, which does not hold mu.
func (c *Conn) warn(msg string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warnLocked(time.Now(), msg, args...)
}

// send writes replies; only the sender (flushLocked) calls it: it uses
// the batch buffers.
func (c *Conn) send(out []slowpath.Outgoing) {
	n := 0
	flush := func() {
		for done := 0; done < n; {
			k, err := c.pc.WriteBatch(c.msgs[done:n], 0)
			if err != nil {
				c.warn("sending replies", "err", err, "dst", c.msgs[done].Addr)
				done++ // skip the one that failed
				continue
			}
			c.reportSent(out, c.slot[done:done+k])
			done += k
		}
		n = 0
	}
	for i, o := range out {
		if o.HWDst != nil {
			if err := c.sendLink(o); err != nil {
				c.warn("sending link-layer reply", "err", err, "ifindex", o.IfIndex, "dst", o.Dst)
			} else {
				c.reportSent(out, []int{i})
			}
			continue
		}
		m := &c.msgs[n]
		m.Buffers[0] = o.Payload
		// Each slot keeps its address: a reply is sent for nearly every
		// datagram read.
		ua, _ := m.Addr.(*net.UDPAddr)
		if ua == nil {
			ua = &net.UDPAddr{IP: make(net.IP, 4)}
			m.Addr = ua
		}
		dst := o.Dst.Addr().Unmap()
		if !dst.Is4() {
			c.warn("sending reply", "err", "not an IPv4 destination", "dst", o.Dst)
			continue
		}
		d4 := dst.As4()
		ua.IP = append(ua.IP[:0], d4[:]...)
		ua.Port = int(o.Dst.Port())
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
		c.slot[n] = i
		n++
		if n == len(c.msgs) {
			flush()
		}
	}
	flush()
	c.reclaim(out)
}

// reportSent tells onSent of the replies out[i] for i in sent, which the
// kernel has taken just now.
func (c *Conn) reportSent(out []slowpath.Outgoing, sent []int) {
	if c.onSent == nil || len(sent) == 0 {
		return
	}
	c.sentOut = c.sentOut[:0]
	for _, i := range sent {
		c.sentOut = append(c.sentOut, out[i])
	}
	c.onSent(c.sentOut, time.Now())
	clear(c.sentOut) // the payloads are not the Conn's to keep
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
