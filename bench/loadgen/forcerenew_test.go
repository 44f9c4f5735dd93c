package loadgen

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
)

// push queues a message for the generator to receive, as if the server
// had sent it unsolicited.
func (f *fakeServer) push(b []byte) {
	f.mu.Lock()
	f.queue = append(f.queue, queued{b, time.Now().Round(0)})
	f.cond.Broadcast()
	f.mu.Unlock()
}

// forceRenewMsg renders a FORCERENEW for client 0 signed under key.
func forceRenewMsg(t *testing.T, g *Gen, xid uint32, replay uint64, key auth.Key) []byte {
	t.Helper()
	h := dhcpwire.Header{Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: xid}
	copy(h.CHAddr[:], g.cfg.Pop.MAC(0))
	b := dhcpwire.AppendHeader(nil, h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.ForceRenew)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr("10.64.0.1"))
	b = auth.AppendDigestOption(b, replay)
	b = append(b, dhcpwire.OptEnd)
	if err := auth.Sign(b, key); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitStats polls until cond holds for the FORCERENEW counts.
func waitStats(t *testing.T, g *Gen, what string, cond func(ForceRenewStats) bool) ForceRenewStats {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := g.ForceRenewStats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: counts %+v", what, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestForceRenewClient checks the emulated client's side against the
// in-memory server: it takes the key from the ACK (only having sent
// 145), ignores a FORCERENEW with a wrong xid, a bad digest or a counter
// not above the last, answers a good one with a RENEWING REQUEST, and on
// a NAK to that REQUEST starts over with a DISCOVER and binds again.
func TestForceRenewClient(t *testing.T) {
	f := newFake()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f.key = &key
	g, err := New(Config{Clients: 1, Pop: Population{ClientIDs: true}, Server: netip.MustParseAddr("10.64.0.1"),
		GIAddr: netip.MustParseAddr("10.80.0.1"), LeaseTime: time.Hour, Timeout: 200 * time.Millisecond, ForceRenew: true}, f)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if n, err := g.Acquire(context.Background(), 1); err != nil || n != 1 {
		t.Fatalf("acquired %d: %v", n, err)
	}
	if s := g.ForceRenewStats(); s.Keys != 1 {
		t.Fatalf("key not kept: %+v", s)
	}
	f.mu.Lock()
	xid, replay := f.lastXID[string(g.cfg.Pop.MAC(0))], f.replay
	f.mu.Unlock()
	ip := g.Leases()[0].IP

	var wrongKey auth.Key
	wrongKey[0] = 1
	f.push(forceRenewMsg(t, g, xid^0x80000000, replay+1, key)) // same client index, other xid
	f.push(forceRenewMsg(t, g, xid, replay+1, wrongKey))
	f.push(forceRenewMsg(t, g, xid, replay, key)) // the ACK's own counter: not above it
	waitStats(t, g, "three bad FORCERENEWs", func(s ForceRenewStats) bool { return s.Received == 3 })
	if s := g.ForceRenewStats(); s.WrongXID != 1 || s.BadDigest != 1 || s.Replayed != 1 || s.Accepted != 0 {
		t.Fatalf("bad FORCERENEWs: %+v", s)
	}

	// A good one: the REQUEST it calls for is ACKed, the client renewed.
	f.push(forceRenewMsg(t, g, xid, replay+1, key))
	s := waitStats(t, g, "renewal", func(s ForceRenewStats) bool { return s.Renewed == 1 })
	if s.Accepted != 1 || s.NAKed != 0 {
		t.Fatalf("after a good FORCERENEW: %+v", s)
	}
	if l := g.Leases(); len(l) != 1 || l[0].IP != ip {
		t.Fatalf("leases %v after renewing, want %v", l, ip)
	}
	// Its xid is now the renewal's; the old one is refused.
	f.mu.Lock()
	xid2, replay := f.lastXID[string(g.cfg.Pop.MAC(0))], f.replay
	f.nakRenew = true
	f.mu.Unlock()
	if xid2 == xid {
		t.Fatal("the renewal kept the DORA's xid")
	}
	f.push(forceRenewMsg(t, g, xid, replay+10, key))
	waitStats(t, g, "stale xid", func(s ForceRenewStats) bool { return s.WrongXID == 2 })

	// Moved: the forced REQUEST is NAKed, the client DISCOVERs and binds.
	f.push(forceRenewMsg(t, g, xid2, replay+11, key))
	s = waitStats(t, g, "move", func(s ForceRenewStats) bool { return s.Moved == 1 })
	if s.NAKed != 1 || s.Accepted != 2 || s.Keys != 3 {
		t.Fatalf("after a NAKed FORCERENEW: %+v (want a new key from the SELECTING ACK)", s)
	}
	if g.Bound() != 1 {
		t.Fatalf("%d bound after the move", g.Bound())
	}
}

// TestForceRenewRetransmits: a forced REQUEST that goes unanswered is
// sent again, and so is a moved client's DISCOVER, so that the client
// still ends bound when the network drops one of each.
func TestForceRenewRetransmits(t *testing.T) {
	f := newFake()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f.key = &key
	g, err := New(Config{Clients: 1, Pop: Population{ClientIDs: true}, Server: netip.MustParseAddr("10.64.0.1"),
		GIAddr: netip.MustParseAddr("10.80.0.1"), LeaseTime: time.Hour, Timeout: 100 * time.Millisecond, ForceRenew: true}, f)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if n, err := g.Acquire(context.Background(), 1); err != nil || n != 1 {
		t.Fatalf("acquired %d: %v", n, err)
	}
	f.mu.Lock()
	xid, replay := f.lastXID[string(g.cfg.Pop.MAC(0))], f.replay
	// Drop the forced REQUEST and the DISCOVER after its NAK (the
	// fake's requests so far: DISCOVER and REQUEST of the acquisition).
	seen := f.n
	f.drop = func(n int) bool { return n == seen+1 || n == seen+3 }
	f.nakRenew = true
	f.mu.Unlock()
	f.push(forceRenewMsg(t, g, xid, replay+1, key))
	s := waitStats(t, g, "move after losses", func(s ForceRenewStats) bool { return s.Moved == 1 })
	if s.Retried != 2 || s.NAKed != 1 || s.Accepted != 1 || s.Lost != 0 {
		t.Fatalf("counts %+v: want one REQUEST and one DISCOVER sent again", s)
	}
	if g.Bound() != 1 {
		t.Fatalf("%d bound after the move", g.Bound())
	}
}
