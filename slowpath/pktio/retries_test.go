package pktio

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// retried is a DISCOVER from client hw with secs set: a retransmission
// when secs is above 0.
func (r holdoffRig) retried(hw byte, secs uint16) []byte {
	d := r.msg(dhcpv4.MessageTypeDiscover, hw)
	binary.BigEndian.PutUint16(d[8:10], secs)
	return d
}

// retries reads the kernel's counts of retransmissions let ahead and of
// those over the allowance.
func (r holdoffRig) retries() (ahead, over uint64) {
	r.t.Helper()
	a, err := r.c.RetriesAhead()
	if err != nil {
		r.t.Fatal(err)
	}
	o, err := r.c.RetriesOver()
	if err != nil {
		r.t.Fatal(err)
	}
	return a, o
}

// TestRetriedDiscoversGoAhead: a unicast DISCOVER with secs above 0 goes to
// the priority socket and is counted; one with secs 0 to the bulk socket;
// a broadcast one, whose copies both sockets' filters see, arrives once,
// in the bulk socket. The DISCOVER holdoff holds a client's repeated
// retransmission as it holds a repeated DISCOVER in the bulk socket, and
// the held one spends nothing of the allowance.
func TestRetriedDiscoversGoAhead(t *testing.T) {
	r := newHoldoffRig(t)
	r.send(r.retried(1, 0), r.retried(2, 3), r.retried(3, 0xffff))
	if p, k := r.got(); p != 2 || k != 1 {
		t.Fatalf("unicast: priority %d (want 2: the retransmissions), bulk %d (want 1)", p, k)
	}
	if a, o := r.retries(); a != 2 || o != 0 {
		t.Fatalf("retransmissions ahead %d (want 2), over the allowance %d (want 0)", a, o)
	}

	port := r.c.udp.LocalAddr().(*net.UDPAddr).Port
	if _, err := broadcastSender(t).WriteToUDP(r.retried(4, 5), &net.UDPAddr{IP: net.IPv4(127, 255, 255, 255), Port: port}); err != nil {
		t.Fatal(err)
	}
	if p, k := r.got(); p != 0 || k != 1 {
		t.Fatalf("broadcast retransmission: priority %d (want 0), bulk %d (want 1)", p, k)
	}
	if a, _ := r.retries(); a != 2 {
		t.Fatalf("retransmissions ahead %d after a broadcast one, want still 2", a)
	}

	r.set(time.Hour, 0)
	r.send(r.retried(5, 4), r.retried(5, 8))
	if p, k := r.got(); p != 1 || k != 0 {
		t.Fatalf("a client's retransmissions within the DISCOVER holdoff: priority %d (want 1), bulk %d (want 0)", p, k)
	}
	if d, _ := r.held(); d != 1 {
		t.Fatalf("held %d DISCOVERs, want 1", d)
	}
	// The held one spent none of the allowance: it went the bulk
	// socket's way, where the holdoff dropped it.
	if a, o := r.retries(); a != 3 || o != 0 {
		t.Fatalf("retransmissions ahead %d (want 3), over the allowance %d (want 0)", a, o)
	}
}

// TestRetriesAheadAllowance: past RetriesFirstPerSecond in a second, the
// retransmissions go to the bulk socket, each datagram once, and are
// counted apart.
func TestRetriesAheadAllowance(t *testing.T) {
	r := newHoldoffRig(t)
	const sent = 3 * RetriesFirstPerSecond
	began := time.Now()
	for i := range sent {
		d := r.retried(0, 1)
		binary.BigEndian.PutUint32(d[28+1:], uint32(i)) // chaddr 02:xx:xx:xx:xx:00: one client each
		r.send(d)
	}
	p, k := r.got()
	// Until every datagram was read: the kernel steers each as it takes
	// it in, which may trail the send.
	took := time.Since(began)
	if p+k != sent {
		t.Fatalf("the sockets read %d + %d datagrams, want the %d sent", p, k, sent)
	}
	// The first second's allowance is spent in full; a send that took
	// longer than a second (a loaded machine) may have begun a second
	// one.
	most := RetriesFirstPerSecond * (1 + int(took/time.Second))
	if p < RetriesFirstPerSecond || p > most {
		t.Fatalf("priority socket read %d retransmissions in %v, want %d to %d", p, took, RetriesFirstPerSecond, most)
	}
	if a, o := r.retries(); a != uint64(p) || o != uint64(k) {
		t.Fatalf("counted %d ahead and %d over, the sockets read %d and %d", a, o, p, k)
	}
}
