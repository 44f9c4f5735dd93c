// Package store keeps leases durable in bbolt.
//
// Writes are group-committed: Submit queues records and returns at once; one
// committer goroutine appends everything queued to the journal in a single
// transaction, fsyncs, and only then calls each submitter back (from a
// second goroutine, in commit order, while the next transaction is
// written). So an ACK can wait for its lease to be on disk without the
// server waiting for each fsync in turn. A third goroutine folds the
// journal into the lease tree (journal.go).
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/fifo"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

var (
	bucketLeases  = []byte("leases")  // 4-byte IPv4 → lease record
	bucketHistory = []byte("history") // client key → IPv4 addresses it moved between (Moved), most recent first
	bucketMeta    = []byte("meta")
	keySchema     = []byte("schema")
	// keyStopped is present only between a clean stop (MarkStopped) and
	// the next Open, which takes it (LastStop).
	keyStopped = []byte("stopped")
)

const (
	// schemaVersion 2: the lease tree needs its journal (journal.go),
	// which an xdhcpd of schema 1 would not read.
	schemaVersion = 2
	// historyCap bounds each client's history (leasequery lists them).
	historyCap = 16
)

// Options tune group commit.
type Options struct {
	MaxBatch int           // leases per transaction (default 4096)
	MaxDelay time.Duration // longest wait to fill a transaction (default 0: commit as soon as the queue is drained)
	Logger   *slog.Logger
	// Observe, when set, is told each transaction's size and how long it
	// took, fsync included, before its callbacks run (a metric: an ACK
	// waits for the commit in flight and then its own).
	Observe func(leases int, took time.Duration)
	// Callbacks, when set, runs each transaction's callbacks: it must call
	// runAll once. The daemon holds the replies they send meanwhile for
	// one sendmmsg.
	Callbacks func(runAll func())
	// ObserveFold, when set, is told each fold's addresses written and
	// how long it took, pauses included.
	ObserveFold func(leases int, took time.Duration)
	// FoldEvery is how long the journal fills before it is folded into
	// the lease tree (default 1s): the longer, the more renewals share a
	// page of the tree, and the more memory holds them meanwhile.
	FoldEvery time.Duration
	// JournalMax is how many changes may wait to be folded before commits
	// wait for the fold (default 262144, some 80 MiB: about 320 B each).
	JournalMax int
}

// Stats describe the committer's work so far.
type Stats struct {
	Commits   uint64 `json:"commits"`
	Leases    uint64 `json:"leases"`
	LastBatch int    `json:"last-batch"`
	Errors    uint64 `json:"errors"`
	// Folds counts the journal's generations written into the lease
	// tree, FoldedLeases the leases they wrote (each address once per
	// fold), FoldErrors the folds that failed (they are tried again).
	Folds        uint64 `json:"folds"`
	FoldedLeases uint64 `json:"folded-leases"`
	FoldErrors   uint64 `json:"fold-errors"`
	// LastFold is how long the last fold took; Unfolded is how many
	// journal entries wait to be folded.
	LastFold time.Duration `json:"last-fold-ns"`
	Unfolded int           `json:"unfolded"`
}

type job struct {
	leases []*lease.Lease
	// bulk: leases whose addresses have no change waiting in the journal
	// go straight into the tree (SubmitBulk).
	bulk bool
	del  []netip.Addr
	meta [2][]byte
	// informed puts (nil value: deletes) records of clients configured
	// by DHCPINFORM (SubmitInformed).
	informed map[netip.Addr][]byte
	done     func(error)
	// queued is when it was submitted (Behind).
	queued time.Time
}

// Store is the lease database: the lease tree (db) and its journal (jdb).
type Store struct {
	db  *bolt.DB
	jdb *bolt.DB
	opt Options
	log *slog.Logger
	mu  sync.Mutex
	q   fifo.Queue[job]
	// pace is what a transaction of at most MaxBatch leases takes, fsync
	// included: a moving average of the last ones' that succeeded, each
	// counted as at most twice the average (a stall is not the disk's
	// pace). running is when the transaction in flight was taken from
	// the queue (zero with none; its wait for the fold, JournalMax,
	// counts), and oversized whether it holds a job of more than
	// MaxBatch leases (a bulk rewrite: Behind has no measure of what one
	// takes). See Behind.
	pace      time.Duration
	running   time.Time
	oversized bool
	// spare are the arrays of committed batches, for take to fill again
	// (reuse), at most maxSpare of them.
	spare [][]job
	wake  chan struct{}
	st    Stats
	// moves are history entries (Moved) waiting for the next fold, and
	// folding those the fold in progress writes; moveSeq numbers them.
	moves, folding []move
	moveSeq        uint64
	// closed is set once Run has returned; later submissions fail at once,
	// and each one counts in refused.
	closed  bool
	refused uint64
	// last is how the previous run stopped, read (and taken) by Open.
	last Stop
	// releaseEvery is loadReleaseEvery (tests make it smaller).
	releaseEvery int

	// jmu guards ov; jcond is signalled when a commit or a fold ends.
	jmu   sync.Mutex
	jcond *sync.Cond
	ov    overlay
	// foldNow asks the folder to fold before its next tick.
	foldNow chan struct{}
	// jgen and jseq are the journal generation the committer last
	// appended to and its last entry's number (only the committer uses
	// them).
	jgen, jseq uint64
	// foldOff stops the folder from folding (tests of what a crash
	// leaves in the journal); failFold makes every fold fail (tests of a
	// full disk); foldTx is foldTxMax (tests make it smaller).
	foldOff, failFold atomic.Bool
	foldTx            int
}

// move is a client's change of address, for its history.
type move struct {
	key      string
	to, from [4]byte
	seq      uint64
}

// Open opens (creating if needed) the database at path and its journal
// at path.journal, and folds into the database whatever the journal holds.
func Open(path string, opt Options) (*Store, error) {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 4096
	}
	if opt.FoldEvery <= 0 {
		opt.FoldEvery = defaultFoldEvery
	}
	if opt.JournalMax <= 0 {
		opt.JournalMax = defaultJournalMax
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("opening lease database %s: %w", path, err)
	}
	var last Stop
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLeases, bucketHistory, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		// Taken in this transaction, on disk before this run can
		// acknowledge anything: a crash from here on is not a clean stop.
		if v := m.Get(keyStopped); v != nil {
			last = Stop{Clean: true, FastPath: len(v) == 1 && v[0]&stoppedFastPath != 0}
			if err := m.Delete(keyStopped); err != nil {
				return err
			}
		}
		if v := m.Get(keySchema); v != nil {
			if len(v) != 4 || binary.BigEndian.Uint32(v) > schemaVersion {
				return fmt.Errorf("lease database %s has schema %x, newer than this xdhcpd understands (%d)", path, v, schemaVersion)
			}
			if binary.BigEndian.Uint32(v) == schemaVersion {
				return nil
			}
		}
		// Schema 1 had no journal: it becomes 2, which an older xdhcpd
		// refuses rather than read a tree without its journal.
		return m.Put(keySchema, binary.BigEndian.AppendUint32(nil, schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising lease database %s: %w", path, err)
	}
	jpath := path + ".journal"
	_, statErr := os.Stat(jpath)
	jdb, err := bolt.Open(jpath, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err == nil && errors.Is(statErr, fs.ErrNotExist) {
		// A new journal: its directory entry is on disk before the
		// first ACK depends on the file.
		err = syncDir(filepath.Dir(jpath))
	}
	if err != nil {
		if jdb != nil {
			jdb.Close()
		}
		db.Close()
		return nil, fmt.Errorf("opening lease journal %s: %w", jpath, err)
	}
	folded, err := replayJournal(db, jdb)
	var movesFolded uint64
	if err == nil {
		err = db.View(func(tx *bolt.Tx) (err error) {
			movesFolded, err = metaUint64(tx, keyMovesFolded)
			return err
		})
	}
	if err != nil {
		jdb.Close()
		db.Close()
		return nil, fmt.Errorf("folding lease journal %s into %s: %w", jpath, path, err)
	}
	s := &Store{db: db, jdb: jdb, opt: opt, log: opt.Logger, wake: make(chan struct{}, 1), releaseEvery: loadReleaseEvery,
		ov: newOverlay(folded), moveSeq: movesFolded, foldNow: make(chan struct{}, 1), foldTx: foldTxMax, last: last}
	s.jcond = sync.NewCond(&s.jmu)
	return s, nil
}

// syncDir fsyncs a directory, so that a file created in it survives a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Stop is how the database's previous user stopped.
type Stop struct {
	// Clean: it called MarkStopped, so every change it submitted is on
	// disk. After anything else (a crash, a kill, a failed commit) what
	// it acknowledged ahead of its records (slowpath.Settings.AckOnHorizon)
	// may not be.
	Clean bool
	// FastPath: it ran the XDP fast path, which grants renewals that
	// reach the records only through it (and may go on granting while
	// no daemon runs).
	FastPath bool
}

// stoppedFastPath is keyStopped's bit for Stop.FastPath.
const stoppedFastPath = 1

// LastStop is how the previous run stopped, as Open found it. Open
// takes the mark: the next Open finds a clean stop only if this run
// makes one.
func (s *Store) LastStop() Stop { return s.last }

// MarkStopped records a clean stop for the next Open (LastStop), if
// every change submitted since Open is on disk: no commit failed and
// none came after Run returned. Call it after Run has returned, before
// Close. clean says whether it did; fastPath is Stop.FastPath.
func (s *Store) MarkStopped(fastPath bool) (clean bool, err error) {
	s.mu.Lock()
	lost := s.st.Errors + s.refused
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		return false, errors.New("marking a clean stop: the store is still running")
	}
	if lost > 0 {
		return false, nil
	}
	v := byte(0)
	if fastPath {
		v = stoppedFastPath
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyStopped, []byte{v}) })
	if err != nil {
		return false, fmt.Errorf("marking a clean stop: %w", err)
	}
	return true, nil
}

// Close closes the database and its journal. Call it after Run has
// returned.
func (s *Store) Close() error { return errors.Join(s.jdb.Close(), s.db.Close()) }

// Submit queues records for writing and returns at once. done (which may be
// nil) is called once they are on disk, or with the error that kept them off
// it, after the callbacks of every earlier transaction and from the same
// goroutine (Run). Records belong to the store afterwards.
func (s *Store) Submit(leases []*lease.Lease, done func(error)) {
	s.enqueue(job{leases: leases, done: done})
}

// SubmitBulk is Submit for a rewrite of many records in address order
// (every lease held to its horizon at a start that found the fast path's
// map lost, ten million at most): those whose addresses have no change
// waiting in the journal, and that no other job of the same transaction
// changes, are written into the lease tree by the commit itself, before
// the journal's transaction, instead of once into each file (the journal
// takes the others, in the jobs' order). Nothing can come between: only
// the committer adds to the journal, and a change leaves the overlay only
// once folded. It holds the commit behind a fold's transaction, so it is
// for bulk work, not for ACKs. A commit that the journal would refuse
// part of is refused before either write (checkBatch, and commitDirect
// encodes every record before it writes); one whose
// journal write fails after the tree's (a disk that filled in between)
// leaves the bulk records it wrote in the tree, although its callbacks
// get the error: records the caller asked for, no older than the tree's.
func (s *Store) SubmitBulk(leases []*lease.Lease, done func(error)) {
	s.enqueue(job{leases: leases, done: done, bulk: true})
}

func (s *Store) enqueue(j job) {
	s.mu.Lock()
	if s.closed {
		s.refused++
		s.mu.Unlock()
		if j.done != nil {
			j.done(errors.New("lease store is closed"))
		}
		return
	}
	j.queued = time.Now()
	s.q.Push(j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Behind is how far the store is behind what is submitted to it, 0 when
// it keeps up; the more of:
//   - how much longer than a transaction takes (pace) the one in flight
//     has run, its wait for the fold (JournalMax) included: a stall shows
//     at once, before a job queues behind it. A transaction holding a
//     job of more than MaxBatch leases (the slow path's bulk rewrites:
//     start-up, horizons, expiry sweeps, up to 20,000 a job) has no such
//     measure and does not count;
//   - how much longer than a transaction takes (and MaxDelay) the oldest
//     job not yet in one has waited, if it was queued before the one in
//     flight was taken (a queue longer than a transaction takes, or the
//     callbacks behind) or nothing is in flight.
//
// A job always waits for the transaction in flight, so its wait alone
// would call a disk whose commits take 8 ms, or a start-up's rewrite,
// behind although the store keeps up. The slow path stops reading
// requests while the store is behind by more than its queue-interval
// (slowpath.Server.Ready).
func (s *Store) Behind() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var d time.Duration
	if !s.running.IsZero() && !s.oversized {
		d = now.Sub(s.running) - s.pace
	}
	if s.q.Len() > 0 {
		if q := s.q.Front().queued; s.running.IsZero() || q.Before(s.running) {
			d = max(d, now.Sub(q)-s.pace-s.opt.MaxDelay)
		}
	}
	return max(d, 0)
}

func (s *Store) wait(ctx context.Context, j job) error {
	ch := make(chan error, 1)
	user := j.done
	j.done = func(err error) {
		if user != nil {
			user(err)
		}
		ch <- err
	}
	s.enqueue(j)
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Put writes records and waits until they are on disk.
func (s *Store) Put(ctx context.Context, leases ...*lease.Lease) error {
	return s.wait(ctx, job{leases: leases})
}

// Delete removes records and waits until that is on disk.
func (s *Store) Delete(ctx context.Context, ips ...netip.Addr) error {
	return s.wait(ctx, job{del: ips})
}

// PutMeta stores a small value (failover state and the like) durably; a
// nil val is stored as empty.
func (s *Store) PutMeta(ctx context.Context, key string, val []byte) error {
	return s.wait(ctx, job{meta: [2][]byte{[]byte(key), val}})
}

// GetMeta reads a value stored with PutMeta; nil when absent, and an
// empty value as empty, not nil, from the journal and the tree alike.
func (s *Store) GetMeta(key string) ([]byte, error) {
	s.jmu.Lock()
	v, ok := s.ov.meta[key]
	s.jmu.Unlock()
	if ok {
		return bytes.Clone(v.val), nil
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(key)); v != nil {
			out = bytes.Clone(v) // an empty value stays non-nil
		}
		return nil
	})
	return out, err
}

// Run is the committer. It returns when ctx is done, after committing
// everything submitted before that, running its callbacks, and folding
// the journal into the lease tree.
//
// The callbacks of a transaction run on a goroutine of their own, in
// commit order, while the next transaction is written: they send the
// ACKs (one sendmmsg, through Options.Callbacks) and update the fast
// path and the partner, which took as long as the commit itself under
// load, and the next commit waited for them. The folder is a third
// goroutine (journal.go).
func (s *Store) Run(ctx context.Context) error {
	finished := make(chan committed, 2)
	callbacksDone := make(chan struct{})
	go func() {
		defer close(callbacksDone)
		for c := range finished {
			s.finish(c)
		}
	}()
	stopFold, foldDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(foldDone)
		s.foldLoop(stopFold)
	}()
	defer func() {
		s.mu.Lock()
		s.closed = true
		rest := s.q.PopInto(nil, s.q.Len())
		s.mu.Unlock()
		// Not marked running: the reader has stopped before the store
		// (cmd/xdhcpd), so nothing asks Behind any more.
		if len(rest) > 0 {
			finished <- s.commit(rest)
		}
		close(finished)
		<-callbacksDone
		close(stopFold)
		<-foldDone
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		if s.opt.MaxDelay > 0 {
			// Let concurrent submitters join this transaction.
			t := time.NewTimer(s.opt.MaxDelay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		for {
			s.mu.Lock()
			batch, n := s.take()
			s.mu.Unlock()
			if n == 0 {
				break
			}
			c := s.commit(batch)
			s.mu.Lock()
			s.running = time.Time{}
			s.mu.Unlock()
			finished <- c
		}
	}
}

// committed is a transaction whose callbacks are yet to run.
type committed struct {
	batch []job
	err   error
}

// finish runs a committed transaction's callbacks, within
// Options.Callbacks, and gives its memory back.
func (s *Store) finish(c committed) {
	run := func() {
		for _, j := range c.batch {
			if j.done != nil {
				j.done(c.err)
			}
		}
	}
	if s.opt.Callbacks != nil {
		s.opt.Callbacks(run)
	} else {
		run()
	}
	s.reuse(c.batch)
}

// Moved records that a client's most recent address changed from from to
// to, in the client's history, with the next fold. Only moves are
// recorded: a client's current address is the slow path's to know, and
// writing a history entry for every client's first address made each
// new binding an insert at a random place in a second tree (a third of a
// catch-up's commit time). The history is advisory: readers keep only the
// addresses whose record still names the client, so a move lost to a
// crash loses no binding (moves are not journaled).
func (s *Store) Moved(key string, to, from netip.Addr) {
	// A key the tree would refuse would fail every later fold: not
	// recorded (a client key is at most 256 bytes today).
	if !to.Is4() || !from.Is4() || to == from || key == "" || len(key) > bolt.MaxKeySize {
		return
	}
	s.mu.Lock()
	s.moveSeq++
	s.moves = append(s.moves, move{key: key, to: to.As4(), from: from.As4(), seq: s.moveSeq})
	s.mu.Unlock()
}

// take moves up to MaxBatch leases' worth of jobs from the queue into a
// batch, in the array of one committed before when there is one.
func (s *Store) take() ([]job, int) {
	n, i := 0, 0
	for ; i < s.q.Len() && (n == 0 || n+len(s.q.At(i).leases) <= s.opt.MaxBatch); i++ {
		j := s.q.At(i)
		n += len(j.leases) + len(j.del) + len(j.informed) + 1
	}
	if i == 0 {
		return nil, 0
	}
	// A batch holds more than MaxBatch only when its one job does.
	s.running, s.oversized = time.Now(), len(s.q.At(0).leases) > s.opt.MaxBatch
	var batch []job
	if k := len(s.spare); k > 0 {
		batch, s.spare = s.spare[k-1], s.spare[:k-1]
	}
	return s.q.PopInto(batch, i), n
}

// reuse keeps a committed batch's array for a later take: at tens of
// thousands of DHCP exchanges a second, a new one for every transaction
// was an allocation per ACK.
func (s *Store) reuse(batch []job) {
	clear(batch) // the records and callbacks are done with
	s.mu.Lock()
	defer s.mu.Unlock()
	if cap(batch) > 0 && len(s.spare) < maxSpare { // a transaction of history entries alone has none
		s.spare = append(s.spare, batch[:0])
	}
}

// maxSpare is how many batch arrays are kept: transactions are pipelined
// a few deep (Run).
const maxSpare = 4

// commit appends one transaction to the journal; its callbacks are the
// caller's to run (finish). It waits first while the journal holds
// JournalMax changes not yet folded: memory holds them too, and a fold
// that cannot keep up must slow the commits rather than grow without
// bound.
func (s *Store) commit(batch []job) committed {
	var count int
	n := 0
	for _, j := range batch {
		n += len(j.leases)
	}
	s.jmu.Lock()
	for s.ov.waiting >= s.opt.JournalMax && !s.ov.foldStopped {
		if s.ov.foldFailing {
			waiting := s.ov.waiting
			s.jmu.Unlock()
			s.signalFold() // try it again now: it may succeed (space freed)
			return s.failed(batch, n, fmt.Errorf("lease journal holds %d changes (server.journal-max) and folding it into the lease tree fails (see the log)", waiting))
		}
		s.signalFold()
		s.jcond.Wait()
	}
	g, drop, dropped := s.ov.cur, s.ov.dropThrough, s.ov.dropped
	s.ov.inflight = g
	s.jmu.Unlock()
	if g != s.jgen {
		s.jgen, s.jseq = g, 0
	}
	began := time.Now()
	err := checkBatch(batch)
	var direct int
	if err == nil {
		direct, err = s.commitDirect(batch)
	}
	if err != nil {
		s.jmu.Lock()
		s.ov.inflight = 0
		s.jcond.Broadcast()
		s.jmu.Unlock()
		return s.failed(batch, n, err)
	}
	// One buffer for the transaction's records: an allocation per record
	// was a fifth of a catch-up's garbage. It is not reused: the overlay
	// points into it until the generation is folded.
	arena := make([]byte, 0, n*170)
	var changes []change
	if journaled(batch) || drop > dropped {
		err = s.jdb.Update(func(tx *bolt.Tx) error {
			// Generations the folder has written into the tree.
			if err := dropGens(tx, dropped, drop); err != nil {
				return err
			}
			b, err := tx.CreateBucketIfNotExists(genBucket(g))
			if err != nil {
				return fmt.Errorf("journal generation %d: %w", g, err)
			}
			// Entries are appended in key order: full pages, and only the
			// last one is written again.
			b.FillPercent = 1
			arena, changes, err = appendOps(b, &s.jseq, arena, batch, &count)
			return err
		})
	}
	count += direct
	took := time.Since(began)
	if s.opt.Observe != nil {
		s.opt.Observe(count, took)
	}
	s.jmu.Lock()
	if err == nil {
		s.ov.addLocked(g, changes)
		s.ov.dropped = max(s.ov.dropped, drop)
	}
	s.ov.inflight = 0
	if s.ov.waiting >= s.opt.JournalMax/2 {
		s.signalFold()
	}
	s.jcond.Broadcast()
	s.jmu.Unlock()
	if err != nil {
		return s.failed(batch, n, err)
	}
	s.mu.Lock()
	// The pace learns from transactions that succeeded and held no bulk
	// rewrite (Behind).
	switch {
	case s.oversized:
	case s.pace == 0:
		s.pace = took
	default:
		s.pace += (min(took, 2*s.pace) - s.pace) / 8
	}
	s.st.Commits++
	s.st.Leases += uint64(count)
	s.st.LastBatch = count
	s.mu.Unlock()
	return committed{batch: batch}
}

// failed counts and logs a commit of n leases that err kept off the disk,
// and hands its callbacks the error.
func (s *Store) failed(batch []job, n int, err error) committed {
	s.mu.Lock()
	s.st.Errors++
	s.mu.Unlock()
	s.log.Error("lease commit failed", "leases", n, "err", err)
	return committed{batch: batch, err: fmt.Errorf("committing %d leases: %w", n, err)}
}

// signalFold asks the folder to fold now.
func (s *Store) signalFold() {
	select {
	case s.foldNow <- struct{}{}:
	default:
	}
}

// pushHistory puts to, then from, at the front of a client's history.
func pushHistory(b *bolt.Bucket, key string, to, from [4]byte) error {
	old := b.Get([]byte(key))
	nb := historyAfter(old, to, from)
	if len(nb) == len(old) && bytes.Equal(nb, old) {
		return nil
	}
	return b.Put([]byte(key), nb)
}

// historyAfter is a client's history old with to, then from, put at its
// front: old itself when they are there already.
func historyAfter(old []byte, to, from [4]byte) []byte {
	if len(old) >= 8 && [4]byte(old[:4]) == to && [4]byte(old[4:8]) == from {
		return old // a client moving back and forth between two subnets
	}
	nb := make([]byte, 0, min(len(old)+8, historyCap*4))
	nb = append(nb, to[:]...)
	nb = append(nb, from[:]...)
	for i := 0; i+4 <= len(old) && len(nb) < historyCap*4; i += 4 {
		if ip := [4]byte(old[i : i+4]); ip != to && ip != from {
			nb = append(nb, ip[:]...)
		}
	}
	return nb
}

// History returns the addresses a client held, most recent first: the
// tree's, with the moves no fold has written yet.
func (s *Store) History(clientKey string) ([]netip.Addr, error) {
	var moves []move
	s.mu.Lock()
	for _, m := range slices.Concat(s.folding, s.moves) {
		if m.key == clientKey {
			moves = append(moves, m)
		}
	}
	s.mu.Unlock()
	var out []netip.Addr
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketHistory).Get([]byte(clientKey))
		// A fold may have written some of the moves between the copy
		// above and this read: the tree says which.
		folded, err := metaUint64(tx, keyMovesFolded)
		if err != nil {
			return err
		}
		for _, m := range moves {
			if m.seq > folded {
				v = historyAfter(v, m.to, m.from)
			}
		}
		for i := 0; i+4 <= len(v); i += 4 {
			out = append(out, netip.AddrFrom4([4]byte(v[i:i+4])))
		}
		return nil
	})
	return out, err
}

// Get returns the record for ip, or nil when there is none.
func (s *Store) Get(ip netip.Addr) (*lease.Lease, error) {
	if ip.Is4() {
		// The journal first: a change missing from it has been folded
		// into the tree before the tree is read below.
		a := ip.As4()
		s.jmu.Lock()
		p, ok := s.ov.leases.Get(pend{ip: binary.BigEndian.Uint32(a[:])})
		s.jmu.Unlock()
		if ok {
			if p.rec == nil {
				return nil, nil
			}
			return decodeRecord(a[:], p.rec)
		}
	}
	var out *lease.Lease
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = getRecord(tx.Bucket(bucketLeases), ip)
		return err
	})
	return out, err
}

// getRecord decodes the record for ip in b, a copy; nil when there is
// none (or ip is not IPv4).
func getRecord(b *bolt.Bucket, ip netip.Addr) (*lease.Lease, error) {
	if !ip.Is4() {
		return nil, nil
	}
	k := ip.As4()
	v := b.Get(k[:])
	if v == nil {
		return nil, nil
	}
	return decodeRecord(k[:], v)
}

// Load calls fn for every record, in address order. A record that cannot
// be decoded stops the load with an error naming its address: serving
// with part of the database silently missing could hand out bound addresses.
// fn is given one *lease.Lease, decoded again for each record, whose byte
// fields point into the database: it must copy what it keeps.
//
// Reading every record touches every page of the database's mapping; once
// done, Load gives those pages back (see releaseMapped).
func (s *Store) Load(ctx context.Context, fn func(*lease.Lease) error) error {
	return s.LoadWithLookup(ctx, func(l *lease.Lease, _ Lookup) error { return fn(l) }, nil)
}

// Lookup reads a record of a load's snapshot by its address: a copy, nil
// when there is none or it does not decode.
type Lookup func(netip.Addr) *lease.Lease

// LoadWithLookup is Load where fn may also read any record of the same
// snapshot by its address (lookup): a loader that builds its table on
// another goroutine checks a client's other records here instead of in
// that table. lookup may be called from any goroutine, and stays valid
// until end (which may be nil) returns: end runs after the last record,
// in the same read transaction, also when the walk failed or ctx ended,
// for a loader to wait for its other goroutines' lookups.
// (A read-only bbolt transaction reads its pages straight from the
// mapping and keeps no cache to update, so concurrent lookups are safe;
// TestLookupFromAnotherGoroutine runs them under the race detector.)
func (s *Store) LoadWithLookup(ctx context.Context, fn func(l *lease.Lease, lookup Lookup) error, end func()) error {
	// The journal's changes are copied before the tree is read: one
	// folded since is in both, and the copy's is the same or newer.
	pending := s.pendingFrom(0, 0)
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		lookup := func(ip netip.Addr) *lease.Lease {
			if ip.Is4() {
				a := ip.As4()
				if rec, ok := lookupPending(pending, binary.BigEndian.Uint32(a[:])); ok {
					if rec == nil {
						return nil
					}
					l, _ := decodeRecord(a[:], rec)
					return l
				}
			}
			l, _ := getRecord(b, ip) // one that does not decode: nil, as documented
			return l
		}
		defer func() {
			// end's lookups (a loader's index runs batches behind the
			// walk) read pages too: given back after them.
			if end != nil {
				end()
			}
			releaseMapped(s.db, tx.Size())
		}()
		c := b.Cursor()
		m := merged{c: c, o: pending}
		m.k, m.v = c.First()
		n := 0
		var l lease.Lease
		for {
			k, v, ok, err := m.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			l.IP = netip.AddrFrom4(k)
			if err := l.UnmarshalShared(v); err != nil {
				return fmt.Errorf("lease %s: %w", l.IP, err)
			}
			if err := fn(&l, lookup); err != nil {
				return err
			}
			if n++; n%65536 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if n%s.releaseEvery == 0 {
				// fn has copied what it keeps: pages read again
				// (a lookup's) come back from the page cache.
				releaseMapped(s.db, tx.Size())
			}
		}
		return nil
	})
}

// loadReleaseEvery is how many records a load reads between two releases
// of the mapped pages (some 70 MB of the file): the whole file mapped in
// at once was 2.6 GB of RSS at ten million leases, on top of the table
// being built.
const loadReleaseEvery = 1 << 18

// ReleaseMapped gives the database's mapped pages back as Load does, for
// after a burst of work that read the whole file (the commit of every
// record after a start that found the fast path's map lost).
func (s *Store) ReleaseMapped() error {
	return s.db.View(func(tx *bolt.Tx) error {
		releaseMapped(s.db, tx.Size())
		return nil
	})
}

// releaseMapped drops the first size bytes of the database's mapping from
// this process's resident set (madvise MADV_DONTNEED). bbolt maps the file
// read-only and shared, so the pages stay in the page cache, where the
// kernel may keep or reclaim them, and are read back from there when
// touched again; but a load that read every record no longer counts the
// whole file (280 MiB at a million leases) in the daemon's RSS as if it
// were the daemon's own memory. It must run inside a transaction: bbolt
// remaps only when none is open, so the mapping cannot move meanwhile.
// Failing changes nothing but the RSS, so the error is ignored.
func releaseMapped(db *bolt.DB, size int64) {
	if size <= 0 {
		return
	}
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, db.Info().Data, uintptr(size), unix.MADV_DONTNEED)
}

// decodeRecord turns one key and value of the leases bucket into a record,
// or an error naming the address (or the key that is not one).
func decodeRecord(k, v []byte) (*lease.Lease, error) {
	if len(k) != 4 {
		return nil, fmt.Errorf("lease database: key %x is not an IPv4 address", k)
	}
	l := &lease.Lease{IP: netip.AddrFrom4([4]byte(k))}
	if err := l.UnmarshalBinary(v); err != nil {
		return nil, fmt.Errorf("lease %s: %w", l.IP, err)
	}
	return l, nil
}

// LoadPage calls fn for up to limit records in address order, starting
// after the address after (from the first record when after is not
// valid), and returns the address to page on from, or an invalid address
// once there are no more. That is the last address it read, or one past
// it that it did not read when the journal's deletions filled the page
// (the page then may hold fewer records, none even, with more to come).
// Records folded while a caller pages are seen once, before or after.
// It reads in a transaction of its own that ends before
// it returns, so a caller that pages through the store between slow writes
// (a bulk leasequery to a slow reader) never holds a read transaction open
// for long: bbolt's remap on file growth waits for every open reader, and
// the committer would wait with it.
func (s *Store) LoadPage(after netip.Addr, limit int, fn func(*lease.Lease) error) (netip.Addr, error) {
	if limit <= 0 {
		return netip.Addr{}, fmt.Errorf("page of %d records", limit)
	}
	// The journal's changes after after, copied before the tree is read
	// (LoadWithLookup). With limit of them, the page ends at the last:
	// what the journal holds past it is not in the copy.
	start := uint32(0)
	if after.IsValid() {
		if !after.Is4() {
			return netip.Addr{}, fmt.Errorf("page after %v, not an IPv4 address", after)
		}
		a := after.As4()
		if start = binary.BigEndian.Uint32(a[:]) + 1; start == 0 {
			return netip.Addr{}, nil // after 255.255.255.255
		}
	}
	pending := s.pendingFrom(start, limit)
	var bound uint32
	bounded := len(pending) == limit
	if bounded {
		bound = pending[len(pending)-1].ip
	}
	var last netip.Addr
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLeases).Cursor()
		m := merged{c: c, o: pending}
		sk := binary.BigEndian.AppendUint32(nil, start)
		m.k, m.v = c.Seek(sk)
		boundAddr := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, bound)))
		for n := 0; n < limit; {
			k, v, ok, err := m.next()
			if err != nil {
				return err
			}
			if !ok || bounded && binary.BigEndian.Uint32(k[:]) > bound {
				// The end of the tree and of the copy; with a bounded
				// copy, the journal may hold more after its last.
				last = netip.Addr{}
				if bounded {
					last = boundAddr
				}
				return nil
			}
			l, err := decodeRecord(k[:], v)
			if err != nil {
				return err
			}
			if err := fn(l); err != nil {
				return err
			}
			last = l.IP
			n++
		}
		if m.k == nil && len(m.o) == 0 && !bounded {
			last = netip.Addr{} // nothing left after this page
		}
		return nil
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return last, nil
}

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	s.jmu.Lock()
	unfolded := s.ov.waiting
	s.jmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Unfolded = unfolded
	return st
}
