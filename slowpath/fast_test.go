package slowpath

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// mapFast records what the server asks of the fast path, like the BPF
// lease map would hold it.
type mapFast struct {
	mu      sync.Mutex
	entries map[netip.Addr]FastLease
	granted map[netip.Addr]time.Time
	// clock is what Clock reports, when set.
	clock time.Time
	// published is every entry ever given to Publish, in order, and
	// removed every address given to Remove.
	published []FastLease
	removed   []netip.Addr
}

func (m *mapFast) Publish(es []FastLease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		// A copy, as the map holds it: Publish's callers may reuse
		// their entries' bytes once it returns.
		e.HWAddr, e.ClientID, e.Template, e.RelayInfo = bytes.Clone(e.HWAddr), bytes.Clone(e.ClientID), bytes.Clone(e.Template), bytes.Clone(e.RelayInfo)
		m.published = append(m.published, e)
		m.entries[e.IP] = e
	}
	return nil
}

func (m *mapFast) Remove(ips []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removed = append(m.removed, ips...)
	for _, ip := range ips {
		delete(m.entries, ip)
	}
	return nil
}

// Clock is the program's clock when the test set one (a stale offset
// after a step of the system clock), else unknown.
func (m *mapFast) Clock() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clock, !m.clock.IsZero()
}

func (m *mapFast) Granted(ip netip.Addr) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.granted[ip]
	return g, ok
}

func newFastFixture(t *testing.T) (*fixture, *mapFast) {
	f := newFixture(t)
	fp := &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
	f.srv.fast = fp
	f.srv.set.HorizonAhead = 4 * time.Hour
	return f, fp
}

func TestAckPublishesDurableLeaseWithHorizon(t *testing.T) {
	f, fp := newFastFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	e, ok := fp.entries[ip]
	if !ok {
		t.Fatal("ACKed lease not published")
	}
	stored := f.store.leases[ip]
	if !e.Horizon.Equal(stored.Horizon) || !stored.Horizon.Equal(f.now.Add(4*time.Hour)) {
		t.Fatalf("published horizon %v, stored %v", e.Horizon, stored.Horizon)
	}
	if e.ServerID != srvAddr || e.LeaseTime != 3600 || e.T1 != 1800 || len(e.Template) == 0 || !e.Serve || e.IfIndex != 7 {
		t.Fatalf("entry %+v", e)
	}
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip.AsSlice())), srvAddr)
	if _, ok := fp.entries[ip]; ok {
		t.Fatal("released lease still in the fast path")
	}
}

func TestFoldRenewalsAndHorizonAdvance(t *testing.T) {
	f, fp := newFastFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	f.now = f.now.Add(3 * time.Hour)
	// A renewal XDP answered half an hour ago for an hour.
	at := f.now.Add(-30 * time.Minute)
	f.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(1), XID: 77, At: at, Expiry: at.Add(time.Hour)}})
	if l := f.store.leases[ip]; !l.Expiry.Equal(at.Add(time.Hour)) || !l.CLTT.Equal(at) || l.LastXID != 77 {
		t.Fatalf("renewal not folded: %+v", l)
	}
	if n := len(f.srv.expiry); n != 1 {
		t.Fatalf("%d expiry entries after a folded renewal, want the binding's one", n)
	}
	// A renewal for a different client is ignored.
	f.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(2), At: f.now, Expiry: f.now.Add(5 * time.Hour)}})
	if l := f.store.leases[ip]; l.Expiry.After(f.now.Add(time.Hour)) {
		t.Fatal("foreign renewal folded")
	}
	if n := f.srv.AdvanceHorizons(); n != 1 {
		t.Fatalf("advanced %d horizons, want 1 (1h left of 4h)", n)
	}
	if h := fp.entries[ip].Horizon; !h.Equal(f.now.Add(4 * time.Hour)) {
		t.Fatalf("map horizon %v", h)
	}
	if f.store.leases[ip].Horizon != fp.entries[ip].Horizon {
		t.Fatal("map horizon differs from the stored one")
	}
}

func TestSweeperWaitsForFastPathGrant(t *testing.T) {
	f, fp := newFastFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	f.now = f.now.Add(time.Hour + (fastClockGrace+1)*time.Second)
	fp.granted[ip] = f.now.Add(50 * time.Minute) // renewed in XDP, event not yet folded
	f.srv.Sweep()
	if l := f.store.leases[ip]; l.State != lease.Active || !l.Expiry.Equal(fp.granted[ip]) {
		t.Fatalf("lease renewed in the fast path was expired: %v until %v", l.State, l.Expiry)
	}
	if got := f.dora(mac(2)).YourIPAddr; got.Equal(ip.AsSlice()) {
		t.Fatal("address renewed in the fast path was given to another client")
	}
	f.now = f.now.Add(51 * time.Minute)
	f.srv.Sweep()
	if l := f.store.leases[ip]; l.State != lease.Expired {
		t.Fatalf("after the granted expiry: %v", l.State)
	}
	if _, ok := fp.entries[ip]; ok {
		t.Fatal("expired lease left in the fast path")
	}
}

// TestRelayedRenewalPublishesItsRelayInfo: the entry carries the option
// 82 stored with the lease, as last received through the relay, so that
// the fast path can tell a renewal carrying another one (and punt it
// here); a renewal past the relay, without one, keeps it.
func TestRelayedRenewalPublishesItsRelayInfo(t *testing.T) {
	f, fp := newFastFixture(t)
	via := func(ri []byte, ms ...dhcpv4.Modifier) []dhcpv4.Modifier {
		return append([]dhcpv4.Modifier{dhcpv4.WithGatewayIP(relayAddr.AsSlice()),
			dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: ri}})}, ms...)
	}
	oldPort := []byte{1, 4, 'p', 'o', 'r', 't', 2, 3, 'c', 'p', 'e'}
	newPort := []byte{1, 4, 'p', 'o', 'r', 'u', 2, 3, 'c', 'p', 'e'}
	ack := f.dora(mac(1), via(oldPort)...)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if e := fp.entries[ip]; !bytes.Equal(e.RelayInfo, oldPort) {
		t.Fatalf("published relay info %x, want %x", e.RelayInfo, oldPort)
	}
	for _, step := range []struct {
		what string
		mods []dhcpv4.Modifier
	}{
		{"relayed renewal from another port", via(newPort, dhcpv4.WithClientIP(ack.YourIPAddr))},
		{"unicast renewal past the relay", []dhcpv4.Modifier{dhcpv4.WithClientIP(ack.YourIPAddr)}},
	} {
		got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), step.mods...), srvAddr)
		if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s: %v", step.what, got)
		}
		if s, e := f.store.leases[ip].RelayInfo, fp.entries[ip].RelayInfo; !bytes.Equal(s, newPort) || !bytes.Equal(e, newPort) {
			t.Fatalf("%s: relay info stored %x, published %x, want %x", step.what, s, e, newPort)
		}
	}
}

// recPartner is a failover partner that records the binding updates it is
// handed and applies a cap and a serve decision the test sets.
type recPartner struct {
	mu      sync.Mutex
	updates [][]*lease.Lease
	cap     time.Time // zero: no cap
	noServe bool
	// secondary: allocate from BACKUP only, and give way in conflicts.
	secondary bool
	// refuse lists the request kinds this server must leave to the
	// partner.
	refuse map[RequestKind]bool
}

func (p *recPartner) Cap(*lease.Lease, time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cap, !p.cap.IsZero()
}

func (p *recPartner) Serve(*lease.Lease) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.noServe
}

func (p *recPartner) Answer(k RequestKind, _ []byte, _ uint16) bool { return !p.refuse[k] }

func (p *recPartner) Allocate(time.Time) (bool, bool) { return !p.secondary, p.secondary }

func (p *recPartner) Primary() bool { return !p.secondary }

func (p *recPartner) MayReuse(*lease.Lease, time.Time) bool { return false }

func (p *recPartner) PotentialExpiry(_, granted, _ time.Time) time.Time { return granted }

func (p *recPartner) Update(ls []*lease.Lease, _ bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updates = append(p.updates, ls)
}

// take returns the updates since the last take.
func (p *recPartner) take() [][]*lease.Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.updates
	p.updates = nil
	return u
}

// TestFoldOrdersRenewalsWithinASecond: the fast path reports when it
// answered to the nanosecond, so a renewal it answered in the same second
// as the slow path's ACK is folded (its xid is what a FORCERENEW must
// carry: dhcpcd ignores one with another), one it answered just before
// the ACK is not, and the same renewal seen again changes nothing.
func TestFoldOrdersRenewalsWithinASecond(t *testing.T) {
	f, _ := newFastFixture(t)
	f.now = f.now.Add(300 * time.Millisecond)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	acked := f.store.leases[ip]

	// Answered by XDP 0.2 s before the slow path's ACK, in the same second.
	early := f.now.Add(-200 * time.Millisecond)
	f.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(1), XID: 41, At: early, Expiry: early.Truncate(time.Second).Add(time.Hour)}})
	if l := f.store.leases[ip]; l.LastXID != acked.LastXID || !l.Expiry.Equal(acked.Expiry) {
		t.Fatalf("a renewal older than the ACK was folded: xid %#x expiry %v, want %#x %v", l.LastXID, l.Expiry, acked.LastXID, acked.Expiry)
	}

	// Answered by XDP 0.4 s after the ACK, in the same second: its expiry,
	// in whole seconds, is not after the ACK's.
	late := f.now.Add(400 * time.Millisecond)
	r := Renewal{IP: ip, HWAddr: mac(1), XID: 42, At: late, Expiry: late.Truncate(time.Second).Add(time.Hour)}
	f.srv.FoldRenewals([]Renewal{r})
	l := f.store.leases[ip]
	if l.LastXID != 42 || !l.CLTT.Equal(late) {
		t.Fatalf("the renewal after the ACK was not folded: xid %#x cltt %v", l.LastXID, l.CLTT)
	}
	if !l.Expiry.Equal(acked.Expiry) {
		t.Fatalf("folding shortened the lease: expiry %v, was %v", l.Expiry, acked.Expiry)
	}

	// The same renewal again (a map scan), with the CLTT as the disk keeps it.
	before := f.store.commits
	f.srv.editRecord(ip, func(l *lease.Lease) { l.CLTT = late.Truncate(time.Second) })
	f.srv.FoldRenewals([]Renewal{r})
	if f.store.commits != before {
		t.Fatal("the same renewal seen again was committed again")
	}
}

// An interface re-created with another index: its bindings move to the
// new index in the map at once and in the records, keeping their horizon
// and expiry; bindings on other interfaces stay; nothing new is pending
// for a partner (where a client is reached is not its business).
func TestRenumberInterfaceMovesItsBindings(t *testing.T) {
	f, fp := newFastFixture(t)
	a, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	b, _ := netip.AddrFromSlice(f.dora(mac(2)).YourIPAddr.To4())
	f.srv.editRecord(b, func(l *lease.Lease) { l.IfIndex = 11 }) // as if it came in on another served interface
	f.srv.editRecord(a, func(l *lease.Lease) { l.PartnerPending = false })
	before := f.store.leases[a].Clone()
	beforeEntry := fp.entries[a]

	if n := f.srv.RenumberInterface(7, 9); n != 1 {
		t.Fatalf("moved %d bindings, want 1", n)
	}
	e := fp.entries[a]
	if e.IfIndex != 9 || !e.Horizon.Equal(beforeEntry.Horizon) || e.LeaseTime != beforeEntry.LeaseTime || !e.Serve {
		t.Fatalf("entry after renumbering %+v, before %+v", e, beforeEntry)
	}
	l := f.store.leases[a]
	if l.IfIndex != 9 || !l.Expiry.Equal(before.Expiry) || !l.Horizon.Equal(before.Horizon) || l.State != lease.Active {
		t.Fatalf("stored record %+v", l)
	}
	f.srv.mu.Lock()
	pending, otherIdx := f.srv.leases.Get(a).PartnerPending, f.srv.leases.Get(b).IfIndex
	f.srv.mu.Unlock()
	if pending {
		t.Fatal("renumbering marked the binding pending for the partner")
	}
	if otherIdx != 11 {
		t.Fatalf("a binding on another interface moved to %d", otherIdx)
	}
	if n := f.srv.RenumberInterface(7, 9); n != 0 {
		t.Fatalf("a second renumbering moved %d", n)
	}
}

// editRecord changes ip's record in the table directly, past changeLocked
// and its policies (a test's shortcut).
func (s *Server) editRecord(ip netip.Addr, edit func(l *lease.Lease)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases.Get(ip)
	edit(l)
	s.leases.Put(l)
}

// A transaction's callbacks, run within Committed, change the lease table
// and the fast path once, after the last of them: an address ACKed and
// released in the same transaction ends with no entry, one ACKed with its
// durable horizon, in the map and in the table.
func TestCommittedAppliesATransactionOnce(t *testing.T) {
	f, fp := newFastFixture(t)
	addr := func(p *dhcpv4.DHCPv4) netip.Addr { a, _ := netip.AddrFromSlice(p.YourIPAddr.To4()); return a }
	var gone, kept netip.Addr
	f.srv.Committed(func() {
		gone, kept = addr(f.dora(mac(1))), addr(f.dora(mac(2)))
		f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(gone.AsSlice())), srvAddr)
		if len(fp.published)+len(fp.removed) != 0 {
			t.Fatalf("the fast path was written before the transaction's callbacks ended: %v, %v", fp.published, fp.removed)
		}
	})
	if _, ok := fp.entries[gone]; ok {
		t.Errorf("%v, acknowledged then released in one transaction, is in the fast path", gone)
	}
	if slices.ContainsFunc(fp.published, func(e FastLease) bool { return e.IP == gone }) {
		t.Errorf("%v's acknowledged record was published although its release followed", gone)
	}
	stored := f.store.leases[kept]
	if e, ok := fp.entries[kept]; !ok || !e.Horizon.Equal(stored.Horizon) {
		t.Fatalf("%v: entry %+v (present %v), stored horizon %v", kept, e, ok, stored.Horizon)
	}
	f.srv.mu.Lock()
	h := f.srv.leases.Get(kept).DurableHorizon
	f.srv.mu.Unlock()
	if !h.Equal(stored.Horizon) {
		t.Fatalf("the table's durable horizon for %v is %v, the disk's %v", kept, h, stored.Horizon)
	}
	// Outside a transaction, each callback applies its own at once.
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(2), dhcpv4.WithClientIP(kept.AsSlice())), srvAddr)
	if _, ok := fp.entries[kept]; ok {
		t.Fatal("a release outside Committed left its entry")
	}
}

// Leases held to their horizon for a lost map expire at the horizon, not
// at the expiry they had: the expiry heap, made anew after the change of
// every record, says so.
func TestAssumedGrantsExpireAtTheirHorizon(t *testing.T) {
	f, _ := newFastFixture(t)
	t0 := f.now
	var ips []netip.Addr
	for i := range 3 {
		ip, _ := netip.AddrFromSlice(f.dora(mac(byte(i + 1))).YourIPAddr.To4())
		ips = append(ips, ip)
	}
	if n, commit := f.srv.AssumeGrantedToHorizon(); n != len(ips) || commit(context.Background()) != nil {
		t.Fatalf("assumed %d grants, want %d", n, len(ips))
	}
	// Storing them rewrote every record: the store's mapped pages are
	// given back after.
	if f.store.released == 0 {
		t.Error("storing the held grants left the store's mapped pages")
	}
	f.now = t0.Add(2 * time.Hour) // past the 1h lease, within the 4h horizon
	f.srv.Sweep()
	for _, ip := range ips {
		if st := f.store.leases[ip].State; st != lease.Active {
			t.Fatalf("%v is %v before its horizon", ip, st)
		}
	}
	f.now = t0.Add(4*time.Hour + (fastClockGrace+1)*time.Second)
	f.srv.Sweep()
	for _, ip := range ips {
		if st := f.store.leases[ip].State; st == lease.Active {
			t.Fatalf("%v still active past its horizon", ip)
		}
	}
}

// TestSweepLeavesTheFastPathItsClockLag: for a moment after a second
// begins the XDP program's clock may still read the second before (a
// coarse tick behind, and an offset the daemon refreshes once a second),
// so it may ACK a renewal of a lease the sweep has just found due, after
// the sweep asked for its grant. With a fast path a lease therefore stays
// active fastClockGrace past its expiry, and a grant made meanwhile keeps
// it; without one, nothing else grants and it is due at its expiry.
func TestSweepLeavesTheFastPathItsClockLag(t *testing.T) {
	f, fp := newFastFixture(t)
	renewed, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	quiet, _ := netip.AddrFromSlice(f.dora(mac(2)).YourIPAddr.To4())
	exp := f.store.leases[renewed].Expiry
	for _, ip := range []netip.Addr{renewed, quiet} {
		fp.granted[ip] = f.store.leases[ip].Expiry // the grant slots: nothing past the records
	}
	f.now = exp
	f.srv.Sweep()
	for _, ip := range []netip.Addr{renewed, quiet} {
		if l := f.store.leases[ip]; l.State != lease.Active {
			t.Fatalf("%v: %v at its expiry, with a fast path whose clock may lag", ip, l.State)
		}
	}
	// XDP, a tick behind, ACKs the renewal as the second turns.
	fp.granted[renewed] = exp.Add(time.Hour)
	f.now = exp.Add(fastClockGrace * time.Second)
	f.srv.Sweep()
	if l := f.store.leases[renewed]; l.State != lease.Active || !l.Expiry.Equal(fp.granted[renewed]) {
		t.Fatalf("renewed in the fast path as it expired: %v until %v, want active until %v", l.State, l.Expiry, fp.granted[renewed])
	}
	if l := f.store.leases[quiet]; l.State != lease.Expired {
		t.Fatalf("not renewed: %v %v after its expiry, want expired", l.State, fastClockGrace*time.Second)
	}

	// The system clock was stepped forward and the program has not yet
	// taken the new offset: it still reads a time before the expiry, and
	// the lease waits for it.
	late, _ := netip.AddrFromSlice(f.dora(mac(4)).YourIPAddr.To4())
	lexp := f.store.leases[late].Expiry
	fp.granted[late] = lexp
	f.now = lexp.Add(time.Minute)
	fp.clock = lexp.Add(-time.Second)
	f.srv.Sweep()
	if l := f.store.leases[late]; l.State != lease.Active {
		t.Fatalf("expired by the stepped clock while the program's still read before its expiry: %v", l.State)
	}
	fp.clock = f.now // the offset refreshed
	f.srv.Sweep()
	if l := f.store.leases[late]; l.State != lease.Expired {
		t.Fatalf("with the program's clock caught up: %v, want expired", l.State)
	}

	g := newFixture(t) // no fast path
	ip, _ := netip.AddrFromSlice(g.dora(mac(3)).YourIPAddr.To4())
	g.now = g.store.leases[ip].Expiry
	g.srv.Sweep()
	if l := g.store.leases[ip]; l.State != lease.Expired {
		t.Fatalf("without a fast path: %v at its expiry, want expired", l.State)
	}
}

// TestReloadTakingTheAddressStopsTheFastPath: a reload that reserves a
// bound address for another client, or takes it out of every pool, makes
// the slow path NAK the holder's next renewal (availableForLocked); the
// republished entry stops serving, so that XDP passes that renewal up
// instead of renewing the lease from its entry for good.
func TestReloadTakingTheAddressStopsTheFastPath(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(sub *Subnet, ip netip.Addr)
	}{
		{"reserved for another client", func(sub *Subnet, ip netip.Addr) {
			k := lease.ClientKey(nil, 1, mac(9))
			sub.Reserved[k] = Reservation{IP: ip, ClientKey: k}
			sub.ReservedIP[ip] = Reservation{IP: ip, ClientKey: k}
		}},
		{"out of every pool", func(sub *Subnet, ip netip.Addr) {
			sub.Pools = [][2]netip.Addr{{netip.MustParseAddr("10.77.0.200"), netip.MustParseAddr("10.77.0.209")}}
		}},
		{"reserved for its holder", func(sub *Subnet, ip netip.Addr) {
			k := lease.ClientKey(nil, 1, mac(1))
			sub.Reserved[k] = Reservation{IP: ip, ClientKey: k}
			sub.ReservedIP[ip] = Reservation{IP: ip, ClientKey: k}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, fp := newFastFixture(t)
			ack := f.dora(mac(1))
			ip := addrOf(ack.YourIPAddr)
			if !fp.entries[ip].Serve {
				t.Fatal("a fresh binding's entry does not serve")
			}
			f.config = func(cfg *Config) { c.edit(cfg.Subnets[0], ip) }
			fresh := f.build() // the configuration a reload brings
			if err := f.srv.Reconfigure(f.srv.settings(), fresh.subs.list, []Interface{fresh.ifaces[7]}); err != nil {
				t.Fatal(err)
			}
			f.srv.PublishAll()
			holder := c.name == "reserved for its holder"
			if got := fp.entries[ip].Serve; got != holder {
				t.Fatalf("entry serves %v after the reload, want %v", got, holder)
			}
			f.now = f.now.Add(time.Minute)
			var got []dhcpv4.MessageType
			for _, r := range f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr) {
				got = append(got, r.MessageType())
			}
			want := dhcpv4.MessageTypeNak
			if holder {
				want = dhcpv4.MessageTypeAck
			}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("the slow path answered the renewal %v, want %v (the entry must agree)", got, want)
			}
		})
	}
}

// TestReloadChangingTheServerIDStopsTheFastPathOnce: after a reload that
// changes a subnet's server-id, the slow path ACKs with the new one; the
// fast path, which sends the stored one, passes the renewal up until a
// slow-path ACK has stored the new server-id, and then serves again.
func TestReloadChangingTheServerIDStopsTheFastPathOnce(t *testing.T) {
	f, fp := newFastFixture(t)
	ack := f.dora(mac(1))
	ip := addrOf(ack.YourIPAddr)
	if e := fp.entries[ip]; !e.Serve || e.ServerID != srvAddr {
		t.Fatalf("entry serves %v with server-id %v, want serving with %v", e.Serve, e.ServerID, srvAddr)
	}
	newID := netip.MustParseAddr("10.77.0.2")
	f.config = func(cfg *Config) { cfg.Subnets[0].ServerID = newID }
	fresh := f.build()
	if err := f.srv.Reconfigure(f.srv.settings(), fresh.subs.list, []Interface{fresh.ifaces[7]}); err != nil {
		t.Fatal(err)
	}
	f.srv.PublishAll()
	if fp.entries[ip].Serve {
		t.Fatal("the entry still serves with the old server-id after the reload")
	}
	f.now = f.now.Add(time.Minute)
	got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ack.YourIPAddr)), srvAddr)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !got[0].ServerIdentifier().Equal(newID.AsSlice()) {
		t.Fatalf("the slow path answered %v, want an ACK with server-id %v", got, newID)
	}
	if e := fp.entries[ip]; !e.Serve || e.ServerID != newID {
		t.Fatalf("after the slow path's ACK the entry serves %v with %v, want serving with %v", e.Serve, e.ServerID, newID)
	}
}
