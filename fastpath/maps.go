// Package fastpath is the Go view of the XDP program's maps: lease entries
// and the reply templates they share, global settings, interface
// addresses, counters and the per-CPU rings of answered renewals. It holds no
// policy: the slow path decides what goes in, and this package writes it.
package fastpath

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bpf"
)

// Limits of what an entry can hold; leases beyond them are not published
// and the slow path answers them. Generated from the program's enum
// xdhcp_limit, as are the reply sizes below.
const (
	MaxHWAddr   = int(bpf.XdpXdhcpLimitCHADDR_MAX)
	MaxClientID = int(bpf.XdpXdhcpLimitCID_MAX)
	MaxTemplate = int(bpf.XdpXdhcpLimitTMPL_MAX)
)

// The entry's arrays are sized by the same enum: checked at compile time.
var (
	_ [MaxHWAddr]uint8   = bpf.XdpXdhcpLease{}.Chaddr
	_ [MaxClientID]uint8 = bpf.XdpXdhcpLease{}.Cid
	_ [MaxTemplate]uint8 = bpf.XdpXdhcpTemplate{}.Data
)

// Sizes the program gives a reply, which the slow path's replies must
// match byte for byte (docs/ARCHITECTURE.md invariant 3).
const (
	// ReplyMinLen is the shortest DHCP message either path sends (RFC
	// 1542 §2.1's minimum BOOTP message): shorter ones are zero-padded.
	ReplyMinLen = int(bpf.XdpXdhcpLimitMIN_REPLY)
	// ReplyAlign: the program sends replies padded to a multiple of it
	// (passing up a renewal whose padded reply would exceed the client's
	// maximum message size); the slow path pads where that size leaves
	// room.
	ReplyAlign = int(bpf.XdpXdhcpLimitREPLY_ALIGN)
	// UDPIPOverhead is what a client's maximum message size (option 57)
	// counts beyond the DHCP message: an IPv4 header without options and
	// the UDP header.
	UDPIPOverhead = int(bpf.XdpXdhcpLimitL34)
	// DefaultMaxMessage is a client's maximum message size when it sends
	// no option 57.
	DefaultMaxMessage = int(bpf.XdpXdhcpLimitDEFAULT_MAX_MSG)
)

// Lease is one entry the XDP program may renew.
type Lease struct {
	IP        netip.Addr
	Expiry    time.Time // renewals at or after it are punted
	HWType    uint8
	HWAddr    []byte
	ClientID  []byte // nil when the lease was granted without one
	ServerID  netip.Addr
	IfIndex   uint32
	VLANs     [2]uint16
	GIAddr    netip.Addr // relay of a relayed lease
	LeaseTime uint32
	T1, T2    uint32
	Horizon   time.Time // no grant ends later
	Serve     bool
	Template  []byte // option block after 53, 54, 51, 58, 59
	// RelayInfo is the option 82 body stored with the lease (nil: none).
	// The entry keeps its fingerprint: a relayed renewal carrying another
	// one is punted, so that the slow path stores it.
	RelayInfo []byte
}

// Renewal is what the program reports for a renewal it answered.
type Renewal struct {
	IP      netip.Addr
	HWAddr  []byte
	XID     uint32
	At      time.Time
	Expiry  time.Time
	IfIndex uint32
	VLANs   [2]uint16
	GIAddr  netip.Addr
}

// Settings are the program's global knobs.
type Settings struct {
	Answer    bool          // false: punt every renewal
	MinGrant  time.Duration // shorter grants are punted
	PuntRate  uint32        // punts per second per client MAC; 0: unlimited
	PuntBurst uint32
}

// Maps writes and reads the program's maps. It is safe for concurrent use.
type Maps struct {
	leases, grants, templates, ifaces, config, counters *ebpf.Map
	events                                              *eventRings

	// now is the daemon's clock (time.Now, unless SetClock says
	// otherwise): the program's unix time follows it.
	now func() time.Time
	// fpKey keys the option 82 fingerprints (xdhcp_settings.fp_key),
	// read from the settings map or chosen when it has none.
	fpKey uint64
	// offsetNs is the wall-clock offset Tick last wrote, once offsetSet
	// (Clock).
	offsetNs  atomic.Int64
	offsetSet atomic.Bool

	mu       sync.Mutex
	settings Settings
	tmplID   map[string]uint32 // template bytes -> id
	// tmplRefs has every slot in use, with the published leases naming
	// it; a slot found in use at start whose bytes another slot holds too
	// is here but not in tmplID, and goes at the next prune.
	tmplRefs map[uint32]int
	leaseTpl map[[4]byte]uint32 // published lease (its address) -> its template id
	// fresh: the lease map held no entry when New ran, so every entry
	// in it is one this process wrote, and is in leaseTpl; Publish need
	// not ask the kernel about an address that is not (a first start's
	// million lookups were 1.6 s of its 4).
	fresh bool
	// refused counts leases Publish could not write, by reason (the
	// refused* names), for xdhcp_fastpath_publish_refused_total.
	refused map[string]uint64
	// nextGen is the generation the next new binding gets: above every
	// one in the lease map when New ran.
	nextGen uint64
	// Grant slots (xdhcp_grants), one per binding. slotNext is the lowest
	// slot never handed out since New, slotFree the slots below it that
	// no entry names and no program run can still write, slotPending
	// those no entry names any more but that a run which read the entry
	// before it changed may still write: they wait for a grace period
	// (see reuseSlotsLocked) before they go to slotFree.
	slotNext              uint32
	slotFree, slotPending []uint32
	// grace waits for every program run begun before the call to end.
	grace func() error
}

// New wraps loaded maps and adopts the templates already in them, so that
// entries left by a previous run keep pointing at valid templates.
func New(m *bpf.XdpMaps) (*Maps, error) {
	fm := &Maps{
		leases: m.XdhcpLeases, grants: m.XdhcpGrants, templates: m.XdhcpTmpls, ifaces: m.XdhcpIfaces,
		config: m.XdhcpConfig, counters: m.XdhcpCounters,
		tmplID: map[string]uint32{}, tmplRefs: map[uint32]int{}, leaseTpl: map[[4]byte]uint32{}, refused: map[string]uint64{},
		grace: rcuGrace, now: time.Now,
	}
	var err error
	if fm.events, err = openEventRings(m.XdhcpEvring, m.XdhcpEvheads); err != nil {
		return nil, err
	}
	var id uint32
	var t bpf.XdpXdhcpTemplate
	it := fm.templates.Iterate()
	for it.Next(&id, &t) {
		if t.Used == 0 {
			continue
		}
		fm.tmplRefs[id] = 0 // not reused before a prune
		if _, dup := fm.tmplID[string(t.Data[:min(int(t.Len), MaxTemplate)])]; !dup && int(t.Len) <= MaxTemplate {
			fm.tmplID[string(t.Data[:t.Len])] = id
		}
	}
	if err := it.Err(); err != nil {
		fm.events.close()
		return nil, fmt.Errorf("reading reply templates: %w", err)
	}
	if err := fm.adoptBindings(); err != nil {
		fm.events.close()
		return nil, err
	}
	if err := fm.loadFingerprintKey(); err != nil {
		fm.events.close()
		return nil, err
	}
	return fm, nil
}

// loadFingerprintKey takes the settings map's fingerprint key, or, in a map
// that has none yet (just created), chooses one from crypto/rand and
// writes it there at once: entries published from now on and the
// program then fingerprint alike, and a restart that finds the pinned
// map keeps the key its entries were written with.
func (m *Maps) loadFingerprintKey() error {
	var v bpf.XdpXdhcpSettings
	if err := m.config.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("reading fast path settings: %w", err)
	}
	for v.FpKey == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("choosing the option 82 fingerprint key: %w", err)
		}
		v.FpKey = binary.LittleEndian.Uint64(b[:])
		if err := m.config.Put(uint32(0), &v); err != nil {
			return fmt.Errorf("writing the option 82 fingerprint key: %w", err)
		}
	}
	m.fpKey = v.FpKey
	return nil
}

// FingerprintKey is the key of the map's option 82 fingerprints.
func (m *Maps) FingerprintKey() uint64 { return m.fpKey }

// adoptBindings seeds the generation counter above every generation in
// the lease map and the slot allocator with the slots its entries name.
// The other slots may have been freed by an earlier run moments ago: they
// wait for one grace period, as every freed slot does (invariant 9).
func (m *Maps) adoptBindings() error {
	var high uint64
	named := map[uint32]bool{}
	m.fresh = true
	err := batchEach(m.leases, func(_ [4]byte, v *bpf.XdpXdhcpLease) {
		m.fresh = false
		high = max(high, v.Gen)
		named[v.GrantSlot] = true
		m.slotNext = max(m.slotNext, v.GrantSlot+1)
	})
	if err != nil {
		return fmt.Errorf("reading lease entries: %w", err)
	}
	m.nextGen = high + 1
	m.slotNext = max(m.slotNext, 1) // slot 0 stays unused: a zeroed entry names no grant
	for s := m.slotNext - 1; s >= 1; s-- {
		if !named[s] {
			m.slotPending = append(m.slotPending, s)
		}
	}
	// The slots from slotNext up were never handed out by this Maps but
	// may have been by an earlier run: one grace period covers them too.
	if err := m.grace(); err != nil {
		return fmt.Errorf("waiting for XDP runs that may hold freed grant slots: %w", err)
	}
	m.slotFree, m.slotPending = m.slotPending, nil
	return nil
}

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL (linux/membarrier.h).
const membarrierCmdGlobal = 1

// graceFallback is how long rcuGrace waits where the kernel refuses
// MEMBARRIER_CMD_GLOBAL (nohz_full CPUs): far longer than any run of the
// program, which is bounded and runs with preemption off.
const graceFallback = time.Second

// rcuGrace waits until every run of the XDP program that began before
// the call has ended: XDP and BPF_PROG_TEST_RUN run the program inside
// an RCU read-side section (softirq or rcu_read_lock), and
// membarrier(MEMBARRIER_CMD_GLOBAL) returns after synchronize_rcu().
func rcuGrace() error {
	if _, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); e != 0 {
		if e != unix.EINVAL {
			return fmt.Errorf("membarrier(MEMBARRIER_CMD_GLOBAL): %w", e)
		}
		time.Sleep(graceFallback)
	}
	return nil
}

// newSlotLocked returns a grant slot for a new binding: one never
// handed out, or a freed one past its grace period. Freed slots are
// reused in batches, so that one grace period (milliseconds) serves many.
func (m *Maps) newSlotLocked() (uint32, error) {
	if n := len(m.slotFree); n > 0 {
		s := m.slotFree[n-1]
		m.slotFree = m.slotFree[:n-1]
		return s, nil
	}
	if m.slotNext < m.grants.MaxEntries() {
		m.slotNext++
		return m.slotNext - 1, nil
	}
	if len(m.slotPending) == 0 {
		return 0, fmt.Errorf("no grant slot free: all %d in use", m.grants.MaxEntries()-1)
	}
	// A run of the program that read an entry before it changed may still
	// write the slot that entry named; after a grace period none can, so
	// resetting the slot for the next binding cannot be undone by a stale
	// grant (invariant 9).
	if err := m.grace(); err != nil {
		return 0, fmt.Errorf("waiting to reuse %d freed grant slots: %w", len(m.slotPending), err)
	}
	m.slotFree, m.slotPending = m.slotPending, m.slotFree[:0]
	return m.newSlotLocked()
}

// freeSlotLocked queues the slot of a binding no entry names any more.
func (m *Maps) freeSlotLocked(s uint32) {
	if s != 0 && s < m.slotNext {
		m.slotPending = append(m.slotPending, s)
	}
}

// batchEach calls fn for every entry of a hash map, read in batches.
func batchEach[K, V any](m *ebpf.Map, fn func(K, *V)) error {
	keys := make([]K, 4096)
	vals := make([]V, 4096)
	var cur ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cur, keys, vals, nil)
		for i := range n {
			fn(keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Close unmaps the event rings. The maps themselves belong to whoever
// loaded them.
func (m *Maps) Close() error {
	m.events.close()
	return nil
}

func key(ip netip.Addr) [4]byte { return ip.As4() }

func addrWord(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func wordAddr(w uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return netip.AddrFrom4(b)
}

// netWord turns a word the program copied from a packet into its value.
func netWord(w uint32) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return binary.BigEndian.Uint32(b[:])
}

func unixOrZero(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

// Publishable reports whether l fits in an entry.
func Publishable(l *Lease) bool {
	return l.IP.Is4() && len(l.HWAddr) <= MaxHWAddr && len(l.ClientID) <= MaxClientID && len(l.Template) <= MaxTemplate && l.ServerID.Is4()
}

// Publish adds or replaces entries. It never writes what the program
// granted (docs/ARCHITECTURE.md invariant 9): grants live in their own
// map, in a slot each binding keeps, so a republished entry with the
// expiry bbolt knows leaves a later grant in force, and the program
// keeps answering from the later of the two. An entry for another client
// than the one there is a new binding: it gets a new generation and a
// slot of its own, written (gen set, nothing granted) before the entry
// that names it; the earlier binding's slot is freed.
func (m *Maps) Publish(ls []Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	b := publishBatch{at: map[[4]byte]int{}}
	// A lease refused here leaves no entry behind: the one the map holds
	// says what the slow path said before (the options before a reload,
	// the serve bit before a FORCERENEW), and the program would go on
	// answering from it. Without an entry it passes the renewal up. The
	// set is made at the first refusal: nearly every call has none.
	var withdraw map[[4]byte]netip.Addr
	refuse := func(ip netip.Addr) {
		if !ip.Is4() {
			return
		}
		if withdraw == nil {
			withdraw = map[[4]byte]netip.Addr{}
		}
		withdraw[key(ip)] = ip
	}
	for i := range ls {
		l := &ls[i]
		if !Publishable(l) {
			m.refused[refusedTooBig]++
			errs = append(errs, fmt.Errorf("lease %s does not fit the fast path (client-id %d bytes, template %d bytes)", l.IP, len(l.ClientID), len(l.Template)))
			refuse(l.IP)
			continue
		}
		id, err := m.templateLocked(l.Template)
		if err != nil {
			errs = append(errs, err)
			refuse(l.IP)
			continue
		}
		v := bpf.XdpXdhcpLease{
			Expiry: unixOrZero(l.Expiry), Horizon: unixOrZero(l.Horizon),
			Ifindex: l.IfIndex, Giaddr: addrWord(l.GIAddr), ServerId: addrWord(l.ServerID),
			LeaseTime: l.LeaseTime, T1: l.T1, T2: l.T2, TmplId: id, Vlan: l.VLANs,
			Htype: l.HWType, Hlen: uint8(len(l.HWAddr)), CidLen: uint8(len(l.ClientID)),
			RelayFp: RelayInfoFingerprint(m.fpKey, l.RelayInfo),
		}
		if l.Serve {
			v.Flags |= leaseServe
		}
		copy(v.Chaddr[:], l.HWAddr)
		copy(v.Cid[:], l.ClientID)
		// Reading the entry is no read-modify-write race: only this
		// process writes lease entries, under m.mu.
		var old bpf.XdpXdhcpLease
		j, again := b.at[key(l.IP)]
		_, published := m.leaseTpl[key(l.IP)]
		switch {
		case again:
			old = b.vals[j]
		case m.fresh && !published:
			err = ebpf.ErrKeyNotExist
		default:
			err = m.leases.Lookup(key(l.IP), &old)
		}
		switch {
		case err == nil && sameClient(&old, &v):
			v.Gen, v.GrantSlot = old.Gen, old.GrantSlot
		case err == nil || errors.Is(err, ebpf.ErrKeyNotExist):
			if m.slotsExhaustedLocked() && len(b.freed) > 0 {
				// The slots this batch replaces are freed only once
				// written: write what there is, so that a lease map
				// that is full can still be handed over in one call.
				if ferr := m.flushLocked(&b); ferr != nil {
					m.unrefLocked(id)
					return errors.Join(append(errs, ferr)...)
				}
				again = false
			}
			slot, serr := m.newSlotLocked()
			if serr != nil {
				m.refused[refusedSlotsFull]++
				m.unrefLocked(id)
				errs = append(errs, fmt.Errorf("lease %s: %w", l.IP, serr))
				refuse(l.IP)
				continue
			}
			v.Gen, v.GrantSlot = m.newGenLocked(), slot
			b.slots = append(b.slots, slot)
			b.fresh = append(b.fresh, bpf.XdpXdhcpGrant{Gen: v.Gen})
			if err == nil {
				b.freed = append(b.freed, old.GrantSlot)
			}
		default:
			m.unrefLocked(id)
			errs = append(errs, fmt.Errorf("reading lease entry %s: %w", l.IP, err))
			refuse(l.IP)
			continue
		}
		if again {
			b.vals[j] = v
		} else if err == nil && old == v {
			// Unchanged (a republish of what the map holds): rewriting
			// it would only swap the element under the program's
			// lookups (see match_lease in xdp_dhcp.c).
		} else {
			b.at[key(l.IP)] = len(b.keys)
			b.keys = append(b.keys, key(l.IP))
			b.vals = append(b.vals, v)
		}
		if prev, ok := m.leaseTpl[key(l.IP)]; ok {
			m.unrefLocked(prev)
		}
		m.leaseTpl[key(l.IP)] = id
		delete(withdraw, key(l.IP))
	}
	if err := m.flushLocked(&b); err != nil {
		errs = append(errs, err)
	}
	if len(withdraw) > 0 {
		ips := make([]netip.Addr, 0, len(withdraw))
		for _, ip := range withdraw {
			ips = append(ips, ip)
		}
		if err := m.removeLocked(ips); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing entries the fast path refused: %w", err))
		}
	}
	return errors.Join(errs...)
}

// publishBatch is what Publish writes in one go.
type publishBatch struct {
	keys  [][4]byte
	vals  []bpf.XdpXdhcpLease
	at    map[[4]byte]int // index in keys: an address twice in a call, the later wins
	slots []uint32        // new bindings' slots, with their fresh grants
	fresh []bpf.XdpXdhcpGrant
	freed []uint32 // slots of the bindings the entries replace
}

// flushLocked writes a batch, the slots before the entries that name
// them (the program never sees an entry whose slot belongs to another
// binding), then frees the replaced bindings' slots, and empties it.
func (m *Maps) flushLocked(b *publishBatch) error {
	defer func() {
		b.keys, b.vals, b.slots, b.fresh, b.freed = b.keys[:0], b.vals[:0], b.slots[:0], b.fresh[:0], b.freed[:0]
		clear(b.at)
	}()
	if len(b.slots) > 0 {
		if _, err := m.grants.BatchUpdate(b.slots, b.fresh, nil); err != nil {
			m.slotPending = append(m.slotPending, b.slots...) // named by no entry
			return fmt.Errorf("writing %d grant slots: %w", len(b.slots), err)
		}
	}
	if len(b.keys) > 0 {
		if _, err := m.leases.BatchUpdate(b.keys, b.vals, nil); err != nil {
			// Some entries may have been written: neither the new slots
			// nor the replaced ones are known to be unnamed, so none is
			// freed (a restart finds the unnamed ones free again).
			if errors.Is(err, unix.E2BIG) {
				m.refused[refusedMapFull] += uint64(len(b.keys))
				return fmt.Errorf("writing %d lease entries: the lease map is full (%d entries, fastpath.max-leases): their renewals go to the slow path: %w",
					len(b.keys), m.leases.MaxEntries(), err)
			}
			m.refused[refusedError] += uint64(len(b.keys))
			return fmt.Errorf("writing %d lease entries: %w", len(b.keys), err)
		}
	}
	for _, s := range b.freed {
		m.freeSlotLocked(s)
	}
	return nil
}

// slotsExhaustedLocked reports whether newSlotLocked has nothing to hand
// out, not even after a grace period.
func (m *Maps) slotsExhaustedLocked() bool {
	return len(m.slotFree) == 0 && len(m.slotPending) == 0 && m.slotNext >= m.grants.MaxEntries()
}

// newGenLocked returns a generation no binding had before.
func (m *Maps) newGenLocked() uint64 {
	g := m.nextGen
	m.nextGen++
	return g
}

// Constants of relay_fp in xdp_dhcp.c (FP_SEED, FP_MUL): copied, since
// clang-14 emits no 64-bit enums for bpf2go to export.
// TestRelayInfoFingerprintAgrees checks the two agree.
const (
	fpSeed = 0x9e3779b97f4a7c15
	fpMul  = 0xff51afd7ed558ccd
)

// RelayInfoFingerprint is relay_fp in xdp_dhcp.c, where the function is
// described: the fingerprint under key of an option 82 body that a lease
// entry holds and the program compares with a relayed renewal's. It is 0
// for an empty body and never 0 otherwise. The map's key is Maps.FingerprintKey.
func RelayInfoFingerprint(key uint64, b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	h := fpSeed ^ key ^ uint64(len(b))
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		copy(w[:], b[i:])
		h = (h ^ binary.LittleEndian.Uint64(w[:])) * fpMul
		h ^= h >> 32
	}
	return h | 1
}

// Flag bits, generated from the program's enums.
const (
	leaseServe = uint8(bpf.XdpXdhcpLeaseFlagXDHCP_LEASE_SERVE)
	cfgAnswer  = uint32(bpf.XdpXdhcpCfgFlagXDHCP_CFG_ANSWER)
)

func sameClient(a, b *bpf.XdpXdhcpLease) bool {
	return a.Htype == b.Htype && a.Hlen == b.Hlen && a.Chaddr == b.Chaddr && a.CidLen == b.CidLen && a.Cid == b.Cid
}

// templateLocked returns the id of a template with these bytes, writing it
// first when new: every lease that renders the same bytes shares one.
func (m *Maps) templateLocked(b []byte) (uint32, error) {
	if id, ok := m.tmplID[string(b)]; ok {
		m.tmplRefs[id]++
		return id, nil
	}
	// The lowest free slot: slots are reused, the array does not grow.
	// Slot 0 stays unused, so that a zeroed lease entry names no template.
	id := uint32(1)
	for ; id < m.templates.MaxEntries(); id++ {
		if _, used := m.tmplRefs[id]; !used {
			break
		}
	}
	if id >= m.templates.MaxEntries() {
		return 0, fmt.Errorf("no room for another reply template: all %d in use", m.templates.MaxEntries()-1)
	}
	// Nothing refers to a free slot, so writing it in place races with no
	// reader.
	t := bpf.XdpXdhcpTemplate{Used: 1}
	t.Len = uint32(copy(t.Data[:], b))
	if err := m.templates.Put(id, &t); err != nil {
		return 0, fmt.Errorf("writing reply template %d (%d bytes): %w", id, len(b), err)
	}
	m.tmplID[string(bytes.Clone(b))] = id
	m.tmplRefs[id] = 1
	return id, nil
}

func (m *Maps) unrefLocked(id uint32) {
	if m.tmplRefs[id] > 0 {
		m.tmplRefs[id]--
	}
}

// Remove withdraws entries and frees their grant slots. Missing entries
// are not an error.
func (m *Maps) Remove(ips []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removeLocked(ips)
}

func (m *Maps) removeLocked(ips []netip.Addr) error {
	var errs []error
	for _, ip := range ips {
		if _, published := m.leaseTpl[key(ip)]; m.fresh && !published {
			continue // not in the map (see fresh): a start-up's FREE records
		}
		var old bpf.XdpXdhcpLease
		found := m.leases.Lookup(key(ip), &old) == nil
		if err := m.leases.Delete(key(ip)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			// Still in the map: still published (see fresh).
			errs = append(errs, fmt.Errorf("removing lease entry %s: %w", ip, err))
			continue
		} else if found {
			m.freeSlotLocked(old.GrantSlot)
		}
		if id, ok := m.leaseTpl[key(ip)]; ok {
			m.unrefLocked(id)
			delete(m.leaseTpl, key(ip))
		}
	}
	return errors.Join(errs...)
}

// PruneTemplates deletes templates no published lease refers to. Call it
// after a full republish (start-up, reload).
func (m *Maps) PruneTemplates() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for id, n := range m.tmplRefs {
		if n > 0 {
			continue
		}
		if err := m.templates.Put(id, &bpf.XdpXdhcpTemplate{}); err != nil {
			errs = append(errs, fmt.Errorf("freeing reply template %d: %w", id, err))
			continue
		}
		delete(m.tmplRefs, id)
	}
	for b, id := range m.tmplID {
		if _, inUse := m.tmplRefs[id]; !inUse {
			delete(m.tmplID, b)
		}
	}
	return errors.Join(errs...)
}

// Templates returns how many distinct reply templates are in use.
func (m *Maps) Templates() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tmplID)
}

// Reasons Publish refuses a lease, as xdhcp_fastpath_publish_refused_total
// names them.
const (
	refusedMapFull   = "map_full"   // the lease map holds fastpath.max-leases entries
	refusedSlotsFull = "slots_full" // no grant slot free (the map's quarter of spare slots used up)
	refusedTooBig    = "too_big"    // client identifier or template larger than the entry holds
	refusedError     = "error"      // the kernel refused the write otherwise
)

// Refused returns how many leases Publish could not write, by reason.
func (m *Maps) Refused() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.refused))
	for k, v := range m.refused {
		out[k] = v
	}
	return out
}

// Capacity is the most lease entries the map holds (fastpath.max-leases).
func (m *Maps) Capacity() int { return int(m.leases.MaxEntries()) }

// Len returns the number of lease entries this process has published.
func (m *Maps) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leaseTpl)
}

// Granted returns the expiry of the entry for ip: the later of the
// published one and what the program granted, which it records before
// it replies.
func (m *Maps) Granted(ip netip.Addr) (time.Time, bool) {
	var v bpf.XdpXdhcpLease
	if err := m.leases.Lookup(key(ip), &v); err != nil {
		return time.Time{}, false
	}
	exp := v.Expiry
	var g bpf.XdpXdhcpGrant
	if err := m.grants.Lookup(v.GrantSlot, &g); err == nil && g.Gen == v.Gen {
		exp = max(exp, g.Expiry)
	}
	return time.Unix(int64(exp), 0), true
}

// Scan calls fn for every entry the program has renewed at least once, and
// returns the addresses of all entries. The daemon folds what it finds at
// start and reconciles the map with bbolt.
func (m *Maps) Scan(fn func(Renewal)) ([]netip.Addr, error) {
	return m.scan(fn, true, time.Time{})
}

// ScanRenewals is Scan without the addresses and for the renewals the
// program granted at since or later (the zero time: all), for the scans
// after lost events and the minute's. Renewals older than the last scan
// were found by it; reading only the newer grants keeps a small map of
// them instead of a copy of every slot (320 MB at ten million), and
// collecting no addresses saves 240 MB more, each minute.
func (m *Maps) ScanRenewals(since time.Time, fn func(Renewal)) error {
	_, err := m.scan(fn, false, since)
	return err
}

func (m *Maps) scan(fn func(Renewal), addrs bool, since time.Time) ([]netip.Addr, error) {
	// Grants first, each counted only for the binding it belongs to: an
	// entry read after them that names a slot reset since for a new
	// binding has another generation than the slot as read.
	m.mu.Lock()
	limit := m.slotNext
	var all []netip.Addr
	if addrs {
		all = make([]netip.Addr, 0, len(m.leaseTpl))
	}
	m.mu.Unlock()
	grant, err := m.grantsSince(limit, since)
	if err != nil {
		return nil, err
	}
	err = batchEach(m.leases, func(k [4]byte, v *bpf.XdpXdhcpLease) {
		ip := netip.AddrFrom4(k)
		if addrs {
			all = append(all, ip)
		}
		g, ok := grant(v.GrantSlot) // not ok: handed out after the grants were read, or older than since
		if !ok || g.Gen != v.Gen || g.ClttNs == 0 {
			return
		}
		fn(Renewal{
			IP: ip, HWAddr: bytes.Clone(v.Chaddr[:min(int(v.Hlen), MaxHWAddr)]), XID: netWord(g.Xid),
			At: time.Unix(0, int64(g.ClttNs)), Expiry: time.Unix(int64(max(v.Expiry, g.Expiry)), 0),
			IfIndex: v.Ifindex, VLANs: v.Vlan, GIAddr: giaddr(g.LastGiaddr),
		})
	})
	if err != nil {
		return all, fmt.Errorf("scanning lease entries: %w", err)
	}
	return all, nil
}

// grantsSince reads the grant slots below limit, in batches, and returns
// a lookup of them by slot: every slot when since is zero, else only
// those renewed at since or later.
func (m *Maps) grantsSince(limit uint32, since time.Time) (func(slot uint32) (*bpf.XdpXdhcpGrant, bool), error) {
	if since.IsZero() {
		out := make([]bpf.XdpXdhcpGrant, limit)
		err := m.readSlots(limit, func(slot uint32, g *bpf.XdpXdhcpGrant) { out[slot] = *g })
		return func(slot uint32) (*bpf.XdpXdhcpGrant, bool) {
			if slot >= uint32(len(out)) {
				return nil, false
			}
			return &out[slot], true
		}, err
	}
	floor := uint64(max(0, since.UnixNano()))
	recent := map[uint32]bpf.XdpXdhcpGrant{}
	err := m.readSlots(limit, func(slot uint32, g *bpf.XdpXdhcpGrant) {
		if g.ClttNs >= floor {
			recent[slot] = *g
		}
	})
	return func(slot uint32) (*bpf.XdpXdhcpGrant, bool) {
		g, ok := recent[slot]
		return &g, ok
	}, err
}

// readSlots calls fn for each grant slot below limit, read in batches.
func (m *Maps) readSlots(limit uint32, fn func(slot uint32, g *bpf.XdpXdhcpGrant)) error {
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]bpf.XdpXdhcpGrant, chunk)
	var cur ebpf.MapBatchCursor
	for done := uint32(0); done < limit; {
		n, err := m.grants.BatchLookup(&cur, keys, vals, nil)
		for i := range n {
			if keys[i] < limit {
				fn(keys[i], &vals[i])
			}
		}
		done += uint32(n)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("scanning grants: %w", err)
		}
	}
	return nil
}

// SetSettings writes the global settings and the current wall-clock offset.
func (m *Maps) SetSettings(s Settings) error {
	m.mu.Lock()
	m.settings = s
	m.mu.Unlock()
	return m.Tick()
}

// Now is the time as the program reads it (SetClock's clock): what the
// times it records (a grant's CLTT) compare with.
func (m *Maps) Now() time.Time { return m.now() }

// SetClock makes the program's unix time follow now instead of the system
// clock (the daemon's clock, offset in the failover skew tests). Call it
// before SetSettings.
func (m *Maps) SetClock(now func() time.Time) { m.now = now }

// Tick refreshes the wall-clock offset the program adds to CLOCK_MONOTONIC
// (read coarse, bpf_ktime_get_coarse_ns) to get unix time: there is no
// wall clock helper on Linux 6.1.
func (m *Maps) Tick() error {
	m.mu.Lock()
	s := m.settings
	m.mu.Unlock()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	v := bpf.XdpXdhcpSettings{
		WallOffsetNs: m.now().UnixNano() - ts.Nano(), FpKey: m.fpKey,
		MinGrant: uint32(s.MinGrant / time.Second),
		PuntRate: s.PuntRate, PuntBurst: s.PuntBurst,
	}
	if s.Answer {
		v.Flags |= cfgAnswer
	}
	if err := m.config.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("writing fast path settings: %w", err)
	}
	m.offsetNs.Store(v.WallOffsetNs)
	m.offsetSet.Store(true)
	return nil
}

// Clock is the unix time the program reads now: CLOCK_MONOTONIC plus the
// offset Tick last wrote, false before the first. Between a step of the
// system clock and the next Tick the program's time is the old one; and
// it reads the coarse clock, up to a tick behind this.
func (m *Maps) Clock() (time.Time, bool) {
	if !m.offsetSet.Load() {
		return time.Time{}, false
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ts.Nano()+m.offsetNs.Load()), true
}

// SetInterface records the MAC address replies to broadcast requests on
// ifindex leave from.
func (m *Maps) SetInterface(ifindex int, mac []byte) error {
	var v bpf.XdpXdhcpIface
	copy(v.Mac[:], mac)
	if err := m.ifaces.Put(uint32(ifindex), &v); err != nil {
		return fmt.Errorf("writing interface %d: %w", ifindex, err)
	}
	return nil
}

// RemoveInterface forgets an interface.
func (m *Maps) RemoveInterface(ifindex int) error {
	if err := m.ifaces.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing interface %d: %w", ifindex, err)
	}
	return nil
}

// Counters returns the program's counters summed over CPUs, by name.
func (m *Maps) Counters() (map[string]uint64, error) {
	out := make(map[string]uint64, len(CounterNames))
	var per []uint64
	for i, name := range CounterNames {
		if err := m.counters.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("reading counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	out["events_lost"] += m.events.lost.Load() // lapped in the rings, counted by the reader
	return out, nil
}

// CounterNames are the program's counters in enum xdhcp_counter order,
// named as the punt reasons in metrics.
var CounterNames = [...]string{
	bpf.XdpXdhcpCounterXC_ANSWERED:     "answered",
	bpf.XdpXdhcpCounterXC_NOT_DHCP:     "not_dhcp",
	bpf.XdpXdhcpCounterXC_MALFORMED:    "malformed",
	bpf.XdpXdhcpCounterXC_UNSUPPORTED:  "unsupported",
	bpf.XdpXdhcpCounterXC_NOT_RENEWAL:  "not_renewal",
	bpf.XdpXdhcpCounterXC_NO_LEASE:     "no_lease",
	bpf.XdpXdhcpCounterXC_EXPIRED:      "expired",
	bpf.XdpXdhcpCounterXC_IDENTITY:     "identity",
	bpf.XdpXdhcpCounterXC_WHERE:        "where",
	bpf.XdpXdhcpCounterXC_NOT_SERVING:  "not_serving",
	bpf.XdpXdhcpCounterXC_HORIZON:      "horizon",
	bpf.XdpXdhcpCounterXC_TOO_BIG:      "too_big",
	bpf.XdpXdhcpCounterXC_DISABLED:     "disabled",
	bpf.XdpXdhcpCounterXC_RATE_LIMITED: "rate_limited",
	bpf.XdpXdhcpCounterXC_EVENTS_LOST:  "events_lost",
	bpf.XdpXdhcpCounterXC_ERROR:        "error",
	bpf.XdpXdhcpCounterXC_NO_ROOM:      "no_room",
	bpf.XdpXdhcpCounterXC_RELAY_INFO:   "relay_info",
}
