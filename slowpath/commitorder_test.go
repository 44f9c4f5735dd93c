package slowpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestALateCommitCannotOverwriteANewerRecord: copies are taken under the
// lock and submitted after it, so a goroutine delayed between the two (a
// fold, a sweep, a FORCERENEW tick) used to land an older copy on disk
// after a newer, acknowledged one. commit submits each address's current
// record instead.
func TestALateCommitCannotOverwriteANewerRecord(t *testing.T) {
	f := newFixture(t)
	ack := f.dora(mac(1))
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())

	// A copy taken now and held up before its submission.
	f.srv.mu.Lock()
	stale := f.srv.leases.Get(ip)
	f.srv.mu.Unlock()

	// Meanwhile the client is ACKed again, ten minutes later: that is on
	// disk before the ACK leaves.
	f.now = f.now.Add(10 * time.Minute)
	f.dora(mac(1))
	acked := f.store.leases[ip].Expiry
	if !acked.After(stale.Expiry) {
		t.Fatalf("setup: the second ACK's expiry %v is not after the first's %v", acked, stale.Expiry)
	}

	// The delayed copy is submitted last.
	f.srv.commit([]*lease.Lease{stale}, causeHorizon, nil)
	if got := f.store.leases[ip].Expiry; !got.Equal(acked) {
		t.Fatalf("on disk after the late commit: expiry %v, want the acknowledged %v", got, acked)
	}
}

// TestCommitFromACallbackIsSubmittedInTurn: a store that answers inside
// Submit (a closed store does) runs callbacks that may commit again; the
// nested commit waits for its turn instead of deadlocking or overtaking.
func TestCommitFromACallbackIsSubmittedInTurn(t *testing.T) {
	f := newFixture(t)
	ack := f.dora(mac(1))
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	f.srv.mu.Lock()
	cp := f.srv.leases.Get(ip)
	f.srv.mu.Unlock()
	before := f.store.commits
	var order []string
	f.srv.commit([]*lease.Lease{cp}, causeHorizon, func(error) {
		order = append(order, "outer")
		f.srv.commit([]*lease.Lease{cp.Clone()}, causeHorizon, func(error) { order = append(order, "inner") })
	})
	if got := f.store.commits - before; got != 2 || len(order) != 2 || order[0] != "outer" || order[1] != "inner" {
		t.Fatalf("commits %d, callbacks %v: want 2 commits, outer then inner", got, order)
	}
}
