// Package auth owns the DHCPv4 authentication the server needs for
// FORCERENEW (RFC 3203): the Authentication option 90 (RFC 3118 layout)
// with the Forcerenew Nonce Authentication protocol of RFC 6704 (protocol
// 3, algorithm HMAC-MD5, replay detection by counter), the client's
// FORCERENEW_NONCE_CAPABLE option 145, the per-binding key, signing and
// verifying a message, and the server-wide replay counter that every
// option 90 the server sends draws from.
//
// It does not decide when a key is made, stored or sent, nor build the
// OFFER, ACK or FORCERENEW around the options: that is the slow path's.
// The rules its API serves (RFC 6704 and what dhcpcd checks): a key
// goes only to a client that sent 145, and only in an ACK (type 1); a
// FORCERENEW carries only a digest (type 2), since dhcpcd drops a message
// carrying the other type; the replay counter never repeats or goes back,
// across restarts and clock steps (Counter).
package auth

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Field values of option 90 (RFC 3118 §2) as RFC 6704 uses them.
const (
	// ProtocolReconfigureKey is the Forcerenew Nonce Authentication
	// protocol (RFC 6704, the number and layout taken from DHCPv6's
	// Reconfigure Key protocol, RFC 3315). dhcpcd accepts no other protocol
	// when it did not itself send authentication.
	ProtocolReconfigureKey = 3
	// AlgorithmHMACMD5 is the only algorithm RFC 6704 defines, in option
	// 90's algorithm field and in option 145's list.
	AlgorithmHMACMD5 = 1
	// RDMCounter is replay detection method 0: the replay detection field
	// is a strictly increasing counter (RFC 3118 §2, erratum 3474).
	RDMCounter = 0
	// InfoTypeKey marks authentication information that carries the
	// key (RFC 6704's "forcerenew nonce value"); valid only in an ACK.
	InfoTypeKey = 1
	// InfoTypeDigest marks authentication information that carries the
	// HMAC-MD5 of the message; valid only in a FORCERENEW.
	InfoTypeDigest = 2
)

// Sizes in option 90.
const (
	// headerLen is protocol, algorithm, RDM and the 8-byte replay field:
	// the part of option 90 every protocol shares.
	headerLen = 3 + 8
	// KeyLen is the length of a forcerenew key (RFC 6704: 128 bits).
	KeyLen = 16
	// DigestLen is the length of an HMAC-MD5 digest.
	DigestLen = 16
	// NonceDataLen is option 90's data length with protocol 3: the shared
	// header, the type byte and a 16-byte key or digest. dhcpcd rejects
	// any other length.
	NonceDataLen = headerLen + 1 + KeyLen
	// NonceOptionLen is the bytes AppendKeyOption and AppendDigestOption
	// write: code, length and data.
	NonceOptionLen = 2 + NonceDataLen
	// maxDataLen is the longest option data one option instance holds.
	maxDataLen = 255
)

// Parse errors. Errors returned wrap one of these, with the offending
// values added.
var (
	ErrAuthShort      = errors.New("authentication option shorter than protocol, algorithm, RDM and replay detection (11 bytes)")
	ErrAuthLong       = errors.New("authentication option longer than one option instance (255 bytes)")
	ErrProtocol       = errors.New("authentication protocol is not 3 (RFC 6704 forcerenew nonce)")
	ErrAlgorithm      = errors.New("authentication algorithm is not 1 (HMAC-MD5)")
	ErrRDM            = errors.New("replay detection method is not 0 (counter)")
	ErrInfoLen        = errors.New("forcerenew nonce authentication information is not a type byte and 16 bytes")
	ErrInfoType       = errors.New("forcerenew nonce information type is neither 1 (key) nor 2 (HMAC-MD5 digest)")
	ErrNonceCapable   = errors.New("FORCERENEW_NONCE_CAPABLE option lists no algorithm")
	ErrNoAuthOption   = errors.New("message has no authentication option")
	ErrTwoAuthOptions = errors.New("message has more than one authentication option")
	ErrNotDigest      = errors.New("authentication option does not carry an HMAC-MD5 digest (type 2)")
	ErrDigest         = errors.New("HMAC-MD5 digest does not match the message")
)

// Auth is option 90's data in the RFC 3118 §2 layout, any protocol. Info
// aliases the buffer it was parsed from.
type Auth struct {
	Protocol, Algorithm, RDM uint8
	// Replay is the replay detection field (big-endian on the wire).
	Replay uint64
	// Info is the protocol's authentication information.
	Info []byte
}

// ParseAuth reads option 90's data (the bytes after code and length). It
// checks only the layout RFC 3118 gives every protocol; Nonce checks the
// RFC 6704 fields.
func ParseAuth(data []byte) (Auth, error) {
	if len(data) < headerLen {
		return Auth{}, fmt.Errorf("%w: %d bytes", ErrAuthShort, len(data))
	}
	if len(data) > maxDataLen {
		return Auth{}, fmt.Errorf("%w: %d bytes", ErrAuthLong, len(data))
	}
	return Auth{
		Protocol:  data[0],
		Algorithm: data[1],
		RDM:       data[2],
		Replay:    binary.BigEndian.Uint64(data[3:headerLen]),
		Info:      data[headerLen:],
	}, nil
}

// AppendAuth writes a as option 90: code, length, data.
func AppendAuth(b []byte, a Auth) ([]byte, error) {
	n := headerLen + len(a.Info)
	if n > maxDataLen {
		return b, fmt.Errorf("%w: %d bytes of authentication information", ErrAuthLong, len(a.Info))
	}
	b = append(b, dhcpwire.OptAuthentication, byte(n), a.Protocol, a.Algorithm, a.RDM)
	b = binary.BigEndian.AppendUint64(b, a.Replay)
	return append(b, a.Info...), nil
}

// Nonce is option 90 of the RFC 6704 protocol: a key (in an ACK) or an
// HMAC-MD5 digest (in a FORCERENEW).
type Nonce struct {
	Replay uint64
	// Type is InfoTypeKey or InfoTypeDigest.
	Type uint8
	// Value is the key or the digest.
	Value [KeyLen]byte
}

// Nonce checks that a is the RFC 6704 protocol as dhcpcd accepts it
// (protocol 3, HMAC-MD5, RDM 0, exactly a type byte and 16 bytes of
// information, type 1 or 2) and returns its fields. Which type a message
// may carry is the caller's rule (Verify requires a digest).
func (a Auth) Nonce() (Nonce, error) {
	switch {
	case a.Protocol != ProtocolReconfigureKey:
		return Nonce{}, fmt.Errorf("%w: protocol %d", ErrProtocol, a.Protocol)
	case a.Algorithm != AlgorithmHMACMD5:
		return Nonce{}, fmt.Errorf("%w: algorithm %d", ErrAlgorithm, a.Algorithm)
	case a.RDM != RDMCounter:
		return Nonce{}, fmt.Errorf("%w: RDM %d", ErrRDM, a.RDM)
	case len(a.Info) != 1+KeyLen:
		return Nonce{}, fmt.Errorf("%w: %d bytes", ErrInfoLen, len(a.Info))
	case a.Info[0] != InfoTypeKey && a.Info[0] != InfoTypeDigest:
		return Nonce{}, fmt.Errorf("%w: type %d", ErrInfoType, a.Info[0])
	}
	n := Nonce{Replay: a.Replay, Type: a.Info[0]}
	copy(n.Value[:], a.Info[1:])
	return n, nil
}

// ParseNonce is ParseAuth followed by Nonce.
func ParseNonce(data []byte) (Nonce, error) {
	a, err := ParseAuth(data)
	if err != nil {
		return Nonce{}, err
	}
	return a.Nonce()
}

// appendNonce writes option 90 with protocol 3 and a typed 16-byte value.
func appendNonce(b []byte, replay uint64, typ uint8, v *[KeyLen]byte) []byte {
	b = append(b, dhcpwire.OptAuthentication, NonceDataLen, ProtocolReconfigureKey, AlgorithmHMACMD5, RDMCounter)
	b = binary.BigEndian.AppendUint64(b, replay)
	b = append(b, typ)
	return append(b, v[:]...)
}

// Algorithms is a set of authentication algorithm numbers, as listed in
// option 145.
type Algorithms [4]uint64

// Has reports whether alg is in the set.
func (s Algorithms) Has(alg uint8) bool { return s[alg/64]&(1<<(alg%64)) != 0 }

func (s *Algorithms) add(alg uint8) { s[alg/64] |= 1 << (alg % 64) }

// ParseNonceCapable reads option 145's data (RFC 6704 §3.1.1: one byte per
// algorithm the client supports, at least one). A client that sent it may
// be given a key if the set has AlgorithmHMACMD5. Unknown algorithm numbers
// are kept, not refused: a later RFC may define them.
func ParseNonceCapable(data []byte) (Algorithms, error) {
	var s Algorithms
	if len(data) == 0 {
		return s, ErrNonceCapable
	}
	for _, a := range data {
		s.add(a)
	}
	return s, nil
}

// AppendNonceCapable writes option 145 listing HMAC-MD5, as the server
// puts it in an OFFER to a client that sent 145 (RFC 6704: the
// OFFER's 145 tells the client that the ACK will carry a key; a client
// may DECLINE an ACK that then lacks one).
func AppendNonceCapable(b []byte) []byte {
	return append(b, dhcpwire.OptForceRenewNonce, 1, AlgorithmHMACMD5)
}
