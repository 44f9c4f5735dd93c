package lease

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestRecordHoldsNoPointer: records live in memory the collector does not
// see (chunks.go), so a pointer in one (a string, a slice, a map) would be
// freed under it. A field that adds one fails here, not in production.
func TestRecordHoldsNoPointer(t *testing.T) {
	var check func(path string, ty reflect.Type)
	check = func(path string, ty reflect.Type) {
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				check(path+"."+ty.Field(i).Name, ty.Field(i).Type)
			}
		case reflect.Array:
			check(path+"[]", ty.Elem())
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		default:
			t.Errorf("record%s is a %s: records hold no pointers", path, ty.Kind())
		}
	}
	check("", reflect.TypeFor[record]())
}

// mapped reports whether the address p lies in one of this process's
// mappings (/proc/self/maps).
func mapped(t *testing.T, p uintptr) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err == nil && p >= lo && p < hi {
			return true
		}
	}
	return false
}

// TestTableRecordsAreMappedAndUnmapped: a table's records are in the
// mappings it made, which go when the table is collected.
func TestTableRecordsAreMappedAndUnmapped(t *testing.T) {
	tb := NewTable()
	l := full("10.0.0.1")
	for i := range chunkRecords + 1 { // two chunks
		l.IP = AddrFromUint32(0x0a000000 + uint32(i) + 1)
		tb.Put(l)
	}
	if tb.maps == nil || len(tb.maps.mem) != 2 {
		t.Fatalf("the table mapped %v", tb.maps)
	}
	r, _ := tb.at(0)
	first := uintptr(unsafe.Pointer(r))
	if m := tb.maps.mem[0]; first != uintptr(unsafe.Pointer(&m[0])) {
		t.Fatalf("the first record is at %#x, not in the first mapping at %p", first, &m[0])
	}
	if got := tb.Get(AddrFromUint32(0x0a000000 + uint32(chunkRecords) + 1)); !sameLease(got, l) {
		t.Fatalf("the second chunk's record: %+v", got)
	}
	if !mapped(t, first) {
		t.Fatalf("%#x is not mapped while the table lives", first)
	}
	m := tb.maps
	tb = nil
	// Cleanups run on a goroutine of their own after a collection. (The
	// address itself may be mapped again by then, for something else.)
	for deadline := time.Now().Add(10 * time.Second); !m.unmapped.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the table's mappings are still there after it was collected")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if m.mem != nil {
		t.Fatalf("unmapped, but %d mappings are still listed", len(m.mem))
	}
}

// TestTableUnderCollections reads and writes records while the collector
// runs, from a table only the test's goroutine holds, as the server does:
// nothing read is torn and no mapping goes while in use.
func TestTableUnderCollections(t *testing.T) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer close(done)
	for round := range 20 {
		tb := NewTable()
		l := full("10.0.0.1")
		for i := range 5000 {
			l.IP = AddrFromUint32(0x0a000000 + uint32(i) + 1)
			l.Hostname = fmt.Sprintf("host-%d-%d", round, i)
			tb.Put(l)
		}
		for i := range 5000 {
			got := tb.Get(AddrFromUint32(0x0a000000 + uint32(i) + 1))
			if want := fmt.Sprintf("host-%d-%d", round, i); got == nil || got.Hostname != want {
				t.Fatalf("round %d, record %d: %+v, want hostname %s", round, i, got, want)
			}
		}
	}
}
