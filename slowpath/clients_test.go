package slowpath

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func TestClientIndex(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	hw := []byte{2, 0, 0, 0, 0, 1}
	hk := lease.ClientKey(nil, 1, hw)
	cidKey := lease.ClientKey([]byte{1, 2, 0, 0, 0, 0, 1}, 1, hw)

	t.Run("client without client-id", func(t *testing.T) {
		x := newClientIndex()
		x.setLatest(hk, a)
		x.addHW(hk, a)
		if len(x.hw) != 0 || len(x.hwMore) != 0 {
			t.Fatalf("the latest address is kept twice: hw %v, more %v", x.hw, x.hwMore)
		}
		if got := x.hwAddrs(nil, hk); !slices.Equal(got, []netip.Addr{a}) {
			t.Fatalf("by hardware: %v", got)
		}
		// It moves to another subnet: both addresses stay bound to the
		// hardware address, the new one is the latest.
		x.setLatest(hk, b)
		x.addHW(hk, b)
		if ip, ok := x.latestOf(hk); !ok || ip != b {
			t.Fatalf("latest %v %v", ip, ok)
		}
		if got := x.hwAddrs(nil, hk); !slices.Equal(got, []netip.Addr{a, b}) {
			t.Fatalf("by hardware after the move: %v", got)
		}
		// And back: each address once.
		x.setLatest(hk, a)
		x.addHW(hk, a)
		if got := x.hwAddrs(nil, hk); !slices.Equal(got, []netip.Addr{a, b}) {
			t.Fatalf("by hardware after moving back: %v", got)
		}
		x.setLatest(hk, b)
		x.forget(hk, a) // not its latest: nothing
		if ip, ok := x.latestOf(hk); !ok || ip != b {
			t.Fatalf("forgetting an older address dropped the latest: %v %v", ip, ok)
		}
		x.forget(hk, b)
		if _, ok := x.latestOf(hk); ok {
			t.Fatal("forgotten latest still found")
		}
	})

	t.Run("client with client-id", func(t *testing.T) {
		x := newClientIndex()
		x.setLatest(cidKey, a)
		x.addHW(hk, a)
		if got := x.hwAddrs(nil, hk); !slices.Equal(got, []netip.Addr{a}) {
			t.Fatalf("by hardware: %v", got)
		}
		if _, ok := x.latestOf(hk); ok {
			t.Fatal("the hardware key has a latest address of its own")
		}
		x.addHW(hk, b)
		x.addHW(hk, b) // twice: kept once
		x.addHW(hk, c)
		if got := x.hwAddrs(nil, hk); !slices.Equal(got, []netip.Addr{a, b, c}) {
			t.Fatalf("by hardware, three: %v", got)
		}
	})

	t.Run("at most hwMax by hardware", func(t *testing.T) {
		x := newClientIndex()
		for i := range hwMax + 3 {
			x.addHW(hk, lease.AddrFromUint32(0x0a000001+uint32(i)))
		}
		got := x.hwAddrs(nil, hk)
		if len(got) != hwMax || got[0] != lease.AddrFromUint32(0x0a000004) {
			t.Fatalf("kept %v, want the last %d", got, hwMax)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		x := newClientIndex()
		if _, ok := x.latestOf(cidKey); ok {
			t.Fatal("latest of an unknown client")
		}
		if got := x.hwAddrs(nil, hk); len(got) != 0 {
			t.Fatalf("by hardware, unknown: %v", got)
		}
	})
}

// keyHash hashes the key lease.ClientKey makes, as hash does, for both
// kinds of key.
func TestKeyHashIsTheKeysHash(t *testing.T) {
	x := newClientIndex()
	for _, c := range []struct {
		cid    []byte
		htype  uint8
		chaddr []byte
	}{
		{nil, 1, []byte{2, 0, 0, 0, 0, 1}},
		{[]byte{}, 6, []byte{2, 0, 0, 0, 0, 1}},
		{[]byte{1, 2, 0, 0, 0, 0, 1}, 1, []byte{2, 0, 0, 0, 0, 1}},
		{[]byte("a client-id longer than maphash's own buffer of one hundred and twenty-eight bytes, to cross it......................................"), 1, nil},
	} {
		k := lease.ClientKey(c.cid, c.htype, c.chaddr)
		h, hw := x.keyHash(c.cid, c.htype, c.chaddr)
		if h != x.hash(k) || hw != isHWKey(k) {
			t.Errorf("key %q: keyHash %x (hardware %v), hash %x (hardware %v)", k, h, hw, x.hash(k), isHWKey(k))
		}
	}
}
