package auth

import (
	"bytes"
	"errors"
	"math/bits"
	"testing"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// dhcpcdDelayedAuth is option 90's data as dhcpcd 9.4.1 sends it in a
// DISCOVER when configured for RFC 3118 delayed authentication (protocol
// 1, HMAC-MD5, RDM 0, replay 0, no information yet), captured by
// TestDhcpcdAuthOptionParses.
var dhcpcdDelayedAuth = []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func FuzzParseAuth(f *testing.F) {
	f.Add(dhcpcdDelayedAuth)
	f.Add(AppendKeyOption(nil, 0x0102030405060708, Key{1, 2, 3})[2:])
	f.Add(AppendDigestOption(nil, 1<<63)[2:])
	f.Add([]byte{3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3})               // type 3
	f.Add([]byte{240, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}) // pre-RFC protocol, short key
	f.Add([]byte{3, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAuth(data)
		if err != nil {
			if !errors.Is(err, ErrAuthShort) && !errors.Is(err, ErrAuthLong) {
				t.Fatalf("ParseAuth(% x): unexpected error %v", data, err)
			}
			return
		}
		enc, err := AppendAuth(nil, a)
		if err != nil || !bytes.Equal(enc, append([]byte{dhcpwire.OptAuthentication, byte(len(data))}, data...)) {
			t.Fatalf("re-encoding % x gave % x, %v", data, enc, err)
		}
		n, err := a.Nonce()
		if err != nil {
			for _, e := range []error{ErrProtocol, ErrAlgorithm, ErrRDM, ErrInfoLen, ErrInfoType} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("Nonce(% x): unexpected error %v", data, err)
		}
		if enc := appendNonce(nil, n.Replay, n.Type, &n.Value); !bytes.Equal(enc[2:], data) {
			t.Fatalf("nonce % x re-encoded as % x", data, enc[2:])
		}
		// In a message, Sign accepts exactly the digest options, and what
		// it signs verifies.
		msg := dhcpwire.AppendHeader(nil, dhcpwire.Header{Op: dhcpwire.BootReply})
		msg = append(append(msg, enc...), dhcpwire.OptEnd)
		var key Key
		copy(key[:], data)
		if err := Sign(msg, key); (err == nil) != (n.Type == InfoTypeDigest) {
			t.Fatalf("Sign of a type %d option: %v", n.Type, err)
		}
		if n.Type == InfoTypeDigest {
			if _, err := Verify(msg, key); err != nil {
				t.Fatalf("Verify after Sign: %v", err)
			}
		}
	})
}

func FuzzParseNonceCapable(f *testing.F) {
	f.Add(dhcpcdNonceCapable[2:])
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 255, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseNonceCapable(data)
		if len(data) == 0 {
			if !errors.Is(err, ErrNonceCapable) {
				t.Fatalf("empty 145: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseNonceCapable(% x): %v", data, err)
		}
		distinct := map[byte]bool{}
		for _, a := range data {
			distinct[a] = true
			if !s.Has(a) {
				t.Fatalf("%d listed but not in the set", a)
			}
		}
		n := 0
		for _, w := range s {
			n += bits.OnesCount64(w)
		}
		if n != len(distinct) {
			t.Fatalf("set of %d for %d distinct algorithms", n, len(distinct))
		}
	})
}

// FuzzSignVerify feeds whole messages to Sign and Verify: they must not
// panic or read out of bounds, a refused Sign must leave the message
// alone, and whatever Sign accepts must verify under the same key and not
// under another.
func FuzzSignVerify(f *testing.F) {
	f.Add(forceRenew(nil, 1, 2), byte(0))
	f.Add(forceRenew(nil, 1, 2)[:270], byte(1))
	f.Add(dhcpwire.AppendHeader(nil, dhcpwire.Header{}), byte(2))
	f.Fuzz(func(t *testing.T, msg []byte, k byte) {
		key := Key{k, 1, 2, 3}
		orig := bytes.Clone(msg)
		if err := Sign(msg, key); err != nil {
			if !bytes.Equal(msg, orig) {
				t.Fatalf("a refused Sign (%v) changed the message", err)
			}
			return
		}
		if _, err := Verify(msg, key); err != nil {
			t.Fatalf("Verify after Sign: %v", err)
		}
		key[15] ^= 1
		if _, err := Verify(msg, key); !errors.Is(err, ErrDigest) {
			t.Fatalf("Verify under another key: %v", err)
		}
	})
}
