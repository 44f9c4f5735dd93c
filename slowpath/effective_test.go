package slowpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestEffectiveExpiryIsOneAnswer: past a lease's stored expiry, with a
// fast-path grant not yet folded in, leasequery, bulk leasequery and the
// sweeper all take the grant (effectiveExpiryLocked), and asking changes
// nothing: the record keeps its stored expiry until the sweeper commits.
func TestEffectiveExpiryIsOneAnswer(t *testing.T) {
	f := lqFixture(t)
	fp := &mapFast{entries: map[netip.Addr]FastLease{}, granted: map[netip.Addr]time.Time{}}
	f.srv.fast = fp
	ack := f.dora(mac(1), relayedBy("olt-1")...)
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	stored := f.store.leases[ip].Expiry
	f.now = stored.Add(5 * time.Second)
	fp.granted[ip] = f.now.Add(20 * time.Minute)
	commits := f.store.commits

	if r := f.query(requester, dhcpv4.WithClientIP(ack.YourIPAddr)); r == nil || r.MessageType() != mtLeaseActive ||
		u32(r.Options.Get(dhcpv4.OptionIPAddressLeaseTime)) != 1200 {
		t.Fatalf("UDP: %v, want active with 1200 s left", r)
	}
	reps := f.bulkAsk(lqclient.Query{MAC: mac(1)})
	if len(reps) != 2 || reps[0].Type != "leaseactive" || reps[0].State != "active" || val(reps[0].LeaseTime) != 1200 {
		t.Fatalf("bulk: %+v, want active with 1200 s left", reps[0])
	}
	if l := f.srv.Lookup(ip); !l.Expiry.Equal(stored) || f.store.commits != commits {
		t.Fatalf("queries changed state: expiry %v (stored %v), %d commits", l.Expiry, stored, f.store.commits-commits)
	}
	f.srv.Sweep()
	if l := f.store.leases[ip]; l.State != lease.Active || !l.Expiry.Equal(fp.granted[ip]) {
		t.Fatalf("sweeper: %v until %v, want active until the grant %v", l.State, l.Expiry, fp.granted[ip])
	}
}
