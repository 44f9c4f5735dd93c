package pktio

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath"
)

func TestAppendIPv4UDPChecksums(t *testing.T) {
	src, dst := netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("10.77.0.1")
	for _, payload := range [][]byte{nil, []byte("odd"), make([]byte, 300)} {
		prefix := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0}
		b := AppendIPv4UDP(append([]byte{}, prefix...), src, dst, 67, 68, payload)
		if string(b[:len(prefix)]) != string(prefix) {
			t.Fatal("prefix overwritten")
		}
		p := b[len(prefix):]
		if string(p) != string(BuildIPv4UDP(src, dst, 67, 68, payload)) {
			t.Fatal("appended packet differs from a built one")
		}
		if len(p) != 28+len(payload) || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			t.Fatalf("lengths: %d bytes, header says %d", len(p), binary.BigEndian.Uint16(p[2:]))
		}
		if fold(sum(p[:20], 0)) != 0xffff {
			t.Fatal("IP header checksum does not verify")
		}
		s4, d4 := src.As4(), dst.As4()
		ps := sum(d4[:], sum(s4[:], 0)) + 17 + uint32(8+len(payload))
		if fold(sum(p[20:], ps)) != 0xffff {
			t.Fatal("UDP checksum does not verify")
		}
	}
}

// listenWithPeer opens the server's sockets on an ephemeral port and a
// UDP socket on loopback to send replies to, both closed when t ends.
func listenWithPeer(t *testing.T) (*Conn, *net.UDPConn) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: Listen opens an AF_PACKET socket")
	}
	c, err := Listen(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c, peer
}

// After Serve stops (SIGTERM), the replies of commits still in flight must
// still leave: the daemon closes the socket only after the store drains.
func TestSendAfterServeStops(t *testing.T) {
	c, peer := listenWithPeer(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, func(slowpath.Incoming) {}, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}

	c.Send([]slowpath.Outgoing{{Payload: []byte("late ack"), Dst: peer.LocalAddr().(*net.UDPAddr).AddrPort()}})
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := peer.Read(buf)
	if err != nil || string(buf[:n]) != "late ack" {
		t.Fatalf("reply sent after Serve stopped: got %q, %v", buf[:n], err)
	}
}

// TestServeEndsWhileReadyWaits: Serve calls ready before it handles a
// batch; while ready waits (the lease store behind), closing the sockets
// still ends Serve, and so does ending its context.
func TestServeEndsWhileReadyWaits(t *testing.T) {
	for _, end := range []string{"close", "cancel"} {
		t.Run(end, func(t *testing.T) {
			c, peer := listenWithPeer(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			waiting := make(chan struct{})
			var once sync.Once
			ready := func(ctx context.Context) error {
				once.Do(func() { close(waiting) })
				<-ctx.Done()
				return ctx.Err()
			}
			handled := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- c.Serve(ctx, func(slowpath.Incoming) {
					select {
					case handled <- struct{}{}:
					default:
					}
				}, ready)
			}()
			if _, err := peer.WriteTo([]byte("request"), c.udp.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-waiting:
			case <-time.After(5 * time.Second):
				t.Fatal("Serve read a datagram without asking ready first")
			}
			if end == "close" {
				c.Close()
			} else {
				cancel()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve after %s: %v", end, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Serve did not return after %s while ready waited", end)
			}
			select {
			case <-handled:
				t.Fatal("a batch was handled although ready never returned")
			default:
			}
		})
	}
}

// A send that fails fails for every reply under a flood: one warning a
// second, and the next one says how many were held back.
func TestSendFailuresWarnOncePerSecond(t *testing.T) {
	var buf strings.Builder
	c := &Conn{log: slog.New(slog.NewTextHandler(&buf, nil))}
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 1000 {
		c.warnLocked(t0.Add(time.Duration(i)*time.Millisecond/2), "sending replies", "err", "no buffer space")
	}
	if n := strings.Count(buf.String(), "sending replies"); n != 1 {
		t.Fatalf("%d warnings for 1000 failures within half a second:\n%s", n, buf.String())
	}
	c.warnLocked(t0.Add(time.Second), "sending replies", "err", "no buffer space")
	if n := strings.Count(buf.String(), "sending replies"); n != 2 || !strings.Contains(buf.String(), "suppressed=999") {
		t.Fatalf("a second later:\n%s", buf.String())
	}
}

// The slow path's replies leave the UDP socket with the IP header the XDP
// program writes (DF, TTL ReplyTTL, TOS 0; the ID varies on both),
// whatever the host's ip_no_pmtu_disc and ip_default_ttl say: read off the
// wire on lo.
func TestReplyIPHeaderOnTheWire(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: Listen and the sniffer open AF_PACKET sockets")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	proto := int(htons(unix.ETH_P_IP))
	sniff, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sniff)
	if err := unix.Bind(sniff, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: lo.Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(10 * time.Second))
	if err := unix.SetsockoptTimeval(sniff, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	c, err := Listen(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Send([]slowpath.Outgoing{{Payload: make([]byte, 300), Dst: dst}})

	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(sniff, buf, 0)
		if err != nil {
			t.Fatalf("the reply to %v was not seen on lo: %v", dst, err)
		}
		p := buf[:n]
		if n < 28 || p[9] != unix.IPPROTO_UDP || binary.BigEndian.Uint16(p[22:]) != dst.Port() {
			continue
		}
		if p[1] != 0 || binary.BigEndian.Uint16(p[6:]) != 0x4000 || p[8] != ReplyTTL {
			t.Fatalf("reply IP header: tos %#x flags/frag %#04x ttl %d; want tos 0, DF (0x4000), ttl %d",
				p[1], binary.BigEndian.Uint16(p[6:]), p[8], ReplyTTL)
		}
		return
	}
}

// waitKernelTimestamps returns once the kernel stamps datagrams as they
// arrive. The first socket to ask for timestamps turns them on for the
// whole kernel through deferred work (net_enable_timestamp), and until that
// work has run a datagram is stamped when it is read instead: on a loaded
// machine, the datagram the test sends right after Listen was (CI21: 306
// ms after it was sent, the test's 300 ms sleep). It probes with a socket
// of its own, held open meanwhile, until a datagram left unread for 20 ms
// carries a time at least 15 ms old.
func waitKernelTimestamps(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 16), make([]byte, 128)
	for range 100 {
		if err := unix.Sendto(fd, []byte("probe"), 0, self); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			t.Fatal(err)
		}
		var in slowpath.Incoming
		readControl(oob[:oobn], &in)
		if !in.Received.IsZero() && time.Since(in.Received) >= 15*time.Millisecond {
			return
		}
	}
	t.Fatal("the kernel stamped no probe datagram on arrival within 2 s")
}

// TestReceiveTimeIsTheKernels: a datagram that waited in the socket before
// Serve read it carries the kernel's receive time, not the read's, so the
// server can tell how long it waited (slowpath.Settings.MaxWait), and where
// it arrived.

func TestReceiveTimeIsTheKernels(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: Listen opens an AF_PACKET socket")
	}
	c, err := Listen(context.Background(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := c.udp.LocalAddr().(*net.UDPAddr)
	src, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitKernelTimestamps(t)
	sent := time.Now()
	if _, err := src.Write([]byte("waited")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // in the socket, unread
	got := make(chan slowpath.Incoming, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Serve(ctx, func(in slowpath.Incoming) {
		in.Data = bytes.Clone(in.Data)
		select {
		case got <- in:
		default:
		}
	}, nil)
	select {
	case in := <-got:
		if d := in.Received.Sub(sent); d < -50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("received at %v, sent at %v (%v apart): not the kernel's time", in.Received, sent, d)
		}
		if w := time.Since(in.Received); w < 300*time.Millisecond {
			t.Fatalf("waited %v by its timestamp, slept 300ms", w)
		}
		// IP_PKTINFO, read from the same control messages: the server
		// picks the interface's subnet and tells a broadcast by them.
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if in.IfIndex != lo.Index || in.Dst != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("arrived on ifindex %d for %v, want %d (lo) for 127.0.0.1", in.IfIndex, in.Dst, lo.Index)
		}
		if string(in.Data) != "waited" {
			t.Fatalf("data %q", in.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
}

// Replies sent within Hold leave when it returns, together; with two
// holds overlapping (a batch being handled, a transaction's callbacks),
// the first to end sends everything held, so neither waits for the other.
func TestHoldSendsWhenEitherEnds(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	read := func(wait time.Duration) (string, error) {
		peer.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 64)
		n, err := peer.Read(buf)
		return string(buf[:n]), err
	}

	other := make(chan struct{})
	otherHolds, otherDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(otherDone)
		c.Hold(func() {
			close(otherHolds)
			<-other
			c.Send([]slowpath.Outgoing{{Payload: []byte("from the other"), Dst: dst}})
		})
	}()
	<-otherHolds
	c.Hold(func() {
		c.Send([]slowpath.Outgoing{{Payload: []byte("held 1"), Dst: dst}, {Payload: []byte("held 2"), Dst: dst}})
		if got, err := read(50 * time.Millisecond); err == nil {
			t.Errorf("%q left before Hold returned", got)
		}
	})
	for _, want := range []string{"held 1", "held 2"} {
		if got, err := read(5 * time.Second); err != nil || got != want {
			t.Fatalf("after the first Hold ended, the other still holding: got %q, %v; want %q", got, err, want)
		}
	}
	close(other)
	<-otherDone
	if got, err := read(5 * time.Second); err != nil || got != "from the other" {
		t.Fatalf("after the other Hold: got %q, %v", got, err)
	}
	c.Send([]slowpath.Outgoing{{Payload: []byte("unheld"), Dst: dst}})
	if got, err := read(5 * time.Second); err != nil || got != "unheld" {
		t.Fatalf("a send outside any Hold: got %q, %v", got, err)
	}
}

// While one goroutine sends, another ending its Hold (or sending outside
// one) neither waits for it nor sends itself: it leaves its replies to the
// sender, whose next round takes them. Serve used to wait for the lock
// the store's callbacks held through their sendmmsg.
func TestHoldDoesNotWaitForASendInProgress(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	c.mu.Lock()
	c.sending = true // another goroutine is in its sendmmsg
	c.mu.Unlock()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		c.Hold(func() { c.Send([]slowpath.Outgoing{{Payload: []byte("held"), Dst: dst}}) })
		c.Send([]slowpath.Outgoing{{Payload: []byte("unheld"), Dst: dst}})
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Hold and Send waited for the send in progress")
	}
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a reply (%d bytes) left beside the sender", n)
	}
	// The sender's next round (flushLocked's loop) takes what came in.
	c.mu.Lock()
	c.sending = false
	c.flushLocked()
	for _, want := range []string{"held", "unheld"} {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := peer.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// A sender in progress takes, in its next round, the replies others left
// to it while it sent, unless a Hold is open, whose end sends them.
func TestSenderTakesWhatCameMeanwhile(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	read := func(want string) {
		t.Helper()
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := peer.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
	// No Hold open: the second round sends what came during the first.
	rounds := 0
	c.sent = func() {
		if rounds++; rounds == 1 {
			c.Send([]slowpath.Outgoing{{Payload: []byte("meanwhile"), Dst: dst}})
		}
	}
	c.Send([]slowpath.Outgoing{{Payload: []byte("first"), Dst: dst}})
	read("first")
	read("meanwhile")
	if rounds != 2 {
		t.Fatalf("%d rounds, want 2", rounds)
	}
	// A Hold open when the round ends: its end sends them, not the sender.
	release, holding, held := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(held)
		c.Hold(func() {
			close(holding)
			<-release
		})
	}()
	<-holding
	rounds = 0
	c.sent = func() {
		if rounds++; rounds == 1 {
			c.Send([]slowpath.Outgoing{{Payload: []byte("for the hold"), Dst: dst}})
		}
	}
	// This Hold ends with the other still open: its end is the sender.
	c.Hold(func() { c.Send([]slowpath.Outgoing{{Payload: []byte("second"), Dst: dst}}) })
	read("second")
	if rounds != 1 {
		t.Fatalf("the sender went on for %d rounds with a Hold open", rounds)
	}
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a reply (%d bytes) left before the open Hold ended", n)
	}
	close(release)
	<-held
	read("for the hold")
}

// Replies from many goroutines, within Holds and outside them, all leave
// once each (make test runs this package under the race detector too). A
// reply stranded pending with no Hold open would fail it only if it came
// last, which timing seldom arranges: TestSenderTakesWhatCameMeanwhile
// covers the handover.
func TestConcurrentSendersLoseNothing(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const workers, each = 8, 250
	// Room for every reply in the peer's buffer, so that a missing one
	// is the Conn's loss, not the peer's (root: listenWithPeer).
	if rc, err := peer.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
	}
	got := make(chan error, 1)
	go func() {
		seen := make(map[string]bool, workers*each)
		buf := make([]byte, 64)
		for len(seen) < workers*each {
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := peer.Read(buf)
			if err != nil {
				c.mu.Lock()
				pending, sending := len(c.pending), c.sending
				c.mu.Unlock()
				got <- fmt.Errorf("%d of %d replies arrived (%d pending, sending %v): %w", len(seen), workers*each, pending, sending, err)
				return
			}
			if seen[string(buf[:n])] {
				got <- fmt.Errorf("%q arrived twice", buf[:n])
				return
			}
			seen[string(buf[:n])] = true
		}
		got <- nil
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				out := []slowpath.Outgoing{{Payload: fmt.Appendf(nil, "%d/%d", w, i), Dst: dst}}
				if i%3 == 0 {
					c.Send(out)
				} else {
					c.Hold(func() { c.Send(out) })
				}
			}
		})
	}
	wg.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// A buffer Payload lends comes back once its reply, marked Reuse, has
// left, also when it was held; one not marked, or not lent, never does.
func TestPayloadBuffersComeBackOnceSent(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	read := func() string {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("reading a reply: %v", err)
		}
		return string(buf[:n])
	}
	same := func(a, b []byte) bool { return &a[:1][0] == &b[:1][0] } // the same array

	lent := append(c.Payload(100), "lent"...)
	kept := append(c.Payload(100), "kept"...)
	if same(lent, kept) {
		t.Fatal("two buffers lent at once are one")
	}
	c.Hold(func() {
		c.Send([]slowpath.Outgoing{{Payload: lent, Dst: dst, Reuse: true}, {Payload: kept, Dst: dst}})
		if again := c.Payload(100); same(again, lent) {
			t.Fatal("a held reply's buffer was lent again before it was sent")
		}
	})
	for _, want := range []string{"lent", "kept"} {
		if got := read(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	again := c.Payload(100)
	if !same(again, lent) || len(again) != 0 {
		t.Fatalf("the sent buffer marked Reuse was not lent again empty (len %d)", len(again))
	}
	if next := c.Payload(100); same(next, kept) {
		t.Fatal("a buffer not marked Reuse was lent")
	}
	if big := c.Payload(payloadCap + 1); cap(big) < payloadCap+1 {
		t.Fatalf("asked for %d bytes, got room for %d", payloadCap+1, cap(big))
	}
}

// SetSent hears of each reply the kernel took, with its request's
// arrival, once the sendmmsg that carried it has returned: more than a
// batch's worth (two system calls), and not a reply that could not be
// sent: one to an IPv6 address, skipped before the call, and one to port
// 0, which the kernel refuses in the middle of a batch.
func TestSentReportsEachReplyOnceSent(t *testing.T) {
	c, peer := listenWithPeer(t)
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	type report struct {
		payload  string
		received time.Time
		at       time.Time
	}
	var got []report
	c.SetSent(func(out []slowpath.Outgoing, at time.Time) {
		for _, o := range out {
			got = append(got, report{string(o.Payload), o.Received, at})
		}
	})
	arrived := time.Now().Add(-time.Second)
	var out []slowpath.Outgoing
	want := map[string]bool{}
	for i := range batch + 6 {
		switch i {
		case 10:
			out = append(out, slowpath.Outgoing{Payload: []byte("not IPv4"), Dst: netip.MustParseAddrPort("[::1]:68"), Received: arrived})
		case 30:
			out = append(out, slowpath.Outgoing{Payload: []byte("port 0"), Dst: netip.AddrPortFrom(dst.Addr(), 0), Received: arrived})
		}
		p := fmt.Sprintf("reply %d", i)
		out = append(out, slowpath.Outgoing{Payload: []byte(p), Dst: dst, Received: arrived})
		want[p] = true
	}
	before := time.Now()
	c.Send(out)
	after := time.Now()

	if len(got) != len(want) {
		t.Fatalf("%d replies reported sent, want %d (not the IPv6 one, nor the one to port 0)", len(got), len(want))
	}
	for _, r := range got {
		if !want[r.payload] {
			t.Errorf("reported %q, not sent or twice", r.payload)
		}
		delete(want, r.payload)
		if !r.received.Equal(arrived) || r.at.Before(before) || r.at.After(after) {
			t.Errorf("%q: arrival %v, sent at %v; want %v, within the Send (%v to %v)", r.payload, r.received, r.at, arrived, before, after)
		}
	}
	// And they did leave.
	buf := make([]byte, 64)
	for range batch + 6 {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Read(buf); err != nil {
			t.Fatalf("reading what was reported sent: %v", err)
		}
	}
}
