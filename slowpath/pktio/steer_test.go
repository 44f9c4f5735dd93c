package pktio

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath"
)

// steerCases are datagrams and the socket of the pair each belongs to.
func steerCases(t *testing.T) []struct {
	name     string
	data     []byte
	priority bool
} {
	t.Helper()
	msg := func(mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) []byte {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(mt)}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m.ToBytes()
	}
	// A relay's option 82 and pads ahead of option 53: the program reads
	// past them.
	late := msg(dhcpv4.MessageTypeRequest)
	opts := late[240:]
	late = append(append(bytes.Clone(late[:240]), 0, 0, 82, 4, 1, 2, 'a', 'b'), opts...)
	lateDiscover := msg(dhcpv4.MessageTypeDiscover)
	lateDiscover = append(append(bytes.Clone(lateDiscover[:240]), 12, 3, 'a', 'b', 'c'), lateDiscover[240:]...)
	reply := msg(dhcpv4.MessageTypeRequest)
	reply[0] = 2 // BOOTREPLY
	noCookie := msg(dhcpv4.MessageTypeRequest)
	noCookie[236] = 0
	truncated := msg(dhcpv4.MessageTypeRequest)[:241]
	return []struct {
		name     string
		data     []byte
		priority bool
	}{
		{"request", msg(dhcpv4.MessageTypeRequest), true},
		{"decline", msg(dhcpv4.MessageTypeDecline), true},
		{"release", msg(dhcpv4.MessageTypeRelease), true},
		{"leasequery", msg(dhcpv4.MessageType(10)), true},
		{"request after option 82 and pads", late, true},
		{"discover", msg(dhcpv4.MessageTypeDiscover), false},
		{"discover after another option", lateDiscover, false},
		{"inform", msg(dhcpv4.MessageTypeInform), false},
		{"bootp, no message type", msg(0)[:240], false},
		{"bootreply", reply, false},
		{"no magic cookie", noCookie, false},
		{"truncated in the options", truncated, false},
		{"not DHCP", []byte("hello"), false},
	}
}

// readAll reads what the socket holds, waiting at most wait for the first
// datagram and a little for the rest.
func readAll(t *testing.T, c *net.UDPConn, wait time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			t.Fatal(err)
		}
		got = append(got, bytes.Clone(buf[:n]))
		wait = 50 * time.Millisecond
	}
}

func listenForTest(t *testing.T) *Conn {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: Listen loads BPF programs and opens an AF_PACKET socket")
	}
	c, err := Listen(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// listenAndDial opens a Conn on a free port and a socket sending to it.
func listenAndDial(t *testing.T) (*Conn, *net.UDPConn) {
	t.Helper()
	c := listenForTest(t)
	port := c.udp.LocalAddr().(*net.UDPAddr).Port
	src, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return c, src
}

// TestSteering: each datagram sent to the port, unicast or broadcast,
// arrives once, on the socket of its class.
func TestSteering(t *testing.T) {
	c := listenForTest(t)
	port := c.udp.LocalAddr().(*net.UDPAddr).Port
	src := broadcastSender(t)
	for _, dst := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 255, 255, 255)} {
		for _, tc := range steerCases(t) {
			t.Run(dst.String()+"/"+tc.name, func(t *testing.T) {
				if _, err := src.WriteToUDP(tc.data, &net.UDPAddr{IP: dst, Port: port}); err != nil {
					t.Fatal(err)
				}
				want, other := c.bulk, c.udp
				if tc.priority {
					want, other = c.udp, c.bulk
				}
				if got := readAll(t, want, time.Second); len(got) != 1 || !bytes.Equal(got[0], tc.data) {
					t.Errorf("its socket read %d datagrams, want it once", len(got))
				}
				if got := readAll(t, other, 50*time.Millisecond); len(got) != 0 {
					t.Errorf("the other socket read %d datagrams, want none", len(got))
				}
			})
		}
	}
}

// TestRequestsBeforeDiscovers: with a backlog of DISCOVERs waiting, a
// REQUEST sent after them is handled in the first batches, not after them.
func TestRequestsBeforeDiscovers(t *testing.T) {
	c, src := listenAndDial(t)
	discover, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	request, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(discover.ClientHWAddr))
	if err != nil {
		t.Fatal(err)
	}
	const discovers = 1000
	for range discovers {
		if _, err := src.Write(discover.ToBytes()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Write(request.ToBytes()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []dhcpv4.MessageType
	all := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- c.Serve(ctx, func(in slowpath.Incoming) {
			m, err := dhcpv4.FromBytes(in.Data)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(order) == 0 {
				// Both readers have read by the time the first
				// batch is handled, however slowly goroutines are
				// scheduled on a loaded machine.
				time.Sleep(200 * time.Millisecond)
			}
			order = append(order, m.MessageType())
			if len(order) == discovers+1 {
				close(all)
			}
		}, nil)
	}()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatalf("handled %d of %d datagrams", len(order), discovers+1)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// The readers start together: the bulk reader's first batch may be
	// handled before the priority reader's, not more than that.
	for i, mt := range order {
		if mt == dhcpv4.MessageTypeRequest {
			if i > batch {
				t.Fatalf("the REQUEST was handled %dth, after %d DISCOVERs; want it right after the first batch at the latest", i+1, i)
			}
			return
		}
	}
	t.Fatal("the REQUEST was not handled")
}

// broadcastSender is a socket on 127.0.0.1 that may send to
// 127.255.255.255, closed when the test ends.
func broadcastSender(t *testing.T) *net.UDPConn {
	t.Helper()
	src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	raw, err := src.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := setBroadcast(raw); err != nil {
		t.Fatal(err)
	}
	return src
}

func setBroadcast(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	return serr
}

// holdoffRig is a Conn on a free port with a socket sending to it, and
// helpers to send DHCP messages by client, count what each socket of the
// pair got, and read the holdoffs' counts.
type holdoffRig struct {
	t   *testing.T
	c   *Conn
	src *net.UDPConn
}

func newHoldoffRig(t *testing.T) holdoffRig {
	c, src := listenAndDial(t)
	return holdoffRig{t, c, src}
}

// msg is a message of type mt from the client with chaddr 02:00:00:00:00:hw.
func (r holdoffRig) msg(mt dhcpv4.MessageType, hw byte) []byte {
	m, err := dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, hw}))
	if err != nil {
		r.t.Fatal(err)
	}
	return m.ToBytes()
}

func (r holdoffRig) send(ds ...[]byte) {
	r.t.Helper()
	for _, d := range ds {
		if _, err := r.src.Write(d); err != nil {
			r.t.Fatal(err)
		}
	}
}

// got is what each socket holds, read empty.
func (r holdoffRig) got() (prio, bulk int) {
	r.t.Helper()
	return len(readAll(r.t, r.c.udp, 200*time.Millisecond)), len(readAll(r.t, r.c.bulk, 200*time.Millisecond))
}

func (r holdoffRig) held() (discovers, requests uint64) {
	r.t.Helper()
	d, err := r.c.HeldDiscovers()
	if err != nil {
		r.t.Fatal(err)
	}
	q, err := r.c.HeldRequests()
	if err != nil {
		r.t.Fatal(err)
	}
	return d, q
}

// set sets the holdoffs, without doublings.
func (r holdoffRig) set(discover, request time.Duration) {
	r.t.Helper()
	r.setHoldoffs(slowpath.Holdoff{Base: discover}, slowpath.Holdoff{Base: request})
}

func (r holdoffRig) setHoldoffs(discover, request slowpath.Holdoff) {
	r.t.Helper()
	if err := r.c.SetHoldoffs(discover, request); err != nil {
		r.t.Fatal(err)
	}
}

// TestDiscoverHoldoffInTheKernel: with the DISCOVER holdoff on, a
// client's repeated DISCOVERs are dropped before the bulk socket and
// counted; other types and other clients pass; a client that sent a
// REQUEST is no longer a repeat; off, nothing is held.
func TestDiscoverHoldoffInTheKernel(t *testing.T) {
	r := newHoldoffRig(t)
	r.set(time.Hour, 0)
	a, b := r.msg(dhcpv4.MessageTypeDiscover, 1), r.msg(dhcpv4.MessageTypeDiscover, 2)
	reqA := r.msg(dhcpv4.MessageTypeRequest, 1)
	r.send(a, a, b, a, reqA, reqA)
	if p, k := r.got(); p != 2 || k != 2 {
		t.Fatalf("holdoff on: priority %d (want 2), bulk %d (want 2: a client's first DISCOVER each)", p, k)
	}
	if d, q := r.held(); d != 2 || q != 0 {
		t.Fatalf("held %d DISCOVERs (want 2), %d REQUESTs (want 0: their holdoff is off)", d, q)
	}
	// b moves on to a REQUEST: its next DISCOVER (after a NAK, say) is
	// not a repeat.
	r.send(r.msg(dhcpv4.MessageTypeRequest, 2), b)
	if p, k := r.got(); p != 1 || k != 1 {
		t.Fatalf("a DISCOVER after the client's REQUEST: priority %d, bulk %d (want 1)", p, k)
	}
	r.set(0, 0)
	c3 := r.msg(dhcpv4.MessageTypeDiscover, 3)
	r.send(c3, c3)
	if p, k := r.got(); p != 0 || k != 2 {
		t.Fatalf("holdoff off: priority %d, bulk %d (want 2)", p, k)
	}
	if d, _ := r.held(); d != 2 {
		t.Fatalf("held %d DISCOVERs, want still 2", d)
	}
}

// TestRequestHoldoffInTheKernel: with the REQUEST holdoff on, a client's
// repeated REQUESTs are dropped before the priority socket and counted;
// its DECLINEs and RELEASEs and other clients' REQUESTs pass; a client
// whose DISCOVER was let in (one NAKed, starting again) is no longer a
// repeat; off, nothing is held.
func TestRequestHoldoffInTheKernel(t *testing.T) {
	r := newHoldoffRig(t)
	r.set(0, time.Hour)
	reqA, reqB := r.msg(dhcpv4.MessageTypeRequest, 1), r.msg(dhcpv4.MessageTypeRequest, 2)
	r.send(reqA, reqA, reqB, r.msg(dhcpv4.MessageTypeDecline, 1), r.msg(dhcpv4.MessageTypeRelease, 1), reqA)
	if p, k := r.got(); p != 4 || k != 0 {
		t.Fatalf("holdoff on: priority %d (want 4: a client's first REQUEST each, the DECLINE and the RELEASE), bulk %d", p, k)
	}
	if d, q := r.held(); d != 0 || q != 2 {
		t.Fatalf("held %d DISCOVERs (want 0), %d REQUESTs (want 2)", d, q)
	}
	// a is NAKed and starts again: its DISCOVER goes in, and so does the
	// REQUEST after the OFFER.
	r.send(r.msg(dhcpv4.MessageTypeDiscover, 1), reqA, reqA)
	if p, k := r.got(); p != 1 || k != 1 {
		t.Fatalf("a REQUEST after the client's DISCOVER: priority %d (want 1), bulk %d (want 1)", p, k)
	}
	if _, q := r.held(); q != 3 {
		t.Fatalf("held %d REQUESTs, want 3", q)
	}
	r.set(0, 0)
	r.send(reqB, reqB)
	if p, _ := r.got(); p != 2 {
		t.Fatalf("holdoff off: priority %d, want 2", p)
	}
	if _, q := r.held(); q != 3 {
		t.Fatalf("held %d REQUESTs, want still 3", q)
	}
}

// TestHoldoffsTogether: with both holdoffs on, a client alternating
// DISCOVERs and REQUESTs (as a starvation tool may) is let off each
// holdoff once a holdoff, not at every turn: two of each get in; a client
// with hlen 0 (RFC 4390) is never held off, its chaddr telling nothing.
func TestHoldoffsTogether(t *testing.T) {
	r := newHoldoffRig(t)
	r.set(time.Hour, time.Hour)
	d, q := r.msg(dhcpv4.MessageTypeDiscover, 1), r.msg(dhcpv4.MessageTypeRequest, 1)
	r.send(d, q, d, q, d, q, d, q)
	if p, k := r.got(); p != 2 || k != 2 {
		t.Fatalf("D R D R D R D R: priority %d, bulk %d; want 2 and 2 (the first of each, and one each let off)", p, k)
	}
	if hd, hq := r.held(); hd != 2 || hq != 2 {
		t.Fatalf("held %d DISCOVERs and %d REQUESTs, want 2 and 2", hd, hq)
	}
	ib := func(mt dhcpv4.MessageType) []byte {
		m, err := dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(net.HardwareAddr{}))
		if err != nil {
			t.Fatal(err)
		}
		m.HWType = 32 // InfiniBand: hlen 0, chaddr zero
		b := m.ToBytes()
		if b[2] != 0 {
			t.Fatalf("hlen %d, want 0", b[2])
		}
		return b
	}
	r.send(ib(dhcpv4.MessageTypeDiscover), ib(dhcpv4.MessageTypeDiscover), ib(dhcpv4.MessageTypeRequest), ib(dhcpv4.MessageTypeRequest))
	if p, k := r.got(); p != 2 || k != 2 {
		t.Fatalf("hlen 0: priority %d, bulk %d; want 2 and 2 (never held off)", p, k)
	}
	// chaddr's bytes past hlen are not the client's: a REQUEST with
	// garbage there is client 3's repeat.
	q3 := r.msg(dhcpv4.MessageTypeRequest, 3)
	padded := bytes.Clone(q3)
	padded[28+6] = 0xee // BOOTP chaddr, after its 6 bytes
	r.send(q3, padded)
	if p, _ := r.got(); p != 1 {
		t.Fatalf("a REQUEST, then the same with chaddr padding: priority %d, want 1", p)
	}
	if hd, hq := r.held(); hd != 2 || hq != 3 {
		t.Fatalf("held %d DISCOVERs and %d REQUESTs, want 2 and 3 (hlen 0 held nothing)", hd, hq)
	}
}

// TestHoldoffPassComesBack: a client let off a holdoff has it again a
// holdoff later: the alternating client gets two of each in every
// holdoff.
func TestHoldoffPassComesBack(t *testing.T) {
	r := newHoldoffRig(t)
	const holdoff = time.Second
	r.set(holdoff, holdoff)
	d, q := r.msg(dhcpv4.MessageTypeDiscover, 1), r.msg(dhcpv4.MessageTypeRequest, 1)
	for round := range 2 {
		// The eight must go out within the holdoff: on a machine too
		// loaded for that, the round is tried again a holdoff later.
		for try := 0; ; try++ {
			start := time.Now()
			r.send(d, q, d, q, d, q, d, q)
			took := time.Since(start)
			p, k := r.got()
			if took > holdoff/2 && try < 3 {
				time.Sleep(holdoff + 100*time.Millisecond)
				continue
			}
			if p != 2 || k != 2 {
				t.Fatalf("round %d: priority %d, bulk %d; want 2 and 2", round, p, k)
			}
			break
		}
		time.Sleep(holdoff + 100*time.Millisecond)
	}
}

// TestHoldoffDoublesForRepeats: a client that repeats within the holdoff
// of its last message (let in or held) has its holdoff doubled each
// time, as often as the server allows, so a flooding MAC gets one
// message in, not one per holdoff; with no doublings allowed it gets one
// per holdoff; a client whose messages come a holdoff or more apart, as
// RFC 2131's retransmissions do, is let in every time; so is the flooder
// once it has been quiet for a holdoff. The same for DISCOVERs (the bulk
// socket, the DISCOVER holdoff) and REQUESTs (the priority socket, the
// REQUEST holdoff), each class with the other's holdoff and doublings set
// otherwise, so that a class read with the other's settings fails. One
// class after the other: each times its sends to 50 ms.
func TestHoldoffDoublesForRepeats(t *testing.T) {
	const holdoff = 400 * time.Millisecond
	for _, class := range []struct {
		name string
		mt   dhcpv4.MessageType
		// set makes h the class's holdoff and other the other class's.
		set func(r holdoffRig, h, other slowpath.Holdoff)
		// count is what the class's socket holds, read empty.
		count func(r holdoffRig) int
	}{
		{"discover", dhcpv4.MessageTypeDiscover,
			func(r holdoffRig, h, other slowpath.Holdoff) { r.setHoldoffs(h, other) },
			func(r holdoffRig) int { _, k := r.got(); return k }},
		{"request", dhcpv4.MessageTypeRequest,
			func(r holdoffRig, h, other slowpath.Holdoff) { r.setHoldoffs(other, h) },
			func(r holdoffRig) int { p, _ := r.got(); return p }},
	} {
		t.Run(class.name, func(t *testing.T) {
			r := newHoldoffRig(t)
			var flood []byte
			// Every 50 ms for 1.3 s: at one holdoff, 3 or 4 get in (at 0,
			// 0.4, 0.8 and, with sends on time, 1.2 s); allowed one
			// doubling, 2 (0 and 0.8 s); allowed all, the first alone. A
			// pause of half a holdoff between two sends (a loaded
			// machine) could let another in: that try is made again, with
			// another client.
			mac := byte(0)
			for _, phase := range []struct {
				doublings uint32
				ok        func(k int) bool
				want      string
			}{
				{0, func(k int) bool { return k >= 3 }, "3 or 4"},
				{1, func(k int) bool { return k == 2 }, "2"},
				{slowpath.MaxHoldoffDoublings, func(k int) bool { return k == 1 }, "1"},
			} {
				class.set(r, slowpath.Holdoff{Base: holdoff, Doublings: phase.doublings},
					slowpath.Holdoff{Base: 3 * holdoff, Doublings: slowpath.MaxHoldoffDoublings - phase.doublings})
				for try := 0; ; try++ {
					mac++
					flood = r.msg(class.mt, mac)
					start := time.Now()
					last, gap := start, time.Duration(0)
					for time.Since(start) < 1300*time.Millisecond {
						r.send(flood)
						gap = max(gap, time.Since(last))
						last = time.Now()
						time.Sleep(50 * time.Millisecond)
					}
					k := class.count(r)
					if gap >= holdoff/2 && try < 3 {
						continue
					}
					if !phase.ok(k) {
						t.Fatalf("a client repeating every 50 ms for 1.3 s (longest gap %v), %d doublings allowed: %d let in, want %s",
							gap, phase.doublings, k, phase.want)
					}
					break
				}
			}
			// Quiet for a holdoff: its next message is let in.
			time.Sleep(holdoff + 100*time.Millisecond)
			r.send(flood)
			if k := class.count(r); k != 1 {
				t.Fatalf("after a holdoff's quiet: %d let in, want 1", k)
			}

			// A client retransmitting a little slower than the holdoff
			// (and a machine that is late only makes it slower).
			slow := r.msg(class.mt, 100)
			for range 3 {
				r.send(slow)
				time.Sleep(holdoff + 100*time.Millisecond)
			}
			if k := class.count(r); k != 3 {
				t.Fatalf("a client retransmitting every %v: %d of 3 let in", holdoff+100*time.Millisecond, k)
			}
		})
	}
}

// TestServeEndsOnClose: closing the Conn ends Serve, without an error.
func TestServeEndsOnClose(t *testing.T) {
	c := listenForTest(t)
	served := make(chan error, 1)
	go func() { served <- c.Serve(context.Background(), func(slowpath.Incoming) {}, nil) }()
	time.Sleep(50 * time.Millisecond) // reading
	c.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after Close")
	}
}

// The DISCOVER socket's buffer is measured after each full batch read: a
// datagram read while more than half of it was in use says so
// (slowpath.Incoming.QueueFull), and one read once the queue drained does
// not.
func TestDiscoverQueueFill(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.udp.LocalAddr().(*net.UDPAddr).Port}
	bulkRaw, err := c.bulk.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	discover, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	if err != nil {
		t.Fatal(err)
	}
	var size int
	bulkRaw.Control(func(fd uintptr) { size, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	// Fill the DISCOVER socket to three quarters, nothing reading it.
	// The kernel may take a few more in than measured, or drop some.
	sent := 0
	for ; sent < 100000; sent++ {
		if used, ok := queueFill(bulkRaw); !ok || size <= 0 {
			t.Fatal("SO_MEMINFO unreadable")
		} else if used*4 >= size*3 {
			break
		}
		if _, err := peer.WriteToUDP(discover.ToBytes(), dst); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan bool, sent+1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, func(in slowpath.Incoming) { got <- in.QueueFull }, nil)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// Read until the queue has been empty a while.
	var read, full, lastFull int
	for quiet := false; !quiet; {
		select {
		case f := <-got:
			read++
			if f {
				full++
				lastFull = read
			}
		case <-time.After(time.Second):
			quiet = true
		}
	}
	if read < sent/2 || full == 0 || lastFull == read {
		t.Fatalf("%d DISCOVERs sent, %d read: %d from a socket more than half full, the last such the %dth; want some, and none at the end", sent, read, full, lastFull)
	}
}
