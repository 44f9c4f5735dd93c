package lease

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Table holds the slow path's lease records in memory, compactly: a
// million subscribers is the common case and ten million the target, and
// a *Lease with its byte slices, eight time.Time and three netip.Addr took
// about a kilobyte of heap per address, most of it pointers for the
// garbage collector to follow. A record here is a fixed part of 104 bytes
// (times as Unix nanoseconds, addresses as integers), in chunks that are
// never moved and lie outside Go's heap (chunks.go), and one string that
// holds every variable-length field, in a slice beside them, with an
// index from address to slot.
//
// Records are never removed (an address once known stays known, in some
// state), so slots are never reused and a slot number stays valid.
//
// Get materializes a record as a *Lease the caller owns; Put stores one.
// A Table is not safe for concurrent use: the slow path holds its lock.
type Table struct {
	slot   slotIndex
	chunks [][]record
	// blobs holds each record's variable-length fields, concatenated,
	// by slot as chunks does.
	blobs [][]string
	maps  *mappings
	n     uint32
	// scratch is the record Range hands out, and buf its byte fields.
	scratch Lease
	buf     []byte
}

const (
	flagPartnerPending = 1 << iota
	flagReserved
)

// Variable-length fields, in the order they are kept in a record's blob.
const (
	fieldHW = iota
	fieldClientID
	fieldHostname
	fieldRelayInfo
	fieldVendorClass
	fieldForceRenewKey
	numFields
)

// Times, in the order they are kept in a record.
const (
	timeStart = iota
	timeExpiry
	timeCLTT
	timeStateAt
	timePotExp
	timeAckedExp
	timeHorizon
	timeDurableHorizon
	numTimes
)

type record struct {
	times   [numTimes]int64 // Unix nanoseconds, 0 for the zero time
	ip      uint32
	ifIndex uint32
	giaddr  uint32 // 0: not set
	server  uint32 // 0: not set
	xid     uint32
	vlans   [2]uint16
	lens    [numFields]uint16
	state   State
	htype   uint8
	flags   uint8
	epoch   uint8 // Lease.Epoch (in what was the struct's padding)
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{slot: slotIndex{blocks: map[uint32]*[256]uint32{}}} }

// slotIndex finds an address's slot. It holds blocks of 256 slots, one
// per /24 that has records, found by the address's upper 24 bits: pools
// are ranges, so their records fill blocks, and a block's map has 256
// times fewer entries than a map per address would (at ten million
// leases the per-address map was a fifth of the load's time in lookups
// that missed the cache, and 17 bytes a lease; a block is 4 bytes an
// address). The last block used is kept: a load goes in address order.
type slotIndex struct {
	blocks map[uint32]*[256]uint32 // slot+1 by the address's last byte; 0: none
	lastK  uint32
	last   *[256]uint32
}

func (x *slotIndex) block(a uint32, create bool) *[256]uint32 {
	k := a >> 8
	if x.last != nil && x.lastK == k {
		return x.last
	}
	b := x.blocks[k]
	if b == nil {
		if !create {
			return nil
		}
		b = new([256]uint32)
		x.blocks[k] = b
	}
	x.lastK, x.last = k, b
	return b
}

func (x *slotIndex) get(a uint32) (uint32, bool) {
	b := x.block(a, false)
	if b == nil || b[a&0xff] == 0 {
		return 0, false
	}
	return b[a&0xff] - 1, true
}

func (x *slotIndex) set(a, slot uint32) { x.block(a, true)[a&0xff] = slot + 1 }

// Len is the number of records held.
func (t *Table) Len() int { return int(t.n) }

// at is slot i's record and its byte fields. The record is in memory the
// Table maps: a caller keeps the Table alive while it uses it
// (runtime.KeepAlive), since the mapping goes with the Table.
func (t *Table) at(i uint32) (*record, *string) {
	c, j := i/uint32(chunkRecords), i%uint32(chunkRecords)
	return &t.chunks[c][j], &t.blobs[c][j]
}

func (t *Table) find(ip netip.Addr) (*record, *string) {
	if !ip.Is4() {
		return nil, nil
	}
	i, ok := t.slot.get(AddrUint32(ip))
	if !ok {
		return nil, nil
	}
	return t.at(i)
}

// Has reports whether ip has a record.
func (t *Table) Has(ip netip.Addr) bool {
	_, ok := t.slot.get(AddrUint32(ip))
	return ip.Is4() && ok
}

// Holder reports the state of ip's record and whether key (a ClientKey)
// names its client, without copying the record or building its key: what
// a check that an address is free for a client, or already its own, needs
// (Get then ClientKey costs three allocations). ok is false when ip has
// no record.
func (t *Table) Holder(ip netip.Addr, key string) (st State, same, ok bool) {
	defer runtime.KeepAlive(t)
	r, blob := t.find(ip)
	if r == nil {
		return 0, false, false
	}
	return r.state, r.clientKeyIs(key, *blob), true
}

// clientKeyIs reports whether key is ClientKey of r's client, whose byte
// fields are blob.
func (r *record) clientKeyIs(key, blob string) bool {
	hw, cid := int(r.lens[fieldHW]), int(r.lens[fieldClientID])
	if cid > 0 {
		return len(key) == 1+cid && key[0] == 'c' && key[1:] == blob[hw:hw+cid]
	}
	return len(key) == 2+hw && key[0] == 'h' && key[1] == r.htype && key[2:] == blob[:hw]
}

// Get returns a copy of ip's record that the caller owns, or nil.
func (t *Table) Get(ip netip.Addr) *Lease {
	defer runtime.KeepAlive(t)
	r, blob := t.find(ip)
	if r == nil {
		return nil
	}
	if len(*blob) <= getInline {
		// One allocation for the record and its bytes: Get is called
		// several times for every DHCP exchange.
		lb := new(leaseBytes)
		r.read(&lb.l, *blob, lb.b[:len(*blob)])
		return &lb.l
	}
	l := new(Lease)
	r.read(l, *blob, make([]byte, len(*blob)))
	return l
}

// GetInto is Get into the caller's memory: the record for ip is read
// into l, its byte fields appended to arena, which it returns (false:
// there is none). A caller reading many records reuses both, where Get
// would allocate for each (publishing ten million leases made 5 GB of
// garbage, and the heap grew to twice what was live).
func (t *Table) GetInto(ip netip.Addr, l *Lease, arena []byte) ([]byte, bool) {
	defer runtime.KeepAlive(t)
	r, blob := t.find(ip)
	if r == nil {
		return arena, false
	}
	n := len(arena)
	arena = slices.Grow(arena, len(*blob))[:n+len(*blob)]
	r.read(l, *blob, arena[n:])
	return arena, true
}

// getInline is how many bytes of byte fields (hardware address, client
// id, hostname, relay information, vendor class, key) Get hands out in the
// same allocation as the Lease: a Lease is 432 bytes, and with these 80 it
// fills the 512-byte size class.
const getInline = 80

// leaseBytes is a Lease and room for its byte fields.
type leaseBytes struct {
	l Lease
	b [getInline]byte
}

// Put stores l as its address's record, replacing the one there. l stays
// the caller's: Put copies it. It panics for an address that is not IPv4,
// which no DHCPv4 lease has (the store refuses them on disk).
func (t *Table) Put(l *Lease) {
	if !l.IP.Is4() {
		panic("lease table: " + l.IP.String() + " is not an IPv4 address")
	}
	defer runtime.KeepAlive(t)
	k := AddrUint32(l.IP)
	i, ok := t.slot.get(k)
	if !ok {
		i = t.n
		if int(i/uint32(chunkRecords)) == len(t.chunks) {
			t.chunks = append(t.chunks, t.newChunk())
			t.blobs = append(t.blobs, make([]string, chunkRecords))
		}
		t.n++
		t.slot.set(k, i)
	}
	r, blob := t.at(i)
	r.write(l, blob)
}

// SetDurableHorizon sets the memory-only DurableHorizon of c's address's
// record to c's, c being a version of it now on disk: a zero horizon
// always, another only while the record is still c's binding (its Epoch,
// active, for the same client). Commits land in order, but the table may
// be a binding ahead of the one landing, and an earlier binding's horizon
// on disk, another client's or the same client's before a release,
// promises nothing to this one (a renewal is ACKed on the durable
// horizon).
func (t *Table) SetDurableHorizon(c *Lease) {
	if r, blob := t.find(c.IP); r != nil && (c.DurableHorizon.IsZero() ||
		r.epoch == c.Epoch && r.state == Active && c.State == Active && r.sameClient(c, *blob)) {
		r.times[timeDurableHorizon] = nanos(c.DurableHorizon)
	}
	runtime.KeepAlive(t)
}

// sameClient is SameClient for r, whose byte fields are blob, and l.
func (r *record) sameClient(l *Lease, blob string) bool {
	hw, cid := int(r.lens[fieldHW]), int(r.lens[fieldClientID])
	if cid > 0 || len(l.ClientID) > 0 {
		return string(l.ClientID) == blob[hw:hw+cid]
	}
	return r.htype == l.HWType && string(l.HWAddr) == blob[:hw]
}

// Brief is what a scan usually filters by, read from a record without
// materializing it.
type Brief struct {
	IP             netip.Addr
	State          State
	IfIndex        uint32
	Expiry         time.Time
	DurableHorizon time.Time
	StateAt        time.Time
	Epoch          uint8
}

// Brief returns ip's record's Brief, without copying the record; false
// when ip has none.
func (t *Table) Brief(ip netip.Addr) (Brief, bool) {
	defer runtime.KeepAlive(t)
	r, _ := t.find(ip)
	if r == nil {
		return Brief{}, false
	}
	return r.brief(), true
}

func (r *record) brief() Brief {
	return Brief{IP: addr(r.ip), State: r.state, IfIndex: r.ifIndex,
		Expiry: fromNanos(r.times[timeExpiry]), DurableHorizon: fromNanos(r.times[timeDurableHorizon]),
		StateAt: fromNanos(r.times[timeStateAt]), Epoch: r.epoch}
}

// Range calls fn for every record, in the order they were first stored,
// until it returns false; with pre, only for those whose Brief pre
// accepts. The *Lease is the table's scratch record: it and its byte
// fields are valid only until fn returns (Clone it to keep it). fn may
// Put records (one new since Range began may or may not be visited), but
// not call Range.
func (t *Table) Range(pre func(b *Brief) bool, fn func(l *Lease) bool) {
	defer runtime.KeepAlive(t)
	var b Brief
	for i := uint32(0); i < t.n; i++ {
		r, blob := t.at(i)
		if pre != nil {
			b = r.brief()
			if !pre(&b) {
				continue
			}
		}
		if cap(t.buf) < len(*blob) {
			t.buf = make([]byte, len(*blob), 2*len(*blob))
		}
		r.read(&t.scratch, *blob, t.buf[:len(*blob)])
		if !fn(&t.scratch) {
			break
		}
	}
	t.scratch = Lease{}
}

// Addrs appends the address of every record to ips, as integers (see
// AddrUint32), in the order they were first stored.
func (t *Table) Addrs(ips []uint32) []uint32 {
	defer runtime.KeepAlive(t)
	for i := uint32(0); i < t.n; i++ {
		r, _ := t.at(i)
		ips = append(ips, r.ip)
	}
	return ips
}

// read fills l from r and its byte fields blob, with those in buf
// (len(blob) bytes). Hostname shares the blob's memory, which is
// immutable.
func (r *record) read(l *Lease, blob string, buf []byte) {
	copy(buf, blob)
	var f [numFields][]byte
	p := 0
	for i, n := range r.lens {
		if n > 0 {
			f[i] = buf[p : p+int(n) : p+int(n)]
		}
		p += int(n)
	}
	host := ""
	if n := int(r.lens[fieldHostname]); n > 0 {
		off := int(r.lens[fieldHW]) + int(r.lens[fieldClientID])
		host = blob[off : off+n]
	}
	*l = Lease{
		IP: addr(r.ip), State: r.state, HWType: r.htype,
		HWAddr: net.HardwareAddr(f[fieldHW]), ClientID: f[fieldClientID], Hostname: host,
		Start: fromNanos(r.times[timeStart]), Expiry: fromNanos(r.times[timeExpiry]),
		CLTT: fromNanos(r.times[timeCLTT]), StateAt: fromNanos(r.times[timeStateAt]),
		PotExp: fromNanos(r.times[timePotExp]), AckedExp: fromNanos(r.times[timeAckedExp]),
		Horizon: fromNanos(r.times[timeHorizon]), DurableHorizon: fromNanos(r.times[timeDurableHorizon]),
		IfIndex: r.ifIndex, VLANs: r.vlans, GIAddr: addr(r.giaddr), ServerID: addr(r.server),
		RelayInfo: f[fieldRelayInfo], VendorClass: f[fieldVendorClass], LastXID: r.xid,
		ForceRenewKey:  f[fieldForceRenewKey],
		PartnerPending: r.flags&flagPartnerPending != 0, Reserved: r.flags&flagReserved != 0, Epoch: r.epoch,
	}
}

// write stores l in r, and its byte fields in blob.
func (r *record) write(l *Lease, blob *string) {
	var flags uint8
	if l.PartnerPending {
		flags |= flagPartnerPending
	}
	if l.Reserved {
		flags |= flagReserved
	}
	r.ip, r.state, r.htype, r.flags, r.epoch = AddrUint32(l.IP), l.State, l.HWType, flags, l.Epoch
	r.times = [numTimes]int64{
		timeStart: nanos(l.Start), timeExpiry: nanos(l.Expiry), timeCLTT: nanos(l.CLTT),
		timeStateAt: nanos(l.StateAt), timePotExp: nanos(l.PotExp), timeAckedExp: nanos(l.AckedExp),
		timeHorizon: nanos(l.Horizon), timeDurableHorizon: nanos(l.DurableHorizon),
	}
	r.ifIndex, r.vlans, r.xid = l.IfIndex, l.VLANs, l.LastXID
	r.giaddr, r.server = AddrUint32(l.GIAddr), AddrUint32(l.ServerID)

	f := [numFields]string{
		fieldHW: string(l.HWAddr), fieldClientID: string(l.ClientID), fieldHostname: l.Hostname,
		fieldRelayInfo: string(l.RelayInfo), fieldVendorClass: string(l.VendorClass), fieldForceRenewKey: string(l.ForceRenewKey),
	}
	// Most changes (a renewal, an ack, a horizon) leave every byte field
	// as it was: the blob is kept, and costs no allocation.
	same, total := true, 0
	p := 0
	for i, s := range f {
		n := len(s)
		if n > 0xffff {
			// Nothing decoded from the wire or the disk is this long;
			// the disk's encoding refuses it as well.
			panic("lease table: field longer than 65535 bytes")
		}
		total += n
		if same && (int(r.lens[i]) != n || (*blob)[p:p+n] != s) {
			same = false
		}
		if same {
			p += n
		}
	}
	if same && total == len(*blob) {
		return
	}
	var b strings.Builder
	b.Grow(total)
	for i, s := range f {
		r.lens[i] = uint16(len(s))
		b.WriteString(s)
	}
	*blob = b.String()
}

// AddrUint32 is an IPv4 address as an integer in network order; 0 for an
// address that is not set (or not IPv4, which no record holds).
func AddrUint32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// addr is the inverse of u32: 0 is the address that is not set, as on disk.
func addr(v uint32) netip.Addr {
	if v == 0 {
		return netip.Addr{}
	}
	return AddrFromUint32(v)
}

// AddrFromUint32 is the address of an integer from Addrs.
func AddrFromUint32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
