package fastpath

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/loader"
)

// TestGrantSlotsReusedAfterGrace: a freed grant slot is reset for another
// binding only after a grace period (invariant 9: a program run that read
// the old entry could otherwise still raise the old binding's grant into
// the new one's slot), and a full lease map can be handed to new clients
// in one Publish. The grace period is a fake here that records what the
// slot held when it ran; rcuGrace itself runs in New.
func TestGrantSlotsReusedAfterGrace(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading the XDP maps needs root")
	}
	objs, err := loader.LoadUnpinned(4)
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	m, err := New(&objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := objs.XdhcpGrants.MaxEntries(); n != loader.GrantSlots(4) || n != 6 {
		t.Fatalf("%d grant slots for 4 leases, want 6", n)
	}
	var graces []bpf.XdpXdhcpGrant // slot 1 as each grace period found it
	var graceErr error
	m.grace = func() error {
		var g bpf.XdpXdhcpGrant
		if err := objs.XdhcpGrants.Lookup(uint32(1), &g); err != nil {
			t.Fatal(err)
		}
		graces = append(graces, g)
		return graceErr
	}
	lease := func(i int, client byte) Lease {
		return Lease{
			IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Expiry: time.Now().Add(time.Hour), HWType: 1,
			HWAddr: net.HardwareAddr{2, 0, 0, 0, client, byte(i)}, ServerID: netip.MustParseAddr("10.0.0.254"),
			LeaseTime: 3600, T1: 1800, T2: 3150, Horizon: time.Now().Add(2 * time.Hour), Serve: true,
		}
	}
	entry := func(i int) bpf.XdpXdhcpLease {
		t.Helper()
		var e bpf.XdpXdhcpLease
		if err := objs.XdhcpLeases.Lookup([4]byte{10, 0, 0, byte(i)}, &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Every entry names a slot of its own, which holds its generation.
	check := func(ips ...int) {
		t.Helper()
		seen := map[uint32]bool{}
		for _, i := range ips {
			e := entry(i)
			var g bpf.XdpXdhcpGrant
			if err := objs.XdhcpGrants.Lookup(e.GrantSlot, &g); err != nil {
				t.Fatal(err)
			}
			if e.GrantSlot == 0 || seen[e.GrantSlot] || g.Gen != e.Gen {
				t.Fatalf("10.0.0.%d: slot %d (taken: %v) holding generation %d, the entry's is %d", i, e.GrantSlot, seen[e.GrantSlot], g.Gen, e.Gen)
			}
			seen[e.GrantSlot] = true
		}
	}
	if err := m.Publish([]Lease{lease(1, 1), lease(2, 1), lease(3, 1), lease(4, 1)}); err != nil {
		t.Fatal(err)
	}
	check(1, 2, 3, 4)
	if len(graces) != 0 {
		t.Fatalf("%d grace periods while slots never handed out were left", len(graces))
	}
	// The program's grant to the binding in slot 1, as it would be there.
	first := entry(1)
	if first.GrantSlot != 1 {
		t.Fatalf("the first binding has slot %d, want 1", first.GrantSlot)
	}
	granted := bpf.XdpXdhcpGrant{Gen: first.Gen, Expiry: 99999, ClttNs: 5e9, Xid: 7}
	if err := objs.XdhcpGrants.Put(uint32(1), &granted); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove([]netip.Addr{lease(1, 1).IP}); err != nil {
		t.Fatal(err)
	}

	// A slot never handed out goes first, without a grace period.
	if err := m.Publish([]Lease{lease(5, 1)}); err != nil {
		t.Fatal(err)
	}
	if e := entry(5); e.GrantSlot != 5 || len(graces) != 0 {
		t.Fatalf("the new binding has slot %d after %d grace periods, want the spare 5 and none", e.GrantSlot, len(graces))
	}

	// Then only the freed one is left: a refused grace period leaves it
	// alone, and so does the wait itself.
	graceErr = errors.New("refused")
	if err := m.Publish([]Lease{lease(2, 2)}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Publish with the grace period refused: %v", err)
	}
	if len(graces) != 1 || graces[0] != granted {
		t.Fatalf("grace periods %+v, want one, before slot 1 was touched", graces)
	}
	// The address is the new client's in the slow path: the earlier
	// client's entry, which the refused publish could not replace, is
	// withdrawn, and its slot 2 freed too.
	var gone bpf.XdpXdhcpLease
	if err := objs.XdhcpLeases.Lookup([4]byte{10, 0, 0, 2}, &gone); err == nil {
		t.Fatalf("the earlier client's entry stayed after a refused publish: %+v", gone)
	}
	graceErr = nil
	if err := m.Publish([]Lease{lease(2, 2)}); err != nil {
		t.Fatal(err)
	}
	if len(graces) != 2 || graces[1] != granted {
		t.Fatalf("grace periods %+v, want the second before slot 1 was reset", graces)
	}
	if e := entry(2); (e.GrantSlot != 1 && e.GrantSlot != 2) || e.Chaddr[4] != 2 {
		t.Fatalf("the new binding has slot %d for client %d, want a freed one (1 or 2) for client 2", e.GrantSlot, e.Chaddr[4])
	}
	check(2, 3, 4, 5)

	// Every address to another client at once, the lease map full: the
	// slots replaced are freed as the batch is written, in parts.
	if err := m.Publish([]Lease{lease(2, 3), lease(3, 3), lease(4, 3), lease(5, 3)}); err != nil {
		t.Fatal(err)
	}
	check(2, 3, 4, 5)
	if len(graces) < 3 {
		t.Fatalf("%d grace periods: the replaced slots were reused without one", len(graces))
	}
}
