package pktio

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestAppendIPv4UDPChecksums(t *testing.T) {
	src, dst := netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("10.77.0.1")
	for _, payload := range [][]byte{nil, []byte("odd"), make([]byte, 300)} {
		prefix := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0}
		b := AppendIPv4UDP(append([]byte{}, prefix...), src, dst, 67, 68, payload)
		if string(b[:len(prefix)]) != string(prefix) {
			t.Fatal("prefix overwritten")
		}
		p := b[len(prefix):]
		if string(p) != string(BuildIPv4UDP(src, dst, 67, 68, payload)) {
			t.Fatal("appended packet differs from a built one")
		}
		if len(p) != 28+len(payload) || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			t.Fatalf("lengths: %d bytes, header says %d", len(p), binary.BigEndian.Uint16(p[2:]))
		}
		if fold(sum(p[:20], 0)) != 0xffff {
			t.Fatal("IP header checksum does not verify")
		}
		s4, d4 := src.As4(), dst.As4()
		ps := sum(d4[:], sum(s4[:], 0)) + 17 + uint32(8+len(payload))
		if fold(sum(p[20:], ps)) != 0xffff {
			t.Fatal("UDP checksum does not verify")
		}
	}
}
