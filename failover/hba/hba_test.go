package hba

import (
	"strings"
	"testing"
)

func TestMixIsAPermutation(t *testing.T) {
	var seen [256]bool
	for _, v := range mix {
		if seen[v] {
			t.Fatalf("%d twice in the mixing table", v)
		}
		seen[v] = true
	}
}

// TestHash: vectors worked by hand from RFC 3074 §5 (h = len; from the
// last byte: h = T[h ^ byte]).
func TestHash(t *testing.T) {
	for _, c := range []struct {
		key  []byte
		want uint8
	}{
		{nil, 0},            // no byte: the length
		{[]byte{0}, 175},    // T[1^0] = T[1]
		{[]byte{1}, 251},    // T[1^1] = T[0]
		{[]byte{0, 0}, 150}, // T[2] = 119, T[119] = 150
	} {
		if got := Hash(c.key); got != c.want {
			t.Errorf("Hash(%v) = %d, want %d", c.key, got, c.want)
		}
	}
	// Over many MACs the buckets spread: split 128 gives each side about half.
	a, prim := Split(128), 0
	for i := 0; i < 10000; i++ {
		mac := []byte{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		if a.Mine(true, Key(nil, mac)) {
			prim++
		}
		if a.Mine(true, mac) == a.Mine(false, mac) {
			t.Fatalf("%x is both partners' or neither's", mac)
		}
	}
	if prim < 4500 || prim > 5500 {
		t.Errorf("split 128: primary has %d of 10000 clients", prim)
	}
}

func TestSplitAndParse(t *testing.T) {
	if s := Split(128).String(); s != strings.Repeat("ff:", 16)+strings.TrimSuffix(strings.Repeat("00:", 16), ":") {
		t.Fatalf("split 128 = %s", s)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 128, 255, 256, 300, -1} {
		a := Split(n)
		want := min(max(n, 0), 256)
		if a.Count() != want {
			t.Errorf("Split(%d) gives the primary %d buckets, want %d", n, a.Count(), want)
		}
		if want > 0 && !a.Primary(uint8(want-1)) || want < 256 && a.Primary(uint8(want)) {
			t.Errorf("Split(%d): wrong boundary", n)
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Errorf("Parse(String()) of split %d: %v", n, err)
		}
	}
	if a := Split(1); a[0] != 0x01 {
		t.Errorf("bucket 0 is bit 0x01 of byte 0 (ISC's order), got %#x", a[0])
	}
	for _, bad := range []string{"", "ff", strings.Repeat("ff:", 32) + "ff", strings.Repeat("zz:", 31) + "zz", strings.Repeat("fff:", 31) + "ff"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
