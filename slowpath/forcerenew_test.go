package slowpath

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// memFloor is an auth.Floor in memory (the bbolt one has its own test).
type memFloor struct {
	mu sync.Mutex
	v  uint64
}

func (m *memFloor) Load() (uint64, error) { m.mu.Lock(); defer m.mu.Unlock(); return m.v, nil }
func (m *memFloor) Store(v uint64) error  { m.mu.Lock(); defer m.mu.Unlock(); m.v = v; return nil }

// frRig is a fixture whose server delivers keys (a Counter over floor,
// with the fixture's clock) and keeps campaigns in camps when set.
type frRig struct {
	*fixture
	floor *memFloor
	camps CampaignStore
}

func newFRRig(t *testing.T, camps CampaignStore, sub func(*Subnet)) *frRig {
	t.Helper()
	r := &frRig{floor: &memFloor{}, camps: camps}
	f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
	f.config = func(c *Config) {
		ctr, err := auth.NewCounter(r.floor, auth.CounterOptions{Now: func() time.Time { return f.now }})
		if err != nil {
			t.Fatal(err)
		}
		c.Counter, c.Campaigns = ctr, r.camps
		if sub != nil {
			sub(c.Subnets[0])
		}
	}
	f.srv = f.build()
	r.fixture = f
	return r
}

// cap145 is option 145 listing HMAC-MD5, as dhcpcd sends it.
var cap145 = dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(dhcpwire.OptForceRenewNonce), []byte{auth.AlgorithmHMACMD5}))

// keyOf returns the key option 90 of an ACK delivers, and its replay value.
func keyOf(t *testing.T, m *dhcpv4.DHCPv4) (auth.Key, uint64, bool) {
	t.Helper()
	v := m.Options.Get(dhcpv4.GenericOptionCode(dhcpwire.OptAuthentication))
	if v == nil {
		return auth.Key{}, 0, false
	}
	n, err := auth.ParseNonce(v)
	if err != nil || n.Type != auth.InfoTypeKey {
		t.Fatalf("ACK's option 90 %x: %v (type %d)", v, err, n.Type)
	}
	return auth.Key(n.Value), n.Replay, true
}

func xid(v uint32) dhcpv4.Modifier {
	return dhcpv4.WithTransactionID(dhcpv4.TransactionID{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// TestForceRenewKeyDelivery: 145 in the OFFER and a fresh key in option 90
// of SELECTING and INIT-REBOOT ACKs, only to a client that sent 145, never
// on a renewal; the key is stored with the lease, and no ACK leaves when
// the store fails.
func TestForceRenewKeyDelivery(t *testing.T) {
	r := newFRRig(t, nil, nil)
	offers := r.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1), cap145), bcast)
	if len(offers) != 1 || !bytes.Equal(offers[0].Options.Get(dhcpv4.GenericOptionCode(dhcpwire.OptForceRenewNonce)), []byte{1}) {
		t.Fatalf("OFFER to a 145 client lacks 145: %v", offers)
	}
	ack := r.dora(mac(1), cap145)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	k1, rp1, ok := keyOf(t, ack)
	if !ok {
		t.Fatal("SELECTING ACK to a 145 client carries no key")
	}
	if got := r.store.leases[ip].ForceRenewKey; !bytes.Equal(got, k1[:]) {
		t.Fatalf("stored key %x, ACK's %x", got, k1)
	}
	renew := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr)
	if len(renew) != 1 || renew[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: %v", renew)
	}
	if _, _, ok := keyOf(t, renew[0]); ok {
		t.Fatal("a RENEWING ACK carries a key (dhcpcd would reset its replay state)")
	}
	if got := r.store.leases[ip].ForceRenewKey; !bytes.Equal(got, k1[:]) {
		t.Fatal("a renewal changed the stored key")
	}
	r.now = r.now.Add(time.Nanosecond) // the counter is at least the clock: still strictly increasing without it
	reboot := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr))), bcast)
	if len(reboot) != 1 || reboot[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INIT-REBOOT: %v", reboot)
	}
	k2, rp2, ok := keyOf(t, reboot[0])
	if !ok || k2 == k1 || rp2 <= rp1 {
		t.Fatalf("INIT-REBOOT ACK: key %x (had %x), replay %d after %d", k2, k1, rp2, rp1)
	}
	if got := r.store.leases[ip].ForceRenewKey; !bytes.Equal(got, k2[:]) {
		t.Fatal("INIT-REBOOT's key not stored")
	}
	// An INIT-REBOOT without 145 (the client's configuration changed):
	// no key, and the old one is forgotten.
	plain := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr))), bcast)
	if _, _, ok := keyOf(t, plain[0]); ok || len(r.store.leases[ip].ForceRenewKey) != 0 {
		t.Fatal("a client without 145 was given or kept a key")
	}

	// A client without 145: no 145 in the OFFER, no key.
	o2 := r.send(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), bcast)
	if o2[0].Options.Has(dhcpv4.GenericOptionCode(dhcpwire.OptForceRenewNonce)) {
		t.Fatal("OFFER to a client without 145 carries 145")
	}
	a2 := r.dora(mac(2))
	ip2, _ := netip.AddrFromSlice(a2.YourIPAddr.To4())
	if _, _, ok := keyOf(t, a2); ok || len(r.store.leases[ip2].ForceRenewKey) != 0 {
		t.Fatal("a client without 145 was given a key")
	}

	// Durable before sent: a failing store sends no ACK, key or not.
	off := r.send(msg(t, dhcpv4.MessageTypeDiscover, mac(3), cap145), bcast)
	r.store.fail = errors.New("disk on fire")
	acks := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(3), cap145,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(off[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(off[0].ServerIdentifier()))), bcast)
	if len(acks) != 0 {
		t.Fatalf("ACK with a key sent although its commit failed: %v", acks)
	}
}

// forceRenews returns the FORCERENEWs sent since the last call, checking
// each one's addressing, header and signature against the lease.
func (r *frRig) forceRenews(t *testing.T) []*dhcpwire.Packet {
	t.Helper()
	var out []*dhcpwire.Packet
	for _, o := range r.out.take() {
		if o.Type != dhcpwire.ForceRenew {
			t.Fatalf("unexpected %s sent to %s", dhcpwire.MessageName(o.Type), o.Dst)
		}
		var p dhcpwire.Packet
		if err := p.Parse(o.Payload); err != nil {
			t.Fatal(err)
		}
		ip := o.Dst.Addr()
		l := r.srv.Lookup(ip)
		if l == nil || o.Dst.Port() != 68 || o.Src != l.ServerID || o.HWDst != nil {
			t.Fatalf("FORCERENEW sent to %s from %s (HWDst %v) for lease %+v", o.Dst, o.Src, o.HWDst, l)
		}
		if p.Op != dhcpwire.BootReply || p.MessageType() != dhcpwire.ForceRenew || p.XID != l.LastXID || !bytes.Equal(p.CHAddr(), l.HWAddr) {
			t.Fatalf("FORCERENEW op %d type %d xid %#x chaddr %x; lease xid %#x chaddr %s", p.Op, p.MessageType(), p.XID, p.CHAddr(), l.LastXID, l.HWAddr)
		}
		if sid, _ := p.AddrOption(dhcpwire.OptServerID); sid != l.ServerID {
			t.Fatalf("FORCERENEW option 54 %s, lease's %s", sid, l.ServerID)
		}
		if len(l.ForceRenewKey) > 0 {
			if _, err := auth.Verify(o.Payload, auth.Key(l.ForceRenewKey)); err != nil {
				t.Fatalf("FORCERENEW to %s does not verify under the stored key: %v", ip, err)
			}
		} else if _, ok := p.Option(dhcpwire.OptAuthentication); ok {
			t.Fatal("unauthenticated FORCERENEW carries option 90")
		}
		out = append(out, &p)
	}
	return out
}

func replayOf(t *testing.T, p *dhcpwire.Packet) uint64 {
	t.Helper()
	v, _ := p.Option(dhcpwire.OptAuthentication)
	n, err := auth.ParseNonce(v)
	if err != nil || n.Type != auth.InfoTypeDigest {
		t.Fatalf("FORCERENEW's option 90: %v, type %d", err, n.Type)
	}
	return n.Replay
}

// TestForceRenewOneClient: a signed FORCERENEW with the xid of the last
// ACKed REQUEST, retransmitted at 2 s, 4 s... and stopped by the client's
// REQUEST; the replay counter increases across the ACK's key and every
// FORCERENEW.
func TestForceRenewOneClient(t *testing.T) {
	r := newFRRig(t, nil, nil)
	ack := r.dora(mac(1), cap145)
	_, ackReplay, _ := keyOf(t, ack)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	// The last ACKed REQUEST is this renewal's (xid 0x0badcafe).
	r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, xid(0x0badcafe), dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr)

	id, err := r.srv.StartForceRenew(Selector{IP: ip}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	got := r.forceRenews(t)
	if len(got) != 1 || got[0].XID != 0x0badcafe {
		t.Fatalf("want one FORCERENEW with xid 0x0badcafe, got %d", len(got))
	}
	last := replayOf(t, got[0])
	if last <= ackReplay {
		t.Fatalf("FORCERENEW replay %d not above the ACK's %d", last, ackReplay)
	}
	// Retransmissions at +2 s and then +4 s more, each with a fresh replay value.
	start := r.now
	for _, at := range []time.Duration{2 * time.Second, 6 * time.Second} {
		r.srv.forceRenewTick(start.Add(at - time.Millisecond))
		if n := len(r.forceRenews(t)); n != 0 {
			t.Fatalf("%d FORCERENEWs before %v", n, at)
		}
		r.now = start.Add(at)
		r.srv.forceRenewTick(r.now)
		got := r.forceRenews(t)
		if len(got) != 1 {
			t.Fatalf("no retransmission at %v", at)
		}
		if rp := replayOf(t, got[0]); rp <= last {
			t.Fatalf("retransmission's replay %d not above %d", rp, last)
		} else {
			last = rp
		}
	}
	st, _ := r.srv.Campaign(id)
	if st.Sent != 1 || st.Transmissions != 3 || st.Remaining != 1 || st.Done {
		t.Fatalf("status while pending %+v", st)
	}
	// The client answers with a REQUEST: ACKed, no more FORCERENEWs.
	res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, xid(0x1234), dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr)
	if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("answer to FORCERENEW: %v", res)
	}
	r.srv.forceRenewTick(r.now.Add(time.Hour))
	if n := len(r.forceRenews(t)); n != 0 {
		t.Fatalf("%d FORCERENEWs after the client answered", n)
	}
	st, _ = r.srv.Campaign(id)
	if st.Renewed != 1 || st.Remaining != 0 || !st.Done || testutil.ToFloat64(r.srv.m.ForceRenewSent) != 3 || testutil.ToFloat64(r.srv.m.ForceRenewAnswered) != 1 {
		t.Fatalf("status %+v, sent %v", st, testutil.ToFloat64(r.srv.m.ForceRenewSent))
	}
	if r.srv.Lookup(ip).LastXID != 0x1234 {
		t.Fatal("the answer's xid was not recorded for the next FORCERENEW")
	}
	if _, err := r.srv.StartForceRenew(Selector{IP: netip.MustParseAddr("10.77.0.200")}, CampaignOptions{}); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("campaign over no lease: %v", err)
	}
	if _, err := r.srv.StartForceRenew(Selector{IP: ip, HWAddr: mac(1)}, CampaignOptions{}); !errors.Is(err, ErrSelector) {
		t.Fatalf("two selectors: %v", err)
	}
	// A rate the token count cannot hold (it overflowed, and the
	// campaign never sent anything nor ended) or a negative one.
	for _, rate := range []float64{1e20, MaxForceRenewRate * 2, -1, math.NaN()} {
		if _, err := r.srv.StartForceRenew(Selector{IP: ip}, CampaignOptions{Rate: rate}); err == nil || !strings.Contains(err.Error(), "rate") {
			t.Fatalf("rate %v: %v, want a rate error", rate, err)
		}
	}
}

// TestForceRenewGivesUpAndNoKey: a client that never answers is given up
// on after the subnet's retransmit bound and listed; a client without a
// key is not sent anything and listed, unless the subnet allows
// unauthenticated FORCERENEW; an INFORM answers.
func TestForceRenewGivesUpAndNoKey(t *testing.T) {
	r := newFRRig(t, nil, func(s *Subnet) { s.ForceRenew = ForceRenewSettings{RetransmitStart: time.Second, RetransmitCount: 3} })
	a1 := r.dora(mac(1), cap145)
	r.dora(mac(2))
	id, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := r.now
	var sentAt []time.Duration
	for ms := 0; ms <= 10_000; ms += 100 {
		at := start.Add(time.Duration(ms) * time.Millisecond)
		r.srv.forceRenewTick(at)
		for range r.forceRenews(t) {
			sentAt = append(sentAt, at.Sub(start))
		}
	}
	if want := []time.Duration{0, time.Second, 3 * time.Second}; !equalDurations(sentAt, want) {
		t.Fatalf("FORCERENEWs at %v, want %v", sentAt, want)
	}
	st, _ := r.srv.Campaign(id)
	ip1, _ := netip.AddrFromSlice(a1.YourIPAddr.To4())
	if st.Total != 2 || st.NoAnswer != 1 || st.NoKey != 1 || !st.Done || len(st.NoAnswerClients) != 1 || st.NoAnswerClients[0].IP != ip1 ||
		len(st.NoKeyClients) != 1 || st.NoKeyClients[0].HWAddr.String() != mac(2).String() {
		t.Fatalf("status %+v", st)
	}
	if testutil.ToFloat64(r.srv.m.ForceRenewGaveUp) != 1 {
		t.Fatal("give-up not counted")
	}

	// Unauthenticated allowed: the keyless client gets an unsigned one and
	// answers with an INFORM.
	r2 := newFRRig(t, nil, func(s *Subnet) { s.ForceRenew.AllowUnauthenticated = true })
	a := r2.dora(mac(2))
	if _, err := r2.srv.StartForceRenew(Selector{HWAddr: mac(2)}, CampaignOptions{}); err != nil {
		t.Fatal(err)
	}
	r2.srv.forceRenewTick(r2.now)
	if got := r2.forceRenews(t); len(got) != 1 {
		t.Fatalf("unauthenticated allowed: %d FORCERENEWs", len(got))
	}
	r2.send(msg(t, dhcpv4.MessageTypeInform, mac(2), dhcpv4.WithClientIP(a.YourIPAddr)), srvAddr)
	st2 := r2.srv.Campaigns()[0]
	if st2.Renewed != 1 || !st2.Done {
		t.Fatalf("INFORM did not answer: %+v", st2)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestForceRenewServeBit: while a FORCERENEW is pending the fast-path entry
// has Serve false, published before the FORCERENEW leaves; an answer puts
// it back, and so does a renewal the fast path answered (folded).
func TestForceRenewServeBit(t *testing.T) {
	r := newFRRig(t, nil, nil)
	fp := &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
	r.srv.fast = fp
	r.srv.set.HorizonAhead = 4 * time.Hour
	a := r.dora(mac(1), cap145)
	b := r.dora(mac(2), cap145)
	ipA, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
	ipB, _ := netip.AddrFromSlice(b.YourIPAddr.To4())
	if !fp.entries[ipA].Serve {
		t.Fatal("entry not served before any FORCERENEW")
	}
	// Record what the map held when each FORCERENEW left.
	var serveAtSend []bool
	r.srv.send = senderFunc(func(out []Outgoing) {
		for _, o := range out {
			if o.Type == dhcpwire.ForceRenew {
				fp.mu.Lock()
				serveAtSend = append(serveAtSend, fp.entries[o.Dst.Addr()].Serve)
				fp.mu.Unlock()
			}
		}
		r.out.Send(out)
	})
	if _, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{}); err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if got := r.forceRenews(t); len(got) != 2 || len(serveAtSend) != 2 || serveAtSend[0] || serveAtSend[1] {
		t.Fatalf("%d FORCERENEWs, Serve in the map when sent: %v", len(got), serveAtSend)
	}
	// A answers with a REQUEST to the slow path.
	r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(a.YourIPAddr)), srvAddr)
	if !fp.entries[ipA].Serve || fp.entries[ipB].Serve {
		t.Fatalf("after A's REQUEST: Serve A %v (want true), B %v (want false)", fp.entries[ipA].Serve, fp.entries[ipB].Serve)
	}
	// B's renewal was answered by the fast path (the entry had not yet
	// changed when it came): folded, it counts as the answer.
	r.now = r.now.Add(time.Second)
	r.srv.FoldRenewals([]Renewal{{IP: ipB, HWAddr: mac(2), XID: 77, At: r.now, Expiry: r.now.Add(time.Hour)}})
	if !fp.entries[ipB].Serve {
		t.Fatal("Serve still false after a folded renewal answered")
	}
	st := r.srv.Campaigns()[0]
	if st.Renewed != 2 || !st.Done {
		t.Fatalf("status %+v", st)
	}
	if l := r.store.leases[ipB]; l.LastXID != 77 || !l.Expiry.Equal(r.now.Add(time.Hour)) {
		t.Fatalf("folded renewal lost behind the serve-bit change: stored xid %d expiry %v", l.LastXID, l.Expiry)
	}
	r.srv.forceRenewTick(r.now.Add(time.Hour))
	if n := len(r.forceRenews(t)); n != 0 {
		t.Fatalf("%d FORCERENEWs after both answered", n)
	}
}

type senderFunc func([]Outgoing)

func (f senderFunc) Send(o []Outgoing) { f(o) }

// TestForceRenewMoveOutOfDrainingPool: renumbering. The old pool drains
// (no new grants, NAK to an INIT-REBOOT for one of its addresses from
// another client, its holder still renews), a Move campaign NAKs the
// client's REQUEST, and its DISCOVER gets an address of the new pool; the
// draining count falls to 0.
func TestForceRenewMoveOutOfDrainingPool(t *testing.T) {
	oldPool := [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.109")}
	newPool := [2]netip.Addr{netip.MustParseAddr("10.77.0.150"), netip.MustParseAddr("10.77.0.159")}
	r := newFRRig(t, nil, nil)
	a := r.dora(mac(1), cap145)
	ip, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
	// Reload: a new pool, the old one draining.
	subs := r.srv.subs.list
	var lan *Subnet
	for _, sn := range subs {
		if sn.Prefix.Contains(ip) {
			c := *sn
			c.Pools = [][2]netip.Addr{oldPool, newPool}
			c.Drain = [][2]netip.Addr{oldPool}
			lan = &c
		}
	}
	var list []*Subnet
	for _, sn := range subs {
		if sn.Prefix == lan.Prefix {
			list = append(list, lan)
		} else {
			list = append(list, sn)
		}
	}
	if err := r.srv.Reconfigure(r.srv.settings(), list, []Interface{{Index: 7, Name: "veth-srv", Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}}); err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix("10.77.0.0/24")
	if d := r.srv.PoolStats()[pfx]["draining"]; d != 1 {
		t.Fatalf("draining %d, want 1 (the one lease)", d)
	}
	// No new grants in the draining pool.
	if b := r.dora(mac(2)); !netip.MustParsePrefix("10.77.0.144/28").Contains(netip.AddrFrom4([4]byte(b.YourIPAddr.To4()))) {
		t.Fatalf("a new client got %s, in the draining pool", b.YourIPAddr)
	}
	if res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.105")))), bcast); len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("INIT-REBOOT for a free draining address from a client that does not hold it: %v", res)
	}
	// The holder still renews there.
	if res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(a.YourIPAddr)), srvAddr); len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal in a draining pool: %v", res)
	}

	id, err := r.srv.StartForceRenew(Selector{Pool: oldPool}, CampaignOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if got := r.forceRenews(t); len(got) != 1 {
		t.Fatalf("%d FORCERENEWs", len(got))
	}
	res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(a.YourIPAddr)), srvAddr)
	if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the forced client's REQUEST in a move: %v, want a NAK", res)
	}
	if r.lastOut.Dst != netip.AddrPortFrom(ip, 68) || r.lastOut.HWDst != nil {
		t.Fatalf("the move's NAK to a RENEWING client went to %s (HWDst %v), want its address, port 68, as its ACK would", r.lastOut.Dst, r.lastOut.HWDst)
	}
	if l := r.store.leases[ip]; l.State != lease.Released {
		t.Fatalf("old binding %v on disk after the move's NAK, want released", l.State)
	}
	moved := r.dora(mac(1), cap145)
	nip, _ := netip.AddrFromSlice(moved.YourIPAddr.To4())
	if nip.Less(newPool[0]) || newPool[1].Less(nip) {
		t.Fatalf("moved client got %s, want an address of %s-%s", nip, newPool[0], newPool[1])
	}
	if _, _, ok := keyOf(t, moved); !ok {
		t.Fatal("the new binding's ACK carries no key")
	}
	if l := r.srv.Lookup(ip); l.State == lease.Active {
		t.Fatalf("old address still %v", l.State)
	}
	st, _ := r.srv.Campaign(id)
	if st.Moved != 1 || !st.Done {
		t.Fatalf("status %+v", st)
	}
	if d := r.srv.PoolStats()[pfx]["draining"]; d != 0 {
		t.Fatalf("draining %d after the move, want 0", d)
	}
}

// TestForceRenewCampaignRateResumeStop: a campaign over a subnet at 5/s
// forces about 5 clients a second; it survives a restart (the campaign's
// progress in bbolt, the replay counter above every value sent before),
// and a stopped campaign stays stopped.
func TestForceRenewCampaignRateResumeStop(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "leases.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newFRRig(t, db, nil)
	const n = 8
	for i := range n {
		r.dora(mac(byte(10+i)), cap145)
	}
	id, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{Rate: 5})
	if err != nil {
		t.Fatal(err)
	}
	start := r.now
	var last uint64
	sent := 0
	answer := func(got []*dhcpwire.Packet) {
		for _, p := range got {
			if rp := replayOf(t, p); rp <= last {
				t.Fatalf("replay %d after %d", rp, last)
			} else {
				last = rp
			}
			l := r.srv.Lookup(r.srv.byHWFirst(p.CHAddr()))
			res := r.send(msg(t, dhcpv4.MessageTypeRequest, l.HWAddr, cap145, dhcpv4.WithClientIP(l.IP.AsSlice())), srvAddr)
			if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("answer: %v", res)
			}
		}
		sent += len(got)
	}
	// One second at 100 ms ticks: the first client at once, then 5/s.
	for ms := 0; ms <= 1000; ms += 100 {
		r.now = start.Add(time.Duration(ms) * time.Millisecond)
		r.srv.forceRenewTick(r.now)
		answer(r.forceRenews(t))
	}
	if sent < 5 || sent > 6 {
		t.Fatalf("%d clients forced in 1 s at 5/s", sent)
	}
	if g := r.srv.CampaignRemaining(); g != n-sent {
		t.Fatalf("remaining %d, want %d", g, n-sent)
	}

	// Restart: a new server over the same leases, floor and campaign
	// store, after Run's last flush of the campaign's progress.
	if err := r.srv.persistCampaigns(); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(-time.Hour) // and the clock stepped back
	r.srv = r.build()
	st, err := r.srv.Campaign(id)
	if err != nil || st.Renewed != sent || st.Remaining != n-sent || st.Done {
		t.Fatalf("resumed campaign %+v, %v (renewed before the restart: %d)", st, err, sent)
	}
	for range 40 {
		r.now = r.now.Add(100 * time.Millisecond)
		r.srv.forceRenewTick(r.now)
		answer(r.forceRenews(t))
	}
	st, _ = r.srv.Campaign(id)
	if sent != n || st.Renewed != n || !st.Done || st.Remaining != 0 {
		t.Fatalf("after the restart: %d sent, status %+v", sent, st)
	}

	// A stopped campaign: nothing more is sent, and it stays stopped
	// across a restart.
	id2, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{Rate: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if got := r.forceRenews(t); len(got) != 1 {
		t.Fatalf("%d FORCERENEWs at rate 1", len(got))
	}
	if err := r.srv.StopCampaign(id2); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		r.now = r.now.Add(time.Second)
		r.srv.forceRenewTick(r.now)
	}
	if got := r.forceRenews(t); len(got) != 0 {
		t.Fatalf("%d FORCERENEWs after the stop", len(got))
	}
	r.srv = r.build()
	r.srv.forceRenewTick(r.now)
	st2, _ := r.srv.Campaign(id2)
	if got := r.forceRenews(t); len(got) != 0 || !st2.Stopped || !st2.Done {
		t.Fatalf("stopped campaign after a restart: %d sent, %+v", len(got), st2)
	}
	if err := r.srv.StopCampaign("nope"); !errors.Is(err, ErrNoCampaign) {
		t.Fatalf("stopping an unknown campaign: %v", err)
	}
}

// byHWFirst is the address bound to hw (a test helper).
func (s *Server) byHWFirst(hw []byte) netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ip netip.Addr
	s.leases.Range(nil, func(l *lease.Lease) bool {
		if l.State == lease.Active && bytes.Equal(l.HWAddr, hw) {
			ip = l.IP
			return false
		}
		return true
	})
	return ip
}

// TestForceRenewMetrics: the FORCERENEW counters and the campaign gauge
// are registered under their names, and the gauge counts what is left.
func TestForceRenewMetrics(t *testing.T) {
	r := newFRRig(t, nil, nil)
	r.dora(mac(1), cap145)
	r.dora(mac(2), cap145)
	reg := prometheus.NewRegistry()
	if err := r.srv.m.Register(reg, r.srv); err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{Rate: 1}); err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	r.forceRenews(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"xdhcp_forcerenew_sent_total": 1, "xdhcp_forcerenew_answered_total": 0, "xdhcp_forcerenew_gave_up_total": 0,
		"xdhcp_forcerenew_campaign_remaining": 2,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (registered %v), want %v", name, v, ok, want)
		}
	}
}

// TestForceRenewRunsUnderRun: Server.Run owns the campaign loop: a
// campaign started while it runs is sent at once, and Run returns (its
// loop stopped, the progress stored) when its context ends.
func TestForceRenewRunsUnderRun(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "leases.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newFRRig(t, db, nil)
	a := r.dora(mac(1), cap145)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Run(ctx) }()
	id, err := r.srv.StartForceRenew(Selector{HWAddr: mac(1)}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, _ := r.srv.Campaign(id); st.Sent == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not send the campaign's FORCERENEW within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.forceRenews(t); len(got) != 1 {
		t.Fatalf("%d FORCERENEWs", len(got))
	}
	r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(a.YourIPAddr)), srvAddr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	// Run's last act stored the answer.
	recs, err := db.CampaignRecords()
	ip, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
	if err != nil || len(recs) != 1 || len(recs[0].Targets[ip]) == 0 || outcome(recs[0].Targets[ip][0]) != outRenewed {
		t.Fatalf("stored progress %+v, %v", recs, err)
	}
}

// BenchmarkBuildForceRenew is the cost of one signed FORCERENEW: the
// replay value, the message and its HMAC-MD5 (issue 16's goal: 50k/s on
// one core, 20 µs each).
func BenchmarkBuildForceRenew(b *testing.B) {
	ctr, err := auth.NewCounter(&memFloor{}, auth.CounterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{ctr: ctr}
	k, _ := auth.NewKey()
	m := frMsg{ip: netip.MustParseAddr("10.77.0.100"), sid: srvAddr, xid: 0x01020304, htype: 1, chaddr: mac(1), key: k[:], ifindex: 7}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.buildForceRenew(m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestForceRenewMoveAtNextRenewal: clients a Move campaign cannot force
// (no key; no answer) are listed, their fast-path entries stop answering,
// and their own next renewal is NAKed (the binding ends) — also after a
// restart; a client that is not marked still renews.
func TestForceRenewMoveAtNextRenewal(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "leases.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newFRRig(t, db, func(s *Subnet) { s.ForceRenew = ForceRenewSettings{RetransmitStart: time.Second, RetransmitCount: 1} })
	fp := &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
	attach := func() {
		r.srv.fast = fp
		r.srv.set.HorizonAhead = 4 * time.Hour
	}
	attach()
	noKey := r.dora(mac(1))          // udhcpc-like: no 145
	silent := r.dora(mac(2), cap145) // keyed, but will not answer
	ipK, _ := netip.AddrFromSlice(noKey.YourIPAddr.To4())
	ipS, _ := netip.AddrFromSlice(silent.YourIPAddr.To4())
	id, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		r.now = r.now.Add(100 * time.Millisecond)
		r.srv.forceRenewTick(r.now)
	}
	if got := r.forceRenews(t); len(got) != 1 {
		t.Fatalf("%d FORCERENEWs, want 1 (to the keyed client, once)", len(got))
	}
	st, _ := r.srv.Campaign(id)
	if st.NoKey != 1 || st.NoAnswer != 1 || !st.Done || st.MovedAtRenewal != 0 {
		t.Fatalf("status %+v", st)
	}
	if fp.entries[ipK].Serve || fp.entries[ipS].Serve {
		t.Fatal("the fast path still answers the renewals of clients to move")
	}
	// The no-key client renews: NAKed, its binding ends.
	res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(noKey.YourIPAddr)), srvAddr)
	if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeNak || r.store.leases[ipK].State != lease.Released {
		t.Fatalf("no-key client's renewal: %v, lease %v", res, r.store.leases[ipK].State)
	}
	if err := r.srv.persistCampaigns(); err != nil {
		t.Fatal(err)
	}
	// Restart: the silent client is still to move.
	r.srv = r.build()
	attach()
	r.srv.PublishAll()
	if fp.entries[ipS].Serve {
		t.Fatal("after a restart the fast path answers a client still to move")
	}
	if st, _ := r.srv.Campaign(id); st.MovedAtRenewal != 1 {
		t.Fatalf("after a restart: %+v", st)
	}
	res = r.send(msg(t, dhcpv4.MessageTypeRequest, mac(2), cap145, dhcpv4.WithClientIP(silent.YourIPAddr)), srvAddr)
	if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("silent client's renewal after the restart: %v", res)
	}
	if st, _ := r.srv.Campaign(id); st.MovedAtRenewal != 2 || st.NoKey != 1 || st.NoAnswer != 1 {
		t.Fatalf("final status %+v", st)
	}
	// A client the campaign did not cover renews as before.
	other := r.dora(mac(3))
	if res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(3), dhcpv4.WithClientIP(other.YourIPAddr)), srvAddr); len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("unmarked client's renewal: %v", res)
	}
}

// failFloor is a floor whose disk fails: the counter hands out nothing.
type failFloor struct{}

func (failFloor) Load() (uint64, error) { return 0, nil }
func (failFloor) Store(uint64) error    { return errors.New("disk on fire") }

// TestNoKeyNoAck: when no replay value can be made durable, a client that
// was offered 145 gets no ACK (not one without the key it was promised)
// and no binding; a client without 145 is served as before.
func TestNoKeyNoAck(t *testing.T) {
	r := newFRRig(t, nil, nil)
	ctr, err := auth.NewCounter(failFloor{}, auth.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.ctr = ctr
	off := r.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1), cap145), bcast)
	acks := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(off[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(off[0].ServerIdentifier()))), bcast)
	ip, _ := netip.AddrFromSlice(off[0].YourIPAddr.To4())
	if len(acks) != 0 || r.store.leases[ip] != nil {
		t.Fatalf("ACK %v / binding %+v without a durable replay value", acks, r.store.leases[ip])
	}
	if got := testutil.ToFloat64(r.srv.m.Dropped.WithLabelValues("forcerenew_key")); got != 1 {
		t.Fatalf("dropped{forcerenew_key} = %v", got)
	}
	r.srv.mu.Lock()
	o, held := r.srv.offers[ip]
	r.srv.mu.Unlock()
	if !held || o.client != lease.ClientKey(nil, 1, mac(1)) {
		t.Fatal("the failed ACK lost the client's offer (its address would be held by nothing)")
	}
	r.dora(mac(2))
}

// TestForceRenewToRelayedClients: a relayed client is reached by routing
// (no interface forced), from the server id; with an RFC 5107 override
// (the relay's address, not ours) option 54 still names it but the kernel
// picks the source address.
func TestForceRenewToRelayedClients(t *testing.T) {
	r := newFRRig(t, nil, nil)
	plain := r.dora(mac(1), append(viaRelay([]byte{1, 3, 'c', 'p', 'e'}), cap145)...)
	override := r.dora(mac(2), append(viaRelay([]byte{1, 3, 'c', 'p', 'f', 11, 4, 10, 78, 0, 1}), cap145)...)
	if _, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.78.0.0/16")}, CampaignOptions{}); err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	got := map[netip.Addr]Outgoing{}
	for _, o := range r.out.take() {
		got[o.Dst.Addr()] = o
	}
	ipP, _ := netip.AddrFromSlice(plain.YourIPAddr.To4())
	ipO, _ := netip.AddrFromSlice(override.YourIPAddr.To4())
	if o := got[ipP]; o.Type != dhcpwire.ForceRenew || o.IfIndex != 0 || o.Src != srvAddr || o.Dst.Port() != 68 {
		t.Fatalf("to the relayed client: %+v", o)
	}
	o := got[ipO]
	var p dhcpwire.Packet
	if err := p.Parse(o.Payload); err != nil {
		t.Fatal(err)
	}
	if sid, _ := p.AddrOption(dhcpwire.OptServerID); o.IfIndex != 0 || o.Src.IsValid() || sid != relayAddr {
		t.Fatalf("to the client behind an override: ifindex %d, src %v, option 54 %v", o.IfIndex, o.Src, sid)
	}
	if _, err := auth.Verify(o.Payload, auth.Key(r.srv.Lookup(ipO).ForceRenewKey)); err != nil {
		t.Fatal(err)
	}
}

// recsStore is a CampaignStore holding given records.
type recsStore []CampaignRecord

func (recsStore) PutCampaign(string, []byte, map[netip.Addr][]byte) error { return nil }
func (r recsStore) CampaignRecords() ([]CampaignRecord, error)            { return r, nil }

// TestBadCampaignRecordIsSkipped: a campaign whose record does not decode
// is not resumed, and does not stop the server from loading (the leases
// are the truth); a good one beside it is resumed, MAC selector and all.
func TestBadCampaignRecordIsSkipped(t *testing.T) {
	ip := netip.MustParseAddr("10.77.0.100")
	good := []byte(`{"selector":{"hw-address":"AgAAAAEB"},"options":{"move":true},"started":"2027-01-15T08:00:00Z"}`)
	recs := recsStore{
		{ID: "bad-target", Meta: good, Targets: map[netip.Addr][]byte{ip: {9, 1}}},
		{ID: "bad-meta", Meta: []byte("{"), Targets: map[netip.Addr][]byte{ip: {0, 1}}},
		{ID: "good", Meta: good, Targets: map[netip.Addr][]byte{ip: append([]byte{0, 1}, mac(1)...)}},
	}
	r := newFRRig(t, recs, nil)
	cs := r.srv.Campaigns()
	if len(cs) != 1 || cs[0].ID != "good" || cs[0].Selector.HWAddr.String() != mac(1).String() || !cs[0].Options.Move || cs[0].Remaining != 1 {
		t.Fatalf("campaigns %+v", cs)
	}
}

// heldStore holds every commit until release, as a disk that has not
// synced yet; while open, commits go straight through.
type heldStore struct {
	*memStore
	mu   sync.Mutex
	held []func()
	open bool
	// since is when the oldest held commit was submitted.
	since time.Time
}

func (h *heldStore) Submit(ls []*lease.Lease, done func(error)) {
	h.mu.Lock()
	if h.open {
		h.mu.Unlock()
		h.memStore.Submit(ls, done)
		return
	}
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		h.since = time.Now()
	}
	h.held = append(h.held, func() { h.memStore.Submit(ls, done) })
}

// Behind is how long the oldest commit held has waited (the stand-in's
// transactions take no time).
func (h *heldStore) Behind() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		return 0
	}
	return time.Since(h.since)
}

// release lands the commits held, in order, failing them all with fail
// when it is not nil.
func (h *heldStore) release(fail error) {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	h.memStore.mu.Lock()
	h.memStore.fail = fail
	h.memStore.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestForceRenewAnswerCountsOnceApplied: a campaign counts a client
// renewed only once its answer's lease is on disk and the fast path serves
// it again; `xdhcpctl forcerenew --wait` returns when the campaign is done,
// and a renewal sent before was punted (not_serving) by XDP. Within a store
// transaction the map is written after the callbacks run: the campaign
// waits for that too. A commit that fails leaves the client reported as
// not answering, its entry still not serving.
func TestForceRenewAnswerCountsOnceApplied(t *testing.T) {
	request := func(r *frRig, ip netip.Addr) {
		r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, dhcpv4.WithClientIP(ip.AsSlice())), srvAddr)
	}
	fold := func(r *frRig, ip netip.Addr) {
		r.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(1), XID: 77, At: r.now, Expiry: r.now.Add(time.Hour)}})
	}
	for _, tc := range []struct {
		name     string
		answer   func(r *frRig, ip netip.Addr)
		noFast   bool
		inTx     bool // the commits land in a store transaction (Committed), as in the daemon
		fail     error
		renewed  int
		noAnswer int
	}{
		{name: "REQUEST", answer: request, renewed: 1},
		{name: "REQUEST in a transaction", answer: request, inTx: true, renewed: 1},
		{name: "folded renewal in a transaction", answer: fold, inTx: true, renewed: 1},
		{name: "REQUEST without a fast path", answer: request, noFast: true, renewed: 1},
		{name: "REQUEST whose commit fails", answer: request, inTx: true, fail: errors.New("disk on fire"), noAnswer: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFRRig(t, nil, nil)
			fp := &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
			if !tc.noFast {
				r.srv.fast = fp
				r.srv.set.HorizonAhead = 4 * time.Hour
			}
			ip, _ := netip.AddrFromSlice(r.dora(mac(1), cap145).YourIPAddr.To4())
			id, err := r.srv.StartForceRenew(Selector{IP: ip}, CampaignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r.srv.forceRenewTick(r.now)
			if got := r.forceRenews(t); len(got) != 1 {
				t.Fatalf("%d FORCERENEWs, want 1", len(got))
			}
			held := &heldStore{memStore: r.store}
			r.srv.store = held
			r.now = r.now.Add(time.Second)
			tc.answer(r, ip)
			if st, _ := r.srv.Campaign(id); st.Done || st.Renewed != 0 || st.Remaining != 1 {
				t.Fatalf("answered, its commit not on disk: campaign %+v, want not done", st)
			}
			if tc.inTx {
				r.srv.Committed(func() {
					held.release(tc.fail)
					// The callbacks ran; the map is written after them.
					if st, _ := r.srv.Campaign(id); st.Done {
						t.Errorf("campaign done before the transaction's write to the fast path (Serve %v): %+v", fp.entries[ip].Serve, st)
					}
				})
			} else {
				held.release(tc.fail)
			}
			st, _ := r.srv.Campaign(id)
			if !st.Done || st.Renewed != tc.renewed || st.NoAnswer != tc.noAnswer || st.Remaining != 0 {
				t.Fatalf("after the commit: campaign %+v, want done, %d renewed, %d no answer", st, tc.renewed, tc.noAnswer)
			}
			if !tc.noFast && fp.entries[ip].Serve != (tc.fail == nil) {
				t.Fatalf("after the commit (error %v): Serve %v in the map", tc.fail, fp.entries[ip].Serve)
			}
		})
	}
}

// flakyCamps is a CampaignStore whose writes fail while fail is set; it
// keeps the last description written per campaign.
type flakyCamps struct {
	mu   sync.Mutex
	fail bool
	meta map[string][]byte
}

func (f *flakyCamps) PutCampaign(id string, meta []byte, _ map[netip.Addr][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("disk on fire")
	}
	if meta != nil {
		f.meta[id] = meta
	}
	return nil
}
func (f *flakyCamps) CampaignRecords() ([]CampaignRecord, error) { return nil, nil }

// TestCampaignStopStoredAfterAFailedWrite: a stop whose write fails is
// written at a later tick once the store works again (it was forgotten:
// a restart resumed the campaign, and a second stop stored nothing).
func TestCampaignStopStoredAfterAFailedWrite(t *testing.T) {
	camps := &flakyCamps{meta: map[string][]byte{}}
	r := newFRRig(t, camps, nil)
	ack := r.dora(mac(1), cap145)
	id, err := r.srv.StartForceRenew(Selector{IP: addrOf(ack.YourIPAddr)}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	camps.mu.Lock()
	camps.fail = true
	camps.mu.Unlock()
	if err := r.srv.StopCampaign(id); err == nil {
		t.Fatal("a stop whose write failed reported success")
	}
	camps.mu.Lock()
	camps.fail = false
	camps.mu.Unlock()
	r.srv.forceRenewTick(r.now)
	camps.mu.Lock()
	defer camps.mu.Unlock()
	if !bytes.Contains(camps.meta[id], []byte(`"stopped":true`)) {
		t.Fatalf("the stop was not stored once the store worked: %s", camps.meta[id])
	}
}
