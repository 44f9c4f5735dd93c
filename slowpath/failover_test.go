package slowpath

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestConflictTable holds resolveConflict to every cell of draft-12's
// Fig. 7.1.3-1 and its CLTT rules.
func TestConflictTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	early, late := now.Add(-time.Hour), now.Add(-time.Minute)
	rec := func(st lease.State, hw byte, cltt, expiry time.Time) *lease.Lease {
		return &lease.Lease{State: st, HWType: 1, HWAddr: mac(hw), CLTT: cltt, StateAt: cltt, Expiry: expiry}
	}
	const ok, outdated, fatal, less = 0, uint8(wire.ReasonOutdated), uint8(wire.ReasonFatalConflict), uint8(wire.ReasonLessCritical)
	for _, c := range []struct {
		cell      string
		ours, got *lease.Lease
		primary   bool
		want      uint8
	}{
		{"no record", nil, rec(lease.Active, 1, late, now.Add(time.Hour)), true, ok},
		{"ACTIVE/ACTIVE same client", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Active, 1, late, now.Add(time.Hour)), true, ok},
		{"ACTIVE/ACTIVE two clients, primary", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Active, 2, late, now.Add(time.Hour)), true, fatal},
		{"ACTIVE/ACTIVE two clients, secondary", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Active, 2, late, now.Add(time.Hour)), false, ok},
		{"ACTIVE/EXPIRED ours running", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Expired, 1, late, time.Time{}), true, outdated},
		{"ACTIVE/EXPIRED ours over", rec(lease.Active, 1, early, now.Add(-time.Second)), rec(lease.Expired, 1, late, time.Time{}), true, ok},
		{"ACTIVE/RELEASED later CLTT", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Released, 1, late, time.Time{}), true, ok},
		{"ACTIVE/RELEASED earlier CLTT", rec(lease.Active, 1, late, now.Add(time.Hour)), rec(lease.Released, 1, early, time.Time{}), true, outdated},
		{"ACTIVE/RELEASED no CLTT", rec(lease.Active, 1, late, now.Add(time.Hour)), rec(lease.Released, 1, time.Time{}, time.Time{}), true, outdated},
		{"ACTIVE/FREE ours running", rec(lease.Active, 1, early, now.Add(time.Hour)), rec(lease.Free, 0, time.Time{}, time.Time{}), true, outdated},
		{"ACTIVE/BACKUP ours over", rec(lease.Active, 1, early, now), rec(lease.Backup, 0, time.Time{}, time.Time{}), true, ok},
		{"ACTIVE/ABANDONED", rec(lease.Active, 1, late, now.Add(time.Hour)), rec(lease.Abandoned, 0, early, time.Time{}), true, ok},
		{"EXPIRED/ACTIVE later", rec(lease.Expired, 1, early, early), rec(lease.Active, 2, late, now.Add(time.Hour)), true, ok},
		{"EXPIRED/ACTIVE earlier", rec(lease.Expired, 1, late, late), rec(lease.Active, 2, early, now.Add(time.Hour)), true, outdated},
		{"EXPIRED/ACTIVE we have no CLTT", rec(lease.Expired, 1, time.Time{}, late), rec(lease.Active, 2, early, now.Add(time.Hour)), true, ok},
		{"EXPIRED/RELEASED", rec(lease.Expired, 1, late, late), rec(lease.Released, 1, early, time.Time{}), true, ok},
		{"RELEASED/ACTIVE earlier", rec(lease.Released, 1, late, late), rec(lease.Active, 1, early, now.Add(time.Hour)), true, outdated},
		{"RELEASED/EXPIRED later", rec(lease.Released, 1, early, early), rec(lease.Expired, 1, late, time.Time{}), true, ok},
		{"RELEASED/FREE", rec(lease.Released, 1, late, late), rec(lease.Free, 0, time.Time{}, time.Time{}), true, ok},
		{"FREE/ACTIVE", rec(lease.Free, 0, late, time.Time{}), rec(lease.Active, 2, early, now.Add(time.Hour)), true, ok},
		{"BACKUP/ACTIVE", rec(lease.Backup, 0, late, time.Time{}), rec(lease.Active, 2, early, now.Add(time.Hour)), false, ok},
		{"RESET/ACTIVE later than its state", rec(lease.Reset, 0, early, time.Time{}), rec(lease.Active, 2, late, now.Add(time.Hour)), true, ok},
		{"RESET/ACTIVE earlier than its state", rec(lease.Reset, 0, late, time.Time{}), rec(lease.Active, 2, early, now.Add(time.Hour)), true, outdated},
		{"ABANDONED/ACTIVE", rec(lease.Abandoned, 0, early, now.Add(time.Hour)), rec(lease.Active, 2, late, now.Add(time.Hour)), true, less},
		{"ABANDONED/FREE", rec(lease.Abandoned, 0, early, now.Add(time.Hour)), rec(lease.Free, 0, late, time.Time{}), true, less},
		{"ABANDONED/RESET", rec(lease.Abandoned, 0, early, now.Add(time.Hour)), rec(lease.Reset, 0, late, time.Time{}), true, ok},
	} {
		accepted, why := resolveConflict(c.ours, c.got, c.primary, now)
		if accepted != (c.want == ok) || why != c.want {
			t.Errorf("%s: accept %v reason %d, want reason %d", c.cell, accepted, why, c.want)
		}
	}
}

// TestSecondaryGivesOnlyBackupAddresses: a secondary in NORMAL offers
// nothing until the primary has handed it BACKUP addresses, and then only
// those (draft-12 §5.4, proportional allocation).
func TestSecondaryGivesOnlyBackupAddresses(t *testing.T) {
	f, _, p := newPartnerFixture(t)
	p.secondary = true
	if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast); len(got) != 0 {
		t.Fatalf("a secondary without BACKUP addresses offered %v", got)
	}
	backup := netip.MustParseAddr("10.77.0.107")
	res, err := f.srv.ApplyPartner(context.Background(), []*lease.Lease{{IP: backup, State: lease.Backup}})
	if err != nil || res[0] != 0 {
		t.Fatalf("BACKUP update: %v %v", res, err)
	}
	// 9 of 10.77.0.0/24's pool and the 65279 of 10.78.0.0/16's are FREE.
	if free, bk := f.srv.PoolCounts(); bk != 1 || free != 9+65279 {
		t.Fatalf("pool counts free %d backup %d, want %d and 1", free, bk, 9+65279)
	}
	ack := f.dora(mac(1))
	if ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4()); ip != backup {
		t.Fatalf("secondary gave %s, want its BACKUP address %s", ip, backup)
	}
	if l := f.store.leases[backup]; l.State != lease.Active || !l.PartnerPending {
		t.Fatalf("stored %+v", l)
	}
	if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), bcast); len(got) != 0 {
		t.Fatalf("second client offered %v with no BACKUP address left", got)
	}
}

// TestPrimaryKeepsBackupAddressesForThePartner: Rebalance hands FREE
// addresses over as BACKUP (sent to the partner), the primary never gives
// them, and hands them back on a negative count.
func TestPrimaryKeepsBackupAddressesForThePartner(t *testing.T) {
	f, _, p := newPartnerFixture(t)
	n, err := f.srv.Rebalance(context.Background(), 4)
	if err != nil || n != 4 {
		t.Fatalf("Rebalance(4) = %d, %v", n, err)
	}
	if free, bk := f.srv.PoolCounts(); bk != 4 || free != 10+65279-4 {
		t.Fatalf("pool counts free %d backup %d", free, bk)
	}
	lan := netip.MustParsePrefix("10.77.0.0/24")
	sent, lanBackup := 0, 0
	for _, b := range p.take() {
		for _, l := range b {
			if l.State == lease.Backup {
				sent++
				if lan.Contains(l.IP) {
					lanBackup++
				}
			}
		}
	}
	// Each subnet gives in proportion to what it has, at least one.
	if sent != 4 || lanBackup != 1 {
		t.Fatalf("%d BACKUP updates for the partner (%d of 10.77.0.0/24), want 4 (1)", sent, lanBackup)
	}
	given := map[netip.Addr]bool{}
	for i := byte(1); ; i++ {
		offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(i)), bcast)
		if len(offers) == 0 {
			break
		}
		ip, _ := netip.AddrFromSlice(offers[0].YourIPAddr.To4())
		if l := f.store.leases[ip]; l != nil && l.State == lease.Backup {
			t.Fatalf("primary offered the partner's BACKUP address %s", ip)
		}
		if lan.Contains(ip) {
			given[ip] = true
		}
		if i > 20 {
			t.Fatal("more offers than the pool holds")
		}
	}
	if len(given) != 10-lanBackup {
		t.Fatalf("primary offered %d addresses of 10.77.0.0/24, want the %d not BACKUP", len(given), 10-lanBackup)
	}
	if n, err := f.srv.Rebalance(context.Background(), -2); err != nil || n != 2 {
		t.Fatalf("Rebalance(-2) = %d, %v", n, err)
	}
	if _, bk := f.srv.PoolCounts(); bk != 2 {
		t.Fatalf("backup %d after handing 2 back, want 2", bk)
	}
}

// TestPartnerBindingIsStoredAsOurOwn: an accepted ACTIVE update is on disk
// when ApplyPartner returns, with its client, times, option 82 and vendor
// class, its potential expiry acknowledged (AckedExp), not echoed back,
// and the address is the client's here too.
func TestPartnerBindingIsStoredAsOurOwn(t *testing.T) {
	f, _, p := newPartnerFixture(t)
	ip := netip.MustParseAddr("10.77.0.103")
	cltt := f.now.Add(-time.Minute)
	up := &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: mac(5), CLTT: cltt, Expiry: cltt.Add(time.Hour),
		PotExp: cltt.Add(90 * time.Minute), RelayInfo: []byte{1, 3, 'p', 'o', 'n'}, VendorClass: []byte("docsis3.0")}
	res, err := f.srv.ApplyPartner(context.Background(), []*lease.Lease{up, {IP: netip.MustParseAddr("192.0.2.1"), State: lease.Active, HWType: 1, HWAddr: mac(6)}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != 0 || res[1] != uint8(wire.ReasonIllegalIP) {
		t.Fatalf("results %v, want accepted and illegal IP", res)
	}
	l := f.store.leases[ip]
	if l == nil || l.State != lease.Active || l.ClientKey() != up.ClientKey() || !l.Expiry.Equal(up.Expiry) || !l.CLTT.Equal(cltt) ||
		!l.AckedExp.Equal(up.PotExp) || l.PartnerPending || string(l.RelayInfo) != string(up.RelayInfo) || string(l.VendorClass) != "docsis3.0" {
		t.Fatalf("stored %+v", l)
	}
	if u := p.take(); len(u) != 0 {
		t.Fatalf("the partner's update was sent back: %v", u)
	}
	if got := f.srv.LookupClient(up.ClientKey()); len(got) != 1 || got[0].IP != ip {
		t.Fatalf("lookup by client: %v", got)
	}
	// Another client asking for the address by INIT-REBOOT is refused.
	nak := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(6), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))), bcast)
	if len(nak) != 1 || nak[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("INIT-REBOOT for the partner's binding by another client: %v", nak)
	}
	// A conflicting update for another client: the primary refuses it.
	res, err = f.srv.ApplyPartner(context.Background(), []*lease.Lease{{IP: ip, State: lease.Active, HWType: 1, HWAddr: mac(7), CLTT: f.now, Expiry: f.now.Add(time.Hour)}})
	if err != nil || res[0] != uint8(wire.ReasonFatalConflict) {
		t.Fatalf("conflicting update: %v %v", res, err)
	}
	if l := f.store.leases[ip]; l.ClientKey() != up.ClientKey() {
		t.Fatalf("a refused update changed the record: %+v", l)
	}
}

// TestPartnerAckLiftsTheCap: an ack raises AckedExp to the potential
// expiry sent and clears the mark; an ack of a version since superseded
// raises AckedExp but leaves the newer change pending.
func TestPartnerAckLiftsTheCap(t *testing.T) {
	f, _, p := newPartnerFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	sent := f.store.leases[ip].Clone()
	p.take()
	if err := f.srv.PartnerAcked(context.Background(), []PartnerAck{{Sent: sent}}); err != nil {
		t.Fatal(err)
	}
	if l := f.store.leases[ip]; l.PartnerPending || !l.AckedExp.Equal(sent.PotExp) {
		t.Fatalf("after the ack: pending %v acked %v, want false %v", l.PartnerPending, l.AckedExp, sent.PotExp)
	}
	f.now = f.now.Add(10 * time.Minute)
	f.dora(mac(1)) // a renewal: a new version, pending again
	old := sent.Clone()
	old.PotExp = old.PotExp.Add(time.Minute)
	if err := f.srv.PartnerAcked(context.Background(), []PartnerAck{{Sent: old}}); err != nil {
		t.Fatal(err)
	}
	if l := f.store.leases[ip]; !l.PartnerPending || !l.AckedExp.Equal(old.PotExp) {
		t.Fatalf("ack of a superseded version: pending %v acked %v", l.PartnerPending, l.AckedExp)
	}
}

// TestFailoverLeavesRequestsToThePartner: a request kind the relationship
// leaves to the partner is dropped and counted; a RELEASE is processed in
// every state.
func TestFailoverLeavesRequestsToThePartner(t *testing.T) {
	f, _, p := newPartnerFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	p.refuse = map[RequestKind]bool{RequestNew: true, RequestRenew: true}
	if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), bcast); len(got) != 0 {
		t.Fatalf("DISCOVER answered: %v", got)
	}
	if got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip.AsSlice())), srvAddr); len(got) != 0 {
		t.Fatalf("renewal answered: %v", got)
	}
	if n := testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("failover")); n != 2 {
		t.Fatalf("failover drops %v, want 2", n)
	}
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip.AsSlice())), srvAddr)
	if l := f.store.leases[ip]; l.State != lease.Released {
		t.Fatalf("RELEASE not processed: %v", l.State)
	}
}

// TestCappedHorizonsAreNotRecommitted: while the partner's cap holds a
// horizon short, AdvanceHorizons does not commit every lease again on
// each run for the cap's creep; it does once the cap has moved enough.
func TestCappedHorizonsAreNotRecommitted(t *testing.T) {
	f, fp, p := newPartnerFixture(t)
	p.cap = f.now.Add(time.Hour) // HorizonAhead is 4h
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	if h := f.store.leases[ip].Horizon; !h.Equal(p.cap) {
		t.Fatalf("horizon %v, want the cap %v", h, p.cap)
	}
	f.now = f.now.Add(time.Minute)
	p.cap = p.cap.Add(time.Minute)
	if n := f.srv.AdvanceHorizons(); n != 0 {
		t.Fatalf("AdvanceHorizons committed %d leases for a cap that moved a minute", n)
	}
	p.cap = p.cap.Add(time.Hour)
	if n := f.srv.AdvanceHorizons(); n != 1 {
		t.Fatalf("AdvanceHorizons committed %d leases for a cap that moved an hour, want 1", n)
	}
	if e := fp.entries[ip]; !e.Horizon.Equal(p.cap) {
		t.Fatalf("published horizon %v, want %v", e.Horizon, p.cap)
	}
}

// TestRefusedEndKeepsTheAddress: the partner refuses an EXPIRED update
// (it renewed the client and has not said so yet): the address stays
// marked, is not freed by the sweeper and is not given to another client,
// until the partner's ACTIVE update takes it back.
func TestRefusedEndKeepsTheAddress(t *testing.T) {
	f, _, _ := newPartnerFixture(t)
	ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
	f.now = f.now.Add(5 * time.Hour) // past the lease (1 h) and its horizon (4 h)
	f.srv.Sweep()
	if l := f.store.leases[ip]; l.State != lease.Expired {
		t.Fatalf("state %v, want expired", l.State)
	}
	sent := f.store.leases[ip].Clone()
	if err := f.srv.PartnerAcked(context.Background(), []PartnerAck{{Sent: sent, Reject: uint8(wire.ReasonOutdated)}}); err != nil {
		t.Fatal(err)
	}
	f.srv.Sweep()
	if l := f.srv.Lookup(ip); l.State != lease.Expired || !l.PartnerPending {
		t.Fatalf("after a refused end: %v pending %v", l.State, l.PartnerPending)
	}
	for i := byte(2); i < 14; i++ {
		if offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(i)), bcast); len(offers) == 1 {
			if got, _ := netip.AddrFromSlice(offers[0].YourIPAddr.To4()); got == ip {
				t.Fatalf("the address the partner holds was offered to %s", mac(i))
			}
		}
	}
	res, err := f.srv.ApplyPartner(context.Background(), []*lease.Lease{{IP: ip, State: lease.Active, HWType: 1, HWAddr: mac(1),
		CLTT: f.now.Add(-time.Minute), Expiry: f.now.Add(time.Hour), PotExp: f.now.Add(90 * time.Minute)}})
	if err != nil || res[0] != 0 {
		t.Fatalf("the partner's renewal: %v %v", res, err)
	}
	if l := f.srv.Lookup(ip); l.State != lease.Active || l.PartnerPending {
		t.Fatalf("after the partner's update: %v pending %v", l.State, l.PartnerPending)
	}
}

// TestIndependentPoolHalves: in a pool with independent allocation the
// primary gives only the lower half and the secondary only the upper,
// without any address handed over; pool balance and the counts it reads
// leave the pool out; an address released in the secondary's half goes
// back to BACKUP, not FREE; a reload keeps the split.
func TestIndependentPoolHalves(t *testing.T) {
	lower := [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.104")}
	upper := [2]netip.Addr{netip.MustParseAddr("10.77.0.105"), netip.MustParseAddr("10.77.0.109")}
	in := func(ip netip.Addr, r [2]netip.Addr) bool { return ip.Compare(r[0]) >= 0 && ip.Compare(r[1]) <= 0 }
	for _, secondary := range []bool{false, true} {
		name := map[bool]string{false: "primary", true: "secondary"}[secondary]
		t.Run(name, func(t *testing.T) {
			f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
			f.config = func(c *Config) {
				c.Subnets[0].Independent = [][2]netip.Addr{{lower[0], upper[1]}}
			}
			f.srv = f.build()
			p := &recPartner{secondary: secondary}
			f.srv.partner = p
			own := map[bool][2]netip.Addr{false: lower, true: upper}[secondary]
			// Only the relayed subnet's pool counts for balance.
			if free, backup := f.srv.PoolCounts(); free != 65279 || backup != 0 {
				t.Fatalf("pool counts free %d backup %d, want 65279 and 0", free, backup)
			}
			// An offer that lapses returns its address to its owner's
			// set: all five of the half are still given below.
			if offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(9)), bcast); len(offers) != 1 {
				t.Fatalf("no offer from the %s", name)
			}
			f.now = f.now.Add(11 * time.Second) // past OfferHold
			f.srv.Sweep()
			var got []netip.Addr
			for i := byte(1); i <= 5; i++ {
				ip, _ := netip.AddrFromSlice(f.dora(mac(i)).YourIPAddr.To4())
				if !in(ip, own) {
					t.Fatalf("the %s gave %s, outside its half %s-%s", name, ip, own[0], own[1])
				}
				got = append(got, ip)
			}
			if offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(6)), bcast); len(offers) != 0 {
				t.Fatalf("the %s offered %v with its half given out", name, offers[0].YourIPAddr)
			}
			if !secondary {
				n, err := f.srv.Rebalance(context.Background(), 100)
				if err != nil || n != 100 {
					t.Fatalf("Rebalance: %d %v", n, err)
				}
				for ip, l := range f.store.leases {
					if l.State == lease.Backup && !netip.MustParsePrefix("10.78.0.0/16").Contains(ip) {
						t.Fatalf("pool balance moved %s of the independent pool", ip)
					}
				}
			}
			// A release in the server's own half, acknowledged, returns
			// the address to its owner's free state.
			ip := got[0]
			f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip.AsSlice())), srvAddr)
			sent := f.store.leases[ip].Clone()
			if err := f.srv.PartnerAcked(context.Background(), []PartnerAck{{Sent: sent}}); err != nil {
				t.Fatal(err)
			}
			f.srv.Sweep()
			want := map[bool]lease.State{false: lease.Free, true: lease.Backup}[secondary]
			if l := f.store.leases[ip]; l.State != want {
				t.Fatalf("released %s is %v, want %v", ip, l.State, want)
			}
			// Restarted (the pools rebuilt from the records), the split
			// holds: the freed address is the only one to give.
			f.srv = f.build()
			f.srv.partner = p
			ack := f.dora(mac(7))
			if got, _ := netip.AddrFromSlice(ack.YourIPAddr.To4()); got != ip {
				t.Fatalf("after a restart the %s gave %s, want the freed %s", name, got, ip)
			}
		})
	}
}

// TestReservationsInFailover: a reserved address of a pool is announced by
// the primary at start (R flag) and withdrawn when a reload drops the
// reservation; the secondary gives a reserved address to its client
// without it ever being BACKUP; the partner's R flag on an address not
// reserved here is refused with reason 19; a FORCERENEW key from the
// partner is kept.
func TestReservationsInFailover(t *testing.T) {
	inPool := netip.MustParseAddr("10.77.0.107")
	resKey := lease.ClientKey(nil, 1, mac(50))
	reserve := func(c *Config) {
		c.Subnets[0].Reserved[resKey] = Reservation{IP: inPool, ClientKey: resKey}
		c.Subnets[0].ReservedIP[inPool] = Reservation{IP: inPool, ClientKey: resKey}
	}
	newServer := func(secondary bool) (*fixture, *recPartner) {
		f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0), config: reserve}
		p := &recPartner{secondary: secondary}
		prev := f.config
		f.config = func(c *Config) { prev(c); c.Partner = p }
		f.srv = f.build()
		return f, p
	}

	// The primary announces its free reserved address at start.
	f, p := newServer(false)
	var got []*lease.Lease
	for _, batch := range p.take() {
		got = append(got, batch...)
	}
	if len(got) != 1 || got[0].IP != inPool || got[0].State != lease.Free || !got[0].Reserved {
		t.Fatalf("the primary announced %+v, want %s FREE reserved", got, inPool)
	}
	// A reload without the reservation withdraws it.
	f.config = func(*Config) {}
	fresh := f.build() // the configuration a reload would bring
	f.srv.mu.Lock()
	subs := fresh.subs.list
	f.srv.mu.Unlock()
	if err := f.srv.Reconfigure(f.srv.set, subs, nil); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, batch := range p.take() {
		got = append(got, batch...)
	}
	if len(got) != 1 || got[0].IP != inPool || got[0].State != lease.Free || got[0].Reserved {
		t.Fatalf("after the reload the primary sent %+v, want %s FREE without R", got, inPool)
	}

	// The secondary gives the reserved address to its client at once.
	f, p = newServer(true)
	if len(p.take()) != 0 {
		t.Fatal("a secondary announced reservations")
	}
	ack := f.dora(mac(50))
	if ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4()); ip != inPool {
		t.Fatalf("the secondary gave the reserved client %s, want %s", ip, inPool)
	}
	// R on an address not reserved here: refused.
	res, err := f.srv.ApplyPartner(context.Background(), []*lease.Lease{
		{IP: netip.MustParseAddr("10.77.0.103"), State: lease.Backup, Reserved: true},
		{IP: netip.MustParseAddr("10.77.0.104"), State: lease.Active, HWType: 1, HWAddr: mac(60), CLTT: f.now, Expiry: f.now.Add(time.Hour),
			PotExp: f.now.Add(time.Hour), ForceRenewKey: bytes.Repeat([]byte{7}, 16), LastXID: 0x1234},
	})
	if err != nil || res[0] != uint8(wire.ReasonNotReserved) || res[1] != 0 {
		t.Fatalf("results %v %v, want [19 0]", res, err)
	}
	if l := f.store.leases[netip.MustParseAddr("10.77.0.104")]; !bytes.Equal(l.ForceRenewKey, bytes.Repeat([]byte{7}, 16)) || l.LastXID != 0x1234 {
		t.Fatalf("the partner's FORCERENEW key and xid were not kept: % x, %#x", l.ForceRenewKey, l.LastXID)
	}
}

// Addrs lists every record once, in address order (the partner that takes
// them all appends to its database instead of inserting at random).
func TestAddrsInAddressOrder(t *testing.T) {
	f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
	var want []netip.Addr
	for _, ip := range []string{"10.78.1.0", "10.77.0.105", "10.78.200.1", "10.77.0.102", "10.77.0.100", "10.78.1.255"} {
		a := netip.MustParseAddr(ip)
		f.store.leases[a] = &lease.Lease{IP: a, State: lease.Free}
		want = append(want, a)
	}
	f.srv = f.build()
	slices.SortFunc(want, netip.Addr.Compare)
	if got := f.srv.Addrs(); !slices.Equal(got, want) {
		t.Fatalf("Addrs %v, want %v", got, want)
	}
}

// TestTwoAddressesOneClient: the partner's update binds a client that
// holds another address in the same subnet here. The binding with the
// later client-last-transaction-time stays and the other is RELEASED and
// sent to the partner; a binding in another subnet is left alone.
func TestTwoAddressesOneClient(t *testing.T) {
	for _, tc := range []struct {
		name      string
		oursLater bool
	}{
		{"the partner's is later", false},
		{"ours is later", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, p := newPartnerFixture(t)
			ours, _ := netip.AddrFromSlice(f.dora(mac(9)).YourIPAddr.To4())
			p.take()
			other := netip.MustParseAddr("10.77.0.104")
			if ours == other {
				t.Fatalf("the fixture gave %s, the address the partner's update uses", ours)
			}
			cltt := f.now.Add(time.Minute)
			if tc.oursLater {
				cltt = f.now.Add(-time.Minute)
			}
			up := &lease.Lease{IP: other, State: lease.Active, HWType: 1, HWAddr: mac(9), CLTT: cltt, Expiry: cltt.Add(time.Hour), PotExp: cltt.Add(time.Hour)}
			if res, err := f.srv.ApplyPartner(context.Background(), []*lease.Lease{up}); err != nil || res[0] != 0 {
				t.Fatalf("ApplyPartner: %v %v", res, err)
			}
			want := map[netip.Addr]lease.State{ours: lease.Released, other: lease.Active}
			active := other
			if tc.oursLater {
				want = map[netip.Addr]lease.State{ours: lease.Active, other: lease.Released}
				active = ours
			}
			for ip, st := range want {
				if l := f.store.leases[ip]; l == nil || l.State != st {
					t.Fatalf("%s: %+v, want %s", ip, l, st)
				}
			}
			var sent []*lease.Lease
			for _, batch := range p.take() {
				sent = append(sent, batch...)
			}
			if len(sent) != 1 || sent[0].State != lease.Released || sent[0].IP == active {
				t.Fatalf("sent to the partner: %+v, want the one ended", sent)
			}
			if got := f.srv.LookupClient(up.ClientKey()); len(got) == 0 || got[0].IP != active || got[0].State != lease.Active {
				t.Fatalf("the client's binding: %+v, want %s", got[0], active)
			}
		})
	}
}
