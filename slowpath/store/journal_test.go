package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// model is what the store should hold: address → hardware byte (0: no
// record).
type model map[netip.Addr]byte

// applyRandom makes n random changes to s and m: puts (new and again) and
// deletes over a few hundred addresses, in single Puts and batches.
func applyRandom(t *testing.T, s *Store, m model, rng *rand.Rand, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		ip := uint32(rng.IntN(400) + 1)
		if rng.IntN(4) == 0 {
			if err := s.Delete(ctx, ipN(ip)); err != nil {
				t.Fatal(err)
			}
			delete(m, ipN(ip))
			continue
		}
		hw := byte(rng.IntN(255) + 1)
		if err := s.Put(ctx, active(ip, hw)); err != nil {
			t.Fatal(err)
		}
		m[ipN(ip)] = hw
	}
}

// checkModel reads s every way a reader can (Get, Load, LoadPage with
// small pages, lookups) and compares with m.
func checkModel(t *testing.T, s *Store, m model, when string) {
	t.Helper()
	for ip := uint32(1); ip <= 401; ip++ {
		l, err := s.Get(ipN(ip))
		if err != nil {
			t.Fatalf("%s: Get %s: %v", when, ipN(ip), err)
		}
		want, ok := m[ipN(ip)]
		if ok != (l != nil) || ok && l.HWAddr[5] != want {
			t.Fatalf("%s: Get %s = %+v, want hw %d (present %v)", when, ipN(ip), l, want, ok)
		}
	}
	var wantOrder []netip.Addr
	for ip := range m {
		wantOrder = append(wantOrder, ip)
	}
	slices.SortFunc(wantOrder, netip.Addr.Compare)
	var loaded []netip.Addr
	err := s.LoadWithLookup(context.Background(), func(l *lease.Lease, lookup Lookup) error {
		if l.HWAddr[5] != m[l.IP] {
			t.Fatalf("%s: Load %s hw %d, want %d", when, l.IP, l.HWAddr[5], m[l.IP])
		}
		if o := lookup(l.IP); o == nil || o.HWAddr[5] != m[l.IP] {
			t.Fatalf("%s: lookup %s = %+v", when, l.IP, o)
		}
		loaded = append(loaded, l.IP)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded, wantOrder) {
		t.Fatalf("%s: Load read %d addresses %v, want %d %v", when, len(loaded), loaded, len(wantOrder), wantOrder)
	}
	for _, limit := range []int{1, 3, 17, 1000} {
		var paged []netip.Addr
		after := netip.Addr{}
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatalf("%s: LoadPage(%d) does not end", when, limit)
			}
			n := 0
			last, err := s.LoadPage(after, limit, func(l *lease.Lease) error {
				if l.HWAddr[5] != m[l.IP] {
					t.Fatalf("%s: LoadPage %s hw %d, want %d", when, l.IP, l.HWAddr[5], m[l.IP])
				}
				paged = append(paged, l.IP)
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n > limit {
				t.Fatalf("%s: a page of %d read %d", when, limit, n)
			}
			if !last.IsValid() {
				break
			}
			after = last
		}
		if !slices.Equal(paged, wantOrder) {
			t.Fatalf("%s: pages of %d read %v, want %v", when, limit, paged, wantOrder)
		}
	}
}

// Reads see every change, folded or still in the journal, the newest
// winning and deletions hiding the tree's record, while changes are made
// with the folder off (all in the journal), on (folding as it goes) and
// after a restart that found the journal full.
func TestReadsMergeTheJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	rng := rand.New(rand.NewPCG(1, 2))
	m := model{}

	// First some changes in the tree.
	s, stop := open(t, path, Options{FoldEvery: time.Hour})
	applyRandom(t, s, m, rng, 300)
	if err := s.Folded(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Folds == 0 || st.Unfolded != 0 {
		t.Fatalf("after Folded: %+v", st)
	}
	checkModel(t, s, m, "folded")
	// Then changes over them that stay in the journal.
	s.foldOff.Store(true)
	applyRandom(t, s, m, rng, 300)
	if st := s.Stats(); st.Unfolded != 300 {
		t.Fatalf("with the folder off, %d changes wait, want 300", st.Unfolded)
	}
	checkModel(t, s, m, "in the journal")
	stop()

	// What a crash leaves: the journal, read at Open into the tree.
	if n := journalEntries(t, path); n != 300 {
		t.Fatalf("the journal holds %d entries after the stop, want 300", n)
	}
	s, stop = open(t, path, Options{FoldEvery: time.Hour})
	if n := s.Stats().Unfolded; n != 0 {
		t.Fatalf("%d changes wait after Open", n)
	}
	checkModel(t, s, m, "replayed")
	stop()

	// And with the folder folding every millisecond while reads go on.
	s, stop = open(t, path, Options{FoldEvery: time.Millisecond})
	for round := range 10 {
		applyRandom(t, s, m, rng, 50)
		checkModel(t, s, m, fmt.Sprintf("folding, round %d", round))
	}
	stop()
	// A clean stop folds everything and empties the journal.
	if n := journalEntries(t, path); n != 0 {
		t.Fatalf("the journal holds %d entries after a clean stop", n)
	}
	s, stop = open(t, path, Options{})
	defer stop()
	checkModel(t, s, m, "after a clean stop")
}

// journalEntries counts the journal's entries at path (the store closed).
func journalEntries(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path+".journal", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			n += b.Stats().KeyN
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// With JournalMax changes waiting, a commit asks the folder to fold
// instead of waiting for its tick (an hour here): the Puts all finish,
// and the journal never held much more than JournalMax.
func TestFullJournalFoldsAtOnce(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{FoldEvery: time.Hour, JournalMax: 50})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	most := 0
	for i := range uint32(40) {
		batch := make([]*lease.Lease, 10)
		for j := range batch {
			batch[j] = active(i*10+uint32(j)+1, 1)
		}
		if err := s.wait(ctx, job{leases: batch}); err != nil {
			t.Fatalf("batch %d: %v (a full journal that is never folded)", i, err)
		}
		most = max(most, s.Stats().Unfolded)
	}
	if st := s.Stats(); st.Folds == 0 || most > 50+10 {
		t.Fatalf("folds %d, at most %d changes waiting (JournalMax 50, batches of 10)", st.Folds, most)
	}
}

// Meta keys, informed clients and client moves written before a crash
// (the folder off) read back before the fold, and after Open replays
// them; moves are not journaled, so those not folded are lost, as the
// history is advisory.
func TestJournalKeepsMetaAndInformed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	ctx := context.Background()
	s, stop := open(t, path, Options{FoldEvery: time.Hour})
	s.Moved("client-a", ipN(2), ipN(1))
	if err := s.Folded(ctx); err != nil {
		t.Fatal(err)
	}
	s.foldOff.Store(true)
	if err := s.PutMeta(ctx, "failover", []byte("normal")); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(ctx, job{informed: map[netip.Addr][]byte{ipN(7): []byte("rec-7"), ipN(8): []byte("rec-8")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(ctx, job{informed: map[netip.Addr][]byte{ipN(8): nil}}); err != nil {
		t.Fatal(err)
	}
	s.Moved("client-a", ipN(3), ipN(2))
	check := func(when string, hist []netip.Addr) {
		t.Helper()
		if v, err := s.GetMeta("failover"); err != nil || string(v) != "normal" {
			t.Fatalf("%s: meta %q %v", when, v, err)
		}
		inf, err := s.InformedRecords()
		if err != nil || len(inf) != 1 || string(inf[ipN(7)]) != "rec-7" {
			t.Fatalf("%s: informed %q %v", when, inf, err)
		}
		if h, err := s.History("client-a"); err != nil || !slices.Equal(h, hist) {
			t.Fatalf("%s: history %v %v, want %v", when, h, err, hist)
		}
	}
	check("in the journal", []netip.Addr{ipN(3), ipN(2), ipN(1)})
	stop()
	s, stop = open(t, path, Options{})
	defer stop()
	check("replayed", []netip.Addr{ipN(2), ipN(1)})
}

// FuzzDecodeChange: any bytes read as a journal entry decode or give an
// error, and what decodes has the shape its kind says.
func FuzzDecodeChange(f *testing.F) {
	f.Add([]byte{opLeasePut, 10, 0, 0, 1, 9, 9})
	f.Add([]byte{opLeaseDel, 10, 0, 0, 1})
	f.Add([]byte{opMeta, 0, 3, 'a', 'b', 'c', 'v'})
	f.Add([]byte{opInformedDel, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChange(b)
		if err != nil {
			return
		}
		switch c.op {
		case opLeaseDel, opInformedDel:
			if len(b) != 5 || len(c.val) != 0 {
				t.Fatalf("delete %x decoded as %+v", b, c)
			}
		case opMeta:
			if 3+len(c.key)+len(c.val) != len(b) {
				t.Fatalf("meta %x decoded as %+v", b, c)
			}
		case opLeasePut, opInformedPut:
			if 5+len(c.val) != len(b) {
				t.Fatalf("put %x decoded as %+v", b, c)
			}
		default:
			t.Fatalf("kind %d decoded", c.op)
		}
	})
}

// A fold that closes a generation while its first commit is still on its
// way, for a client move (which needs no journal entry of its own), must
// gather that commit's leases once it lands: a fold of the moves alone
// recorded the generation folded, its bucket was deleted, and the lease,
// acknowledged, was in memory only. Observe runs inside that window (the
// commit written, its changes not yet in the overlay).
func TestFoldWaitsForTheCommitOnItsWay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	var s *Store
	var once sync.Once
	s, stop := open(t, path, Options{FoldEvery: time.Hour, Observe: func(int, time.Duration) {
		once.Do(func() {
			s.Moved("client-a", ipN(9), ipN(8))
			s.signalFold()
			time.Sleep(100 * time.Millisecond) // the folder closes the generation meanwhile
		})
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Put(ctx, active(9, 9)); err != nil {
		t.Fatal(err)
	}
	if err := s.Folded(ctx); err != nil {
		t.Fatalf("the commit's change was never folded: %v (%+v)", err, s.Stats())
	}
	if st := s.Stats(); st.FoldedLeases != 1 || st.Unfolded != 0 {
		t.Fatalf("after the fold: %+v", st)
	}
	stop()
	s, stop = open(t, path, Options{})
	defer stop()
	if l, err := s.Get(ipN(9)); err != nil || l == nil {
		t.Fatalf("acknowledged lease lost after a restart: %+v %v", l, err)
	}
	if h, _ := s.History("client-a"); !slices.Equal(h, []netip.Addr{ipN(9), ipN(8)}) {
		t.Fatalf("history %v", h)
	}
}

// A meta key the tree would refuse is refused at the commit, before an
// ACK, instead of stopping every fold after it and every later Open.
func TestBadMetaKeyRefusedAtTheCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{FoldEvery: time.Millisecond})
	ctx := context.Background()
	for _, k := range []string{"", strings.Repeat("k", bolt.MaxKeySize+1)} {
		if err := s.PutMeta(ctx, k, []byte("v")); err == nil {
			t.Fatalf("meta key of %d bytes accepted", len(k))
		}
	}
	if err := s.Put(ctx, active(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Folded(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FoldErrors != 0 {
		t.Fatalf("folds failed: %+v", st)
	}
	stop()
	s, stop = open(t, path, Options{})
	defer stop()
	if l, _ := s.Get(ipN(1)); l == nil {
		t.Fatal("lease lost")
	}
}

// While folds fail (a full disk) and the journal is full, a commit fails
// with an error instead of waiting for ever, so no ACK leaves and a stop
// does not hang; once a fold succeeds again, commits go on, and nothing
// acknowledged is lost.
func TestFailingFoldRefusesCommitsOnceFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{FoldEvery: time.Hour, JournalMax: 20})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.failFold.Store(true)
	acked := map[netip.Addr]bool{}
	var refused error
	for i := uint32(1); i <= 100 && refused == nil; i++ {
		if refused = s.Put(ctx, active(i, 1)); refused == nil {
			acked[ipN(i)] = true
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "folding it into the lease tree fails") {
		t.Fatalf("with folds failing, 100 Puts gave %v", refused)
	}
	if len(acked) < 20 || s.Stats().FoldErrors == 0 {
		t.Fatalf("%d acknowledged before the refusal, %+v", len(acked), s.Stats())
	}
	s.failFold.Store(false)
	for i := uint32(200); ; i++ {
		err := s.Put(ctx, active(i, 1))
		if err == nil {
			acked[ipN(i)] = true
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("commits still refused once folds succeed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	s, stop = open(t, path, Options{})
	defer stop()
	for ip := range acked {
		if l, _ := s.Get(ip); l == nil {
			t.Fatalf("acknowledged %s lost", ip)
		}
	}
}

// treeHas reads ip's record from the lease tree itself, past the journal.
func treeHas(t *testing.T, s *Store, ip netip.Addr) *lease.Lease {
	t.Helper()
	var out *lease.Lease
	if err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = getRecord(tx.Bucket(bucketLeases), ip)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// SubmitBulk writes into the tree the records whose addresses have no
// change waiting in the journal, and journals the others, after the change
// that waits: the newest wins everywhere, before the fold, after it, and
// after a crash that left the journal to replay.
func TestBulkWritesTheTreeUnlessTheJournalHasTheAddress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{FoldEvery: time.Hour})
	ctx := context.Background()
	s.foldOff.Store(true)
	if err := s.Put(ctx, active(1, 1)); err != nil { // waits in the journal
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.SubmitBulk([]*lease.Lease{active(1, 2), active(2, 2), active(3, 2)}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := treeHas(t, s, ipN(2)); l == nil || l.HWAddr[5] != 2 {
		t.Fatalf("a bulk record with nothing in the journal is not in the tree: %+v", l)
	}
	if l := treeHas(t, s, ipN(1)); l != nil {
		t.Fatalf("a bulk record whose address waits in the journal went into the tree before it: %+v", l)
	}
	if st := s.Stats(); st.Unfolded != 2 || st.Leases != 4 {
		t.Fatalf("after the bulk commit: %+v (want 2 journal entries: the Put and the bulk record after it)", st)
	}
	check := func(when string) {
		t.Helper()
		for ip := uint32(1); ip <= 3; ip++ {
			if l, err := s.Get(ipN(ip)); err != nil || l == nil || l.HWAddr[5] != 2 {
				t.Fatalf("%s: %s is %+v (%v), want the bulk record", when, ipN(ip), l, err)
			}
		}
	}
	check("before the fold")
	stop()
	s, stop = open(t, path, Options{})
	check("replayed")
	if l := treeHas(t, s, ipN(1)); l == nil || l.HWAddr[5] != 2 {
		t.Fatalf("replayed tree holds %+v for %s", l, ipN(1))
	}
	stop()
}

// A bulk record and another job's change of the same address in one
// transaction, the other job first: the bulk record is the newer and must
// stay so. Written into the tree while the older change went to the
// journal, it was read over by that change and then folded over by it.
func TestBulkAfterAnotherJobOfTheSameAddressInOneCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(s *Store, done func(error))
	}{
		{"put", func(s *Store, done func(error)) { s.Submit([]*lease.Lease{active(1, 1)}, done) }},
		{"delete", func(s *Store, done func(error)) { s.enqueue(job{del: []netip.Addr{ipN(1)}, done: done}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.db")
			s, err := Open(path, Options{FoldEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			// Queued before the committer runs: one transaction.
			errs := make(chan error, 2)
			tc.first(s, func(err error) { errs <- err })
			s.SubmitBulk([]*lease.Lease{active(1, 2), active(2, 2)}, func(err error) { errs <- err })
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- s.Run(ctx) }()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if st := s.Stats(); st.Commits != 1 {
				t.Fatalf("%d commits, want the two jobs in one", st.Commits)
			}
			check := func(when string) {
				t.Helper()
				for _, ip := range []netip.Addr{ipN(1), ipN(2)} {
					if l, err := s.Get(ip); err != nil || l == nil || l.HWAddr[5] != 2 {
						t.Fatalf("%s: %s is %+v (%v), want the bulk record", when, ip, l, err)
					}
				}
			}
			check("before the fold")
			if err := s.Folded(ctx); err != nil {
				t.Fatal(err)
			}
			check("folded")
			if l := treeHas(t, s, ipN(1)); l == nil || l.HWAddr[5] != 2 {
				t.Fatalf("the folded tree holds %+v for %s", l, ipN(1))
			}
			cancel()
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
			s.Close()
		})
	}
}

// A bulk record with nothing in the journal goes into the lease tree
// before the journal's transaction (commitDirect). A transaction that the
// journal would refuse (another job's meta key the tree would refuse, or
// a record it cannot encode) is refused before that write: its bulk
// record was once in the tree, read at once and after every start, while
// its caller was told the commit failed. (Found by reviews.)
func TestRefusedBulkCommitWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  job
	}{
		{"meta key", job{meta: [2][]byte{[]byte(""), []byte("v")}}},
		{"hardware address", job{leases: []*lease.Lease{func() *lease.Lease {
			l := active(2, 1)
			l.HWAddr = make([]byte, 17)
			return l
		}()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "l.db"), Options{FoldEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			// Queued before the committer runs: one transaction.
			errs := make(chan error, 2)
			s.SubmitBulk([]*lease.Lease{active(1, 2)}, func(err error) { errs <- err })
			tc.bad.done = func(err error) { errs <- err }
			s.enqueue(tc.bad)
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- s.Run(ctx) }()
			bulkErr := <-errs
			<-errs
			if bulkErr == nil {
				t.Fatal("the bulk job of a failed transaction was acknowledged")
			}
			l, err := s.Get(ipN(1))
			cancel()
			<-ran
			s.Close()
			if err != nil || l != nil {
				t.Fatalf("the bulk record of a refused commit (%v) is served: %+v %v", bulkErr, l, err)
			}
		})
	}
}

// TestNewestPerAddress: of a generation's changes in commit order, each
// address's last (a put or a delete), in address order, against a map
// kept as they are applied.
func TestNewestPerAddress(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 100, 5000} {
		changes := make([]pend, n)
		want := map[uint32]pend{}
		for i := range changes {
			// Addresses across the key's whole width: its top bit, 0
			// and 255.255.255.255 among them.
			ip := rng.Uint32N(uint32(n/3+1)) << 22
			if i%7 == 0 {
				ip = [3]uint32{0, 1 << 31, 1<<32 - 1}[i%3]
			}
			p := pend{ip: ip, gen: 7, rec: fmt.Appendf(nil, "rec-%d", i)}
			if rng.IntN(5) == 0 {
				p.rec = nil
			}
			changes[i] = p
			want[p.ip] = p
		}
		got := newestPerAddress(changes)
		if len(got) != len(want) {
			t.Fatalf("%d changes: %d addresses, want %d", n, len(got), len(want))
		}
		for i, p := range got {
			if i > 0 && got[i-1].ip >= p.ip {
				t.Fatalf("%d changes: %#x after %#x", n, p.ip, got[i-1].ip)
			}
			if w := want[p.ip]; !bytes.Equal(p.rec, w.rec) || (p.rec == nil) != (w.rec == nil) {
				t.Fatalf("%d changes: %#x has %q, want its last, %q", n, p.ip, p.rec, w.rec)
			}
		}
	}
}
