package fastpath_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
)

// TestGrantsSurviveRepublish: the map never forgets a grant (docs/
// ARCHITECTURE.md invariants 4 and 9). The slow path republishes leases
// all the time with the expiry bbolt knows (AdvanceHorizons, reloads),
// which lags what XDP granted until the event is folded. Here one
// goroutine republishes a thousand leases in batches, with their old
// expiry, while two others renew every one of them through
// BPF_PROG_TEST_RUN; afterwards every expiry the program reported on the
// event rings must still be in the map, as Granted and Scan read it.
//
// The horizon is below now + lease time, so each grant ends exactly at the
// horizon: a grant lost to a republish is not quietly restored by a later
// renewal a second apart. Against the read-modify-write Publish (before
// the grants map) this failed with hundreds of lost grants per run.
func TestGrantsSurviveRepublish(t *testing.T) {
	r := loadRig(t)
	now := time.Now()
	horizon := now.Add(2 * time.Hour).Truncate(time.Second)
	lost, scanLost, overlap := 0, 0, int64(0)
	// Each round hands every address to another client, so that each
	// renewal is a first grant for its binding: the one a read-modify-
	// write republish could overwrite.
	const rounds = 8
	for round := range rounds {
		l, s, o := republishRound(t, r, now, horizon, byte(round))
		lost, scanLost, overlap = lost+l, scanLost+s, overlap+o
	}
	if lost > 0 || scanLost > 0 {
		t.Fatalf("grants lost to republishing: %d by Granted, %d by Scan, of %d (%d republish batches overlapped the renewals)", lost, scanLost, rounds*republishLeases, overlap)
	}
	// Counted in batches: a pass cut short by the renewals' end overlapped
	// too. At least one whole pass's worth per round.
	if overlap < rounds*republishLeases/republishBatch {
		t.Errorf("only %d republish batches of %d overlapped the renewals in %d rounds: the test shows little", overlap, republishBatch, rounds)
	}
	t.Logf("%d grants, %d republish batches of %d during the renewals, none lost", rounds*republishLeases, overlap, republishBatch)
}

const (
	republishLeases = 1000
	republishBatch  = 50
)

// republishRound publishes republishLeases leases for a client numbered
// round, renews each once while they are republished, and returns how
// many grants Granted and Scan then miss and how many republish batches
// overlapped the renewals.
func republishRound(t *testing.T, r *rig, now, horizon time.Time, round byte) (lost, scanLost int, overlap int64) {
	t.Helper()
	const n = republishLeases
	mac := net.HardwareAddr{0x02, 0, 0, 0, round, 0x11}
	leases := make([]fastpath.Lease, n)
	frames := make([][]byte, n)
	for i := range leases {
		l := directLease()
		l.IP = netip.AddrFrom4([4]byte{10, 77, 8 + byte(i>>8), byte(i)})
		l.HWAddr = mac
		l.Expiry = now.Add(10 * time.Minute) // what bbolt knows: older than any grant
		l.Horizon = horizon
		l.LeaseTime, l.T1, l.T2 = 3*3600, 3*1800, 3*3150
		leases[i] = l
		o := direct(l.IP)
		o.ethSrc = mac
		frames[i] = frame(o, request(t, l.IP, dhcpv4.WithHwAddr(mac)).ToBytes())
	}
	r.publish(t, leases...)

	// Events: what the program says it granted, the latest per address.
	granted := map[netip.Addr]time.Time{}
	var events atomic.Int64
	evCtx, evStop := context.WithCancel(t.Context())
	var evWG sync.WaitGroup
	evWG.Go(func() {
		r.maps.ReadEvents(evCtx, func(rs []fastpath.Renewal) {
			for _, e := range rs {
				if e.Expiry.After(granted[e.IP]) {
					granted[e.IP] = e.Expiry
				}
			}
			events.Add(int64(len(rs)))
		})
	})

	// The republisher, in batches as AdvanceHorizons writes them.
	pubCtx, pubStop := context.WithCancel(t.Context())
	var pubWG sync.WaitGroup
	var publishes atomic.Int64
	republished := slices.Clone(leases)
	pubErr := make(chan error, 1)
	pubWG.Go(func() {
		// Each pass writes another expiry, both older than any grant:
		// Publish skips an entry that is already what the map holds.
		older := [2]time.Time{now.Add(10 * time.Minute), now.Add(11 * time.Minute)}
		for pass := 0; pubCtx.Err() == nil; pass++ {
			for i := range republished {
				republished[i].Expiry = older[pass%2]
			}
			for b := 0; b < n; b += republishBatch {
				if err := r.maps.Publish(republished[b:min(b+republishBatch, n)]); err != nil {
					pubErr <- err
					return
				}
				publishes.Add(1)
			}
		}
	})

	// Two renewers, each taking every other address, so that grants land
	// from both CPUs while Publish runs.
	var answered, punted atomic.Int64
	before := r.counters(t)
	var renewWG sync.WaitGroup
	renewErr := make(chan error, 2)
	startPub := publishes.Load()
	for w := range 2 {
		renewWG.Go(func() {
			for i := w; i < n; i += 2 {
				// A renewal may be punted while its entry is being
				// replaced (match_lease); the client's retransmission
				// is then answered. Any other punt fails the test.
				for try := 0; ; try++ {
					// Fresh options each time: Run cuts DataOut to
					// what the last run wrote.
					opts := &ebpf.RunOptions{
						Data: frames[i], DataOut: make([]byte, len(frames[i])+2048),
						Context: bpf.XdpXdpMd{DataEnd: uint32(len(frames[i])), IngressIfindex: loIndex},
					}
					v, err := r.objs.XdpDhcp.Run(opts)
					if err != nil {
						renewErr <- fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
						return
					}
					if v == xdpTx {
						break
					}
					if v != xdpPass || try == 3 {
						renewErr <- fmt.Errorf("renewal of %s: verdict %d on try %d; counters %v", leases[i].IP, v, try+1, r.counters(t))
						return
					}
					punted.Add(1)
				}
				answered.Add(1)
			}
		})
	}
	renewWG.Wait()
	overlap = publishes.Load() - startPub
	pubStop()
	pubWG.Wait()
	close(renewErr)
	for err := range renewErr {
		t.Fatal(err)
	}
	select {
	case err := <-pubErr:
		t.Fatal(err)
	default:
	}
	after := r.counters(t)
	for reason, c := range after {
		if d := c - before[reason]; reason != "answered" && reason != "no_lease" && d > 0 {
			t.Fatalf("round %d: %d renewals punted for %s", round, d, reason)
		}
	}
	if p := punted.Load(); p > 0 {
		t.Logf("round %d: %d renewals punted while their entry was replaced (no_lease %d), answered on retry", round, p, after["no_lease"]-before["no_lease"])
		if p > n/100 {
			t.Errorf("round %d: %d of %d renewals punted by republishing", round, p, n)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for events.Load() < answered.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evStop()
	evWG.Wait()
	if got, want := events.Load(), answered.Load(); got != want || want != n {
		t.Fatalf("round %d: %d renewals answered, %d events read; want %d of each", round, want, got, n)
	}

	for ip, exp := range granted {
		if exp.Unix() != horizon.Unix() {
			t.Fatalf("%s granted until %v, want the horizon %v", ip, exp, horizon)
		}
		if g, ok := r.maps.Granted(ip); !ok || g.Before(exp) {
			if lost++; lost <= 3 {
				t.Errorf("round %d, %s: Granted says %v (found %v), the program granted %v", round, ip, g, ok, exp)
			}
		}
	}
	scanned := map[netip.Addr]time.Time{}
	if _, err := r.maps.Scan(func(rn fastpath.Renewal) { scanned[rn.IP] = rn.Expiry }); err != nil {
		t.Fatal(err)
	}
	// The scan without addresses, from the zero time, finds the same
	// renewals.
	again := map[netip.Addr]time.Time{}
	if err := r.maps.ScanRenewals(time.Time{}, func(rn fastpath.Renewal) { again[rn.IP] = rn.Expiry }); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(scanned, again, time.Time.Equal) {
		t.Errorf("round %d: Scan found %d renewals, ScanRenewals %d, or other expiries", round, len(scanned), len(again))
	}
	for ip, exp := range granted {
		if g, ok := scanned[ip]; !ok || g.Before(exp) {
			if scanLost++; scanLost <= 3 {
				t.Errorf("round %d, %s: Scan says %v (found %v), the program granted %v", round, ip, g, ok, exp)
			}
		}
	}
	return lost, scanLost, overlap
}

// TestGrantBelongsToItsBinding: a grant counts only for the binding it was
// made to. When the address passes to another client, the new binding
// gets a slot of its own, reset, and a grant of another generation in it
// (which only a daemon bug could leave there) is ignored by the program
// and by Granted; Remove frees the slot, and a freed slot is handed to a
// new binding reset, with the new generation.
func TestGrantBelongsToItsBinding(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	r.publish(t, l)
	if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	entry := func() bpf.XdpXdhcpLease {
		t.Helper()
		var e bpf.XdpXdhcpLease
		if err := r.objs.XdhcpLeases.Lookup(clientIP.As4(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	slot := func(s uint32) bpf.XdpXdhcpGrant {
		t.Helper()
		var g bpf.XdpXdhcpGrant
		if err := r.objs.XdhcpGrants.Lookup(s, &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	first := entry()
	firstGrant := slot(first.GrantSlot)
	if first.GrantSlot == 0 || firstGrant.Gen != first.Gen || firstGrant.ClttNs == 0 || firstGrant.Expiry <= uint64(l.Expiry.Unix()) {
		t.Fatalf("after one renewal: entry slot %d gen %d, grant %+v; want the renewal in the entry's slot", first.GrantSlot, first.Gen, firstGrant)
	}

	// Another client, whose lease bbolt says has expired.
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	l2 := l
	l2.HWAddr = other
	l2.Expiry = time.Now().Add(-time.Minute)
	r.publish(t, l2)
	second := entry()
	if second.GrantSlot == first.GrantSlot || second.Gen == first.Gen {
		t.Fatalf("the new client's binding has slot %d gen %d, the earlier one's was slot %d gen %d", second.GrantSlot, second.Gen, first.GrantSlot, first.Gen)
	}
	if g := slot(second.GrantSlot); g != (bpf.XdpXdhcpGrant{Gen: second.Gen}) {
		t.Fatalf("the new binding's slot holds %+v, want only its generation %d", g, second.Gen)
	}
	o := direct(clientIP)
	o.ethSrc = other
	renew := func() uint32 {
		t.Helper()
		v, _ := r.run(t, frame(o, request(t, clientIP, dhcpv4.WithHwAddr(other)).ToBytes()), loIndex)
		return v
	}
	// The earlier binding's grant in the new binding's slot must not
	// count, neither for the program nor for Granted.
	if err := r.objs.XdhcpGrants.Put(second.GrantSlot, &firstGrant); err != nil {
		t.Fatal(err)
	}
	if g, ok := r.maps.Granted(clientIP); !ok || g.Unix() != l2.Expiry.Unix() {
		t.Fatalf("Granted %v %v for the new client, want its own expiry %v", g, ok, l2.Expiry)
	}
	if v := renew(); v != xdpPass {
		t.Fatalf("the new client's expired lease answered (verdict %d) on the earlier client's grant", v)
	}
	if g := slot(second.GrantSlot); g != firstGrant {
		t.Fatalf("the program wrote a slot of another generation: %+v", g)
	}
	var scanned int
	if _, err := r.maps.Scan(func(fastpath.Renewal) { scanned++ }); err != nil {
		t.Fatal(err)
	}
	if scanned != 0 {
		t.Fatalf("Scan reported %d renewals from a grant of another generation", scanned)
	}
	if err := r.objs.XdhcpGrants.Put(second.GrantSlot, &bpf.XdpXdhcpGrant{Gen: second.Gen}); err != nil {
		t.Fatal(err)
	}
	if v := renew(); v != xdpPass {
		t.Fatalf("the new client's expired lease answered (verdict %d)", v)
	}
	if c := r.counters(t); c["expired"] != 1 || c["error"] != 1 {
		t.Fatalf("counters %v, want one error (the slot of another generation) and one expired", c)
	}

	// Renewed: recorded in its own slot.
	l3 := l2
	l3.Expiry = time.Now().Add(30 * time.Minute)
	r.publish(t, l3)
	if e := entry(); e.GrantSlot != second.GrantSlot || e.Gen != second.Gen {
		t.Fatalf("republished for the same client: slot %d gen %d, want %d and %d", e.GrantSlot, e.Gen, second.GrantSlot, second.Gen)
	}
	if v := renew(); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	if g := slot(second.GrantSlot); g.Gen != second.Gen || g.ClttNs == 0 {
		t.Fatalf("the new client's renewal: slot %+v", g)
	}
	if err := r.maps.Remove([]netip.Addr{clientIP}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.maps.Granted(clientIP); ok {
		t.Fatal("Granted after Remove")
	}
}

// TestRestartedMapsNeverReuseAGeneration: a daemon that restarts on the
// pinned maps (a new Maps on the same maps) gives new bindings
// generations above every one already there and slots that no entry
// names, reset, so a grant left by an address's previous holder cannot
// count for its next.
func TestRestartedMapsNeverReuseAGeneration(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	r.publish(t, l)
	if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	before, _ := r.maps.Granted(clientIP)
	if !before.After(l.Expiry) {
		t.Fatalf("granted %v, not past the published %v", before, l.Expiry)
	}
	entry := func() bpf.XdpXdhcpLease {
		t.Helper()
		var e bpf.XdpXdhcpLease
		if err := r.objs.XdhcpLeases.Lookup(clientIP.As4(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	old := entry()

	restarted, err := fastpath.New(&r.objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	// A second address first: it must not get the slot the first one's
	// entry names.
	l1 := l
	l1.IP = netip.MustParseAddr("10.77.0.51")
	l2 := l
	l2.HWAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	if err := restarted.Publish([]fastpath.Lease{l1, l2}); err != nil {
		t.Fatal(err)
	}
	var e1 bpf.XdpXdhcpLease
	if err := r.objs.XdhcpLeases.Lookup(l1.IP.As4(), &e1); err != nil {
		t.Fatal(err)
	}
	n := entry()
	if n.Gen <= old.Gen || e1.Gen <= old.Gen {
		t.Fatalf("new bindings got generations %d and %d after a restart; %d was in use", e1.Gen, n.Gen, old.Gen)
	}
	if e1.GrantSlot == old.GrantSlot || e1.GrantSlot == 0 || n.GrantSlot == 0 || n.GrantSlot == e1.GrantSlot {
		t.Fatalf("slots %d and %d for the new bindings; %d was in use", e1.GrantSlot, n.GrantSlot, old.GrantSlot)
	}
	if got, ok := restarted.Granted(clientIP); !ok || got.Unix() != l2.Expiry.Unix() {
		t.Fatalf("the new client's lease reads %v, want its own expiry %v: the earlier holder's grant counted", got, l2.Expiry)
	}
}

// TestFullMapIsAClearError: publishing more leases than the map holds
// fails with an error that says the map is full and names the knob, the
// refused leases are counted by reason, and the leases already in the map
// keep being answered.
func TestFullMapIsAClearError(t *testing.T) {
	r := loadRig(t)
	capacity := r.maps.Capacity()
	var ls []fastpath.Lease
	for i := range capacity + 50 {
		l := directLease()
		l.IP = netip.AddrFrom4([4]byte{10, 90, byte(i >> 8), byte(i)})
		l.HWAddr = net.HardwareAddr{0x02, 0, 0, 0x5a, byte(i >> 8), byte(i)}
		ls = append(ls, l)
	}
	err := r.maps.Publish(ls)
	if err == nil || !strings.Contains(err.Error(), "the lease map is full") || !strings.Contains(err.Error(), "fastpath.max-leases") {
		t.Fatalf("publishing %d leases into a map of %d: %v", len(ls), capacity, err)
	}
	if n := r.maps.Refused()["map_full"]; n == 0 {
		t.Fatalf("refused %v: no map_full counted", r.maps.Refused())
	}
	// An entry that made it in is still answered.
	for _, l := range ls {
		if _, ok := r.maps.Granted(l.IP); !ok {
			continue
		}
		o := direct(l.IP)
		o.ethSrc = l.HWAddr
		if v, _ := r.run(t, frame(o, request(t, l.IP, dhcpv4.WithHwAddr(l.HWAddr)).ToBytes()), loIndex); v != xdpTx {
			t.Fatalf("renewal of %s, in the full map: verdict %d", l.IP, v)
		}
		return
	}
	t.Fatal("no lease of the batch is in the map")
}

// TestFreshMapAsksNothingAndMissesNothing: on a map that was empty when
// New ran, Publish and Remove trust what this process wrote instead of
// asking the kernel per address; the entries must come out as on a map
// that was asked: a republish keeps the binding's slot and generation, a
// removal frees the entry, the address published again is answered, and
// withdrawing an address never published is no error.
func TestFreshMapAsksNothingAndMissesNothing(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	entry := func() (bpf.XdpXdhcpLease, error) {
		var e bpf.XdpXdhcpLease
		return e, r.objs.XdhcpLeases.Lookup(clientIP.As4(), &e)
	}
	r.publish(t, l)
	first, err := entry()
	if err != nil {
		t.Fatal(err)
	}
	l.Expiry = l.Expiry.Add(time.Minute)
	r.publish(t, l)
	again, err := entry()
	if err != nil || again.Gen != first.Gen || again.GrantSlot != first.GrantSlot || again.Expiry == first.Expiry {
		t.Fatalf("republished: %+v (%v), first %+v", again, err, first)
	}
	if err := r.maps.Remove([]netip.Addr{clientIP, netip.MustParseAddr("10.77.0.99")}); err != nil {
		t.Fatal(err)
	}
	if _, err := entry(); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("after Remove the entry reads %v", err)
	}
	r.publish(t, l)
	back, err := entry()
	if err != nil || back.Gen <= first.Gen {
		t.Fatalf("published again: %+v (%v): a new binding needs a new generation", back, err)
	}
	if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("renewal after publish, remove, publish: verdict %d", v)
	}
}
