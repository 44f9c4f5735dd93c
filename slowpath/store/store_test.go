package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func ipN(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func active(n uint32, hw byte) *lease.Lease {
	at := time.Unix(1_800_000_000, 0)
	return &lease.Lease{IP: ipN(n), State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, hw},
		Start: at, Expiry: at.Add(time.Hour), CLTT: at, StateAt: at}
}

func open(t testing.TB, path string, opt Options) (*Store, func()) {
	t.Helper()
	s, err := Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	}
}

func TestPutLoadGetAndLaterWriteWins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{})
	ctx := context.Background()
	if err := s.Put(ctx, active(1, 1), active(2, 2)); err != nil {
		t.Fatal(err)
	}
	rel := active(1, 1)
	rel.State = lease.Released
	var wg sync.WaitGroup
	wg.Add(2)
	s.Submit([]*lease.Lease{active(3, 3)}, func(err error) { wg.Done() })
	s.Submit([]*lease.Lease{rel}, func(err error) { wg.Done() })
	wg.Wait()
	if err := s.Delete(ctx, ipN(2)); err != nil {
		t.Fatal(err)
	}
	stop()

	s, stop = open(t, path, Options{})
	defer stop()
	got := map[netip.Addr]*lease.Lease{}
	if err := s.Load(ctx, func(l *lease.Lease) error { got[l.IP] = l.Clone(); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[ipN(1)].State != lease.Released || got[ipN(3)] == nil {
		t.Fatalf("loaded %v", got)
	}
	if l, err := s.Get(ipN(3)); err != nil || l == nil || l.HWAddr.String() != "02:00:00:00:00:03" || !l.Expiry.Equal(time.Unix(1_800_003_600, 0)) {
		t.Fatalf("Get: %+v %v", l, err)
	}
	if l, err := s.Get(ipN(2)); err != nil || l != nil {
		t.Fatalf("deleted lease: %+v %v", l, err)
	}
}

func TestHistoryMostRecentFirstAndCapped(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	defer stop()
	ctx := context.Background()
	key := active(0, 9).ClientKey()
	for i := range uint32(20) {
		if i > 0 {
			s.Moved(key, ipN(100+i), ipN(99+i))
		}
		if err := s.Put(ctx, active(100+i, 9)); err != nil {
			t.Fatal(err)
		}
	}
	s.Moved(key, ipN(105), ipN(119)) // back to an older address
	if err := s.Put(ctx, active(105, 9)); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != historyCap || h[0] != ipN(105) || h[1] != ipN(119) || h[2] != ipN(118) {
		t.Fatalf("history %v", h)
	}
	for i, a := range h {
		for _, b := range h[i+1:] {
			if a == b {
				t.Fatalf("duplicate %s in history", a)
			}
		}
	}
}

// A client's first address is not written to the history: the slow path
// knows it (a random insert per new binding cost a third of a failover
// catch-up's commit time). Only a move is.
func TestHistoryHoldsMovesOnly(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	defer stop()
	ctx := context.Background()
	if err := s.Put(ctx, active(1, 7)); err != nil {
		t.Fatal(err)
	}
	key := active(1, 7).ClientKey()
	if h, err := s.History(key); err != nil || len(h) != 0 {
		t.Fatalf("history of a client that never moved: %v %v", h, err)
	}
	s.Moved(key, ipN(2), ipN(1))
	s.Moved(key, ipN(2), ipN(2)) // not a move
	if err := s.Put(ctx, active(2, 7)); err != nil {
		t.Fatal(err)
	}
	if h, err := s.History(key); err != nil || !slices.Equal(h, []netip.Addr{ipN(2), ipN(1)}) {
		t.Fatalf("history after a move: %v %v", h, err)
	}
	// Keys the tree would refuse are not recorded: they would fail every
	// fold after them.
	s.Moved("", ipN(3), ipN(2))
	s.Moved(strings.Repeat("k", bolt.MaxKeySize+1), ipN(3), ipN(2))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Folded(wctx); err != nil || s.Stats().FoldErrors != 0 {
		t.Fatalf("folding after moves with unusable keys: %v, %+v", err, s.Stats())
	}
}

func TestLoadPageResumesAfterTheLastAddress(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	defer stop()
	ctx := context.Background()
	for i := range uint32(25) {
		if err := s.Put(ctx, active(2*i, byte(i))); err != nil { // even addresses only
			t.Fatal(err)
		}
	}
	var seen []netip.Addr
	var pages []int
	after := netip.Addr{}
	for range 10 {
		n := 0
		next, err := s.LoadPage(after, 10, func(l *lease.Lease) error { seen = append(seen, l.IP); n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, n)
		if len(pages) == 1 {
			// Changes between pages are seen when they lie ahead of the
			// cursor and not when behind it: each page is its own snapshot.
			if err := s.Put(ctx, active(1, 1), active(41, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if !next.IsValid() {
			break
		}
		after = next
	}
	if fmt.Sprint(pages) != "[10 10 6]" {
		t.Fatalf("page sizes %v", pages)
	}
	for i := 1; i < len(seen); i++ {
		if !seen[i-1].Less(seen[i]) {
			t.Fatalf("not in address order: %v", seen)
		}
	}
	if slices.Contains(seen, ipN(1)) || !slices.Contains(seen, ipN(41)) {
		t.Fatalf("seen %v", seen)
	}
	// An address that is not stored is a valid starting point.
	var first netip.Addr
	if _, err := s.LoadPage(ipN(3), 1, func(l *lease.Lease) error { first = l.IP; return nil }); err != nil || first != ipN(4) {
		t.Fatalf("page after 10.0.0.3 starts at %s (%v)", first, err)
	}
	stop2 := errors.New("stop")
	if _, err := s.LoadPage(netip.Addr{}, 5, func(*lease.Lease) error { return stop2 }); !errors.Is(err, stop2) {
		t.Fatalf("fn's error not returned: %v", err)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{MaxDelay: 5 * time.Millisecond})
	defer stop()
	var wg sync.WaitGroup
	const n = 2000
	for i := range uint32(n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(context.Background(), active(i, byte(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Leases != n || st.Commits*10 > n {
		t.Fatalf("%d leases in %d commits: not grouped", st.Leases, st.Commits)
	}
}

func TestRunFlushesOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, Options{MaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	var got []error
	var mu sync.Mutex
	for i := range uint32(100) {
		s.Submit([]*lease.Lease{active(i, 1)}, func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() })
	}
	cancel()
	<-done
	if len(got) != 100 {
		t.Fatalf("%d of 100 submissions called back", len(got))
	}
	s.Submit([]*lease.Lease{active(999, 1)}, func(err error) {
		if err == nil {
			t.Error("submission after Run returned succeeded")
		}
	})
	s.Close()
	s, stop := open(t, path, Options{})
	defer stop()
	n := 0
	s.Load(context.Background(), func(*lease.Lease) error { n++; return nil })
	if n != 100 {
		t.Fatalf("%d leases on disk, want 100", n)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{})
	stop()
	_ = s
	db, _ := bolt.Open(path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, schemaVersion+1))
	})
	db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestCorruptRecordStopsLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	_, stop := open(t, path, Options{})
	stop()
	db, _ := bolt.Open(path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLeases).Put([]byte{10, 0, 0, 7}, []byte{1, 2}) })
	db.Close()
	s, stop := open(t, path, Options{})
	defer stop()
	err := s.Load(context.Background(), func(*lease.Lease) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "10.0.0.7") {
		t.Fatalf("corrupt record: %v", err)
	}
}

// TestMeta: a value reads back as it was put, from the journal, from the
// tree after the fold, and after a restart. An empty value reads back
// empty, not nil (nil means absent), and so does a nil value put.
func TestMeta(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{FoldEvery: time.Hour})
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	// A nil value is stored as empty.
	want := map[string][]byte{"failover": []byte("normal"), "empty": {}, "nil": nil}
	for k, v := range want {
		if err := s.PutMeta(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for k, v := range want {
			if got, err := s.GetMeta(k); err != nil || got == nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: %s = %q (nil %v), %v; want %q", when, k, got, got == nil, err, v)
			}
		}
		if v, err := s.GetMeta("nope"); v != nil || err != nil {
			t.Fatalf("%s: absent key read %q, %v", when, v, err)
		}
	}
	check("in the journal")
	if err := s.Folded(ctx); err != nil {
		t.Fatal(err)
	}
	check("folded")
	stop()
	stopped = true
	s, stop = open(t, path, Options{})
	defer stop()
	check("reopened")
}

// TestKill9LosesNothingAcknowledged runs a writer in a child process, which
// prints each address and its record's version only after its commit
// callback returned nil (the moment an ACK would leave), kills it with
// SIGKILL mid-stream, and checks that every printed address is on disk
// intact, at that version or a later one (the child writes most addresses
// twice, in different journal generations, and folds in transactions of
// 16 addresses: a kill lands between a fold's transactions too).
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if os.Getenv("XDHCP_STORE_CHILD") != "" {
		return
	}
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "l.db")
		cmd := exec.Command(os.Args[0], "-test.run", "^TestStoreChildWriter$")
		cmd.Env = append(os.Environ(), "XDHCP_STORE_CHILD="+path)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := map[string]int64{} // address → newest version acknowledged
		n := 0
		want := 3000 + round*1000
		for n < want && sc.Scan() {
			var ip string
			var v int64
			if _, err := fmt.Sscanf(sc.Text(), "acked %s %d", &ip, &v); err == nil {
				acked[ip] = max(acked[ip], v)
				n++
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill -9 the writer: %v", round, err)
		}
		werr := cmd.Wait()
		// A writer that crashed or exited before the kill would leave
		// fewer acknowledgements to check, down to none, and the test
		// would pass without testing durability: require the full count
		// and that SIGKILL is what ended the child (a process that had
		// already exited reports its exit status instead).
		if n < want {
			t.Fatalf("round %d: writer acknowledged only %d of %d leases before its output ended (%v)", round, n, want, werr)
		}
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer was not alive at the kill: %v", round, cmd.ProcessState)
		}
		s, stop := open(t, path, Options{})
		for a, v := range acked {
			l, err := s.Get(netip.MustParseAddr(a))
			if err != nil || l == nil || l.State != lease.Active || len(l.HWAddr) != 6 {
				stop()
				t.Fatalf("round %d: acknowledged %s lost after kill -9: %+v %v", round, a, l, err)
			}
			if got := childVersion(l); got < v {
				stop()
				t.Fatalf("round %d: %s read back at version %d after kill -9, version %d was acknowledged", round, a, got, v)
			}
		}
		stop()
	}
}

// childVersion is the version TestStoreChildWriter wrote a record at.
func childVersion(l *lease.Lease) int64 { return int64(l.Expiry.Sub(l.Start) / time.Second) }

func TestStoreChildWriter(t *testing.T) {
	path := os.Getenv("XDHCP_STORE_CHILD")
	if path == "" {
		t.Skip("child process of TestKill9LosesNothingAcknowledged")
	}
	// Folds every few milliseconds: kills land in folds and in the
	// journal's appends alike.
	s, err := Open(path, Options{MaxDelay: time.Millisecond, FoldEvery: 3 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.foldTx = 16
	go s.Run(context.Background())
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	submit := func(n uint32, version int64) {
		l := active(n, byte(n))
		l.Expiry = l.Start.Add(time.Duration(version) * time.Second)
		s.Submit([]*lease.Lease{l}, func(err error) {
			if err == nil {
				mu.Lock()
				fmt.Fprintf(w, "acked %s %d\n", ipN(n), version)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	for i := uint32(0); ; i++ {
		submit(i, 1)
		if i >= 100 {
			submit(i-100, 2) // again, a generation or more later
		}
		if i%64 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// FuzzUnmarshal treats the input both as a stored value (any value that
// decodes re-encodes canonically and decodes to the same record) and as the
// makings of a valid record (which round-trips exactly, through the store
// too). See checkStoredRecord and checkGenerated.
func FuzzUnmarshal(f *testing.F) {
	b, _ := active(1, 1).MarshalBinary()
	f.Add(b)
	s := fuzzStore(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkStoredRecord(t, b)
		checkGenerated(t, s, b)
	})
}

// BenchmarkSubmit measures durable leases per second with 64 concurrent
// submitters (fsync on, as in production).
func BenchmarkSubmit(b *testing.B) {
	s, stop := open(b, filepath.Join(b.TempDir(), "l.db"), Options{MaxDelay: time.Millisecond})
	defer stop()
	var wg sync.WaitGroup
	b.ResetTimer()
	ch := make(chan uint32)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				s.Put(context.Background(), active(i%1_000_000, byte(i)))
			}
		}()
	}
	for i := range uint32(b.N) {
		ch <- i
	}
	close(ch)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leases/s")
}

// BenchmarkLoad1M measures start-up: decoding a million leases.
func BenchmarkLoad1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "l.db")
	s, stop := open(b, path, Options{MaxBatch: 50000})
	for i := uint32(0); i < 1_000_000; i += 50000 {
		var ls []*lease.Lease
		for j := i; j < i+50000; j++ {
			ls = append(ls, active(j, byte(j)))
		}
		if err := s.Put(context.Background(), ls...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		s.Load(context.Background(), func(*lease.Lease) error { n++; return nil })
		if n != 1_000_000 {
			b.Fatalf("loaded %d", n)
		}
	}
	b.StopTimer()
	stop()
}

// After Load and ReleaseMapped gave the mapped pages back, the records
// read again are the same: the pages come back from the page cache (or the
// disk), whatever the kernel did with them meanwhile.
func TestReleasedPagesReadBack(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	defer stop()
	ctx := context.Background()
	var ls []*lease.Lease
	for i := range uint32(5000) {
		ls = append(ls, active(i+1, byte(i*7)))
	}
	if err := s.Put(ctx, ls...); err != nil {
		t.Fatal(err)
	}
	read := func() map[netip.Addr]string {
		got := map[netip.Addr]string{}
		if err := s.Load(ctx, func(l *lease.Lease) error { got[l.IP] = l.HWAddr.String(); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := read() // Load gives the pages back when it ends
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	again := read()
	if len(first) != len(ls) || len(again) != len(ls) {
		t.Fatalf("read %d, then %d records, want %d", len(first), len(again), len(ls))
	}
	for ip, hw := range first {
		if again[ip] != hw {
			t.Fatalf("%s: %s after the pages were given back, %s before", ip, again[ip], hw)
		}
	}
	if l, err := s.Get(ipN(4321)); err != nil || l == nil || l.HWAddr.String() != first[ipN(4321)] {
		t.Fatalf("Get after ReleaseMapped: %+v %v", l, err)
	}
}

// TestReusedBuffersKeepEveryRecord: the committer reuses its queue from
// one transaction to the next; records written by transactions of every
// size (one larger than MaxBatch among them) all read back as written,
// from the open database and after a reopen.
func TestReusedBuffersKeepEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{})
	ctx := context.Background()
	want := map[netip.Addr]*lease.Lease{}
	n := uint32(1)
	for round, size := range []int{1, 3, 200, 4096 + 100, 2, 50, 1} {
		var batch []*lease.Lease
		for range size {
			l := active(n, byte(round))
			l.ClientID = []byte(fmt.Sprintf("client-%d-%d", round, n))
			batch = append(batch, l)
			want[l.IP] = l.Clone()
			n++
		}
		// Half as one Put, half as concurrent Submits (several jobs in
		// one queue, some transactions taking part of it).
		half := len(batch) / 2
		var wg sync.WaitGroup
		for _, l := range batch[half:] {
			wg.Add(1)
			s.Submit([]*lease.Lease{l}, func(err error) {
				if err != nil {
					t.Error(err)
				}
				wg.Done()
			})
		}
		if err := s.Put(ctx, batch[:half]...); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	check := func(s *Store, when string) {
		for ip, w := range want {
			got, err := s.Get(ip)
			if err != nil || got == nil || !slices.Equal(got.ClientID, w.ClientID) || !slices.Equal(got.HWAddr, w.HWAddr) || !got.Expiry.Equal(w.Expiry) {
				t.Fatalf("%s: %s read back as %+v (%v), want %+v", when, ip, got, err, w)
			}
		}
	}
	check(s, "open")
	stop()
	s, stop = open(t, path, Options{})
	defer stop()
	check(s, "reopened")
}

// A transaction's callbacks run within Options.Callbacks, in commit order,
// on a goroutine that is not the committer's: the next transaction is
// written while they run. A callback held back must not hold back the
// commit behind it.
func TestCallbacksRunBesideTheNextCommit(t *testing.T) {
	var mu sync.Mutex
	var order []uint32
	wraps := 0
	release := make(chan struct{})
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{Callbacks: func(runAll func()) {
		mu.Lock()
		wraps++
		mu.Unlock()
		runAll()
	}})
	defer stop()
	first := make(chan struct{})
	s.Submit([]*lease.Lease{active(1, 1)}, func(err error) {
		if err != nil {
			t.Error(err)
		}
		close(first)
		<-release // the first transaction's callbacks stall
		mu.Lock()
		order = append(order, 1)
		mu.Unlock()
	})
	<-first
	// The second transaction commits while the first's callbacks stall.
	committed := make(chan struct{})
	go func() {
		for s.Stats().Commits < 2 {
			time.Sleep(time.Millisecond)
		}
		close(committed)
	}()
	s.Submit([]*lease.Lease{active(2, 2)}, func(error) {
		mu.Lock()
		order = append(order, 2)
		mu.Unlock()
	})
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the second transaction waited for the first's callbacks")
	}
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("callbacks %v ran before the first's", order)
	}
	mu.Unlock()
	close(release)
	if err := s.Put(context.Background(), active(3, 3)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []uint32{1, 2}) || wraps < 3 {
		t.Fatalf("callbacks ran %v in %d Callbacks calls, want [1 2] in at least 3", order, wraps)
	}
}

// A load gives the database's mapped pages back as it goes, not only at
// its end: the file's pages in the RSS (RssFile) stay near what it reads
// between two releases. The control:
// with releases that never come until the end, the same load holds the
// whole file.
func TestLoadGivesPagesBackAsItGoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, stop := open(t, path, Options{MaxBatch: 100000})
	defer stop()
	ctx := context.Background()
	const n = 60000
	ls := make([]*lease.Lease, n)
	for i := range ls {
		ls[i] = active(uint32(i+1), byte(i))
		ls[i].RelayInfo = make([]byte, 200) // some 20 MB of file in all
	}
	if err := s.Put(ctx, ls...); err != nil {
		t.Fatal(err)
	}
	if err := s.Folded(ctx); err != nil { // the load reads the tree
		t.Fatal(err)
	}
	// The commit read pages too: from here, what is mapped is the load's.
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	grew := func(every int) int64 {
		t.Helper()
		s.releaseEvery = every
		base, most := testenv.RSSFile(t), int64(0)
		i := 0
		if err := s.Load(ctx, func(*lease.Lease) error {
			if i++; i%1000 == 0 {
				most = max(most, testenv.RSSFile(t)-base)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return most
	}
	whole, stepped := grew(n+1), grew(4000)
	t.Logf("file pages the load held at most: %d KiB releasing at its end only, %d KiB releasing every 4000 records", whole>>10, stepped>>10)
	if whole < 12<<20 {
		t.Fatalf("releasing at the end only, the load held only %d KiB: RssFile does not show what it maps", whole>>10)
	}
	if stepped > 6<<20 {
		t.Fatalf("releasing as it goes, the load still held %d KiB of the file", stepped>>10)
	}
}

// TestLookupFromAnotherGoroutine: LoadWithLookup's lookup answers from
// another goroutine while the walk goes on, until end returns, which runs
// after the last record, and also after a walk that failed. Run it under
// the race detector after changing how lookups read the snapshot.
func TestLookupFromAnotherGoroutine(t *testing.T) {
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	defer stop()
	ctx := context.Background()
	const n = 3000
	var all []*lease.Lease
	for i := range uint32(n) {
		all = append(all, active(i+1, byte(i)))
	}
	if err := s.Put(ctx, all...); err != nil {
		t.Fatal(err)
	}
	s.releaseEvery = 500 // pages given back while the other goroutine reads

	for _, fail := range []bool{false, true} {
		asked := make(chan netip.Addr, 64)
		answered := make(chan error, 1)
		var lookup Lookup
		var mu sync.Mutex
		started := make(chan struct{})
		go func() {
			<-started
			mu.Lock()
			look := lookup
			mu.Unlock()
			for ip := range asked {
				l := look(ip)
				if l == nil || l.IP != ip || l.HWAddr[5] != byte(lease.AddrUint32(ip)-lease.AddrUint32(ipN(1))) {
					answered <- fmt.Errorf("lookup(%s) = %+v", ip, l)
					return
				}
			}
			if look(ipN(n+5)) != nil {
				answered <- fmt.Errorf("lookup of an address with no record found one")
				return
			}
			answered <- nil
		}()
		walked, ended := 0, false
		stopAt := errors.New("stop")
		err := s.LoadWithLookup(ctx, func(l *lease.Lease, look Lookup) error {
			if walked == 0 {
				mu.Lock()
				lookup = look
				mu.Unlock()
				close(started)
			}
			walked++
			asked <- l.IP // looked up while the walk goes on
			if fail && walked == n/2 {
				return stopAt
			}
			return nil
		}, func() {
			close(asked)
			if err := <-answered; err != nil {
				t.Error(err)
			}
			ended = true
		})
		switch {
		case fail && !errors.Is(err, stopAt):
			t.Errorf("a walk that failed returned %v, want its error", err)
		case !fail && err != nil:
			t.Fatal(err)
		}
		if !ended {
			t.Errorf("fail %v: end did not run", fail)
		}
	}
}

// TestQueueReusesCommittedBatches: with jobs always waiting behind the
// transaction being written (load), the queue keeps its array and each
// batch takes the array of one committed before, so that nothing is
// allocated, and the jobs keep their order.
func TestQueueReusesCommittedBatches(t *testing.T) {
	s := &Store{opt: Options{MaxBatch: 8}} // four one-record jobs a batch
	ls := make([]*lease.Lease, 1<<16)
	for i := range ls {
		ls[i] = &lease.Lease{}
	}
	queued, taken := 0, 0
	var inFlight [][]job // committed, callbacks not yet run (Run pipelines them)
	cycle := func() {
		for range 4 {
			s.enqueue(job{leases: ls[queued%len(ls) : queued%len(ls)+1]})
			queued++
		}
		s.mu.Lock()
		batch, _ := s.take()
		s.mu.Unlock()
		for _, j := range batch {
			if j.leases[0] != ls[taken%len(ls)] {
				t.Fatalf("job %d out of order", taken)
			}
			taken++
		}
		if inFlight = append(inFlight, batch); len(inFlight) == 3 {
			s.reuse(inFlight[0])
			inFlight = append(inFlight[:0], inFlight[1:]...)
		}
	}
	for range 4 { // a backlog: the queue is never empty after a take
		s.enqueue(job{leases: ls[queued : queued+1]})
		queued++
	}
	for range 10 {
		cycle()
	}
	thousand := func() {
		for range 1000 {
			cycle()
		}
	}
	if allocs := testing.AllocsPerRun(1, thousand); allocs != 0 {
		t.Fatalf("%v allocations in 1000 transactions with jobs always queued", allocs)
	}
	if queued-taken != 4 || s.q.Len() != 4 {
		t.Fatalf("%d queued, %d taken, %d in the queue", queued, taken, s.q.Len())
	}
}

// TestBehindIsTheQueuesWaitPastATransaction: Behind is 0 with nothing
// queued, grows with the wait of a job no transaction has taken, and is
// 0 again once the committer has caught up (the slow path stops reading
// requests while it is more than queue-target).
func TestBehindIsTheQueuesWaitPastATransaction(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "l.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := s.Behind(); d != 0 {
		t.Fatalf("nothing queued: behind %v", d)
	}
	done := make(chan error, 1)
	s.Submit([]*lease.Lease{active(1, 1)}, func(err error) { done <- err })
	time.Sleep(30 * time.Millisecond) // no committer yet: the job waits
	if d := s.Behind(); d < 30*time.Millisecond {
		t.Fatalf("a job queued 30 ms ago, no transaction yet: behind %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The callback runs after the transaction has left the committer.
	deadline := time.Now().Add(5 * time.Second)
	for s.Behind() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("caught up, behind still %v", s.Behind())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBehindCountsAStalledTransaction: a transaction in flight that runs
// past what one takes is behind at once, with nothing queued behind it;
// one holding an oversized job (a start-up's rewrite, more than MaxBatch
// leases) is not, nor is a job that waits for it. The commit is held in
// Options.Observe, which runs before the transaction leaves the
// committer.
func TestBehindCountsAStalledTransaction(t *testing.T) {
	var hold atomic.Bool
	entered, release := make(chan struct{}, 1), make(chan struct{})
	observe := func(int, time.Duration) {
		if hold.Load() {
			entered <- struct{}{}
			<-release
		}
	}
	s, stop := open(t, filepath.Join(t.TempDir(), "l.db"), Options{MaxBatch: 10, Observe: observe})
	defer stop()
	ctx := context.Background()
	if err := s.Put(ctx, active(1, 1)); err != nil { // sets the pace
		t.Fatal(err)
	}
	stall := func(leases []*lease.Lease, then func()) {
		t.Helper()
		hold.Store(true)
		done := make(chan error, 1)
		s.Submit(leases, func(err error) { done <- err })
		<-entered
		hold.Store(false)
		time.Sleep(30 * time.Millisecond)
		then()
		release <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	stall([]*lease.Lease{active(2, 2)}, func() {
		if d := s.Behind(); d < 20*time.Millisecond {
			t.Errorf("a transaction stalled 30 ms: behind %v", d)
		}
	})
	var big []*lease.Lease
	for i := range 11 {
		big = append(big, active(uint32(10+i), byte(10+i)))
	}
	stall(big, func() {
		queued := make(chan error, 1)
		s.Submit([]*lease.Lease{active(3, 3)}, func(err error) { queued <- err })
		time.Sleep(20 * time.Millisecond)
		if d := s.Behind(); d != 0 {
			t.Errorf("an oversized transaction 50 ms in flight, a job 20 ms behind it: behind %v, want 0", d)
		}
	})
}
