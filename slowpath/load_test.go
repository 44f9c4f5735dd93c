package slowpath

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// runStore opens a lease store in a temporary directory and runs it until
// the test ends.
func runStore(t *testing.T) (*store.Store, context.Context) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "l.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return st, ctx
}

// newOneSubnet is New with cfg and one subnet, prefix, with an hour's
// leases from the pool first-last.
func newOneSubnet(t *testing.T, cfg Config, prefix, first, last string) *Server {
	t.Helper()
	cfg.Subnets = []*Subnet{{
		Prefix: netip.MustParsePrefix(prefix), LeaseTime: time.Hour,
		Pools: [][2]netip.Addr{{netip.MustParseAddr(first), netip.MustParseAddr(last)}},
	}}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// plainStore hides store.Store's LoadWithLookup: Load then reads on one
// goroutine, as it does for any Store.
type plainStore struct{ Store }

// The pipelined load (reading, the client index, which reads a client's
// other records from the store's snapshot, and the table, each on a
// goroutine of its own)
// builds the same table and the same client index as the load on one,
// clients with several addresses included: the most recently seen is the
// latest whichever address comes first, and every address stays bound to
// its hardware address.
func TestLoadPipelinedBuildsWhatOneWayDoes(t *testing.T) {
	st, ctx := runStore(t)

	t0 := time.Unix(1_800_000_000, 0)
	var ls []*lease.Lease
	add := func(ip string, hw byte, cid []byte, clttAgo time.Duration, state lease.State) {
		ls = append(ls, &lease.Lease{IP: netip.MustParseAddr(ip), State: state, HWType: 1,
			HWAddr: net.HardwareAddr{2, 0, 0, 0, 1, hw}, ClientID: cid,
			Start: t0.Add(-clttAgo), CLTT: t0.Add(-clttAgo), StateAt: t0.Add(-clttAgo), Expiry: t0.Add(time.Hour)})
	}
	for i := range 3 * loadBatch { // the many with one address each, over several of the load's batches
		v := 0x0a4d1000 + i
		add(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String(), byte(i), []byte{1, 9, byte(i >> 8), byte(i)}, time.Minute, lease.Active)
	}
	// A client-id client at three addresses: the newest in the middle.
	add("10.77.0.10", 10, []byte("cid-a"), 3*time.Hour, lease.Released)
	add("10.77.0.11", 10, []byte("cid-a"), time.Hour, lease.Active)
	add("10.77.0.12", 10, []byte("cid-a"), 2*time.Hour, lease.Expired)
	// A hardware-keyed client at three addresses, the newest last.
	add("10.77.0.20", 20, nil, 3*time.Hour, lease.Expired)
	add("10.77.0.21", 20, nil, 2*time.Hour, lease.Released)
	add("10.77.0.22", 20, nil, time.Minute, lease.Active)
	// One MAC under two client-ids, and then without one.
	add("10.77.0.30", 30, []byte("cid-b"), time.Hour, lease.Active)
	add("10.77.0.31", 30, []byte("cid-c"), 2*time.Hour, lease.Active)
	add("10.77.0.32", 30, nil, 30*time.Minute, lease.Released)
	// A client whose addresses are batches apart (the index looks the
	// older one up in the snapshot while the table is filled elsewhere).
	add("10.77.0.40", 40, []byte("cid-d"), 2*time.Hour, lease.Expired)
	add("10.77.200.40", 40, []byte("cid-d"), time.Minute, lease.Active)
	add("10.77.0.41", 41, []byte("cid-e"), time.Minute, lease.Active)
	add("10.77.200.41", 41, []byte("cid-e"), 2*time.Hour, lease.Released)
	if err := st.Put(ctx, ls...); err != nil {
		t.Fatal(err)
	}

	load := func(s Store) *Server {
		srv := newOneSubnet(t, Config{Store: s, Sender: &capture{}}, "10.77.0.0/16", "10.77.0.2", "10.77.255.254")
		if err := srv.Load(ctx); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	two, one := load(st), load(plainStore{st})
	if two.LeaseCount() != len(ls) || one.LeaseCount() != len(ls) {
		t.Fatalf("loaded %d and %d leases, want %d", two.LeaseCount(), one.LeaseCount(), len(ls))
	}
	// Each server hashes keys with its own seed: the index is compared
	// by what it answers for every client.
	if len(two.clients.latest) != len(one.clients.latest) || len(two.clients.hw) != len(one.clients.hw) ||
		len(two.clients.hwMore) != len(one.clients.hwMore) {
		t.Fatalf("index sizes: latest %d/%d, hw %d/%d, more %d/%d", len(two.clients.latest), len(one.clients.latest),
			len(two.clients.hw), len(one.clients.hw), len(two.clients.hwMore), len(one.clients.hwMore))
	}
	for _, l := range ls {
		k, hk := l.ClientKey(), lease.ClientKey(nil, l.HWType, l.HWAddr)
		a, aok := two.clients.latestOf(k)
		b, bok := one.clients.latestOf(k)
		if a != b || aok != bok {
			t.Fatalf("latest of %v's client: %v (%v) and %v (%v)", l.IP, a, aok, b, bok)
		}
		if x, y := two.clients.hwAddrs(nil, hk), one.clients.hwAddrs(nil, hk); !slices.Equal(x, y) {
			t.Fatalf("addresses of %v's hardware address: %v and %v", l.IP, x, y)
		}
	}
	one.Each(func(l *lease.Lease) {
		if o := two.Lookup(l.IP); o == nil || !reflect.DeepEqual(o, l) {
			t.Fatalf("%v: loaded in the pipeline %+v, on one goroutine %+v", l.IP, o, l)
		}
	})
	for _, c := range []struct {
		key  string
		want string
	}{
		{lease.ClientKey([]byte("cid-a"), 1, nil), "10.77.0.11"},
		{lease.ClientKey(nil, 1, net.HardwareAddr{2, 0, 0, 0, 1, 20}), "10.77.0.22"},
		{lease.ClientKey([]byte("cid-b"), 1, nil), "10.77.0.30"},
		{lease.ClientKey([]byte("cid-d"), 1, nil), "10.77.200.40"},
		{lease.ClientKey([]byte("cid-e"), 1, nil), "10.77.0.41"},
	} {
		if got, ok := two.clients.latestOf(c.key); !ok || got != netip.MustParseAddr(c.want) {
			t.Errorf("latest of %q: %v, want %s", c.key, got, c.want)
		}
	}
	hw20 := two.clients.hwAddrs(nil, lease.ClientKey(nil, 1, net.HardwareAddr{2, 0, 0, 0, 1, 20}))
	if len(hw20) < 2 {
		t.Errorf("the hardware-keyed client's older addresses: %v", hw20)
	}
}

// Holding grants while loading (LoadHoldingGrants, for a lost fast-path
// map) builds what a Load followed by AssumeGrantedToHorizon builds: the
// same records, the same expiry heap, the same count held; and its commit
// stores the held records, on one goroutine's load and on two.
func TestLoadHoldingGrantsIsAssumeGranted(t *testing.T) {
	st, ctx := runStore(t)

	t0 := time.Unix(1_800_000_000, 0)
	var ls []*lease.Lease
	add := func(i int, state lease.State, expiry, horizon time.Duration) {
		v := 0x0a4d0100 + i
		ls = append(ls, &lease.Lease{IP: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), State: state, HWType: 1,
			HWAddr: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}, Start: t0, CLTT: t0, StateAt: t0,
			Expiry: t0.Add(expiry), Horizon: t0.Add(horizon)})
	}
	for i := range 600 {
		switch i % 6 {
		case 0, 1: // held: the horizon is past the expiry
			add(i, lease.Active, time.Hour, 4*time.Hour)
		case 2: // the expiry is past the horizon already
			add(i, lease.Active, 4*time.Hour, time.Hour)
		case 3: // granted without a horizon (fast path off then)
			add(i, lease.Active, time.Hour, -time.Hour)
		case 4: // not active: its horizon means nothing
			add(i, lease.Released, 0, 4*time.Hour)
		case 5:
			add(i, lease.Expired, -time.Hour, 4*time.Hour)
		}
	}
	newServer := func(s Store) *Server {
		return newOneSubnet(t, Config{Store: s, Sender: &capture{}, Now: func() time.Time { return t0 }}, "10.77.0.0/16", "10.77.0.2", "10.77.255.254")
	}
	sortedHeap := func(s *Server) []expiryEntry {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.SortedFunc(slices.Values(s.expiry), func(a, b expiryEntry) int {
			return cmp.Or(cmp.Compare(a.ip, b.ip), cmp.Compare(a.at, b.at))
		})
	}
	for _, c := range []struct {
		name string
		st   Store
	}{{"pipelined", st}, {"one goroutine", plainStore{st}}} {
		t.Run(c.name, func(t *testing.T) {
			// As put: the last subtest's commit stored them held.
			if err := st.Put(ctx, ls...); err != nil {
				t.Fatal(err)
			}
			after := newServer(c.st)
			if err := after.Load(ctx); err != nil {
				t.Fatal(err)
			}
			wantN, _ := after.AssumeGrantedToHorizon() // its commit is not run: the store stays as put
			during := newServer(c.st)
			n, commit, err := during.LoadHoldingGrants(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != wantN || n != 200 {
				t.Fatalf("held %d while loading, %d after; want 200", n, wantN)
			}
			after.Each(func(l *lease.Lease) {
				if o := during.Lookup(l.IP); o == nil || !reflect.DeepEqual(o, l) {
					t.Fatalf("%v: held while loading %+v, after %+v", l.IP, o, l)
				}
			})
			if a, b := sortedHeap(after), sortedHeap(during); !slices.Equal(a, b) {
				t.Fatalf("expiry heaps differ: %d entries after, %d while loading", len(a), len(b))
			}
			if err := commit(ctx); err != nil {
				t.Fatal(err)
			}
			for _, l := range ls[:2] {
				got, err := st.Get(l.IP)
				if err != nil || !got.Expiry.Equal(l.Horizon) || !got.PartnerPending {
					t.Fatalf("%v stored as %+v (%v); want it held to %v", l.IP, got, err, l.Horizon)
				}
			}
		})
	}
}
