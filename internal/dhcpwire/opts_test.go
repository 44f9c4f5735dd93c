package dhcpwire

import (
	"bytes"
	"testing"
)

// withOptions is a request carrying options 1..n (each code's value is the
// code itself), then END.
func withOptions(n int) []byte {
	b := make([]byte, MinLen)
	b[0], b[1], b[2] = BootRequest, 1, 6
	copy(b[HeaderLen:], MagicCookie[:])
	b = append(b, OptMessageType, 1, Request)
	for c := 1; c <= n; c++ {
		if c == OptMessageType || c == OptOverload {
			b = append(b, OptPad)
			continue
		}
		b = append(b, byte(c), 1, byte(c))
	}
	return append(b, OptEnd)
}

// TestParseOptionCounts: a message with fewer, as many or more options than
// a Packet holds inline parses the same, and a Packet parsed again (one
// with many options, then one with few, then many) forgets the last one's.
func TestParseOptionCounts(t *testing.T) {
	var reused Packet
	for _, n := range []int{0, 3, inlineOpts - 1, inlineOpts, inlineOpts + 1, 40, 2, 60} {
		for _, p := range []*Packet{new(Packet), &reused} {
			if err := p.Parse(withOptions(n)); err != nil {
				t.Fatalf("%d options: %v", n, err)
			}
			if p.MessageType() != Request {
				t.Fatalf("%d options: message type %d", n, p.MessageType())
			}
			for c := 1; c <= 60; c++ {
				if c == OptMessageType || c == OptOverload {
					continue
				}
				v, ok := p.Option(uint8(c))
				if want := c <= n; ok != want || ok && !bytes.Equal(v, []byte{byte(c)}) {
					t.Fatalf("%d options: option %d = %v, %v", n, c, v, ok)
				}
			}
		}
	}
}

// TestParseAllocations: parsing a typical request allocates nothing: its
// options fit in the Packet, and no field of a Packet points into the
// Packet itself (which would move every Packet to the heap), so one
// declared in a function can stay on its stack.
func TestParseAllocations(t *testing.T) {
	b := withOptions(8)
	found := 0
	if n := testing.AllocsPerRun(100, func() {
		var p Packet
		if p.Parse(b) != nil {
			panic("parse failed")
		}
		if _, ok := p.Option(8); ok {
			found++
		}
	}); n != 0 {
		t.Fatalf("a Packet and its Parse: %v allocations per message, want 0", n)
	}
	if found == 0 {
		t.Fatal("option 8 not found")
	}
}

// TestResetKeepsOptionMemory: a reset Packet reads as empty and holds no
// reference to the buffer it was parsed from, and parsing a message with
// many options into it again allocates nothing.
func TestResetKeepsOptionMemory(t *testing.T) {
	b := withOptions(40)
	p := new(Packet)
	if err := p.Parse(b); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if p.Raw != nil || p.MessageType() != 0 || p.Has(1) || len(p.Codes()) != 0 || p.XID != 0 {
		t.Fatalf("after Reset: %+v", p)
	}
	for _, o := range p.more[:cap(p.more)] {
		if o.val != nil {
			t.Fatal("Reset kept a slice of the old buffer")
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		p.Reset()
		if p.Parse(b) != nil {
			panic("parse failed")
		}
	}); n != 0 {
		t.Fatalf("parsing 40 options into a reset Packet: %v allocations, want 0", n)
	}
	if v, ok := p.Option(39); !ok || !bytes.Equal(v, []byte{39}) {
		t.Fatalf("option 39 after the reparse: %v %v", v, ok)
	}
}
