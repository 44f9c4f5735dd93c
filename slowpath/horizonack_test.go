package slowpath

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// horizonFixture is a server that keeps horizons ahead (90 minutes, the
// leases an hour) without a fast path, ACKing renewals on them when
// onHorizon.
func horizonFixture(t *testing.T, onHorizon bool) *fixture {
	return horizonFixtureAhead(t, onHorizon, 90*time.Minute)
}

// horizonFixtureAhead is horizonFixture with horizons ahead kept.
func horizonFixtureAhead(t *testing.T, onHorizon bool, ahead time.Duration) *fixture {
	t.Helper()
	f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
	f.config = func(c *Config) {
		c.Settings.HorizonAhead = ahead
		c.Settings.AckOnHorizon = onHorizon
	}
	f.srv = f.build()
	return f
}

// TestRenewalAckedOnHorizon: with AckOnHorizon, a bound client's renewal
// whose new expiry its horizon on disk covers is ACKed while the store
// has not written the renewal (invariant 6: the record, or the horizon),
// and its record follows; a grant to a new client, and a renewal past
// the horizon on disk, wait for their record, as every ACK does without
// AckOnHorizon.
func TestRenewalAckedOnHorizon(t *testing.T) {
	for _, on := range []bool{true, false} {
		f := horizonFixture(t, on)
		ip := f.dora(mac(1)).YourIPAddr
		a, _ := netip.AddrFromSlice(ip.To4())
		t0 := f.now
		if h := f.store.leases[a].Horizon; !h.Equal(t0.Add(90 * time.Minute)) {
			t.Fatalf("horizon on disk %v, want %v", h, t0.Add(90*time.Minute))
		}
		renew := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip))
		reboot := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))

		f.store.holding = true
		f.now = t0.Add(10 * time.Minute) // expiry t0+70m: within the horizon on disk
		for _, m := range []*dhcpv4.DHCPv4{renew, reboot} {
			got := f.send(m, srvAddr)
			if on != (len(got) == 1) {
				t.Fatalf("on %v: %d replies before the commit", on, len(got))
			}
			if on && (got[0].MessageType() != dhcpv4.MessageTypeAck || got[0].IPAddressLeaseTime(0) != time.Hour) {
				t.Fatalf("early answer %v", got[0].Summary())
			}
		}
		if exp := f.store.leases[a].Expiry; !exp.Equal(t0.Add(time.Hour)) {
			t.Fatalf("on %v: the renewal reached the store before release: expiry %v", on, exp)
		}
		if b, _ := f.srv.leases.Brief(a); !b.Expiry.Equal(f.now.Add(time.Hour)) {
			t.Fatalf("on %v: the table's expiry %v, want the grant's %v", on, b.Expiry, f.now.Add(time.Hour))
		}
		// A new client's grant is not a renewal: its ACK waits.
		offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), bcast)
		if got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(2),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier()))), bcast); len(got) != 0 {
			t.Fatalf("on %v: a new client's ACK left before its record: %v", on, got)
		}
		// Past the horizon on disk (t0+90m; the one in memory is later):
		// the renewal waits for its record, which moves the horizon.
		f.now = t0.Add(40 * time.Minute)
		if got := f.send(renew, srvAddr); len(got) != 0 {
			t.Fatalf("on %v: a renewal to t0+100m left before its record: %v", on, got[0].Summary())
		}
		f.store.release()
		late := 2 // the REQUESTs that waited: mac(2)'s, and the renewal past the horizon
		if !on {
			late = 4 // and the two renewals within it
		}
		if got := f.out.take(); len(got) != late {
			t.Fatalf("on %v: %d ACKs once the commits ended, want %d", on, len(got), late)
		}
		if l := f.store.leases[a]; !l.Expiry.Equal(f.now.Add(time.Hour)) || !l.Horizon.Equal(f.now.Add(90*time.Minute)) {
			t.Fatalf("on %v: stored expiry %v horizon %v", on, l.Expiry, l.Horizon)
		}
		if n, want := testutil.ToFloat64(f.srv.m.AckedOnHorizon), map[bool]float64{true: 2, false: 0}[on]; n != want {
			t.Fatalf("on %v: %v counted as ACKed on the horizon, want %v", on, n, want)
		}
	}
}

// TestNoFastPathExpiresAtTheRecord: without a fast path, horizons kept for
// ACKs on them do not hold an address past its lease: the table has every
// grant this run made, so a lease that was not renewed expires at its
// expiry, not at its horizon (a start after a crash holds leases to their
// horizons instead: LoadHoldingGrants). With an earlier run's program
// still attached (StaleFastPath), which may grant from its own map up to
// the horizon, the sweep holds the lease to it.
func TestNoFastPathExpiresAtTheRecord(t *testing.T) {
	for _, stale := range []bool{false, true} {
		f := horizonFixture(t, true)
		f.config = func(c *Config) {
			c.Settings.HorizonAhead, c.Settings.AckOnHorizon = 90*time.Minute, true
			c.StaleFastPath = stale
		}
		f.srv = f.build()
		t0 := f.now
		ip := f.dora(mac(1)).YourIPAddr
		a, _ := netip.AddrFromSlice(ip.To4())
		f.now = t0.Add(time.Hour + (fastClockGrace+1)*time.Second)
		f.srv.Sweep()
		l := f.store.leases[a]
		switch {
		case !stale && l.State != lease.Expired:
			t.Fatalf("an hour's lease, an hour on: %v, expiry %v, horizon %v", l.State, l.Expiry, l.Horizon)
		case stale && (l.State != lease.Active || !l.Expiry.Equal(t0.Add(90*time.Minute))):
			t.Fatalf("a program left attached: %v until %v, want active until its horizon %v", l.State, l.Expiry, t0.Add(90*time.Minute))
		}
	}
}

// TestLoadHoldingGrantsCoversRenewalsOnHorizon: the ACK on a horizon whose
// record a crash lost is covered after the start that holds leases to
// their horizons: the address is not free before the ACK's expiry.
func TestLoadHoldingGrantsCoversRenewalsOnHorizon(t *testing.T) {
	f := horizonFixture(t, true)
	ip := f.dora(mac(1)).YourIPAddr
	a, _ := netip.AddrFromSlice(ip.To4())
	f.store.holding = true
	f.now = f.now.Add(30 * time.Minute)
	if got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr); len(got) != 1 {
		t.Fatalf("renewal: %d replies", len(got))
	}
	acked := f.now.Add(time.Hour)
	// The crash: the renewal's record never reaches the store.
	f.store.holding, f.store.held = false, nil

	srv := f.unloaded()
	n, commit, err := srv.LoadHoldingGrants(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("held %d leases, err %v", n, err)
	}
	if err := commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.now = acked.Add(-time.Second)
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Active || l.Expiry.Before(acked) {
		t.Fatalf("a second before the ACK's expiry: %v until %v", l.State, l.Expiry)
	}
	if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), bcast); len(got) != 1 || got[0].YourIPAddr.Equal(ip) {
		t.Fatalf("another client was offered the held address: %v", got)
	}
}

// endedInFlight binds mac(1) on a server with 4 h horizons, then, with the
// store holding every commit from there on, renews it on its horizon (the
// version in flight, V1) and ends it (V2): "expired" by the sweep, or
// "released". It returns the fixture, the DORA's ACK and the address.
func endedInFlight(t *testing.T, end string) (*fixture, *dhcpv4.DHCPv4, net.IP) {
	t.Helper()
	f := horizonFixtureAhead(t, true, 4*time.Hour)
	ack := f.dora(mac(1))
	ip := ack.YourIPAddr
	a, _ := netip.AddrFromSlice(ip.To4())
	t0 := f.now
	f.store.holding = true
	f.now = t0.Add(10 * time.Minute)
	if got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr); len(got) != 1 {
		t.Fatalf("the renewal on its horizon: %d replies", len(got))
	}
	switch end {
	case "expired":
		f.now = t0.Add(70*time.Minute + time.Second)
		f.srv.Sweep()
	case "released":
		f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ack.ServerIdentifier()))), srvAddr)
	}
	if b, _ := f.srv.leases.Brief(a); b.State == lease.Active {
		t.Fatalf("%s: the lease is still active in memory: %+v", end, b)
	}
	return f, ack, ip
}

// TestNoAckOnAnotherBindingsHorizon: the horizon on disk may still be a
// previous client's while the address has ended for it in memory and gone
// to another: the other client's REQUEST, and its repeat, wait for their
// record, also once an older version of the first binding has landed. A
// crash before that record would otherwise leave the address held for the
// first client (to its horizon) while the second held an ACK for it.
// (With 4 h horizons the second client's grant is within the first's.)
func TestNoAckOnAnotherBindingsHorizon(t *testing.T) {
	for _, end := range []string{"expired", "released"} {
		t.Run(end, func(t *testing.T) {
			f, _, ip := endedInFlight(t, end)
			reboot := msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
			if got := f.send(reboot, bcast); len(got) != 0 {
				t.Fatalf("B's ACK left before its record: %v", got[0].Summary())
			}
			if got := f.send(reboot, bcast); len(got) != 0 {
				t.Fatalf("B's repeated REQUEST was ACKed on A's horizon: %v", got[0].Summary())
			}
			// A's renewal lands (A's binding, active, on disk again): B's
			// binding must not take its horizon.
			f.store.land(1)
			if got := f.send(reboot, bcast); len(got) != 0 {
				t.Fatalf("B's REQUEST was ACKed on A's renewal's horizon: %v", got[0].Summary())
			}
			f.store.release()
			if got := f.out.take(); len(got) != 3 {
				t.Fatalf("%d ACKs once B's records landed, want 3", len(got))
			}
			// B's own binding on disk now: its renewal goes on its horizon.
			if got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithClientIP(ip)), srvAddr); len(got) != 1 {
				t.Fatalf("B's renewal: %d replies", len(got))
			}
			if n := testutil.ToFloat64(f.srv.m.AckedOnHorizon); n != 2 {
				t.Fatalf("%v ACKs on the horizon, want A's and B's renewals", n)
			}
		})
	}
}

// TestNoAckOnTheSameClientsEarlierHorizon: a client whose binding ended
// (released, or expired) and that is bound again to the same address is
// not ACKed on its earlier binding's horizon when a version of that
// binding lands after the new one began: the disk then holds an earlier
// binding, and the ended one after it, until the new one lands. A crash
// in between leaves the address free on disk.
func TestNoAckOnTheSameClientsEarlierHorizon(t *testing.T) {
	for _, end := range []string{"expired", "released"} {
		t.Run(end, func(t *testing.T) {
			f, _, ip := endedInFlight(t, end)
			reboot := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
			if got := f.send(reboot, bcast); len(got) != 0 { // V3, held
				t.Fatalf("the new binding's ACK left before its record: %v", got[0].Summary())
			}
			f.store.land(1) // V1: the client's earlier binding, active, on disk
			if got := f.send(reboot, bcast); len(got) != 0 {
				t.Fatalf("ACKed on the earlier binding's horizon: %v", got[0].Summary())
			}
			f.store.release()
			if got := f.out.take(); len(got) != 2 {
				t.Fatalf("%d ACKs once the records landed, want 2", len(got))
			}
			renew := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip))
			if got := f.send(renew, srvAddr); len(got) != 1 {
				t.Fatalf("the new binding's renewal, on its own horizon: %d replies", len(got))
			}
		})
	}
}

// TestLateVersionIsNotPublished: a version of a binding that the table has
// moved on from (released, then the address bound again) lands late: the
// fast path's entry is not set back to it.
func TestLateVersionIsNotPublished(t *testing.T) {
	f, fp := newFastFixture(t)
	ack := f.dora(mac(1))
	ip := ack.YourIPAddr
	a, _ := netip.AddrFromSlice(ip.To4())
	v0 := fp.entries[a]
	f.store.holding = true
	f.now = f.now.Add(10 * time.Minute)
	f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)                                                                        // V1
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ack.ServerIdentifier()))), srvAddr) // V2
	f.send(msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), bcast)                                              // V3: another client
	f.store.land(1)
	if e := fp.entries[a]; !e.Expiry.Equal(v0.Expiry) || !bytes.Equal(e.HWAddr, mac(1)) {
		t.Fatalf("entry after the released binding's late version: %+v, want it as before (%v)", e, v0.Expiry)
	}
	f.store.release()
	if e, ok := fp.entries[a]; !ok || !bytes.Equal(e.HWAddr, mac(2)) {
		t.Fatalf("entry once every version landed: %+v, want the new client's", e)
	}
}
