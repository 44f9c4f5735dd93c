package loadgen

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// TestRelayArrivalStamp: the relay socket reports the kernel's arrival
// time of each datagram (checkArrival). In a namespace of its own: the
// host may have a DHCP server on port 67.
func TestRelayArrivalStamp(t *testing.T) {
	ns := netns.ForTest(t, "nt-relay")
	var r *Relay
	var c *net.UDPConn
	giaddr := netip.MustParseAddr("127.0.0.67")
	if err := ns.Do(func() (err error) {
		if r, err = NewRelay(giaddr, netip.MustParseAddr("127.0.0.1")); err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(giaddr, 67)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer c.Close()
	checkArrival(t, r, func() error { _, err := c.Write([]byte("answer")); return err })
}

// TestL2ArrivalStamp: so does the layer 2 transport's packet socket, for
// a server's answer from port 67 to 68 on a veth.
func TestL2ArrivalStamp(t *testing.T) {
	cli, srv := netns.ForTest(t, "nt-l2"), netns.ForTest(t, "nt-l2")
	if err := netns.Veth(cli, "c0", netip.MustParsePrefix("10.99.0.2/24"), srv, "s0", netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		t.Fatal(err)
	}
	var l2 *L2
	if err := cli.Do(func() (err error) {
		l2, err = NewL2("c0", netip.MustParseAddr("10.99.0.1"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	// Unconnected: nothing listens on the client's UDP port 68 (the
	// transport reads a packet socket), so its kernel answers each
	// datagram with ICMP port unreachable, which a connected socket
	// returns from its next write as "connection refused" (CI on
	// f342589 failed so, when the first reading had to be retried).
	var c *net.UDPConn
	if err := srv.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 67})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 68}
	checkArrival(t, l2, func() error { _, err := c.WriteToUDP([]byte("answer"), to); return err })
}

// checkArrival sends "answer" with send and reads it from tr 20 ms later:
// its arrival time must lie between the send and the read, and not be
// the read's. The kernel turns arrival stamps on for everyone through
// deferred work when the first socket asks (net_enable_timestamp), and
// until then stamps a datagram as it is read: late, never early. So it
// sends until one read 20 ms after it was sent carries a time from before
// the sleep.
func checkArrival(t *testing.T, tr Transport, send func() error) {
	t.Helper()
	msgs := []Received{{Buf: make([]byte, 64)}}
	for range 100 {
		before := time.Now()
		if err := send(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		// Frames that are not an answer (ARP, IPv6's) read as none.
		var n int
		var err error
		var read time.Time
		for tries := 0; n == 0 && err == nil && tries < 20; tries++ {
			n, err = tr.Recv(msgs, 100*time.Millisecond)
			read = time.Now()
		}
		if err != nil || n != 1 {
			t.Fatalf("read %d: %v", n, err)
		}
		if got := string(msgs[0].Buf[:msgs[0].N]); got != "answer" {
			t.Fatalf("read %q", got)
		}
		at := msgs[0].Arrived
		if at.IsZero() || at.Before(before) || at.After(read) {
			t.Fatalf("arrival %v: sent after %v, read at %v", at, before, read)
		}
		if read.Sub(at) >= 15*time.Millisecond {
			return
		}
	}
	t.Fatal("no datagram in 100 was stamped at its arrival, 20 ms before it was read")
}
