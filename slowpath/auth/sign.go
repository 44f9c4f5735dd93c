package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"fmt"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Key is a binding's forcerenew key (RFC 6704's nonce): delivered once in
// an ACK, then the HMAC-MD5 key of every FORCERENEW to that client.
type Key [KeyLen]byte

// NewKey draws a fresh key from crypto/rand. Keys must be unpredictable:
// anyone who can guess one can push the client into renewing.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("forcerenew key: reading crypto/rand: %w", err)
	}
	return k, nil
}

// AppendKeyOption writes option 90 delivering k (type 1), for an ACK to
// a client that sent option 145. replay must come from the server's
// Counter, like every option 90 the server sends.
func AppendKeyOption(b []byte, replay uint64, k Key) []byte {
	return appendNonce(b, replay, InfoTypeKey, (*[KeyLen]byte)(&k))
}

// AppendDigestOption writes option 90 for a FORCERENEW (type 2) with the
// digest zeroed; Sign fills it in once the whole message is written. The
// digest covers every byte after it too (padding included), so Sign must
// come last.
func AppendDigestOption(b []byte, replay uint64) []byte {
	return appendNonce(b, replay, InfoTypeDigest, &[KeyLen]byte{})
}

// Sign computes the HMAC-MD5 of msg under key and writes it into msg's
// option 90, which must be a type-2 (digest) option of the RFC 6704
// protocol. msg must be exactly the bytes that will be sent (the UDP
// payload, any padding after END included), since the client hashes all
// it receives. The computation takes the digest bytes, hops and giaddr as
// zero (RFC 3118: relays change hops and giaddr; dhcpcd zeroes them
// too), without changing them in msg.
func Sign(msg []byte, key Key) error {
	off, _, err := digestOption(msg)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	d := digest(msg, off, &key)
	copy(msg[off:off+DigestLen], d[:])
	return nil
}

// Verify checks msg's option 90 as a client does before it acts on a
// FORCERENEW: the RFC 6704 protocol with a digest (type 2) that matches
// msg under key. It returns the option, whose Replay the caller compares
// with the last one it accepted. Verify does not check the replay counter,
// the xid or the message type: those are the caller's state.
func Verify(msg []byte, key Key) (Nonce, error) {
	off, n, err := digestOption(msg)
	if err != nil {
		return Nonce{}, fmt.Errorf("verifying: %w", err)
	}
	want := digest(msg, off, &key)
	if !hmac.Equal(want[:], msg[off:off+DigestLen]) {
		return n, fmt.Errorf("verifying: %w", ErrDigest)
	}
	return n, nil
}

// digestOption finds msg's one option 90, checks that it is a protocol-3
// digest option and returns the offset of its 16 digest bytes.
func digestOption(msg []byte) (int, Nonce, error) {
	start, l, err := findAuth(msg)
	if err != nil {
		return 0, Nonce{}, err
	}
	n, err := ParseNonce(msg[start : start+l])
	if err != nil {
		return 0, Nonce{}, err
	}
	if n.Type != InfoTypeDigest {
		return 0, Nonce{}, fmt.Errorf("%w: type %d", ErrNotDigest, n.Type)
	}
	// The digest is the last 16 bytes of a NonceDataLen option.
	return start + l - DigestLen, n, nil
}

// findAuth returns the offset and length of the data of msg's option 90,
// looked for in the options field only: the server never overloads
// (option 52) a message it signs.
func findAuth(msg []byte) (start, length int, err error) {
	if len(msg) < dhcpwire.MinLen {
		return 0, 0, fmt.Errorf("%w: %d bytes", dhcpwire.ErrShort, len(msg))
	}
	if [4]byte(msg[dhcpwire.HeaderLen:dhcpwire.MinLen]) != dhcpwire.MagicCookie {
		return 0, 0, dhcpwire.ErrCookie
	}
	start = -1
	for i := dhcpwire.MinLen; i < len(msg); {
		code := msg[i]
		if code == dhcpwire.OptPad {
			i++
			continue
		}
		if code == dhcpwire.OptEnd {
			break
		}
		if i+1 >= len(msg) || i+2+int(msg[i+1]) > len(msg) {
			return 0, 0, fmt.Errorf("option %d at offset %d: %w", code, i, dhcpwire.ErrOptionLen)
		}
		l := int(msg[i+1])
		if code == dhcpwire.OptAuthentication {
			// A second instance would be concatenated with the first
			// (RFC 3396), which no client can check in place.
			if start >= 0 {
				return 0, 0, ErrTwoAuthOptions
			}
			start, length = i+2, l
		}
		i += 2 + l
	}
	if start < 0 {
		return 0, 0, ErrNoAuthOption
	}
	return start, length, nil
}

// Offsets of the fields the MAC computation zeroes (RFC 2131 figure 1).
const (
	hopsOff   = 3
	giaddrOff = 24
	giaddrEnd = 28
)

// digest is HMAC-MD5 under key over msg with hops, giaddr and the 16
// digest bytes at off taken as zero. It hashes msg in pieces instead of
// copying it, so signing allocates only the HMAC state.
func digest(msg []byte, off int, key *Key) [DigestLen]byte {
	var zero [DigestLen]byte
	h := hmac.New(md5.New, key[:])
	h.Write(msg[:hopsOff])
	h.Write(zero[:1])
	h.Write(msg[hopsOff+1 : giaddrOff])
	h.Write(zero[:giaddrEnd-giaddrOff])
	h.Write(msg[giaddrEnd:off])
	h.Write(zero[:])
	h.Write(msg[off+DigestLen:])
	var out [DigestLen]byte
	h.Sum(out[:0])
	return out
}
