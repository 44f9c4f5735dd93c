package slowpath

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func newPartnerFixture(t *testing.T) (*fixture, *mapFast, *recPartner) {
	f, fp := newFastFixture(t)
	p := &recPartner{}
	f.srv.partner = p
	return f, fp, p
}

// TestEveryChangeGoesToThePartner walks one address through every cause
// of a binding change and checks, for each, the partner mark and PotExp
// on disk, that the partner was handed exactly the committed batch, and
// whether the fast path was written (folded renewals are not republished).
func TestEveryChangeGoesToThePartner(t *testing.T) {
	f, fp, p := newPartnerFixture(t)
	ip := netip.MustParseAddr("10.77.0.100")
	other := netip.MustParseAddr("10.77.0.105")
	t0 := f.now
	for _, step := range []struct {
		name      string
		do        func()
		addr      netip.Addr // the record to check
		state     lease.State
		potExp    func() time.Time // want PotExp
		published bool             // the fast path was written (published or removed)
	}{
		{"bind", func() { f.dora(mac(1)) }, ip, lease.Active,
			func() time.Time { return t0.Add(4 * time.Hour) }, true},
		{"fold", func() {
			f.now = t0.Add(30 * time.Minute)
			f.srv.FoldRenewals([]Renewal{{IP: ip, HWAddr: mac(1), XID: 9, At: f.now, Expiry: f.now.Add(time.Hour)}})
		}, ip, lease.Active, func() time.Time { return t0.Add(4 * time.Hour) }, false},
		{"horizon", func() {
			f.now = t0.Add(3 * time.Hour)
			f.srv.AdvanceHorizons()
		}, ip, lease.Active, func() time.Time { return f.now.Add(4 * time.Hour) }, true},
		{"assume", func() {
			if n, commit := f.srv.AssumeGrantedToHorizon(); n != 1 || commit(context.Background()) != nil {
				t.Fatalf("assumed %d grants", n)
			}
		}, ip, lease.Active, func() time.Time { return f.now.Add(4 * time.Hour) }, false},
		{"replaced", func() {
			// INIT-REBOOT for a second address: the first is given up.
			f.send(msg(f.t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other.AsSlice()))), bcast)
		}, ip, lease.Released, func() time.Time { return f.now }, true},
		{"free", func() {
			// RELEASED becomes FREE once the partner has acked it
			// (draft-12 §5.11); the ack itself goes nowhere.
			f.srv.Sweep()
			if l := f.store.leases[ip]; l.State != lease.Released {
				f.t.Fatalf("freed before the partner acked: %v", l.State)
			}
			if err := f.srv.PartnerAcked(context.Background(), []PartnerAck{{Sent: f.store.leases[ip].Clone()}}); err != nil {
				f.t.Fatal(err)
			}
			if u := p.take(); len(u) != 0 {
				f.t.Fatalf("an ack was sent back to the partner: %v", u)
			}
			f.srv.Sweep()
		}, ip, lease.Free, func() time.Time { return f.now }, true},
		{"release", func() {
			f.send(msg(f.t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(other.AsSlice())), srvAddr)
		}, other, lease.Released, func() time.Time { return f.now }, true},
		{"rebind and decline", func() {
			f.send(msg(f.t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice()))), bcast)
			p.take()
			fp.published, fp.removed = nil, nil
			f.send(msg(f.t, dhcpv4.MessageTypeDecline, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice()))), bcast)
		}, ip, lease.Abandoned, func() time.Time { return f.now.Add(time.Hour) }, true},
		{"expire", func() {
			// Past the quarantine and the fast path's clock lag: ABANDONED → FREE.
			f.now = f.now.Add(time.Hour + (fastClockGrace+1)*time.Second)
			f.srv.Sweep()
		}, ip, lease.Free, func() time.Time { return f.now.Add(-(fastClockGrace + 1) * time.Second) }, true},
	} {
		p.take()
		fp.published, fp.removed = nil, nil
		step.do()
		l := f.store.leases[step.addr]
		if l == nil || l.State != step.state {
			t.Fatalf("%s: stored %+v, want state %v", step.name, l, step.state)
		}
		if !l.PartnerPending || !l.PotExp.Equal(step.potExp()) {
			t.Errorf("%s: partner pending %v, potential expiry %v, want true, %v", step.name, l.PartnerPending, l.PotExp, step.potExp())
		}
		var got *lease.Lease
		for _, batch := range p.take() {
			for _, u := range batch {
				if u.IP == step.addr {
					got = u
				}
			}
		}
		if got == nil || got.State != l.State || !got.Expiry.Equal(l.Expiry) || !got.Horizon.Equal(l.Horizon) {
			t.Errorf("%s: partner was handed %+v, disk holds %+v", step.name, got, l)
		}
		if pub := len(fp.published)+len(fp.removed) > 0; pub != step.published {
			t.Errorf("%s: published to the fast path %v, want %v", step.name, pub, step.published)
		}
	}
}

// TestFailedCommitReachesNeitherFastPathNorPartner: the fan-out follows
// the disk (ARCHITECTURE.md invariants 2 and 6).
func TestFailedCommitReachesNeitherFastPathNorPartner(t *testing.T) {
	f, fp, p := newPartnerFixture(t)
	offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)
	f.store.fail = errors.New("disk on fire")
	f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier()))), bcast)
	if u := p.take(); len(u) != 0 || len(fp.published)+len(fp.removed) != 0 {
		t.Fatalf("failed commit handed on: partner %v, fast path %v", u, fp.published)
	}
}

// TestPartnerCapsAndServe: the partner's cap bounds both the horizon and
// the lease time an ACK grants (its T1 and T2 scaled as the fast path
// scales them), and its serve decision is the entry's serve bit.
func TestPartnerCapsAndServe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cap        time.Duration // from now; 0: no cap
		noServe    bool
		lt, t1, t2 time.Duration
		horizon    time.Duration
		serve      bool
	}{
		{"no cap", 0, false, time.Hour, 30 * time.Minute, 52*time.Minute + 30*time.Second, 4 * time.Hour, true},
		{"cap past the lease", 2 * time.Hour, false, time.Hour, 30 * time.Minute, 52*time.Minute + 30*time.Second, 2 * time.Hour, true},
		{"cap within the lease", 20 * time.Minute, true, 20 * time.Minute, 10 * time.Minute, 17*time.Minute + 30*time.Second, 20 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fp, p := newPartnerFixture(t)
			if tc.cap > 0 {
				p.cap = f.now.Add(tc.cap)
			}
			p.noServe = tc.noServe
			ack := f.dora(mac(1))
			ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
			if ack.IPAddressLeaseTime(0) != tc.lt || ack.IPAddressRenewalTime(0) != tc.t1 || ack.IPAddressRebindingTime(0) != tc.t2 {
				t.Fatalf("ACK told %v/%v/%v, want %v/%v/%v", ack.IPAddressLeaseTime(0), ack.IPAddressRenewalTime(0), ack.IPAddressRebindingTime(0), tc.lt, tc.t1, tc.t2)
			}
			l := f.store.leases[ip]
			if !l.Expiry.Equal(f.now.Add(tc.lt)) || !l.Horizon.Equal(f.now.Add(tc.horizon)) {
				t.Fatalf("stored expiry %v horizon %v", l.Expiry, l.Horizon)
			}
			if e := fp.entries[ip]; e.Serve != tc.serve || !e.Horizon.Equal(l.Horizon) {
				t.Fatalf("entry serve %v horizon %v, want %v %v", e.Serve, e.Horizon, tc.serve, l.Horizon)
			}
		})
	}
}

// TestGrantTimesScaleAsXDP: T1 and T2 of a grant cut short are the
// configured ones times grant/lease time in whole seconds, the
// arithmetic of bpf/xdp_dhcp.c.
func TestGrantTimesScaleAsXDP(t *testing.T) {
	sub := &Subnet{LeaseTime: time.Hour, T1: 1000 * time.Second, T2: 3000 * time.Second}
	for _, tc := range []struct {
		grant time.Duration
		want  [3]uint32
	}{
		{time.Hour, [3]uint32{3600, 1000, 3000}},
		{2 * time.Hour, [3]uint32{3600, 1000, 3000}},     // granted before a reload shortened it
		{1799 * time.Second, [3]uint32{1799, 499, 1499}}, // 1000*1799/3600 = 499.7
		{61*time.Second + 500*time.Millisecond, [3]uint32{61, 16, 50}},
		{0, [3]uint32{}},
		{-time.Second, [3]uint32{}},
	} {
		if got := grantTimes(sub, tc.grant); got != tc.want {
			t.Errorf("grant %v: %v, want %v", tc.grant, got, tc.want)
		}
	}
	if got := grantTimes(nil, time.Hour); got != [3]uint32{3600, 1800, 3150} {
		t.Errorf("no subnet: %v", got)
	}
}
