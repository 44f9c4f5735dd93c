package slowpath

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestNoUnsavedHorizonReachesTheFastPath: whatever changed a lease's
// horizon in memory, a commit that failed leaves it off disk, and no later
// publication (a reload's PublishAll, another change's commit) may give the
// fast path a horizon the disk does not hold (ARCHITECTURE.md invariant 2).
func TestNoUnsavedHorizonReachesTheFastPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change moves ip's horizon while the store fails.
		change func(f *fixture, ip netip.Addr)
	}{
		{"AdvanceHorizons", func(f *fixture, ip netip.Addr) {
			if n := f.srv.AdvanceHorizons(); n != 1 {
				f.t.Fatalf("advanced %d horizons, want 1", n)
			}
		}},
		{"renewal ACK", func(f *fixture, ip netip.Addr) {
			got := f.send(msg(f.t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip.AsSlice())), srvAddr)
			if len(got) != 0 {
				f.t.Fatalf("ACK sent although the commit failed: %v", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fp := newFastFixture(t)
			ip, _ := netip.AddrFromSlice(f.dora(mac(1)).YourIPAddr.To4())
			onDisk := f.store.leases[ip].Horizon
			f.now = f.now.Add(3 * time.Hour) // 1h of the 4h horizon left
			f.store.fail = errors.New("disk on fire")
			tc.change(f, ip)
			if h := f.store.leases[ip].Horizon; !h.Equal(onDisk) {
				t.Fatalf("the store took a failed commit: horizon %v", h)
			}
			fp.published = nil
			f.srv.PublishAll() // as a reload does
			if len(fp.published) != 1 {
				t.Fatalf("PublishAll published %d entries, want 1", len(fp.published))
			}
			if h := fp.published[0].Horizon; h.After(onDisk) {
				t.Fatalf("fast path given horizon %v, disk holds %v", h, onDisk)
			}
			// Once the disk works again the next advance is published.
			f.store.fail = nil
			if n := f.srv.AdvanceHorizons(); n != 1 {
				t.Fatalf("after recovery: advanced %d horizons, want 1", n)
			}
			stored := f.store.leases[ip].Horizon
			if !stored.Equal(f.now.Add(4*time.Hour)) || !fp.entries[ip].Horizon.Equal(stored) {
				t.Fatalf("after recovery: map horizon %v, disk %v", fp.entries[ip].Horizon, stored)
			}
		})
	}
}
