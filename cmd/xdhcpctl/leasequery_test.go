package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// slowBulkServer answers one bulk query with n bindings, gap apart, the
// last one released, then DONE; it returns its address and the query.
func slowBulkServer(t *testing.T, n int, gap time.Duration) (netip.AddrPort, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	queries := make(chan []byte, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		q, err := lqclient.ReadFrame(c)
		if err != nil {
			return
		}
		queries <- q
		msg := func(typ uint8, ip netip.Addr, opts ...byte) []byte {
			b := dhcpwire.AppendHeader(nil, dhcpwire.Header{Op: dhcpwire.BootReply, XID: binary.BigEndian.Uint32(q[4:8]), CIAddr: ip})
			b = append(b, dhcpwire.OptMessageType, 1, typ)
			return lqclient.Frame(append(append(b, opts...), dhcpwire.OptEnd))
		}
		for i := range n {
			time.Sleep(gap)
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
			if i == n-1 {
				c.Write(msg(dhcpwire.LeaseUnassigned, ip, dhcpwire.OptDHCPState, 1, 4, dhcpwire.OptStartTimeOfState, 4, 0, 0, 0, 30))
			} else {
				c.Write(msg(dhcpwire.LeaseActive, ip, dhcpwire.OptDHCPState, 1, 2))
			}
		}
		c.Write(msg(dhcpwire.LeaseQueryDone, netip.Addr{}))
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort(), queries
}

func TestLeasequeryBulkWaitsPerReplyAndPrintsUnassigned(t *testing.T) {
	addr, queries := slowBulkServer(t, 6, 200*time.Millisecond)
	var out, errOut bytes.Buffer
	start := time.Now()
	code := leasequery(context.Background(), []string{"--bulk", "--server", addr.String(), "--relay-id", "6f6c74",
		"--wait", "500ms", "--start-time", "2027-01-15T08:00:00Z", "--end-time", "1800000000"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d after %v (the stream takes 1.2s, each reply within 500ms): %s", code, time.Since(start), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[6], "LEASEQUERYDONE") {
		t.Fatalf("output:\n%s", out.String())
	}
	if l := lines[5]; !strings.Contains(l, "LEASEUNASSIGNED ip=10.0.0.6") || !strings.Contains(l, "state=released in-state-for=30s") {
		t.Fatalf("unassigned binding printed as %q", l)
	}
	var p dhcpwire.Packet
	if err := p.Parse(<-queries); err != nil {
		t.Fatal(err)
	}
	want := map[uint8]uint32{
		dhcpwire.OptQueryStartTime: uint32(time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC).Unix()),
		dhcpwire.OptQueryEndTime:   1_800_000_000,
	}
	for c, w := range want {
		if v, ok := p.Option(c); !ok || len(v) != 4 || binary.BigEndian.Uint32(v) != w {
			t.Errorf("option %d in the query: %x, want %d", c, v, w)
		}
	}
}

func TestLeasequeryBulkGivesUpOnASilentServer(t *testing.T) {
	addr, _ := slowBulkServer(t, 2, 800*time.Millisecond)
	var out, errOut bytes.Buffer
	if code := leasequery(context.Background(), []string{"--bulk", "--server", addr.String(), "--relay-id", "01", "--wait", "300ms"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, output %q %q", code, out.String(), errOut.String())
	}
}

func TestLeasequeryFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--server", "127.0.0.1", "--giaddr", "127.0.0.1", "--ip", "10.0.0.1", "--start-time", "1800000000"},
		{"--bulk", "--server", "127.0.0.1", "--relay-id", "01", "--start-time", "yesterday"},
		{"--bulk", "--server", "127.0.0.1", "--relay-id", "01", "--start-time", "1800000600", "--end-time", "1800000000"},
	} {
		var out, errOut bytes.Buffer
		if code := leasequery(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut.String())
		}
	}
}

// TestLeasequeryTimeoutHint: a server that stays silent (as RFC 4388 lets
// it for a requester it does not accept) leaves xdhcpctl with a timeout;
// the message then says where the refusal would show on an xdhcpd server
// and names the giaddr to list. The server here is a loopback socket that
// reads the query and never answers.
func TestLeasequeryTimeoutHint(t *testing.T) {
	if os.Geteuid() != 0 { // the query is sent from giaddr:67
		testenv.Skip(t, "needs root to bind port 67")
	}
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 1500)
		n, _, _ := srv.ReadFrom(buf)
		got <- n
	}()
	giaddr := "127.0.0.67"
	var out, errb bytes.Buffer
	code := run([]string{"leasequery", "--server", srv.LocalAddr().String(), "--giaddr", giaddr, "--ip", "10.0.0.1", "--wait", "300ms"}, &out, &errb)
	if n := <-got; n < 240 {
		t.Fatalf("the server read %d bytes, not a query", n)
	}
	msg := errb.String()
	if code != 1 || !strings.Contains(msg, "no reply") || !strings.Contains(msg, giaddr+" is listed under leasequery.requesters") ||
		!strings.Contains(msg, `xdhcp_slowpath_dropped_total{reason="leasequery_denied"}`) {
		t.Fatalf("exit %d, stderr %q: want 1, the timeout, and the requesters hint naming %s", code, msg, giaddr)
	}
	// Other failures get no such hint: a malformed --server is a usage error.
	errb.Reset()
	if code := run([]string{"leasequery", "--server", "x", "--giaddr", giaddr, "--ip", "10.0.0.1"}, &out, &errb); code != 2 || strings.Contains(errb.String(), "requesters") {
		t.Fatalf("bad --server: exit %d, stderr %q", code, errb.String())
	}
}
