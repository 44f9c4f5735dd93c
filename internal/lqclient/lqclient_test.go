package lqclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// reply renders a leasequery reply of type typ with extra options.
func reply(xid uint32, typ uint8, ip string, opts ...[]byte) []byte {
	h := dhcpwire.Header{Op: dhcpwire.BootReply, XID: xid}
	if ip != "" {
		h.CIAddr = netip.MustParseAddr(ip)
	}
	b := dhcpwire.AppendHeader(nil, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	for _, o := range opts {
		b = append(b, o...)
	}
	return append(b, dhcpwire.OptEnd)
}

// fakeServer accepts one connection, reads one query and hands it and
// the connection to serve, which plays the server.
func fakeServer(t *testing.T, serve func(c net.Conn, query []byte)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		q, err := ReadFrame(c)
		if err != nil {
			t.Errorf("fake server: reading the query: %v", err)
			return
		}
		serve(c, q)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestBulkWaitIsPerReplyNotForTheWholeStream(t *testing.T) {
	// Each gap is far under the idle time (so a loaded machine does not
	// stretch one past it) and the whole stream well over it.
	const n, gap, idle = 30, 100 * time.Millisecond, 2 * time.Second
	addr := fakeServer(t, func(c net.Conn, q []byte) {
		xid := binary.BigEndian.Uint32(q[4:8])
		for i := range n {
			time.Sleep(gap)
			c.Write(Frame(reply(xid, dhcpwire.LeaseActive, fmt.Sprintf("10.0.0.%d", i+1))))
		}
		c.Write(Frame(reply(xid, dhcpwire.LeaseQueryDone, "")))
	})
	var got []string
	start := time.Now()
	err := Bulk(context.Background(), Query{Server: addr, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, XID: 42, Idle: idle},
		func(r *Reply) error { got = append(got, r.Type); return nil })
	if err != nil {
		t.Fatalf("a stream of %v in all, with no gap over the idle time of %v: %v", time.Since(start), idle, err)
	}
	if len(got) != n+1 || got[n] != "leasequerydone" {
		t.Fatalf("replies %v", got)
	}
	// Sleeps only ever run long, so this holds however loaded the
	// machine; it shows the stream outlasted the idle time.
	if took := time.Since(start); took <= idle {
		t.Fatalf("stream took %v, not over the idle time %v: the test did not test", took, idle)
	}
}

func TestBulkGivesUpWhenTheServerFallsSilent(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn, q []byte) {
		c.Write(Frame(reply(binary.BigEndian.Uint32(q[4:8]), dhcpwire.LeaseActive, "10.0.0.1")))
		io.Copy(io.Discard, c) // then nothing, until the client hangs up
	})
	n := 0
	start := time.Now()
	err := Bulk(context.Background(), Query{Server: addr, RelayID: []byte("r"), XID: 1, Idle: 200 * time.Millisecond},
		func(r *Reply) error { n++; return nil })
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 1 {
		t.Fatalf("after one reply and silence: %d replies, err %v", n, err)
	}
	// The fake server never hangs up, so only the idle time ends this;
	// the bound is loose so a loaded machine cannot fail it.
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("gave up after %v, want about the 200ms idle time", took)
	}
}

func TestBulkEndsWithTheContext(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn, q []byte) {
		xid := binary.BigEndian.Uint32(q[4:8])
		// Until the client hangs up: a stream that ended on its own
		// could beat the context on a loaded machine.
		for {
			if _, err := c.Write(Frame(reply(xid, dhcpwire.LeaseActive, "10.0.0.1"))); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Bulk(ctx, Query{Server: addr, RelayID: []byte("r"), Idle: 10 * time.Second}, func(*Reply) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the context's deadline, got %v", err)
	}
}

// Cancelling must stop a stream that keeps coming: a deadline set per
// read would otherwise undo the one the cancellation set.
func TestBulkStopsWhenCancelledMidStream(t *testing.T) {
	const total = 200_000
	addr := fakeServer(t, func(c net.Conn, q []byte) {
		m := Frame(reply(binary.BigEndian.Uint32(q[4:8]), dhcpwire.LeaseActive, "10.0.0.1"))
		for range total {
			if _, err := c.Write(m); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := Bulk(ctx, Query{Server: addr, RelayID: []byte("r"), Idle: 10 * time.Second}, func(*Reply) error {
		if n++; n == 100 {
			cancel() // ctx.Err() is set before cancel returns: no wait needed
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if n != 100 {
		t.Fatalf("%d replies handed over after cancelling at the 100th", n-100)
	}
}

func TestMessageTimeWindow(t *testing.T) {
	from, to := time.Unix(1_800_000_000, 0), time.Unix(1_800_000_600, 0)
	m, err := Query{RemoteID: []byte{1, 2}, Start: from, End: to}.Message(true)
	if err != nil {
		t.Fatal(err)
	}
	var p dhcpwire.Packet
	if err := p.Parse(m); err != nil {
		t.Fatal(err)
	}
	for code, want := range map[uint8]uint32{dhcpwire.OptQueryStartTime: 1_800_000_000, dhcpwire.OptQueryEndTime: 1_800_000_600} {
		if v, ok := p.Option(code); !ok || len(v) != 4 || binary.BigEndian.Uint32(v) != want {
			t.Errorf("option %d: %x, want %d", code, v, want)
		}
	}
	for _, tc := range []struct {
		name string
		q    Query
		bulk bool
	}{
		{"window on UDP", Query{IP: netip.MustParseAddr("10.0.0.1"), Start: from}, false},
		{"start after end", Query{RemoteID: []byte{1}, Start: to, End: from}, true},
		{"before 1970", Query{RemoteID: []byte{1}, Start: time.Unix(-5, 0)}, true},
	} {
		if _, err := tc.q.Message(tc.bulk); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestDecodeUnassignedWithState(t *testing.T) {
	u32 := func(code uint8, v uint32) []byte { return dhcpwire.AppendUint32Option(nil, code, v) }
	r, err := Decode(reply(7, dhcpwire.LeaseUnassigned, "10.0.0.9",
		u32(dhcpwire.OptBaseTime, 1_800_000_000), []byte{dhcpwire.OptDHCPState, 1, 4}, u32(dhcpwire.OptStartTimeOfState, 90)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != "leaseunassigned" || r.State != "released" || r.StateFor == nil || *r.StateFor != 90 || r.BaseTime == nil || *r.BaseTime != 1_800_000_000 {
		t.Fatalf("decoded %+v", r)
	}
	if s := r.String(); !strings.Contains(s, "LEASEUNASSIGNED ip=10.0.0.9") || !strings.Contains(s, "state=released in-state-for=1m30s") {
		t.Fatalf("summary %q", s)
	}
	for v, want := range map[uint8]string{1: "available", 3: "expired", 7: "remote", 8: "transitioning", 9: "state-9"} {
		if got := StateName(v); got != want {
			t.Errorf("state %d named %q, want %q", v, got, want)
		}
	}
}

// FuzzDecode: whatever a server sends, a frame reads as its declared
// length or an error, and a reply decodes or gives an error; what
// decodes keeps its bytes and transaction id and summarizes without a
// panic (xdhcpctl prints it).
func FuzzDecode(f *testing.F) {
	u32 := func(code uint8, v uint32) []byte { return dhcpwire.AppendUint32Option(nil, code, v) }
	f.Add(reply(7, dhcpwire.LeaseUnassigned, "10.0.0.9", u32(dhcpwire.OptBaseTime, 1_800_000_000), []byte{dhcpwire.OptDHCPState, 1, 4}))
	f.Add(reply(8, dhcpwire.LeaseActive, "10.0.0.10", u32(dhcpwire.OptLeaseTime, 3600), []byte{dhcpwire.OptAssociatedIP, 5, 10, 0, 0, 1, 9},
		[]byte{dhcpwire.OptStatusCode, 0}, []byte{dhcpwire.OptClientID, 2, 1, 2}, []byte{dhcpwire.OptRelayAgentInfo, 2, 1, 0}))
	f.Add(Frame(reply(9, dhcpwire.LeaseQueryDone, "")))
	f.Add([]byte{0, 5, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadFrame(bytes.NewReader(b))
		if err == nil {
			if len(b) < 2 || len(m) != int(binary.BigEndian.Uint16(b)) || !bytes.Equal(m, b[2:2+len(m)]) {
				t.Fatalf("frame of %d bytes read from %x", len(m), b)
			}
			checkDecode(t, m) // as Bulk decodes it
		} else if len(b) >= 2 && len(b)-2 >= int(binary.BigEndian.Uint16(b)) {
			t.Fatalf("whole frame %x refused: %v", b, err)
		}
		checkDecode(t, b) // as UDP decodes it
	})
}

// checkDecode decodes b and, when it decodes, holds the reply to the
// header's bytes and its summary to the reply.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	r, err := Decode(b)
	if err != nil {
		return
	}
	if !bytes.Equal(r.Raw, b) || r.XID != binary.BigEndian.Uint32(b[4:8]) {
		t.Fatalf("decoded xid %#x from %x", r.XID, b)
	}
	if ci := netip.AddrFrom4([4]byte(b[12:16])); ci.IsUnspecified() != (r.IP == "") || !ci.IsUnspecified() && r.IP != ci.String() {
		t.Fatalf("ip %q from ciaddr %s", r.IP, ci)
	}
	if hlen := int(b[2]); hlen > 0 && hlen <= 16 && len(r.HWAddr) != 3*hlen-1 {
		t.Fatalf("hardware address %q for hlen %d", r.HWAddr, hlen)
	}
	s := r.String()
	for _, part := range []string{r.IP, r.HWAddr, r.State, r.ServerID} {
		if !strings.Contains(s, part) {
			t.Fatalf("summary %q lacks %q", s, part)
		}
	}
}
