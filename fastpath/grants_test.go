package fastpath_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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
		t.Fatalf("grants lost to republishing: %d by Granted, %d by Scan, of %d (%d republish passes overlapped the renewals)", lost, scanLost, rounds*republishLeases, overlap)
	}
	if overlap < rounds {
		t.Errorf("only %d republish passes overlapped the renewals in %d rounds: the test shows little", overlap, rounds)
	}
	t.Logf("%d grants, %d republish passes during the renewals, none lost", rounds*republishLeases, overlap)
}

const republishLeases = 1000

// republishRound publishes republishLeases leases for a client numbered
// round, renews each once while they are republished, and returns how
// many grants Granted and Scan then miss and how many republish passes
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
	pubErr := make(chan error, 1)
	pubWG.Go(func() {
		for pubCtx.Err() == nil {
			for b := 0; b < n; b += 50 {
				if err := r.maps.Publish(leases[b:min(b+50, n)]); err != nil {
					pubErr <- err
					return
				}
			}
			publishes.Add(1)
		}
	})

	// Two renewers, each taking every other address, so that grants land
	// from both CPUs while Publish runs.
	var answered atomic.Int64
	var renewWG sync.WaitGroup
	renewErr := make(chan error, 2)
	startPub := publishes.Load()
	for w := range 2 {
		renewWG.Go(func() {
			for i := w; i < n; i += 2 {
				opts := &ebpf.RunOptions{
					Data: frames[i], DataOut: make([]byte, len(frames[i])+2048),
					Context: bpf.XdpXdpMd{DataEnd: uint32(len(frames[i])), IngressIfindex: loIndex},
				}
				v, err := r.objs.XdpDhcp.Run(opts)
				if err != nil {
					renewErr <- fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
					return
				}
				if v != xdpTx {
					renewErr <- fmt.Errorf("renewal of %s: verdict %d", leases[i].IP, v)
					return
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
// made to. When the address passes to another client, the earlier
// client's grant is deleted and, were it left behind (a renewal racing
// with the change), ignored by the program and by Granted; Remove deletes
// a lease's grant, and Scan deletes grants whose binding is gone.
func TestGrantBelongsToItsBinding(t *testing.T) {
	r := loadRig(t)
	l := directLease()
	r.publish(t, l)
	if v, _ := r.run(t, frame(direct(clientIP), request(t, clientIP).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	grants := func() []bpf.XdpXdhcpGrantKey {
		var ks []bpf.XdpXdhcpGrantKey
		var k bpf.XdpXdhcpGrantKey
		var g bpf.XdpXdhcpGrant
		it := r.objs.XdhcpGrants.Iterate()
		for it.Next(&k, &g) {
			ks = append(ks, k)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return ks
	}
	first := grants()
	if len(first) != 1 {
		t.Fatalf("%d grants after one renewal", len(first))
	}
	var firstGrant bpf.XdpXdhcpGrant
	if err := r.objs.XdhcpGrants.Lookup(first[0], &firstGrant); err != nil {
		t.Fatal(err)
	}

	// Another client, whose lease bbolt says has expired.
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	l2 := l
	l2.HWAddr = other
	l2.Expiry = time.Now().Add(-time.Minute)
	r.publish(t, l2)
	if ks := grants(); len(ks) != 0 {
		t.Fatalf("the earlier client's grant is still there: %+v", ks)
	}
	// Put back as a racing renewal would: it must not count.
	if err := r.objs.XdhcpGrants.Put(first[0], &firstGrant); err != nil {
		t.Fatal(err)
	}
	if g, ok := r.maps.Granted(clientIP); !ok || g.Unix() != l2.Expiry.Unix() {
		t.Fatalf("Granted %v %v for the new client, want its own expiry %v", g, ok, l2.Expiry)
	}
	o := direct(clientIP)
	o.ethSrc = other
	if v, _ := r.run(t, frame(o, request(t, clientIP, dhcpv4.WithHwAddr(other)).ToBytes()), loIndex); v != xdpPass {
		t.Fatalf("the new client's expired lease answered (verdict %d) on the earlier client's grant", v)
	}
	if c := r.counters(t); c["expired"] != 1 {
		t.Fatalf("counters %v, want one expired", c)
	}
	var scanned int
	if _, err := r.maps.Scan(func(fastpath.Renewal) { scanned++ }); err != nil {
		t.Fatal(err)
	}
	// The program made an empty grant for the new binding (before it
	// found the lease expired): that one stays.
	if ks := grants(); len(ks) != 1 || ks[0].Gen == first[0].Gen || scanned != 0 {
		t.Fatalf("after the scan: grants %+v, %d renewals reported; want only the new binding's (not generation %d), and no renewal", ks, scanned, first[0].Gen)
	}

	// Remove takes the grant with the entry.
	l3 := l2
	l3.Expiry = time.Now().Add(30 * time.Minute)
	r.publish(t, l3)
	if v, _ := r.run(t, frame(o, request(t, clientIP, dhcpv4.WithHwAddr(other)).ToBytes()), loIndex); v != xdpTx {
		t.Fatalf("verdict %d", v)
	}
	if ks := grants(); len(ks) != 1 || ks[0].Gen == first[0].Gen {
		t.Fatalf("grants %+v after the new client's renewal; want one, of a new generation (the earlier was %d)", ks, first[0].Gen)
	}
	if err := r.maps.Remove([]netip.Addr{clientIP}); err != nil {
		t.Fatal(err)
	}
	if ks := grants(); len(ks) != 0 {
		t.Fatalf("grants %+v after Remove", ks)
	}
}

// TestRestartedMapsNeverReuseAGeneration: a daemon that restarts on the
// pinned maps (a new Maps on the same maps) gives new bindings
// generations above every one already there, so a grant left by an
// address's previous holder cannot match its next.
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
	gen := func() uint64 {
		t.Helper()
		var e bpf.XdpXdhcpLease
		if err := r.objs.XdhcpLeases.Lookup(clientIP.As4(), &e); err != nil {
			t.Fatal(err)
		}
		return e.Gen
	}
	old := gen()
	k := bpf.XdpXdhcpGrantKey{Ip: binary.NativeEndian.Uint32(clientIP.AsSlice()), Gen: old}
	var g bpf.XdpXdhcpGrant
	if err := r.objs.XdhcpGrants.Lookup(k, &g); err != nil {
		t.Fatalf("no grant under the entry's generation %d: %v", old, err)
	}

	restarted, err := fastpath.New(&r.objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	l2 := l
	l2.HWAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	if err := restarted.Publish([]fastpath.Lease{l2}); err != nil {
		t.Fatal(err)
	}
	if n := gen(); n <= old {
		t.Fatalf("the new binding got generation %d after a restart; %d was in use", n, old)
	}
	// The earlier grant, put back as a renewal racing with the change
	// would leave it.
	if err := r.objs.XdhcpGrants.Put(k, &g); err != nil {
		t.Fatal(err)
	}
	if got, ok := restarted.Granted(clientIP); !ok || got.Unix() != l2.Expiry.Unix() {
		t.Fatalf("the new client's lease reads %v, want its own expiry %v: the earlier holder's grant counted", got, l2.Expiry)
	}
}
