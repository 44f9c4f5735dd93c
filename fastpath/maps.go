// Package fastpath is the Go view of the XDP program's maps: lease entries
// and the reply templates they share, global settings, interface
// addresses, counters and the per-CPU rings of answered renewals. It holds no
// policy: the slow path decides what goes in, and this package writes it.
package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
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

	mu       sync.Mutex
	settings Settings
	tmplID   map[string]uint32 // template bytes -> id
	// tmplRefs has every slot in use, with the published leases naming
	// it; a slot found in use at start whose bytes another slot holds too
	// is here but not in tmplID, and goes at the next prune.
	tmplRefs map[uint32]int
	leaseTpl map[netip.Addr]uint32 // published lease -> its template id
	// nextGen is the generation the next new binding gets: above every
	// one in either map when New ran, so that no grant left by an
	// earlier binding of an address can ever match a later one.
	nextGen uint64
}

// New wraps loaded maps and adopts the templates already in them, so that
// entries left by a previous run keep pointing at valid templates.
func New(m *bpf.XdpMaps) (*Maps, error) {
	fm := &Maps{
		leases: m.XdhcpLeases, grants: m.XdhcpGrants, templates: m.XdhcpTmpls, ifaces: m.XdhcpIfaces,
		config: m.XdhcpConfig, counters: m.XdhcpCounters,
		tmplID: map[string]uint32{}, tmplRefs: map[uint32]int{}, leaseTpl: map[netip.Addr]uint32{},
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
	if fm.nextGen, err = fm.highestGen(); err != nil {
		fm.events.close()
		return nil, err
	}
	fm.nextGen++
	return fm, nil
}

// highestGen returns the highest binding generation in the lease and
// grant maps (0 when both are empty).
func (m *Maps) highestGen() (uint64, error) {
	var high uint64
	err := batchEach(m.leases, func(_ [4]byte, v *bpf.XdpXdhcpLease) { high = max(high, v.Gen) })
	if err != nil {
		return 0, fmt.Errorf("reading lease entries: %w", err)
	}
	err = batchEach(m.grants, func(k bpf.XdpXdhcpGrantKey, _ *bpf.XdpXdhcpGrant) { high = max(high, k.Gen) })
	if err != nil {
		return 0, fmt.Errorf("reading grants: %w", err)
	}
	return high, nil
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
// map, keyed by the binding's generation, so a republished entry with
// the expiry bbolt knows leaves a later grant in force, and the program
// keeps answering from the later of the two. An entry for another client
// than the one there is a new binding: it gets a new generation, and the
// earlier binding's grant is deleted, and would not count if it stayed.
func (m *Maps) Publish(ls []Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	keys := make([][4]byte, 0, len(ls))
	vals := make([]bpf.XdpXdhcpLease, 0, len(ls))
	var replaced []bpf.XdpXdhcpGrantKey
	for i := range ls {
		l := &ls[i]
		if !Publishable(l) {
			errs = append(errs, fmt.Errorf("lease %s does not fit the fast path (client-id %d bytes, template %d bytes)", l.IP, len(l.ClientID), len(l.Template)))
			continue
		}
		id, err := m.templateLocked(l.Template)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v := bpf.XdpXdhcpLease{
			Expiry: unixOrZero(l.Expiry), Horizon: unixOrZero(l.Horizon),
			Ifindex: l.IfIndex, Giaddr: addrWord(l.GIAddr), ServerId: addrWord(l.ServerID),
			LeaseTime: l.LeaseTime, T1: l.T1, T2: l.T2, TmplId: id, Vlan: l.VLANs,
			Htype: l.HWType, Hlen: uint8(len(l.HWAddr)), CidLen: uint8(len(l.ClientID)),
			RelayFp: RelayInfoFingerprint(l.RelayInfo),
		}
		if l.Serve {
			v.Flags |= leaseServe
		}
		copy(v.Chaddr[:], l.HWAddr)
		copy(v.Cid[:], l.ClientID)
		// Reading the entry is no read-modify-write race: only this
		// process writes lease entries, under m.mu.
		var old bpf.XdpXdhcpLease
		switch err := m.leases.Lookup(key(l.IP), &old); {
		case err == nil && sameClient(&old, &v):
			v.Gen = old.Gen
		case err == nil:
			v.Gen = m.newGenLocked()
			replaced = append(replaced, grantKey(l.IP, old.Gen))
		case errors.Is(err, ebpf.ErrKeyNotExist):
			v.Gen = m.newGenLocked()
		default:
			m.unrefLocked(id)
			errs = append(errs, fmt.Errorf("reading lease entry %s: %w", l.IP, err))
			continue
		}
		keys = append(keys, key(l.IP))
		vals = append(vals, v)
		if prev, ok := m.leaseTpl[l.IP]; ok {
			m.unrefLocked(prev)
		}
		m.leaseTpl[l.IP] = id
	}
	if len(keys) > 0 {
		if _, err := m.leases.BatchUpdate(keys, vals, nil); err != nil {
			errs = append(errs, fmt.Errorf("writing %d lease entries: %w", len(keys), err))
			return errors.Join(errs...) // the replaced entries may still be there
		}
	}
	errs = append(errs, m.deleteGrants(replaced))
	return errors.Join(errs...)
}

// newGenLocked returns a generation no binding had before.
func (m *Maps) newGenLocked() uint64 {
	g := m.nextGen
	m.nextGen++
	return g
}

func grantKey(ip netip.Addr, gen uint64) bpf.XdpXdhcpGrantKey {
	return bpf.XdpXdhcpGrantKey{Ip: addrWord(ip), Gen: gen}
}

// deleteGrants deletes the grants of bindings that are gone. A renewal
// the program was answering from the old entry at that moment can still
// write one back: it never matches a later binding, and Scan deletes it.
func (m *Maps) deleteGrants(ks []bpf.XdpXdhcpGrantKey) error {
	var errs []error
	for _, k := range ks {
		if err := m.grants.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("deleting the grant to %s: %w", wordAddr(k.Ip), err))
		}
	}
	return errors.Join(errs...)
}

// Constants of relay_fp in xdp_dhcp.c (FP_SEED, FP_MUL): copied, since
// clang-14 emits no 64-bit enums for bpf2go to export.
// TestRelayInfoFingerprintAgrees checks the two agree.
const (
	fpSeed = 0x9e3779b97f4a7c15
	fpMul  = 0xff51afd7ed558ccd
)

// RelayInfoFingerprint is relay_fp in xdp_dhcp.c, where the function is
// described: the fingerprint of an option 82 body that a lease entry
// holds and the program compares with a relayed renewal's. It is 0 for
// an empty body and never 0 otherwise.
func RelayInfoFingerprint(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	h := fpSeed ^ uint64(len(b))
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

// Remove withdraws entries and their grants. Missing entries are not an
// error.
func (m *Maps) Remove(ips []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	var gone []bpf.XdpXdhcpGrantKey
	for _, ip := range ips {
		var old bpf.XdpXdhcpLease
		if err := m.leases.Lookup(key(ip), &old); err == nil {
			gone = append(gone, grantKey(ip, old.Gen))
		}
		if err := m.leases.Delete(key(ip)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("removing lease entry %s: %w", ip, err))
		}
		if id, ok := m.leaseTpl[ip]; ok {
			m.unrefLocked(id)
			delete(m.leaseTpl, ip)
		}
	}
	errs = append(errs, m.deleteGrants(gone))
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
	if err := m.grants.Lookup(grantKey(ip, v.Gen), &g); err == nil {
		exp = max(exp, g.Expiry)
	}
	return time.Unix(int64(exp), 0), true
}

// Scan calls fn for every entry the program has renewed at least once, and
// returns the addresses of all entries. The daemon folds what it finds at
// start and after lost events, and reconciles the map with bbolt. Grants
// of bindings no longer in the map (left by a renewal that raced with
// their removal) are deleted.
func (m *Maps) Scan(fn func(Renewal)) ([]netip.Addr, error) {
	// Grants first: a grant is made only for an entry in the map, so an
	// entry read after it is there too, unless it was replaced meanwhile.
	grants := map[bpf.XdpXdhcpGrantKey]bpf.XdpXdhcpGrant{}
	err := batchEach(m.grants, func(k bpf.XdpXdhcpGrantKey, g *bpf.XdpXdhcpGrant) { grants[k] = *g })
	if err != nil {
		return nil, fmt.Errorf("scanning grants: %w", err)
	}
	var all []netip.Addr
	err = batchEach(m.leases, func(k [4]byte, v *bpf.XdpXdhcpLease) {
		ip := netip.AddrFrom4(k)
		all = append(all, ip)
		gk := grantKey(ip, v.Gen)
		g, ok := grants[gk]
		delete(grants, gk)
		if !ok || g.Cltt == 0 {
			return
		}
		fn(Renewal{
			IP: ip, HWAddr: bytes.Clone(v.Chaddr[:min(int(v.Hlen), MaxHWAddr)]), XID: netWord(g.Xid),
			At: time.Unix(int64(g.Cltt), 0), Expiry: time.Unix(int64(max(v.Expiry, g.Expiry)), 0),
			IfIndex: v.Ifindex, VLANs: v.Vlan, GIAddr: giaddr(g.LastGiaddr),
		})
	})
	if err != nil {
		return all, fmt.Errorf("scanning lease entries: %w", err)
	}
	if len(grants) > 0 {
		if err := m.dropOrphanGrants(grants); err != nil {
			return all, err
		}
	}
	return all, nil
}

// dropOrphanGrants deletes the grants, found by a scan with no entry of
// their binding, whose binding is still not in the map. Checked again
// under m.mu, which every change of an entry's generation holds.
func (m *Maps) dropOrphanGrants(grants map[bpf.XdpXdhcpGrantKey]bpf.XdpXdhcpGrant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var orphans []bpf.XdpXdhcpGrantKey
	for k := range grants {
		var v bpf.XdpXdhcpLease
		err := m.leases.Lookup(key(wordAddr(k.Ip)), &v)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("reading lease entry %s: %w", wordAddr(k.Ip), err)
		}
		if err != nil || v.Gen != k.Gen {
			orphans = append(orphans, k)
		}
	}
	return m.deleteGrants(orphans)
}

// SetSettings writes the global settings and the current wall-clock offset.
func (m *Maps) SetSettings(s Settings) error {
	m.mu.Lock()
	m.settings = s
	m.mu.Unlock()
	return m.Tick()
}

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
		WallOffsetNs: time.Now().UnixNano() - ts.Nano(),
		MinGrant:     uint32(s.MinGrant / time.Second),
		PuntRate:     s.PuntRate, PuntBurst: s.PuntBurst,
	}
	if s.Answer {
		v.Flags |= cfgAnswer
	}
	if err := m.config.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("writing fast path settings: %w", err)
	}
	return nil
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
