// Package hba is load balancing between failover partners: the RFC 3074
// hash of a client and the hash bucket assignment that says which partner
// answers it, with the bit order and meaning ISC dhcpd uses (and Kea's HA
// hook hashes the same way), so that a mixed pair agrees on every client.
package hba

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// mix is the RFC 3074 §5 permutation of 0..255, in index order.
var mix = [256]uint8{
	251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
	31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
	59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
	180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
	40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
	207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
	20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
	230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
	39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
	82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
	195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
	137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
	56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
	33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
	96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
	216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
}

// Hash is the RFC 3074 bucket of key: a Pearson hash seeded with the key's
// length, over the key from its last byte to its first.
func Hash(key []byte) uint8 {
	h := uint8(len(key))
	for i := len(key) - 1; i >= 0; i-- {
		h = mix[h^key[i]]
	}
	return h
}

// Key is what the hash reads for a client: option 61's data (type byte
// included) when it sent one, else its hardware address (chaddr's first
// hlen bytes, without htype).
func Key(clientID, chaddr []byte) []byte {
	if len(clientID) > 0 {
		return clientID
	}
	return chaddr
}

// Assignment is a hash bucket assignment: bucket b is the primary's when
// bit b is set, counting from the least significant bit of byte 0 (ISC's
// meaning and order; draft-12 §5.3 gives set bits to the secondary, but an
// ISC pair, and so a pair with one, uses this).
type Assignment [32]byte

// Split gives buckets 0..n-1 to the primary (dhcpd's `split n`; n is
// clamped to 0..256).
func Split(n int) Assignment {
	var a Assignment
	for b := 0; b < min(max(n, 0), 256); b++ {
		a[b>>3] |= 1 << (b & 7)
	}
	return a
}

// Parse reads dhcpd's `hba` form: 32 colon-separated hex bytes.
func Parse(s string) (Assignment, error) {
	var a Assignment
	parts := strings.Split(s, ":")
	if len(parts) != 32 {
		return a, fmt.Errorf("hash bucket assignment %q: %d bytes, want 32 colon-separated hex bytes", s, len(parts))
	}
	for i, p := range parts {
		v, err := hex.DecodeString(p)
		if err != nil || len(v) != 1 {
			return a, fmt.Errorf("hash bucket assignment: byte %d is %q, want two hex digits", i+1, p)
		}
		a[i] = v[0]
	}
	return a, nil
}

// String is the form Parse reads.
func (a Assignment) String() string {
	parts := make([]string, len(a))
	for i, v := range a {
		parts[i] = fmt.Sprintf("%02x", v)
	}
	return strings.Join(parts, ":")
}

// Primary reports whether bucket b is the primary's.
func (a Assignment) Primary(b uint8) bool { return a[b>>3]&(1<<(b&7)) != 0 }

// Count is the number of buckets the primary has.
func (a Assignment) Count() int {
	n := 0
	for b := 0; b < 256; b++ {
		if a.Primary(uint8(b)) {
			n++
		}
	}
	return n
}

// Mine reports whether the client with this key is answered by the
// primary (primary true) or the secondary (primary false).
func (a Assignment) Mine(primary bool, key []byte) bool {
	return a.Primary(Hash(key)) == primary
}
