package store

// The journal. A commit that rewrote each renewed lease in place, in the
// lease tree, wrote a page of the tree per lease once renewals came in a
// random order (a real population's): a commit of 2,000 renewals wrote
// 2,000 pages, the ACKs waited for all of them, and the slow path's
// ceiling was half that of renewals in address order. So a commit appends
// its changes to the journal, a second bbolt file whose newest pages are
// the only ones it writes, and an ACK waits for that alone. A second
// goroutine, the folder, later writes what the journal holds into the
// lease tree in transactions of its own (the fold), in address order;
// the more it has to write, the more changes share a page. bbolt has one
// writer per file, which is why the journal is a file of its own: a fold
// in the same file would hold every commit behind it.
//
// The journal is divided into generations, one bucket each. The
// committer appends to the newest; the folder closes it (the next commit
// starts a new one), folds it, records in the tree that it did (in the
// same transaction), and the committer then deletes the generation's
// bucket. Open folds whatever generations a crash left behind before
// anything is read. Until a generation is folded, its changes are kept in
// memory too (the overlay: each address's, informed client's and meta
// key's newest change), and every read of the store looks there first.

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/btree"
	bolt "go.etcd.io/bbolt"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

var (
	// keyFoldedGen, in the tree's meta bucket, is the newest journal
	// generation the tree holds.
	keyFoldedGen = []byte("journal-folded-gen")
	// keyMovesFolded, in the tree's meta bucket, is the sequence number
	// of the newest client move (Moved) the history bucket holds.
	keyMovesFolded = []byte("history-folded-move")
	genPrefix      = []byte("gen-")
)

// Journal change kinds: the first byte of each journal value.
const (
	opLeasePut    byte = 1 // 4-byte IPv4, then the record
	opLeaseDel    byte = 2 // 4-byte IPv4
	opInformedPut byte = 3 // 4-byte IPv4, then the informed client's record
	opInformedDel byte = 4 // 4-byte IPv4
	opMeta        byte = 5 // 2-byte key length, the key, then the value
)

const (
	// defaultFoldEvery is how long the folder lets a generation fill.
	defaultFoldEvery = time.Second
	// defaultJournalMax is how many changes may wait to be folded before
	// commits wait for the folder (Options.JournalMax).
	defaultJournalMax = 1 << 18
	// foldTxMax bounds the changes one fold transaction writes. A fold is
	// written in address order, so its transactions write different
	// pages of the tree (a transaction per generation wrote no fewer),
	// and between two of them the folder pauses (foldPace): a whole
	// generation written at once took one CPU for a tenth of a second
	// every second, and the requests behind it waited (p99 64 to 84 ms
	// at 80% of the ceiling, against 14 ms before the journal).
	foldTxMax = 4096
)

// genBucket names generation g's bucket in the journal.
func genBucket(g uint64) []byte { return binary.BigEndian.AppendUint64(slices.Clip(genPrefix), g) }

// pend is an address's newest change not yet folded.
type pend struct {
	ip  uint32
	gen uint64
	rec []byte // the encoded record; nil: the record is deleted
}

func pendLess(a, b pend) bool { return a.ip < b.ip }

// pendVal is an informed client's or a meta key's newest change not yet
// folded.
type pendVal struct {
	gen uint64
	val []byte // nil: deleted (informed clients only)
}

// genOps lists what a generation changed, for its fold: its lease
// changes in commit order, and each informed client's and meta key's last.
type genOps struct {
	leases   []pend
	informed map[[4]byte]pendVal
	meta     map[string]pendVal
	n        int // changes appended, repeats included
}

// overlay is the journal's content in memory, guarded by Store.jmu.
type overlay struct {
	leases   *btree.BTreeG[pend]
	informed map[[4]byte]pendVal
	meta     map[string]pendVal
	gens     map[uint64]*genOps
	// cur is the generation commits append to; inflight is the one a
	// commit in progress appends to (0: none), which the folder waits
	// out before folding it.
	cur, inflight uint64
	// waiting counts changes appended and not yet folded.
	waiting int
	// dropThrough is the newest generation folded, whose bucket (and
	// every older one) the next commit deletes; dropped is the newest
	// deleted.
	dropThrough, dropped uint64
	// foldStopped is set when the folder has stopped: commits no longer
	// wait for it.
	foldStopped bool
	// foldFailing is set while the last fold failed: a commit that finds
	// the journal full fails instead of waiting for a fold that may never
	// come (a full disk), so that ACKs stop and shutdown goes on.
	foldFailing bool
}

// newOverlay is an empty overlay after generation folded.
func newOverlay(folded uint64) overlay {
	return overlay{
		leases:   btree.NewG(32, pendLess),
		informed: map[[4]byte]pendVal{},
		meta:     map[string]pendVal{},
		gens:     map[uint64]*genOps{},
		cur:      folded + 1, dropThrough: folded, dropped: folded,
	}
}

// genLocked returns generation g's list, making it.
func (o *overlay) genLocked(g uint64) *genOps {
	ops := o.gens[g]
	if ops == nil {
		ops = &genOps{informed: map[[4]byte]pendVal{}, meta: map[string]pendVal{}}
		o.gens[g] = ops
	}
	return ops
}

// checkBatch refuses a batch that the journal or the tree would refuse
// part of, before anything of it is written: a bulk record goes into the
// tree before the journal's transaction (commitDirect), and a commit
// refused after that would have a record in the tree, read at once and
// after every start, that its caller was told failed. (commitDirect
// checks that the records encode, once it knows it writes first.)
func checkBatch(batch []job) error {
	for _, j := range batch {
		for _, l := range j.leases {
			if !l.IP.Is4() {
				return fmt.Errorf("lease without an IPv4 address: %v", l.IP)
			}
		}
		// The tree takes a meta key at the fold, after the ACK: refused
		// here, as the tree would refuse it, it cannot stop every fold.
		if key := j.meta[0]; key != nil && (len(key) == 0 || len(key) > bolt.MaxKeySize) {
			return fmt.Errorf("meta key of %d bytes (1 to %d)", len(key), bolt.MaxKeySize)
		}
	}
	return nil
}

// appendOps writes one committed batch's changes to the journal bucket b
// and returns what they change, for the overlay once the transaction is
// on disk. The batch has passed checkBatch. The values are in arena,
// which nothing reuses: the overlay keeps pointing into it until the
// generation is folded.
func appendOps(b *bolt.Bucket, seq *uint64, arena []byte, batch []job, count *int) ([]byte, []change, error) {
	n := 0
	for _, j := range batch {
		n += len(j.leases) + len(j.del) + len(j.informed) + 1
	}
	out := make([]change, 0, n)
	// The keys, as bbolt keeps them until the commit: one buffer, not an
	// allocation each (a grown buffer leaves those handed out in place).
	keys := make([]byte, 0, 8*n)
	nextKey := func() []byte {
		*seq++
		keys = binary.BigEndian.AppendUint64(keys, *seq)
		return keys[len(keys)-8 : len(keys) : len(keys)]
	}
	put := func(op byte, ip [4]byte, body func([]byte) ([]byte, error)) error {
		start := len(arena)
		arena = append(arena, op)
		arena = append(arena, ip[:]...)
		var err error
		if body != nil {
			if arena, err = body(arena); err != nil {
				return err
			}
		}
		v := arena[start:len(arena):len(arena)]
		if err := b.Put(nextKey(), v); err != nil {
			return fmt.Errorf("appending to the journal: %w", err)
		}
		out = append(out, change{op: op, ip: ip, val: v[5:]})
		return nil
	}
	for _, j := range batch {
		for _, l := range j.leases {
			if err := put(opLeasePut, l.IP.As4(), l.AppendBinary); err != nil {
				return arena, nil, fmt.Errorf("writing lease %s: %w", l.IP, err)
			}
			*count++
		}
		for _, ip := range j.del {
			if !ip.Is4() {
				continue // never stored
			}
			if err := put(opLeaseDel, ip.As4(), nil); err != nil {
				return arena, nil, err
			}
		}
		for ip, v := range j.informed {
			op, body := opInformedDel, func(b []byte) ([]byte, error) { return b, nil }
			if v != nil {
				op, body = opInformedPut, func(b []byte) ([]byte, error) { return append(b, v...), nil }
			}
			if err := put(op, ip.As4(), body); err != nil {
				return arena, nil, fmt.Errorf("writing informed client %s: %w", ip, err)
			}
		}
		if key := j.meta[0]; key != nil {
			start := len(arena)
			arena = append(arena, opMeta)
			arena = binary.BigEndian.AppendUint16(arena, uint16(len(key)))
			arena = append(arena, key...)
			arena = append(arena, j.meta[1]...)
			v := arena[start:len(arena):len(arena)]
			if err := b.Put(nextKey(), v); err != nil {
				return arena, nil, fmt.Errorf("appending to the journal: %w", err)
			}
			out = append(out, change{op: opMeta, key: string(key), val: v[3+len(key):]})
		}
	}
	return arena, out, nil
}

// change is one journal entry, decoded.
type change struct {
	op  byte
	ip  [4]byte
	key string // opMeta
	val []byte // the record or value (empty for deletes)
}

// decodeChange reads one journal value.
func decodeChange(v []byte) (change, error) {
	if len(v) == 0 {
		return change{}, errors.New("empty journal entry")
	}
	c := change{op: v[0]}
	switch c.op {
	case opLeasePut, opLeaseDel, opInformedPut, opInformedDel:
		if len(v) < 5 {
			return c, fmt.Errorf("journal entry of kind %d is %d bytes", c.op, len(v))
		}
		c.ip, c.val = [4]byte(v[1:5]), v[5:]
		if (c.op == opLeaseDel || c.op == opInformedDel) && len(c.val) != 0 {
			return c, fmt.Errorf("journal delete of %s carries %d bytes", netip.AddrFrom4(c.ip), len(c.val))
		}
	case opMeta:
		if len(v) < 3 || len(v) < 3+int(binary.BigEndian.Uint16(v[1:3])) {
			return c, fmt.Errorf("journal meta entry of %d bytes is cut short", len(v))
		}
		n := int(binary.BigEndian.Uint16(v[1:3]))
		c.key, c.val = string(v[3:3+n]), v[3+n:]
	default:
		return c, fmt.Errorf("journal entry of unknown kind %d", c.op)
	}
	return c, nil
}

// addLocked records a committed transaction's changes in generation g.
func (o *overlay) addLocked(g uint64, changes []change) {
	ops := o.genLocked(g)
	for _, c := range changes {
		ops.n++
		o.waiting++
		switch c.op {
		case opLeasePut, opLeaseDel:
			p := pend{ip: binary.BigEndian.Uint32(c.ip[:]), gen: g, rec: c.val}
			if c.op == opLeaseDel {
				p.rec = nil
			}
			o.leases.ReplaceOrInsert(p)
			ops.leases = append(ops.leases, p)
		case opInformedPut, opInformedDel:
			v := pendVal{gen: g, val: c.val}
			if c.op == opInformedDel {
				v.val = nil
			}
			o.informed[c.ip] = v
			ops.informed[c.ip] = v
		case opMeta:
			o.meta[c.key] = pendVal{gen: g, val: c.val}
			ops.meta[c.key] = pendVal{gen: g, val: c.val}
		}
	}
}

// foldSet is what folding one generation writes: each key's last change
// in the generation (a later generation's, if any, is folded after it),
// leases in address order.
type foldSet struct {
	gen      uint64
	ops      *genOps
	leases   []pend
	informed map[[4]byte]pendVal
	meta     map[string]pendVal
	moves    []move
}

// collect gathers closed generation g's fold, with the client moves it
// writes. ops no longer changes once g is closed, so this needs no lock:
// lookups in the overlay, with the committer waiting for them, held each
// commit up for tens of milliseconds once a second.
func collect(g uint64, ops *genOps, moves []move) foldSet {
	f := foldSet{gen: g, ops: ops, moves: moves}
	if ops == nil {
		return f
	}
	f.informed, f.meta = ops.informed, ops.meta
	f.leases = newestPerAddress(ops.leases)
	return f
}

// newestPerAddress is each address's last change of changes (in commit
// order), in address order. It sorts each change's address and position
// as one integer: a stable sort of the changes themselves took 30 to 40
// ms of a CPU in one stretch once a second at 30,000 renewals/s (28 ms
// against 4.7 for 30,000 changes), the longest of the gaps between the
// ACKs' sends in an execution trace at 120% of the ceiling.
func newestPerAddress(changes []pend) []pend {
	if len(changes) == 0 {
		return nil
	}
	// A generation holds at most JournalMax changes and one batch more
	// (the configuration caps journal-max at 2^24), so a position fits
	// in the low 32 bits.
	keys := make([]uint64, len(changes))
	for i, p := range changes {
		keys[i] = uint64(p.ip)<<32 | uint64(i)
	}
	slices.Sort(keys)
	out := make([]pend, 0, len(keys))
	for k, key := range keys {
		if k+1 < len(keys) && keys[k+1]>>32 == key>>32 {
			continue // a later change of the same address follows
		}
		out = append(out, changes[uint32(key)])
	}
	return out
}

// foldedChunk is how many addresses the folder forgets per hold of the
// overlay's lock, which commits take too.
const foldedChunk = 512

// folded forgets what generation f.gen's fold wrote to the tree, which
// reads now find there: each change still its key's newest.
func (s *Store) folded(f foldSet) {
	for i := 0; i < len(f.leases); i += foldedChunk {
		s.jmu.Lock()
		for _, p := range f.leases[i:min(i+foldedChunk, len(f.leases))] {
			// One descent for the common case; a newer generation's
			// change, rarer, goes back.
			if cur, ok := s.ov.leases.Delete(p); ok && cur.gen != f.gen {
				s.ov.leases.ReplaceOrInsert(cur)
			}
		}
		s.jmu.Unlock()
	}
	s.jmu.Lock()
	defer s.jmu.Unlock()
	o := &s.ov
	o.foldFailing = false
	for ip := range f.informed {
		if v, ok := o.informed[ip]; ok && v.gen == f.gen {
			delete(o.informed, ip)
		}
	}
	for k := range f.meta {
		if v, ok := o.meta[k]; ok && v.gen == f.gen {
			delete(o.meta, k)
		}
	}
	// closeGen gathered the generation after its last commit: f.ops is
	// all of it.
	if ops := o.gens[f.gen]; ops != nil {
		o.waiting -= ops.n
	}
	delete(o.gens, f.gen)
	o.dropThrough = f.gen
	s.jcond.Broadcast()
}

// writeFold writes a fold into the tree, in transactions of at most
// foldTxMax changes; the last records the generation as folded, so a
// crash before it folds the whole generation again at Open (writing a
// key's newest change twice changes nothing).
// pause is called between two transactions with how long the last took.
func writeFold(db *bolt.DB, f foldSet, txMax int, pause func(took time.Duration)) error {
	leases := f.leases
	for {
		began := time.Now()
		n := min(len(leases), txMax)
		chunk, last := leases[:n], n == len(leases)
		err := db.Update(func(tx *bolt.Tx) error {
			lb := tx.Bucket(bucketLeases)
			for _, p := range chunk {
				k := binary.BigEndian.AppendUint32(nil, p.ip)
				var err error
				if p.rec == nil {
					err = lb.Delete(k)
				} else {
					err = lb.Put(k, p.rec)
				}
				if err != nil {
					return fmt.Errorf("folding lease %s: %w", netip.AddrFrom4([4]byte(k)), err)
				}
			}
			if !last {
				return nil
			}
			return writeFoldRest(tx, f)
		})
		if err != nil {
			return fmt.Errorf("folding journal generation %d into the lease tree: %w", f.gen, err)
		}
		leases = leases[n:]
		if last {
			return nil
		}
		pause(time.Since(began))
	}
}

// writeFoldRest writes a fold's informed clients, meta keys, moves and
// its generation, in its last transaction.
func writeFoldRest(tx *bolt.Tx, f foldSet) error {
	mb, hb := tx.Bucket(bucketMeta), tx.Bucket(bucketHistory)
	for k, v := range f.meta {
		if err := mb.Put([]byte(k), v.val); err != nil {
			return fmt.Errorf("folding meta %q: %w", k, err)
		}
	}
	recs := make(map[netip.Addr][]byte, len(f.informed))
	for ip, v := range f.informed {
		recs[netip.AddrFrom4(ip)] = v.val
	}
	if err := putInformed(tx, recs); err != nil {
		return err
	}
	for _, m := range f.moves {
		if err := pushHistory(hb, m.key, m.to, m.from); err != nil {
			return fmt.Errorf("folding client history: %w", err)
		}
	}
	if len(f.moves) > 0 {
		if err := mb.Put(keyMovesFolded, binary.BigEndian.AppendUint64(nil, f.moves[len(f.moves)-1].seq)); err != nil {
			return err
		}
	}
	return mb.Put(keyFoldedGen, binary.BigEndian.AppendUint64(nil, f.gen))
}

// metaUint64 reads an 8-byte counter of the tree's meta bucket (0 when
// absent).
func metaUint64(tx *bolt.Tx, key []byte) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(key)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("lease database: meta %s is %d bytes, not 8", key, len(v))
}

// replayJournal folds every generation a stop left in the journal jdb
// into the tree db, oldest first, then empties the journal. It returns
// the newest generation the tree holds.
func replayJournal(db, jdb *bolt.DB) (uint64, error) {
	var folded uint64
	if err := db.View(func(tx *bolt.Tx) (err error) {
		folded, err = metaUint64(tx, keyFoldedGen)
		return err
	}); err != nil {
		return 0, err
	}
	var gens []uint64
	if err := jdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			g, ok := parseGen(name)
			if !ok {
				return fmt.Errorf("lease journal: bucket %q is not a generation", name)
			}
			gens = append(gens, g)
			return nil
		})
	}); err != nil {
		return 0, err
	}
	slices.Sort(gens)
	for _, g := range gens {
		if g <= folded {
			continue // folded before the stop; its bucket was not yet deleted
		}
		if err := replayGen(db, jdb, g); err != nil {
			return 0, err
		}
		folded = g
	}
	if len(gens) == 0 {
		return folded, nil
	}
	err := jdb.Update(func(tx *bolt.Tx) error {
		for _, g := range gens {
			if err := tx.DeleteBucket(genBucket(g)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("emptying the lease journal: %w", err)
	}
	return folded, nil
}

// replayGen folds one generation left in the journal: its changes in the
// order they were made, the newest of each key winning.
func replayGen(db, jdb *bolt.DB, g uint64) error {
	o := newOverlay(g - 1)
	err := jdb.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(genBucket(g))
		var changes []change
		err := b.ForEach(func(k, v []byte) error {
			c, err := decodeChange(v)
			if err != nil {
				return fmt.Errorf("lease journal generation %d, entry %x: %w", g, k, err)
			}
			// The values live in the journal's mapping only until the
			// transaction ends; the fold writes after it.
			c.val = slices.Clone(c.val)
			changes = append(changes, c)
			return nil
		})
		o.addLocked(g, changes)
		return err
	})
	if err != nil {
		return err
	}
	// A replayed generation has no moves of its own (they are not
	// journaled), so the moves watermark stays as it is. Nothing is
	// served yet: no pauses.
	return writeFold(db, collect(g, o.gens[g], nil), foldTxMax, func(time.Duration) {})
}

// parseGen reads a generation bucket's name.
func parseGen(name []byte) (uint64, bool) {
	if len(name) != len(genPrefix)+8 || string(name[:len(genPrefix)]) != string(genPrefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(name[len(genPrefix):]), true
}

// merged walks the tree's records from a cursor position and an overlay's
// changes (in address order, none before the cursor's start) together, in
// address order: a change replaces the tree's record of its address, and
// a deletion hides it.
type merged struct {
	c    *bolt.Cursor
	k, v []byte
	o    []pend
}

// next returns the next address and its record, or ok false at the end.
func (m *merged) next() (ip [4]byte, rec []byte, ok bool, err error) {
	for {
		if m.k == nil && len(m.o) == 0 {
			return ip, nil, false, nil
		}
		var tk uint32
		if m.k != nil {
			if len(m.k) != 4 {
				return ip, nil, false, fmt.Errorf("lease database: key %x is not an IPv4 address", m.k)
			}
			tk = binary.BigEndian.Uint32(m.k)
		}
		if len(m.o) > 0 && (m.k == nil || m.o[0].ip <= tk) {
			p := m.o[0]
			m.o = m.o[1:]
			if m.k != nil && p.ip == tk {
				m.k, m.v = m.c.Next()
			}
			if p.rec == nil {
				continue
			}
			return [4]byte(binary.BigEndian.AppendUint32(nil, p.ip)), p.rec, true, nil
		}
		ip, rec = [4]byte(m.k), m.v
		m.k, m.v = m.c.Next()
		return ip, rec, true, nil
	}
}

// pendingFrom copies up to limit (all when limit <= 0) of the overlay's
// lease changes at or after ip, in address order.
func (s *Store) pendingFrom(ip uint32, limit int) []pend {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	var out []pend
	s.ov.leases.AscendGreaterOrEqual(pend{ip: ip}, func(p pend) bool {
		out = append(out, p)
		return limit <= 0 || len(out) < limit
	})
	return out
}

// lookupPending finds ip in a copy of the overlay's changes: found, and
// its record (nil: deleted).
func lookupPending(o []pend, ip uint32) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(o, ip, func(p pend, ip uint32) int { return cmp.Compare(p.ip, ip) })
	if !ok {
		return nil, false
	}
	return o[i].rec, true
}

// foldLoop is the folder: at every FoldEvery, or sooner when the journal
// fills (signalFold), it closes the generation commits append to and
// folds it into the lease tree. A fold that fails is tried again at the
// next tick, before any later generation: the journal keeps it meanwhile,
// and commits wait once JournalMax changes are waiting. When stop is
// closed (the committer has committed everything) it folds what is left
// and empties the journal, so a clean stop leaves the tree complete.
func (s *Store) foldLoop(stop <-chan struct{}) {
	t := time.NewTicker(s.opt.FoldEvery)
	defer t.Stop()
	defer func() {
		s.jmu.Lock()
		s.ov.foldStopped = true
		s.jcond.Broadcast()
		s.jmu.Unlock()
	}()
	var todo []foldSet // closed generations, oldest first
	for {
		stopping := false
		select {
		case <-stop:
			stopping = true
		case <-t.C:
		case <-s.foldNow:
		}
		if s.foldOff.Load() {
			if stopping {
				return
			}
			continue
		}
		if f, ok := s.closeGen(); ok {
			todo = append(todo, f)
		}
		for len(todo) > 0 {
			if err := s.fold(todo[0], stop); err != nil {
				s.mu.Lock()
				s.st.FoldErrors++
				s.mu.Unlock()
				s.jmu.Lock()
				s.ov.foldFailing = true
				s.jcond.Broadcast()
				s.jmu.Unlock()
				s.log.Error("folding the lease journal failed; the journal keeps its changes", "generation", todo[0].gen, "err", err)
				break
			}
			todo = todo[1:]
		}
		if stopping {
			if len(todo) == 0 {
				s.dropFolded()
			}
			return
		}
	}
}

// closeGen closes the generation commits append to, when it has changes
// or there are client moves to write, and gathers its fold.
func (s *Store) closeGen() (foldSet, bool) {
	s.mu.Lock()
	moves := s.moves
	s.moves = nil
	s.folding = append(s.folding, moves...)
	s.mu.Unlock()
	s.jmu.Lock()
	g := s.ov.cur
	// foldOff is read under the lock commits take: a commit made after a
	// test turned folding off is never gathered.
	if ops := s.ov.gens[g]; (ops == nil || ops.n == 0) && len(moves) == 0 && s.ov.inflight != g || s.foldOff.Load() {
		s.jmu.Unlock()
		s.mu.Lock()
		s.moves = append(moves, s.moves...)
		s.folding = s.folding[:len(s.folding)-len(moves)]
		s.mu.Unlock()
		return foldSet{}, false
	}
	s.ov.cur++
	for s.ov.inflight == g {
		s.jcond.Wait() // a commit appending to g is still on its way
	}
	// Read after the wait: the commit that was on its way may have made
	// the generation's list (a fold of its moves alone once left that
	// commit's leases out, and recorded the generation folded). Gathered
	// after the unlock: g is closed, and collect sorts all of it.
	ops := s.ov.gens[g]
	s.jmu.Unlock()
	return collect(g, ops, moves), true
}

// foldPace pauses a fold between two transactions as long as the last
// took, so that it uses at most half a CPU, unless the journal is half
// full (the fold must catch up) or the store is stopping.
func (s *Store) foldPace(took time.Duration, stop <-chan struct{}) {
	s.jmu.Lock()
	behind := s.ov.waiting >= s.opt.JournalMax/2
	s.jmu.Unlock()
	if behind {
		return
	}
	t := time.NewTimer(took)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// fold writes one closed generation into the tree; stop ends its pauses.
func (s *Store) fold(f foldSet, stop <-chan struct{}) error {
	began := time.Now()
	if s.failFold.Load() {
		return errors.New("fold refused (test)")
	}
	if err := writeFold(s.db, f, s.foldTx, func(took time.Duration) { s.foldPace(took, stop) }); err != nil {
		return err
	}
	took := time.Since(began)
	s.folded(f)
	if s.opt.ObserveFold != nil {
		s.opt.ObserveFold(len(f.leases), took)
	}
	s.mu.Lock()
	s.folding = s.folding[len(f.moves):]
	s.st.Folds++
	s.st.FoldedLeases += uint64(len(f.leases))
	s.st.LastFold = took
	s.mu.Unlock()
	return nil
}

// dropFolded deletes the folded generations' buckets from the journal,
// once the committer has stopped (it does so itself while it runs).
func (s *Store) dropFolded() {
	s.jmu.Lock()
	drop, dropped := s.ov.dropThrough, s.ov.dropped
	s.jmu.Unlock()
	err := s.jdb.Update(func(tx *bolt.Tx) error { return dropGens(tx, dropped, drop) })
	if err != nil {
		s.log.Warn("emptying the lease journal at stop; the next start does it", "err", err)
		return
	}
	s.jmu.Lock()
	s.ov.dropped = drop
	s.jmu.Unlock()
}

// dropGens deletes the journal's buckets of generations after dropped
// through drop (folded into the tree).
func dropGens(tx *bolt.Tx, dropped, drop uint64) error {
	for d := dropped + 1; d <= drop; d++ {
		if name := genBucket(d); tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("dropping folded journal generation %d: %w", d, err)
			}
		}
	}
	return nil
}

// Folded waits until every change committed before it was called, and
// every client move, is in the lease tree (for a builder of databases, and tests, that read the
// file itself afterwards).
func (s *Store) Folded(ctx context.Context) error {
	s.jmu.Lock()
	target := s.ov.cur
	s.jmu.Unlock()
	for {
		s.jmu.Lock()
		done := s.ov.dropThrough >= target || s.ov.waiting == 0 && s.ov.inflight == 0
		s.jmu.Unlock()
		s.mu.Lock()
		done = done && len(s.moves) == 0 && len(s.folding) == 0
		s.mu.Unlock()
		if done {
			return nil
		}
		s.signalFold()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// commitDirect writes the bulk jobs' leases that have no change waiting in
// the journal into the tree, in one transaction, and leaves each bulk job
// with the others, for the journal. It returns how many it wrote.
func (s *Store) commitDirect(batch []job) (int, error) {
	if !slices.ContainsFunc(batch, func(j job) bool { return j.bulk }) {
		return 0, nil
	}
	// Addresses the batch's other jobs change go to the journal as well,
	// whichever job came first: a bulk record written into the tree
	// after an earlier job's change of its address was appended to the
	// journal would be folded over by that older change.
	others := map[uint32]bool{}
	for _, j := range batch {
		if j.bulk {
			continue
		}
		for _, l := range j.leases {
			others[ip4(l.IP)] = true
		}
		for _, ip := range j.del {
			others[ip4(ip)] = true
		}
	}
	var direct []*lease.Lease
	s.jmu.Lock()
	for i := range batch {
		j := &batch[i]
		if !j.bulk {
			continue
		}
		rest := j.leases[:0:0]
		for _, l := range j.leases {
			if ip := ip4(l.IP); l.IP.Is4() && !others[ip] && !s.ov.leases.Has(pend{ip: ip}) {
				direct = append(direct, l)
			} else {
				rest = append(rest, l)
			}
		}
		j.leases = rest
	}
	s.jmu.Unlock()
	if len(direct) == 0 {
		return 0, nil
	}
	// Encoded before the tree is written: a record that does not encode
	// refuses the batch while nothing of it is on disk. The direct ones
	// once, kept for the write (bbolt keeps each value until the commit:
	// a slice of its own per record, from one growing buffer); the
	// journal's, here only to see that they do (few: at a start, those
	// a client changed meanwhile).
	var buf []byte
	ends := make([]int, len(direct))
	for i, l := range direct {
		var err error
		if buf, err = l.AppendBinary(buf); err != nil {
			return 0, err
		}
		ends[i] = len(buf)
	}
	var scratch []byte
	for _, j := range batch {
		for _, l := range j.leases {
			var err error
			if scratch, err = l.AppendBinary(scratch[:0]); err != nil {
				return 0, err
			}
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLeases)
		start := 0
		for i, l := range direct {
			k := l.IP.As4()
			if err := lb.Put(k[:], buf[start:ends[i]:ends[i]]); err != nil {
				return fmt.Errorf("writing lease %s: %w", l.IP, err)
			}
			start = ends[i]
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("writing %d leases into the lease tree: %w", len(direct), err)
	}
	return len(direct), nil
}

// ip4 is an IPv4 address as the overlay keys it (0 for any other).
func ip4(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// journaled reports whether a batch has anything for the journal once
// commitDirect has taken what goes straight into the tree.
func journaled(batch []job) bool {
	for _, j := range batch {
		if len(j.leases) > 0 || len(j.del) > 0 || len(j.informed) > 0 || j.meta[0] != nil {
			return true
		}
	}
	return false
}
