package lease

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// full is a record with every field set, times with sub-second parts (the
// table keeps nanoseconds, unlike the disk).
func full(ip string) *Lease {
	t := time.Date(2026, 12, 5, 10, 0, 0, 123456789, time.Local)
	return &Lease{
		IP: netip.MustParseAddr(ip), State: Active, HWType: 1,
		HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 7}, ClientID: []byte{1, 2, 0, 0, 0, 0, 7}, Hostname: "cpe-7",
		Start: t, Expiry: t.Add(time.Hour), CLTT: t.Add(time.Second), StateAt: t.Add(2 * time.Second),
		PotExp: t.Add(2 * time.Hour), AckedExp: t.Add(90 * time.Minute), Horizon: t.Add(3 * time.Hour),
		DurableHorizon: t.Add(150 * time.Minute),
		IfIndex:        7, VLANs: [2]uint16{100, 200}, GIAddr: netip.MustParseAddr("192.0.2.1"), ServerID: netip.MustParseAddr("192.0.2.2"),
		RelayInfo: []byte{1, 4, 'p', 'o', 'r', 't'}, VendorClass: []byte("docsis3.1"), LastXID: 0xdeadbeef,
		ForceRenewKey: bytes.Repeat([]byte{9}, 16), PartnerPending: true, Reserved: true,
	}
}

func TestTableKeepsEveryField(t *testing.T) {
	cases := []struct {
		name string
		l    *Lease
	}{
		{"every field", full("10.0.0.1")},
		{"bare", &Lease{IP: netip.MustParseAddr("10.0.0.2"), State: Free}},
		{"hardware address only", &Lease{IP: netip.MustParseAddr("10.0.0.3"), State: Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 3}}},
		{"16-byte chaddr", &Lease{IP: netip.MustParseAddr("10.0.0.4"), State: Active, HWType: 6, HWAddr: bytes.Repeat([]byte{5}, 16)}},
		{"long relay info", &Lease{IP: netip.MustParseAddr("10.0.0.5"), State: Expired, RelayInfo: bytes.Repeat([]byte{1}, 1000)}},
	}
	tb := NewTable()
	for _, c := range cases {
		tb.Put(c.l)
	}
	if tb.Len() != len(cases) {
		t.Fatalf("Len %d, want %d", tb.Len(), len(cases))
	}
	for _, c := range cases {
		got := tb.Get(c.l.IP)
		if !sameLease(got, c.l) {
			t.Errorf("%s: got\n%+v\nwant\n%+v", c.name, got, c.l)
		}
	}
}

// sameLease compares with time.Equal (the table's times are in Local, as
// the disk's are) and byte fields by content.
func sameLease(a, b *Lease) bool {
	if a == nil || b == nil {
		return a == b
	}
	ta := []time.Time{a.Start, a.Expiry, a.CLTT, a.StateAt, a.PotExp, a.AckedExp, a.Horizon, a.DurableHorizon}
	tb := []time.Time{b.Start, b.Expiry, b.CLTT, b.StateAt, b.PotExp, b.AckedExp, b.Horizon, b.DurableHorizon}
	for i := range ta {
		if !ta[i].Equal(tb[i]) || ta[i].IsZero() != tb[i].IsZero() {
			return false
		}
	}
	x, y := *a, *b
	x.Start, x.Expiry, x.CLTT, x.StateAt, x.PotExp, x.AckedExp, x.Horizon, x.DurableHorizon = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	y.Start, y.Expiry, y.CLTT, y.StateAt, y.PotExp, y.AckedExp, y.Horizon, y.DurableHorizon = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// A copy from Get is the caller's: changing it, or its byte fields,
// changes nothing in the table until it is Put.
func TestTableGetIsACopy(t *testing.T) {
	tb := NewTable()
	want := full("10.0.0.1")
	tb.Put(want)
	got := tb.Get(want.IP)
	got.HWAddr[5] = 0xff
	got.RelayInfo[0] = 0xff
	got.State = Released
	if again := tb.Get(want.IP); !sameLease(again, want) {
		t.Fatalf("the table changed with its copy: %+v", again)
	}
	// And the Lease given to Put stays the caller's too.
	want.ClientID[0] = 0xee
	if again := tb.Get(want.IP); again.ClientID[0] == 0xee {
		t.Fatal("Put kept the caller's client-id slice")
	}
}

// GetInto reads what Get reads into the caller's record and arena,
// appending: the records read before keep their bytes even when the arena
// grows, and an absent address leaves both as they were.
func TestTableGetInto(t *testing.T) {
	tb := NewTable()
	want := []*Lease{full("10.0.0.1"), full("10.0.0.2"), {IP: netip.MustParseAddr("10.0.0.3"), State: Expired, RelayInfo: bytes.Repeat([]byte{1}, 1000)}}
	want[1].HWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 8}
	for _, l := range want {
		tb.Put(l)
	}
	got := make([]Lease, len(want))
	arena := make([]byte, 3, 8) // too small: it must grow, and keep what it had
	copy(arena, "abc")
	for i, l := range want {
		var ok bool
		if arena, ok = tb.GetInto(l.IP, &got[i], arena); !ok {
			t.Fatalf("%v: not found", l.IP)
		}
	}
	if string(arena[:3]) != "abc" {
		t.Fatalf("the arena's first bytes became %q", arena[:3])
	}
	for i, l := range want {
		if !sameLease(&got[i], l) {
			t.Errorf("%v: got\n%+v\nwant\n%+v", l.IP, got[i], *l)
		}
	}
	got[0].HWAddr[5] = 0xff
	if again := tb.Get(want[0].IP); !sameLease(again, want[0]) {
		t.Fatal("the table changed with a record read into the caller's memory")
	}
	n := len(arena)
	var l Lease
	if a, ok := tb.GetInto(netip.MustParseAddr("10.0.0.9"), &l, arena); ok || len(a) != n || l.IP.IsValid() {
		t.Fatalf("an absent address: ok %v, arena %d bytes (was %d), record %+v", ok, len(a), n, l)
	}
}

func TestTablePutReplacesAndKeepsSlots(t *testing.T) {
	tb := NewTable()
	for i := range 3 * chunkRecords / 2 { // across a chunk boundary
		tb.Put(&Lease{IP: AddrFromUint32(0x0a000000 + uint32(i) + 1), State: Free})
	}
	l := full("10.0.0.9")
	tb.Put(l)
	n := tb.Len()
	l.State, l.Hostname, l.RelayInfo = Released, "", nil
	tb.Put(l)
	if tb.Len() != n {
		t.Fatalf("replacing a record changed Len: %d, was %d", tb.Len(), n)
	}
	if got := tb.Get(l.IP); !sameLease(got, l) {
		t.Fatalf("after replacing: %+v", got)
	}
	last := AddrFromUint32(uint32(0x0a000000 + 3*chunkRecords/2))
	if got := tb.Get(last); got == nil || got.State != Free {
		t.Fatalf("the last record of the second chunk: %+v", got)
	}
	if tb.Get(netip.MustParseAddr("10.255.0.1")) != nil || tb.Has(netip.MustParseAddr("10.255.0.1")) {
		t.Fatal("an address never stored has a record")
	}
	if tb.Has(netip.MustParseAddr("2001:db8::1")) {
		t.Fatal("an IPv6 address has a record")
	}
}

// Unchanged byte fields keep the record's string: a renewal, an ack or a
// horizon costs no allocation for them.
func TestTablePutKeepsUnchangedBytes(t *testing.T) {
	tb := NewTable()
	l := full("10.0.0.1")
	tb.Put(l)
	allocs := testing.AllocsPerRun(100, func() {
		l.Expiry = l.Expiry.Add(time.Second)
		tb.Put(l)
	})
	if allocs != 0 {
		t.Fatalf("Put with the same byte fields allocated %v times", allocs)
	}
	l.Hostname = "renamed"
	tb.Put(l)
	if got := tb.Get(l.IP); got.Hostname != "renamed" || !bytes.Equal(got.RelayInfo, l.RelayInfo) {
		t.Fatalf("after a new hostname: %+v", got)
	}
}

func TestTableRange(t *testing.T) {
	tb := NewTable()
	now := time.Now()
	for i := range 10 {
		st := Active
		if i%2 == 1 {
			st = Free
		}
		tb.Put(&Lease{IP: AddrFromUint32(0x0a000001 + uint32(i)), State: st, Expiry: now.Add(time.Duration(i) * time.Minute),
			HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}})
	}
	var all, active []netip.Addr
	tb.Range(nil, func(l *Lease) bool { all = append(all, l.IP); return true })
	if len(all) != 10 || all[0] != AddrFromUint32(0x0a000001) || all[9] != AddrFromUint32(0x0a00000a) {
		t.Fatalf("Range visited %v", all)
	}
	tb.Range(func(b *Brief) bool { return b.State == Active && b.Expiry.After(now.Add(3*time.Minute)) }, func(l *Lease) bool {
		if l.HWAddr[5] != byte(l.IP.As4()[3]-1) {
			t.Errorf("%s has the byte fields of another record: %v", l.IP, l.HWAddr)
		}
		active = append(active, l.IP)
		return len(active) < 2
	})
	if len(active) != 2 || active[0] != AddrFromUint32(0x0a000005) || active[1] != AddrFromUint32(0x0a000007) {
		t.Fatalf("Range with a filter, stopped after two: %v", active)
	}
	// Put from inside Range (what the slow path's scans do).
	tb.Range(func(b *Brief) bool { return b.State == Free }, func(l *Lease) bool {
		c := l.Clone()
		c.State = Backup
		tb.Put(c)
		return true
	})
	n := 0
	tb.Range(func(b *Brief) bool { return b.State == Backup }, func(*Lease) bool { n++; return true })
	if n != 5 {
		t.Fatalf("%d records changed to BACKUP from inside Range, want 5", n)
	}
}

func TestTableSetDurableHorizon(t *testing.T) {
	tb := NewTable()
	l := full("10.0.0.1")
	tb.Put(l)
	h := l.Horizon.Add(time.Minute)
	c := l.Clone()
	c.DurableHorizon = h
	tb.SetDurableHorizon(c)
	other := c.Clone()
	other.IP = netip.MustParseAddr("10.0.0.2")
	tb.SetDurableHorizon(other) // no record: nothing happens
	if got := tb.Get(l.IP); !got.DurableHorizon.Equal(h) || !got.Horizon.Equal(l.Horizon) {
		t.Fatalf("durable horizon %v (horizon %v), want %v", got.DurableHorizon, got.Horizon, h)
	}
	if tb.Len() != 1 {
		t.Fatalf("Len %d", tb.Len())
	}
	// A version of another binding sets no horizon: another client's
	// (by client identifier, or by hardware address without one), the
	// same client's of another epoch, or an active one landing after the
	// record has ended; a zero horizon is always taken. The epoch is
	// kept with the record.
	later := h.Add(time.Hour)
	byHW := func(l *Lease) *Lease { l.ClientID = nil; return l }
	for _, c := range []struct {
		name   string
		record *Lease // as the table has it
		landed func(c *Lease)
		want   time.Time
	}{
		{"another client-id", full("10.0.0.1"), func(c *Lease) { c.ClientID = []byte{1, 2, 0, 0, 0, 0, 8} }, h},
		{"the same client-id, another chaddr", full("10.0.0.1"), func(c *Lease) { c.HWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9} }, later},
		{"another chaddr", byHW(full("10.0.0.1")), func(c *Lease) { c.HWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 8} }, h},
		{"another hardware type", byHW(full("10.0.0.1")), func(c *Lease) { c.HWType = 6 }, h},
		{"the same chaddr", byHW(full("10.0.0.1")), func(c *Lease) {}, later},
		{"the same client's earlier binding", full("10.0.0.1"), func(c *Lease) { c.Epoch-- }, h},
		{"a client-id now", byHW(full("10.0.0.1")), func(c *Lease) { c.ClientID = []byte{1} }, h},
		{"the record ended", func() *Lease { l := full("10.0.0.1"); l.State = Expired; return l }(), func(c *Lease) {}, h},
		{"zero, from another client", full("10.0.0.1"), func(c *Lease) { c.ClientID = []byte{1}; c.DurableHorizon = time.Time{} }, time.Time{}},
	} {
		rec := c.record
		rec.DurableHorizon, rec.Epoch = h, 7
		tb.Put(rec)
		if e := tb.Get(rec.IP).Epoch; e != 7 {
			t.Fatalf("epoch %d kept, want 7", e)
		}
		v := rec.Clone()
		v.State, v.DurableHorizon = Active, later
		c.landed(v)
		tb.SetDurableHorizon(v)
		if got := tb.Get(rec.IP).DurableHorizon; !got.Equal(c.want) {
			t.Errorf("%s: durable horizon %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAddrUint32(t *testing.T) {
	for _, c := range []struct {
		a netip.Addr
		v uint32
	}{
		{netip.MustParseAddr("10.1.2.3"), 0x0a010203},
		{netip.MustParseAddr("255.255.255.255"), 0xffffffff},
		{netip.Addr{}, 0},
		{netip.MustParseAddr("::1"), 0},
	} {
		if v := AddrUint32(c.a); v != c.v {
			t.Errorf("AddrUint32(%v) = %#x, want %#x", c.a, v, c.v)
		}
	}
	if a := AddrFromUint32(0x0a010203); a != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("AddrFromUint32: %v", a)
	}
}

// BenchmarkTable: the cost of a lookup and a store, beside the memory a
// record takes (bytes/record, from the heap before and after).
func BenchmarkTableGetPut(b *testing.B) {
	tb := NewTable()
	const n = 1 << 16
	for i := range n {
		l := full("10.0.0.1")
		l.IP = AddrFromUint32(0x0a000000 + uint32(i))
		tb.Put(l)
	}
	b.ResetTimer()
	for i := range b.N {
		l := tb.Get(AddrFromUint32(0x0a000000 + uint32(i%n)))
		l.Expiry = l.Expiry.Add(time.Second)
		tb.Put(l)
	}
}

// Addresses scattered over the whole space, stored and replaced in random
// order, are found as a map keyed by address finds them, and unknown ones
// are not.
func TestTableScatteredAddresses(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := NewTable()
	want := map[uint32]State{}
	for range 20000 {
		a := rng.Uint32() | 1 // never 0.0.0.0
		if rng.IntN(4) == 0 {
			a = 0x0a000000 + uint32(rng.IntN(1024)) + 1 // a dense pool too
		}
		st := State(1 + rng.IntN(7))
		tb.Put(&Lease{IP: AddrFromUint32(a), State: st})
		want[a] = st
	}
	if tb.Len() != len(want) {
		t.Fatalf("Len %d, want %d", tb.Len(), len(want))
	}
	for a, st := range want {
		if l := tb.Get(AddrFromUint32(a)); l == nil || l.State != st || AddrUint32(l.IP) != a {
			t.Fatalf("%s: %+v, want state %v", AddrFromUint32(a), l, st)
		}
	}
	for range 20000 {
		a := rng.Uint32()
		if _, ok := want[a]; !ok && tb.Has(AddrFromUint32(a)) {
			t.Fatalf("%s found, never stored", AddrFromUint32(a))
		}
	}
}

// TestTableGetInline: a record whose byte fields fit beside the Lease
// (getInline bytes) comes back in one allocation, a longer one in two,
// and either way each field is its own: appending to one does not run
// into the next.
func TestTableGetInline(t *testing.T) {
	tb := NewTable()
	for _, n := range []int{0, 1, getInline - 13, getInline - 12, getInline - 11, 500} {
		l := &Lease{IP: netip.MustParseAddr("10.0.0.9"), State: Active, HWType: 1,
			HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}, ClientID: []byte{1, 2, 0, 0, 0, 0}, RelayInfo: bytes.Repeat([]byte{7}, n)}
		if n == 0 {
			l.RelayInfo = nil
		}
		tb.Put(l)
		got := tb.Get(l.IP)
		if !sameLease(got, l) {
			t.Fatalf("%d bytes of relay info: got\n%+v\nwant\n%+v", n, got, l)
		}
		_ = append(got.HWAddr, 0xaa, 0xaa, 0xaa)
		_ = append(got.ClientID, 0xbb, 0xbb)
		if !sameLease(got, l) {
			t.Fatalf("%d bytes of relay info: appending to a field changed another: %+v", n, got)
		}
		want := 1.0
		if 6+6+n > getInline {
			want = 2
		}
		if a := testing.AllocsPerRun(20, func() { got = tb.Get(l.IP) }); a != want {
			t.Errorf("%d bytes of byte fields: Get makes %v allocations, want %v", 12+n, a, want)
		}
	}
}

// TestTableHolder agrees with Get and ClientKey for every kind of client
// key, including keys that differ only in their kind, type or length.
func TestTableHolder(t *testing.T) {
	tb := NewTable()
	hw := net.HardwareAddr{2, 0, 0, 0, 0, 5}
	recs := []*Lease{
		{IP: netip.MustParseAddr("10.0.0.1"), State: Active, HWType: 1, HWAddr: hw},
		{IP: netip.MustParseAddr("10.0.0.2"), State: Backup, HWType: 1, HWAddr: hw, ClientID: []byte{1, 2, 0, 0, 0, 0, 5}},
		{IP: netip.MustParseAddr("10.0.0.3"), State: Released, HWType: 6, HWAddr: hw, Hostname: "h", RelayInfo: []byte{1, 1, 1}},
		{IP: netip.MustParseAddr("10.0.0.4"), State: Free},
		{IP: netip.MustParseAddr("10.0.0.5"), State: Active, HWType: 1, HWAddr: hw, ClientID: []byte("h\\x01")},
	}
	for _, l := range recs {
		tb.Put(l)
	}
	keys := []string{"", "h", "c", ClientKey(nil, 1, hw), ClientKey(nil, 6, hw), ClientKey(nil, 1, hw[:5]),
		ClientKey([]byte{1, 2, 0, 0, 0, 0, 5}, 1, hw), ClientKey([]byte{1, 2, 0, 0, 0, 0}, 1, hw), ClientKey(nil, 0, nil),
		ClientKey([]byte("h\\x01"), 1, nil), "h\\x01" + string(hw)}
	for _, l := range recs {
		for _, k := range keys {
			st, same, ok := tb.Holder(l.IP, k)
			if !ok || st != l.State || same != (tb.Get(l.IP).ClientKey() == k) {
				t.Errorf("Holder(%s, %q) = %v, %v, %v; record %+v", l.IP, k, st, same, ok, l)
			}
		}
	}
	if _, _, ok := tb.Holder(netip.MustParseAddr("10.0.0.9"), keys[3]); ok {
		t.Error("Holder of an address without a record")
	}
	if a := testing.AllocsPerRun(20, func() { tb.Holder(recs[1].IP, keys[6]) }); a != 0 {
		t.Errorf("Holder allocates %v times", a)
	}
}

func TestTableBrief(t *testing.T) {
	tb := NewTable()
	l := full("10.0.0.1")
	tb.Put(l)
	c := l.Clone()
	c.DurableHorizon = l.Horizon.Add(time.Minute)
	tb.SetDurableHorizon(c)
	b, ok := tb.Brief(l.IP)
	want := Brief{IP: l.IP, State: l.State, IfIndex: l.IfIndex, Expiry: l.Expiry, DurableHorizon: l.Horizon.Add(time.Minute), StateAt: l.StateAt}
	if !ok || b.IP != want.IP || b.State != want.State || b.IfIndex != want.IfIndex || !b.Expiry.Equal(want.Expiry) ||
		!b.DurableHorizon.Equal(want.DurableHorizon) || !b.StateAt.Equal(want.StateAt) {
		t.Fatalf("Brief = %+v, %v; want %+v", b, ok, want)
	}
	if _, ok := tb.Brief(netip.MustParseAddr("10.0.0.2")); ok {
		t.Fatal("Brief of an address without a record")
	}
}
