package slowpath

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// memInformStore is an InformStore in memory. With hold set, writes wait
// (and their done with them) until release, as a disk that has not
// fsynced yet.
type memInformStore struct {
	mu     sync.Mutex
	recs   map[netip.Addr][]byte
	fail   error
	hold   bool
	held   []func()
	writes int
}

func newMemInformStore() *memInformStore {
	return &memInformStore{recs: map[netip.Addr][]byte{}}
}

func (m *memInformStore) SubmitInformed(recs map[netip.Addr][]byte, done func(error)) {
	apply := func() {
		m.mu.Lock()
		err := m.fail
		if err == nil {
			for ip, v := range recs {
				if v == nil {
					delete(m.recs, ip)
				} else {
					m.recs[ip] = bytes.Clone(v)
				}
			}
			m.writes++
		}
		m.mu.Unlock()
		if done != nil {
			done(err)
		}
	}
	m.mu.Lock()
	if m.hold {
		m.held = append(m.held, apply)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	apply()
}

func (m *memInformStore) InformedRecords() (map[netip.Addr][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.recs), nil
}

// release lets the held writes reach the "disk".
func (m *memInformStore) release() {
	m.mu.Lock()
	h := m.held
	m.held, m.hold = nil, false
	m.mu.Unlock()
	for _, f := range h {
		f()
	}
}

// stored decodes the record stored for ip (nil when none).
func (m *memInformStore) stored(t *testing.T, ip netip.Addr) *informedClient {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.recs[ip]
	if !ok {
		return nil
	}
	c := &informedClient{}
	if err := json.Unmarshal(v, c); err != nil {
		t.Fatalf("stored record of %s: %v", ip, err)
	}
	return c
}

// newInformRig is an frRig whose server remembers informed clients in is
// (settings adjusts its Settings when set).
func newInformRig(t *testing.T, is *memInformStore, sub func(*Subnet), settings func(*Settings)) *frRig {
	t.Helper()
	r := newFRRig(t, nil, sub)
	prev := r.config
	r.config = func(c *Config) {
		prev(c)
		c.Informed = is
		if settings != nil {
			settings(&c.Settings)
		}
	}
	r.srv = r.build()
	return r
}

// inform sends a DHCPINFORM from hw at ci (unicast to the server) and
// returns the replies.
func (r *frRig) inform(hw net.HardwareAddr, ci netip.Addr, x uint32, mods ...dhcpv4.Modifier) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	return r.send(msg(r.t, dhcpv4.MessageTypeInform, hw, append([]dhcpv4.Modifier{xid(x), dhcpv4.WithClientIP(ci.AsSlice())}, mods...)...), srvAddr)
}

var (
	static1 = netip.MustParseAddr("10.77.0.50") // outside the pool: configured by hand
	static2 = netip.MustParseAddr("10.77.0.51")
	static3 = netip.MustParseAddr("10.77.0.52")
)

// TestInformKeyDelivery: an INFORM's ACK carries a fresh key in option 90
// only to a client that sent 145; the client's record (xid, chaddr,
// client-id, key) is on disk before an ACK with a key leaves, and no such
// ACK leaves when the write fails; an address held by an active lease is
// not recorded; without an InformStore no key is given.
func TestInformKeyDelivery(t *testing.T) {
	is := newMemInformStore()
	r := newInformRig(t, is, nil, nil)
	cid := []byte{1, 2, 0, 0, 0, 1, 1}

	is.hold = true
	if got := r.inform(mac(1), static1, 0x1111, cap145, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid))); len(got) != 0 {
		t.Fatalf("an ACK with a key left before its record was on disk: %v", got)
	}
	if is.stored(t, static1) != nil {
		t.Fatal("record on disk before the write was released")
	}
	is.release()
	var acks []*dhcpv4.DHCPv4
	for _, o := range r.out.take() {
		m, err := dhcpv4.FromBytes(o.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if o.Dst != netip.AddrPortFrom(static1, 68) {
			t.Fatalf("INFORM's ACK sent to %s", o.Dst)
		}
		acks = append(acks, m)
	}
	if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("after the write: %v", acks)
	}
	k1, rp1, ok := keyOf(t, acks[0])
	if !ok {
		t.Fatal("INFORM's ACK to a 145 client carries no key")
	}
	rec := is.stored(t, static1)
	if rec == nil || !bytes.Equal(rec.Key, k1[:]) || rec.XID != 0x1111 || !bytes.Equal(rec.HWAddr, mac(1)) || !bytes.Equal(rec.ClientID, cid) ||
		rec.ServerID != srvAddr || rec.Subnet != netip.MustParsePrefix("10.77.0.0/24") || !rec.Seen.Equal(r.now) {
		t.Fatalf("stored record %+v (key %x)", rec, k1)
	}

	// Each INFORM: a new key, a higher replay value, the new xid.
	r.now = r.now.Add(time.Nanosecond)
	a2 := r.inform(mac(1), static1, 0x2222, cap145, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
	k2, rp2, ok := keyOf(t, a2[0])
	if !ok || k2 == k1 || rp2 <= rp1 {
		t.Fatalf("second INFORM: key %x (had %x), replay %d after %d", k2, k1, rp2, rp1)
	}
	if rec := is.stored(t, static1); !bytes.Equal(rec.Key, k2[:]) || rec.XID != 0x2222 {
		t.Fatalf("record after the second INFORM %+v", rec)
	}
	// The same client without 145: no key, and the old one forgotten.
	a3 := r.inform(mac(1), static1, 0x3333, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
	if _, _, ok := keyOf(t, a3[0]); ok || len(is.stored(t, static1).Key) != 0 {
		t.Fatal("a client without 145 was given or kept a key")
	}
	// Another client without 145: answered at once, recorded without a key.
	is.hold = true
	if a := r.inform(mac(2), static2, 0x4444); len(a) != 1 {
		t.Fatalf("an INFORM without 145 waited for the disk: %v", a)
	}
	is.release()
	if rec := is.stored(t, static2); rec == nil || len(rec.Key) != 0 || rec.XID != 0x4444 {
		t.Fatalf("record of a client without 145: %+v", rec)
	}

	// A failed write: no ACK with a key. (The record stays in memory, as
	// a lease's change does when its commit fails; a FORCERENEW under a
	// key the client never got is ignored, and it is listed no-answer.)
	is.fail = errors.New("disk on fire")
	if a := r.inform(mac(3), static3, 0x5555, cap145); len(a) != 0 {
		t.Fatalf("ACK with a key sent although its record was not stored: %v", a)
	}
	is.fail = nil

	// A client holding a lease that INFORMs: the lease's, not recorded,
	// no key (the lease's key stays the one FORCERENEW uses).
	ack := r.dora(mac(4), cap145)
	leased, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	lk, _, _ := keyOf(t, ack)
	a4 := r.inform(mac(4), leased, 0x6666, cap145)
	if _, _, ok := keyOf(t, a4[0]); ok || is.stored(t, leased) != nil || r.srv.InformedCount() != 3 {
		t.Fatalf("INFORM from a leased address: key given %v, record %+v, %d remembered", ok, is.stored(t, leased), r.srv.InformedCount())
	}
	if !bytes.Equal(r.srv.Lookup(leased).ForceRenewKey, lk[:]) {
		t.Fatal("an INFORM changed the lease's key")
	}

	// Without an InformStore: remembered in memory, never given a key.
	r2 := newFRRig(t, nil, nil)
	a5 := r2.inform(mac(1), static1, 0x7777, cap145)
	if _, _, ok := keyOf(t, a5[0]); ok || r2.srv.InformedCount() != 1 {
		t.Fatalf("without an InformStore: key given %v, %d remembered", ok, r2.srv.InformedCount())
	}
}

// informedForceRenews returns the FORCERENEWs sent since the last call,
// checking each against the informed client's record: to ciaddr:68 from
// the server id, the last INFORM's xid, chaddr, option 54, and a digest
// that verifies under the key.
func (r *frRig) informedForceRenews(t *testing.T, key map[netip.Addr]auth.Key) []*dhcpwire.Packet {
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
		r.srv.mu.Lock()
		ic := *r.srv.informed[ip]
		r.srv.mu.Unlock()
		if o.Dst.Port() != 68 || o.Src != ic.ServerID || o.HWDst != nil || o.IfIndex != 7 {
			t.Fatalf("FORCERENEW sent to %s from %s (HWDst %v, ifindex %d)", o.Dst, o.Src, o.HWDst, o.IfIndex)
		}
		if p.Op != dhcpwire.BootReply || p.XID != ic.XID || !bytes.Equal(p.CHAddr(), ic.HWAddr) {
			t.Fatalf("FORCERENEW op %d xid %#x chaddr %x; informed xid %#x chaddr %s", p.Op, p.XID, p.CHAddr(), ic.XID, ic.HWAddr)
		}
		if sid, _ := p.AddrOption(dhcpwire.OptServerID); sid != srvAddr {
			t.Fatalf("option 54 %s", sid)
		}
		if _, err := auth.Verify(o.Payload, key[ip]); err != nil {
			t.Fatalf("FORCERENEW to %s does not verify under the key its INFORM's ACK delivered: %v", ip, err)
		}
		out = append(out, &p)
	}
	return out
}

// TestForceRenewInformedClient: a campaign names clients configured by
// INFORM by IP, MAC, client-id, subnet and pool; the FORCERENEW carries
// the last INFORM's xid and verifies under the key that INFORM's ACK
// delivered, with a replay value above it; it is retransmitted until a
// new INFORM arrives, which ends it; a Move campaign reports an informed
// client as informed, not moved, while it moves a lease beside it.
func TestForceRenewInformedClient(t *testing.T) {
	is := newMemInformStore()
	r := newInformRig(t, is, nil, nil)
	cid := []byte{1, 2, 0, 0, 0, 1, 1}
	keys := map[netip.Addr]auth.Key{}
	a := r.inform(mac(1), static1, 0xabcd0001, cap145, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
	k, ackReplay, _ := keyOf(t, a[0])
	keys[static1] = k

	for _, sel := range []Selector{{IP: static1}, {HWAddr: mac(1)}, {ClientID: cid}, {Subnet: netip.MustParsePrefix("10.77.0.0/26")},
		{Pool: [2]netip.Addr{netip.MustParseAddr("10.77.0.40"), netip.MustParseAddr("10.77.0.60")}}} {
		r.now = r.now.Add(time.Hour) // past every retransmission of the round before
		id, err := r.srv.StartForceRenew(sel, CampaignOptions{})
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		r.srv.forceRenewTick(r.now)
		got := r.informedForceRenews(t, keys)
		if len(got) != 1 {
			t.Fatalf("%s: %d FORCERENEWs", sel, len(got))
		}
		rp := replayOf(t, got[0])
		if rp <= ackReplay {
			t.Fatalf("%s: replay %d not above the last option 90's %d", sel, rp, ackReplay)
		}
		ackReplay = rp
		// Retransmitted at +2 s, with a fresh replay value.
		r.srv.forceRenewTick(r.now.Add(2 * time.Second))
		again := r.informedForceRenews(t, keys)
		if len(again) != 1 || again[0].XID != got[0].XID || replayOf(t, again[0]) <= rp {
			t.Fatalf("%s: retransmission %v", sel, again)
		}
		ackReplay = replayOf(t, again[0])
		// dhcpcd answers in INFORM state with a new INFORM (a new xid).
		r.now = r.now.Add(3 * time.Second)
		nx := got[0].XID + 1
		a := r.inform(mac(1), static1, nx, cap145, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
		if len(a) != 1 || a[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s: answer to the INFORM: %v", sel, a)
		}
		k, ackReplay, _ = keyOf(t, a[0])
		keys[static1] = k
		r.srv.forceRenewTick(r.now.Add(time.Minute))
		if n := len(r.informedForceRenews(t, keys)); n != 0 {
			t.Fatalf("%s: %d FORCERENEWs after the new INFORM", sel, n)
		}
		st, _ := r.srv.Campaign(id)
		if st.Total != 1 || st.Informed != 1 || st.Renewed != 0 || st.Remaining != 0 || !st.Done || st.Transmissions != 2 {
			t.Fatalf("%s: status %+v", sel, st)
		}
		r.srv.mu.Lock()
		gotXID := r.srv.informed[static1].XID
		r.srv.mu.Unlock()
		if gotXID != nx {
			t.Fatalf("%s: the new INFORM's xid %#x not recorded (%#x)", sel, nx, gotXID)
		}
	}

	// A Move campaign over the subnet: the lease is moved (NAKed), the
	// informed client only re-INFORMs; a client without a key is listed.
	r.now = r.now.Add(time.Hour)
	ack := r.dora(mac(9), cap145)
	leased, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	r.inform(mac(2), static2, 0x2, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 1, 2})))
	id, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if n := len(r.out.take()); n != 2 {
		t.Fatalf("%d FORCERENEWs to one lease and one keyed informed client", n)
	}
	nak := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(9), cap145, dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr)
	if len(nak) != 1 || nak[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the lease's forced REQUEST: %v", nak)
	}
	a = r.inform(mac(1), static1, 0x99, cap145, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)))
	if len(a) != 1 || a[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the informed client's INFORM in a Move campaign: %v", a)
	}
	st, _ := r.srv.Campaign(id)
	if st.Total != 3 || st.Moved != 1 || st.Informed != 1 || st.NoKey != 1 || !st.Done ||
		len(st.NoKeyClients) != 1 || st.NoKeyClients[0].IP != static2 {
		t.Fatalf("Move campaign status %+v", st)
	}
	if l := r.srv.Lookup(leased); l.State.String() == "active" {
		t.Fatal("the lease was not moved")
	}
	if testutil.ToFloat64(r.srv.m.ForceRenewAnswered) != 7 {
		t.Fatalf("answered %v, want 7", testutil.ToFloat64(r.srv.m.ForceRenewAnswered))
	}
}

// TestForceRenewInformedNoAnswerAndForgotten: an informed client that does
// not answer is given up on and listed; one forgotten (expired) while
// pending is skipped, not forced on.
func TestForceRenewInformedNoAnswerAndForgotten(t *testing.T) {
	is := newMemInformStore()
	r := newInformRig(t, is, func(s *Subnet) { s.ForceRenew = ForceRenewSettings{RetransmitStart: time.Second, RetransmitCount: 2} },
		func(s *Settings) { s.InformedTTL = time.Minute })
	r.inform(mac(1), static1, 1, cap145)
	r.inform(mac(2), static2, 2, cap145)
	id, err := r.srv.StartForceRenew(Selector{IP: static1}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{0, time.Second, 3 * time.Second} {
		r.srv.forceRenewTick(r.now.Add(at))
	}
	if n := len(r.out.take()); n != 2 {
		t.Fatalf("%d FORCERENEWs, want the retransmit bound 2", n)
	}
	st, _ := r.srv.Campaign(id)
	if st.NoAnswer != 1 || !st.Done || len(st.NoAnswerClients) != 1 || st.NoAnswerClients[0].IP != static1 || !bytes.Equal(st.NoAnswerClients[0].HWAddr, mac(1)) {
		t.Fatalf("status %+v", st)
	}

	id2, err := r.srv.StartForceRenew(Selector{IP: static2}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if n := len(r.out.take()); n != 1 {
		t.Fatalf("%d FORCERENEWs", n)
	}
	r.now = r.now.Add(2 * time.Minute)
	r.srv.Sweep()
	r.srv.forceRenewTick(r.now)
	if n := len(r.out.take()); n != 0 {
		t.Fatalf("%d FORCERENEWs to a forgotten client", n)
	}
	if st, _ := r.srv.Campaign(id2); st.Skipped != 1 || !st.Done {
		t.Fatalf("status %+v", st)
	}
	if _, err := r.srv.StartForceRenew(Selector{IP: static2}, CampaignOptions{}); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("campaign over a forgotten client: %v", err)
	}
}

// TestInformedTableBounds: the table holds at most InformedMax clients,
// the least recently informed forgotten first (counted, and deleted from
// the store); a client not heard from for InformedTTL is forgotten by the
// sweep, one that INFORMs again is kept.
func TestInformedTableBounds(t *testing.T) {
	is := newMemInformStore()
	r := newInformRig(t, is, nil, func(s *Settings) { s.InformedMax, s.InformedTTL = 2, time.Hour })
	r.inform(mac(1), static1, 1)
	r.now = r.now.Add(time.Minute)
	r.inform(mac(2), static2, 2)
	r.now = r.now.Add(time.Minute)
	r.inform(mac(1), static1, 3) // static1 is now the most recent
	r.now = r.now.Add(time.Minute)
	r.inform(mac(3), static3, 4)
	if n := r.srv.InformedCount(); n != 2 {
		t.Fatalf("%d remembered, bound 2", n)
	}
	if is.stored(t, static2) != nil || is.stored(t, static1) == nil || is.stored(t, static3) == nil {
		t.Fatal("not the least recently informed evicted (or not deleted from the store)")
	}
	if v := testutil.ToFloat64(r.srv.m.InformedEvicted); v != 1 {
		t.Fatalf("evicted %v", v)
	}
	if _, err := r.srv.StartForceRenew(Selector{IP: static2}, CampaignOptions{}); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("campaign over an evicted client: %v", err)
	}

	// An hour after static1's last INFORM; static3 INFORMs again first.
	r.now = r.now.Add(58 * time.Minute)
	r.inform(mac(3), static3, 5)
	r.now = r.now.Add(time.Minute)
	r.srv.Sweep()
	if n := r.srv.InformedCount(); n != 1 || is.stored(t, static1) != nil || is.stored(t, static3) == nil {
		t.Fatalf("after the TTL: %d remembered, static1 stored %v", n, is.stored(t, static1) != nil)
	}
	if v := testutil.ToFloat64(r.srv.m.InformedExpired); v != 1 {
		t.Fatalf("expired %v", v)
	}
	// Another client at an address: the old client's record (key too) is
	// replaced, not merged.
	r.inform(mac(7), static3, 6)
	if rec := is.stored(t, static3); !bytes.Equal(rec.HWAddr, mac(7)) || rec.XID != 6 {
		t.Fatalf("record after another client informed from the address: %+v", rec)
	}
}

// TestInformedSurviveRestart: a restarted server knows the informed
// clients (key, xid) from the store, forgets those lapsed while it was
// down, and forces them (a campaign resumed included) under the key the
// client holds.
func TestInformedSurviveRestart(t *testing.T) {
	is := newMemInformStore()
	db, err := store.Open(filepath.Join(t.TempDir(), "leases.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newInformRig(t, is, nil, func(s *Settings) { s.InformedTTL = time.Hour })
	r.camps = db
	r.srv = r.build()
	a := r.inform(mac(1), static1, 0x5151, cap145)
	k, _, _ := keyOf(t, a[0])
	r.now = r.now.Add(-2 * time.Hour)
	r.inform(mac(2), static2, 0x5252, cap145) // lapses before the restart
	r.now = r.now.Add(2 * time.Hour)
	id, err := r.srv.StartForceRenew(Selector{Subnet: netip.MustParsePrefix("10.77.0.0/24")}, CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Down before forcing anyone.
	r.now = r.now.Add(30 * time.Minute)
	r.srv = r.build()
	if n := r.srv.InformedCount(); n != 1 || is.stored(t, static2) != nil {
		t.Fatalf("after restart %d remembered; lapsed record still stored: %v", n, is.stored(t, static2) != nil)
	}
	st, err := r.srv.Campaign(id)
	if err != nil || st.Total != 2 {
		t.Fatalf("resumed campaign %+v, %v", st, err)
	}
	r.srv.forceRenewTick(r.now)
	got := r.informedForceRenews(t, map[netip.Addr]auth.Key{static1: k})
	if len(got) != 1 || got[0].XID != 0x5151 {
		t.Fatalf("after restart: %d FORCERENEWs", len(got))
	}
	if st, _ := r.srv.Campaign(id); st.Skipped != 1 || st.Sent != 1 {
		t.Fatalf("resumed campaign %+v", st)
	}
}

// TestForceRenewInformedClientRenews: dhcpcd configured by INFORM is bound
// once its INFORM is ACKed and answers a FORCERENEW by renewing (a
// REQUEST with ciaddr, a new xid). That REQUEST ends the FORCERENEW and is
// answered as an INFORM (configuration only: yiaddr 0, ciaddr echoed, no
// lease time, no key, to ciaddr), never NAKed, retransmissions included;
// the next FORCERENEW carries the REQUEST's xid under the key the client
// still holds. Another client's REQUEST from that address, or one in
// INIT-REBOOT form, is handled as before (NAKed).
func TestForceRenewInformedClientRenews(t *testing.T) {
	is := newMemInformStore()
	r := newInformRig(t, is, nil, nil)
	a := r.inform(mac(1), static1, 0x100, cap145)
	k, _, _ := keyOf(t, a[0])
	keys := map[netip.Addr]auth.Key{static1: k}
	id, err := r.srv.StartForceRenew(Selector{IP: static1}, CampaignOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if got := r.informedForceRenews(t, keys); len(got) != 1 || got[0].XID != 0x100 {
		t.Fatalf("FORCERENEW: %v", got)
	}
	for i := range 2 { // the answer, then a retransmission of it
		res := r.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), cap145, xid(0x200), dhcpv4.WithClientIP(static1.AsSlice())), srvAddr)
		if len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("REQUEST %d from the informed client: %v", i, res)
		}
		ack := res[0]
		if !ack.YourIPAddr.IsUnspecified() || !ack.ClientIPAddr.Equal(static1.AsSlice()) || ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) ||
			ack.Options.Has(dhcpv4.GenericOptionCode(dhcpwire.OptAuthentication)) || r.lastOut.Dst != netip.AddrPortFrom(static1, 68) {
			t.Fatalf("REQUEST %d answered with %s to %s; want a configuration-only ACK to %s:68", i, ack.Summary(), r.lastOut.Dst, static1)
		}
	}
	st, _ := r.srv.Campaign(id)
	if st.Informed != 1 || st.Moved != 0 || !st.Done {
		t.Fatalf("status %+v", st)
	}
	if rec := is.stored(t, static1); rec.XID != 0x200 || !bytes.Equal(rec.Key, k[:]) {
		t.Fatalf("record after the renewal: xid %#x, key %x (had %x)", rec.XID, rec.Key, k)
	}
	if r.srv.Lookup(static1) != nil {
		t.Fatal("the renewal created a lease")
	}
	if _, err := r.srv.StartForceRenew(Selector{IP: static1}, CampaignOptions{}); err != nil {
		t.Fatal(err)
	}
	r.srv.forceRenewTick(r.now)
	if got := r.informedForceRenews(t, keys); len(got) != 1 || got[0].XID != 0x200 {
		t.Fatalf("second FORCERENEW: %v", got)
	}
	for _, m := range []*dhcpv4.DHCPv4{
		msg(t, dhcpv4.MessageTypeRequest, mac(2), xid(0x300), dhcpv4.WithClientIP(static1.AsSlice())),
		msg(t, dhcpv4.MessageTypeRequest, mac(1), xid(0x301), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(static1.AsSlice()))),
	} {
		if res := r.send(m, bcast); len(res) != 1 || res[0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("%s: %v, want a NAK as before", m.Summary(), res)
		}
	}
}
