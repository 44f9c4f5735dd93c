package failover

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/xdhcp/xdhcp/failover/hba"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// fakeDB is an in-memory lease table implementing Bindings and Meta.
type fakeDB struct {
	mu      sync.Mutex
	leases  map[netip.Addr]*lease.Lease
	meta    map[string][]byte
	applied int
	acks    []Ack
	free    int
	backup  int
	changes int
}

func newFakeDB() *fakeDB {
	return &fakeDB{leases: map[netip.Addr]*lease.Lease{}, meta: map[string][]byte{}, free: 100}
}

func (d *fakeDB) Apply(ups []*lease.Lease, done func([]uint8, error)) {
	d.mu.Lock()
	res := make([]uint8, len(ups))
	for _, u := range ups {
		c := u.Clone()
		c.AckedExp = u.PotExp
		if u.State == lease.Backup {
			d.backup++
			d.free--
		}
		d.leases[u.IP] = c
		d.applied++
	}
	d.mu.Unlock()
	go done(res, nil) // as the store's commit goroutine would
}

func (d *fakeDB) Acked(acks []Ack) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range acks {
		d.acks = append(d.acks, a)
		if l := d.leases[a.Sent.IP]; l != nil && a.Reject == 0 {
			l.AckedExp = a.Sent.PotExp
			l.PartnerPending = false
		}
	}
}

func (d *fakeDB) each(match func(*lease.Lease) bool, fn func(*lease.Lease) bool) {
	d.mu.Lock()
	var ls []*lease.Lease
	for _, l := range d.leases {
		if match(l) {
			ls = append(ls, l.Clone())
		}
	}
	d.mu.Unlock()
	for _, l := range ls {
		if !fn(l) {
			return
		}
	}
}

func (d *fakeDB) Pending(fn func(*lease.Lease) bool) {
	d.each(func(l *lease.Lease) bool { return l.PartnerPending }, fn)
}

func (d *fakeDB) Addrs() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ips []netip.Addr
	for ip := range d.leases {
		ips = append(ips, ip)
	}
	return ips
}

func (d *fakeDB) Records(ips []netip.Addr) []*lease.Lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ls []*lease.Lease
	for _, ip := range ips {
		if l := d.leases[ip]; l != nil {
			ls = append(ls, l.Clone())
		}
	}
	return ls
}

func (d *fakeDB) PoolCounts() (int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.free, d.backup
}

func (d *fakeDB) Rebalance(_ context.Context, n int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.free -= n
	d.backup += n
	return n, nil
}

func (d *fakeDB) StateChanged() {
	d.mu.Lock()
	d.changes++
	d.mu.Unlock()
}

func (d *fakeDB) GetMeta(k string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta[k], nil
}

func (d *fakeDB) PutMeta(_ context.Context, k string, v []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meta[k] = append([]byte{}, v...) // stored as the store stores it: empty, not nil (absent)
	return nil
}

// grant records a binding as the slow path would commit it, and hands it
// to the relationship.
func (d *fakeDB) grant(r *Relationship, ip netip.Addr, mac byte, now time.Time) *lease.Lease {
	l := &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, mac}, CLTT: now, StateAt: now,
		Expiry: now.Add(time.Hour), PotExp: now.Add(90 * time.Minute), PartnerPending: true, RelayInfo: []byte{1, 2, 'a', 'b'}}
	d.mu.Lock()
	d.leases[ip] = l.Clone()
	d.mu.Unlock()
	r.Update([]*lease.Lease{l}, false)
	return l
}

func (d *fakeDB) get(ip netip.Addr) *lease.Lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.leases[ip]; l != nil {
		return l.Clone()
	}
	return nil
}

// freePort returns a TCP port free on addr just now.
func freePort(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// pair is two relationships over loopback (127.0.0.1 primary, 127.0.0.2
// secondary), each with its own fake database.
type pair struct {
	t                 *testing.T
	pAddr, sAddr      netip.AddrPort
	pDB, sDB          *fakeDB
	prim, sec         *Relationship
	stopPrim, stopSec func()
	clockP, clockS    time.Duration // offsets from the real clock
	retry             time.Duration // RetryAfterReject when set
	startupWait       time.Duration // StartupWait when set
	mu                sync.Mutex
}

func newPair(t *testing.T) *pair {
	p := &pair{t: t, pAddr: freePort(t, "127.0.0.1"), sAddr: freePort(t, "127.0.0.2"), pDB: newFakeDB(), sDB: newFakeDB()}
	return p
}

func (p *pair) config(role Role, db *fakeDB) Config {
	c := Config{Name: "test-pair", Role: role, MCLT: time.Minute, HBA: hba.Split(128), MaxResponseDelay: 2 * time.Second,
		MaxUnacked: 10, LoadBalanceMaxSecs: 3, Bindings: db, Meta: db,
		Logger: slog.New(slog.NewTextHandler(testWriter{p.t, role}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if role == Primary {
		c.Listen, c.Peer = p.pAddr, p.sAddr
		c.Now = func() time.Time { p.mu.Lock(); defer p.mu.Unlock(); return time.Now().Add(p.clockP) }
	} else {
		c.Listen, c.Peer = p.sAddr, p.pAddr
		c.Now = func() time.Time { p.mu.Lock(); defer p.mu.Unlock(); return time.Now().Add(p.clockS) }
	}
	return c
}

// start runs one side (again) with its database.
func (p *pair) start(role Role, edit func(*Config)) *Relationship {
	p.t.Helper()
	db := p.pDB
	if role == Secondary {
		db = p.sDB
	}
	c := p.config(role, db)
	if edit != nil {
		edit(&c)
	}
	r, err := New(c)
	if err != nil {
		p.t.Fatal(err)
	}
	r.StartupWait, r.RetryAfterReject = 500*time.Millisecond, 300*time.Millisecond
	if p.retry > 0 {
		r.RetryAfterReject = p.retry
	}
	if p.startupWait > 0 {
		r.StartupWait = p.startupWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				p.t.Errorf("%s Run: %v", role, err)
			}
		case <-time.After(5 * time.Second):
			p.t.Errorf("%s Run did not return", role)
		}
	}
	once := sync.OnceFunc(stop)
	p.t.Cleanup(once)
	if role == Primary {
		p.prim, p.stopPrim = r, once
	} else {
		p.sec, p.stopSec = r, once
	}
	return r
}

// waitState waits until r is in state (by name).
func waitState(t *testing.T, r *Relationship, state string, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := r.Status()
		if s.State == state {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s (%s; partner %s; waiting for %s), want %s after %s", s.Role, s.State, s.StateReason, s.PartnerState, s.Waiting, state, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testCounter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// testWriter sends a relationship's log to the test's.
type testWriter struct {
	t    *testing.T
	role Role
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.role, bytes.TrimSpace(b))
	return len(b), nil
}
