package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// checkStoredRecord holds an arbitrary stored value to the record format's
// promises: a value that decodes re-encodes to the canonical form of the
// same bytes, and that encoding decodes to a DeepEqual record.
//
// The canonical form is the value's prefix that the decoder read, with the
// flags byte (offset 3) reduced to the bits that mean something (bit 0,
// PartnerPending), and a time of 0001-01-01 UTC (Go's zero time, "not set")
// written as 0, the encoding of "not set": the decoder ignores trailing
// bytes and unknown flag bits, so a record written by a later version with
// more fields or flags still loads.
func checkStoredRecord(t *testing.T, b []byte) {
	t.Helper()
	l := &lease.Lease{IP: ipN(1)}
	if err := l.UnmarshalBinary(b); err != nil {
		return
	}
	again, err := l.MarshalBinary()
	if err != nil {
		t.Fatalf("an accepted record does not encode: %v\n%+v", err, l)
	}
	if len(again) > len(b) {
		t.Fatalf("re-encoding is longer (%d bytes) than the record it came from (%d)", len(again), len(b))
	}
	canon := bytes.Clone(b[:len(again)])
	canon[3] &= 1
	for i := 4; i < 4+7*8; i += 8 {
		// 0001-01-01 UTC is the zero time: "not set", written as 0.
		if time.Unix(int64(binary.BigEndian.Uint64(canon[i:])), 0).IsZero() {
			binary.BigEndian.PutUint64(canon[i:], 0)
		}
	}
	if !bytes.Equal(again, canon) {
		t.Fatalf("re-encoding differs from the record read:\nread  % x\nwrote % x", canon, again)
	}
	l2 := &lease.Lease{IP: ipN(1)}
	if err := l2.UnmarshalBinary(again); err != nil {
		t.Fatalf("re-encoding of an accepted record does not decode: %v", err)
	}
	if !reflect.DeepEqual(l, l2) {
		t.Fatalf("decode, encode, decode changed the record:\n%+v\n%+v", l, l2)
	}
}

// genLease builds a valid record from arbitrary bytes, as the server
// could hold it: times at second precision (the record's precision) or
// unset, addresses IPv4 or unset, byte fields nil when empty, a hardware
// address of at most 16 bytes.
func genLease(b []byte) *lease.Lease {
	g := gen{b: b}
	l := &lease.Lease{
		IP:             netip.AddrFrom4([4]byte{10, g.u8(), g.u8(), g.u8()}),
		State:          lease.State(1 + g.u8()%7),
		HWType:         g.u8(),
		PartnerPending: g.u8()&1 != 0,
	}
	for _, tp := range []*time.Time{&l.Start, &l.Expiry, &l.CLTT, &l.StateAt, &l.PotExp, &l.AckedExp, &l.Horizon} {
		if s := int64(g.u64()); s != 0 && !time.Unix(s, 0).IsZero() {
			*tp = time.Unix(s, 0)
		}
	}
	l.IfIndex = g.u32()
	l.VLANs = [2]uint16{uint16(g.u32()), uint16(g.u32())}
	for _, a := range []*netip.Addr{&l.GIAddr, &l.ServerID} {
		if v := netip.AddrFrom4([4]byte{g.u8(), g.u8(), g.u8(), g.u8()}); !v.IsUnspecified() {
			*a = v
		}
	}
	l.LastXID = g.u32()
	if hw := g.bytes(16); hw != nil {
		l.HWAddr = net.HardwareAddr(hw)
	}
	l.ClientID = g.bytes(300)
	l.Hostname = string(g.bytes(255))
	l.RelayInfo = g.bytes(255)
	l.VendorClass = g.bytes(255)
	l.ForceRenewKey = g.bytes(64)
	return l
}

// gen reads values off a byte string, zeros once it runs out.
type gen struct{ b []byte }

func (g *gen) take(n int) []byte {
	out := make([]byte, n)
	g.b = g.b[copy(out, g.b):]
	return out
}

func (g *gen) u8() uint8   { return g.take(1)[0] }
func (g *gen) u32() uint32 { return binary.BigEndian.Uint32(g.take(4)) }
func (g *gen) u64() uint64 { return binary.BigEndian.Uint64(g.take(8)) }

// bytes returns up to max bytes (its length from the input), nil for none.
func (g *gen) bytes(max int) []byte {
	n := int(g.u8()) % (max + 1)
	if n == 0 {
		return nil
	}
	return g.take(n)
}

// checkGenerated holds a valid record to an exact round trip: encoding
// and decoding give a DeepEqual record and the same bytes again, and so
// does a trip through the bbolt store.
func checkGenerated(t *testing.T, s *Store, b []byte) {
	t.Helper()
	want := genLease(b)
	enc, err := want.MarshalBinary()
	if err != nil {
		t.Fatalf("a valid record does not encode: %v\n%+v", err, want)
	}
	got := &lease.Lease{IP: want.IP}
	if err := got.UnmarshalBinary(enc); err != nil {
		t.Fatalf("a valid record's encoding does not decode: %v\n%+v", err, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed a valid record:\nwant %+v\ngot  %+v", want, got)
	}
	if again, _ := got.MarshalBinary(); !bytes.Equal(again, enc) {
		t.Fatalf("round trip changed the encoding:\n% x\n% x", enc, again)
	}
	if s == nil {
		return
	}
	if err := s.Put(context.Background(), want); err != nil {
		t.Fatalf("storing a valid record: %v", err)
	}
	stored, err := s.Get(want.IP)
	if err != nil || stored == nil {
		t.Fatalf("reading back %s: %v, %v", want.IP, stored, err)
	}
	if !reflect.DeepEqual(stored, want) {
		t.Fatalf("store round trip changed a valid record:\nwant %+v\ngot  %+v", want, stored)
	}
}

// fuzzStore opens a store for a fuzz target's lifetime.
func fuzzStore(f *testing.F) *Store {
	s, err := Open(filepath.Join(f.TempDir(), "fuzz.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Error(err)
		}
		s.Close()
	})
	return s
}
