package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// dhcpcdNonceCapable is option 145 exactly as dhcpcd 9.4.1 sends it in
// DISCOVER and REQUEST (captured by TestDhcpcdForceRenew's responder; the
// same bytes seed FuzzParseNonceCapable).
var dhcpcdNonceCapable = []byte{dhcpwire.OptForceRenewNonce, 1, AlgorithmHMACMD5}

func TestParseAuthMalformed(t *testing.T) {
	good := AppendKeyOption(nil, 7, Key{1, 2, 3})[2:]
	for _, c := range []struct {
		name string
		data []byte
		err  error
	}{
		{"empty", nil, ErrAuthShort},
		{"no replay field", []byte{3, 1, 0, 0, 0, 0}, ErrAuthShort},
		{"replay cut short", good[:10], ErrAuthShort},
		{"longer than an option", make([]byte, 256), ErrAuthLong},
	} {
		if _, err := ParseAuth(c.data); !errors.Is(err, c.err) {
			t.Errorf("%s: ParseAuth(% x) = %v, want %v", c.name, c.data, err, c.err)
		}
		if _, err := ParseNonce(c.data); !errors.Is(err, c.err) {
			t.Errorf("%s: ParseNonce(% x) = %v, want %v", c.name, c.data, err, c.err)
		}
	}
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	for _, c := range []struct {
		name string
		data []byte
		err  error
	}{
		{"protocol 1 (delayed)", with(0, 1), ErrProtocol},
		{"protocol 240 (pre-RFC Realtek)", with(0, 240), ErrProtocol},
		{"algorithm 0", with(1, 0), ErrAlgorithm},
		{"RDM 1", with(2, 1), ErrRDM},
		{"no information", good[:headerLen], ErrInfoLen},
		{"type byte only", good[:headerLen+1], ErrInfoLen},
		{"15-byte key", good[:len(good)-1], ErrInfoLen},
		{"17-byte key", append(bytes.Clone(good), 0), ErrInfoLen},
		{"type 0", with(headerLen, 0), ErrInfoType},
		{"type 3", with(headerLen, 3), ErrInfoType},
	} {
		a, err := ParseAuth(c.data)
		if err != nil {
			t.Errorf("%s: ParseAuth: %v (the RFC 3118 layout is intact)", c.name, err)
			continue
		}
		if _, err := a.Nonce(); !errors.Is(err, c.err) {
			t.Errorf("%s: Nonce(% x) = %v, want %v", c.name, c.data, err, c.err)
		}
	}
}

func TestKeyOptionLayout(t *testing.T) {
	k := Key{0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf}
	got := AppendKeyOption([]byte{0xee}, 0x0102030405060708, k)
	// The layout dhcpcd's dhcp_auth_validate accepts in an ACK: 90, 28,
	// protocol 3, HMAC-MD5, RDM 0, replay big-endian, type 1, key.
	want, _ := hex.DecodeString("ee5a1c030100010203040506070801a0010203040506070809" + "0a0b0c0d0eaf")
	if !bytes.Equal(got, want) {
		t.Fatalf("key option\n got % x\nwant % x", got, want)
	}
	if len(got)-1 != NonceOptionLen {
		t.Fatalf("key option is %d bytes, NonceOptionLen %d", len(got)-1, NonceOptionLen)
	}
	n, err := ParseNonce(got[3:])
	if err != nil {
		t.Fatal(err)
	}
	if n != (Nonce{Replay: 0x0102030405060708, Type: InfoTypeKey, Value: k}) {
		t.Fatalf("parsed %+v", n)
	}
	d := AppendDigestOption(nil, 9)
	n, err = ParseNonce(d[2:])
	if err != nil || n != (Nonce{Replay: 9, Type: InfoTypeDigest}) || d[0] != dhcpwire.OptAuthentication || d[1] != NonceDataLen {
		t.Fatalf("digest option % x: %+v, %v", d, n, err)
	}
}

func TestAppendAuthRoundTrip(t *testing.T) {
	a := Auth{Protocol: 1, Algorithm: 1, RDM: 0, Replay: 1 << 40, Info: []byte{0, 0, 0, 1, 9, 9}}
	b, err := AppendAuth(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != dhcpwire.OptAuthentication || int(b[1]) != len(b)-2 {
		t.Fatalf("header % x", b[:2])
	}
	got, err := ParseAuth(b[2:])
	if err != nil || got.Protocol != 1 || got.Replay != 1<<40 || !bytes.Equal(got.Info, a.Info) {
		t.Fatalf("round trip %+v, %v", got, err)
	}
	if _, err := got.Nonce(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("delayed authentication taken for the nonce protocol: %v", err)
	}
	if _, err := AppendAuth(nil, Auth{Info: make([]byte, maxDataLen-headerLen+1)}); !errors.Is(err, ErrAuthLong) {
		t.Fatalf("oversized info: %v", err)
	}
	if b, err := AppendAuth(nil, Auth{Info: make([]byte, maxDataLen-headerLen)}); err != nil || len(b) != 2+maxDataLen {
		t.Fatalf("largest info: %d bytes, %v", len(b), err)
	}
}

func TestNonceCapable(t *testing.T) {
	s, err := ParseNonceCapable(dhcpcdNonceCapable[2:])
	if err != nil || !s.Has(AlgorithmHMACMD5) || s.Has(0) || s.Has(2) {
		t.Fatalf("dhcpcd's 145: %v %v", s, err)
	}
	s, err = ParseNonceCapable([]byte{7, 255, 64, 1})
	if err != nil {
		t.Fatal(err)
	}
	for a := 0; a < 256; a++ {
		want := a == 7 || a == 255 || a == 64 || a == 1
		if s.Has(uint8(a)) != want {
			t.Errorf("Has(%d) = %v", a, !want)
		}
	}
	if _, err := ParseNonceCapable(nil); !errors.Is(err, ErrNonceCapable) {
		t.Fatalf("empty 145: %v", err)
	}
	if got := AppendNonceCapable(nil); !bytes.Equal(got, dhcpcdNonceCapable) {
		t.Fatalf("our 145 % x, want % x", got, dhcpcdNonceCapable)
	}
}

// forceRenew builds a FORCERENEW as the slow path will: header, 53, 54,
// 90 (digest zeroed), END, padded to the BOOTP minimum of 300 bytes.
func forceRenew(b []byte, xid uint32, replay uint64) []byte {
	h := dhcpwire.Header{
		Op: dhcpwire.BootReply, HType: 1, HLen: 6, Hops: 3, XID: xid,
		CIAddr: netip.MustParseAddr("10.0.0.5"), GIAddr: netip.MustParseAddr("10.9.9.9"),
		CHAddr: [16]byte{2, 0, 0, 0, 0, 1},
	}
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.ForceRenew)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, netip.MustParseAddr("10.0.0.1"))
	b = AppendDigestOption(b, replay)
	b = append(b, dhcpwire.OptEnd)
	for len(b) < 300 {
		b = append(b, dhcpwire.OptPad)
	}
	return b
}

func TestSignKnownAnswer(t *testing.T) {
	// The digest from an independent implementation: Python's hmac module
	// over the same 300 bytes with hops and giaddr zeroed by hand.
	msg := forceRenew(nil, 0xdeadbeef, 0x0102030405060708)
	var key Key
	for i := range key {
		key[i] = byte(i)
	}
	if err := Sign(msg, key); err != nil {
		t.Fatal(err)
	}
	off := dhcpwire.MinLen + 3 + 6 + NonceOptionLen - DigestLen // after 53 and 54, at the end of 90
	if got := hex.EncodeToString(msg[off : off+DigestLen]); got != "0c96601207a007df6252ff05919baaab" {
		t.Fatalf("digest %s\nmessage % x", got, msg)
	}
	if msg[hopsOff] != 3 || !bytes.Equal(msg[giaddrOff:giaddrEnd], []byte{10, 9, 9, 9}) {
		t.Fatal("Sign changed hops or giaddr in the message")
	}
}

func TestSignVerify(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if other, _ := NewKey(); other == key || key == (Key{}) {
		t.Fatalf("NewKey gave %x twice or zero", key)
	}
	msg := forceRenew(nil, 42, 1000)
	if err := Sign(msg, key); err != nil {
		t.Fatal(err)
	}
	n, err := Verify(msg, key)
	if err != nil || n.Replay != 1000 || n.Type != InfoTypeDigest {
		t.Fatalf("Verify: %+v %v", n, err)
	}
	wrong := key
	wrong[15] ^= 1
	if _, err := Verify(msg, wrong); !errors.Is(err, ErrDigest) {
		t.Fatalf("other key: %v", err)
	}
	// Every bit is covered except hops and giaddr, which relays rewrite.
	for i := range msg {
		for bit := 0; bit < 8; bit++ {
			m := bytes.Clone(msg)
			m[i] ^= 1 << bit
			_, err := Verify(m, key)
			exempt := i == hopsOff || (i >= giaddrOff && i < giaddrEnd)
			switch {
			case exempt && err != nil:
				t.Fatalf("flipping byte %d bit %d (hops/giaddr) broke the digest: %v", i, bit, err)
			case !exempt && err == nil:
				t.Fatalf("flipping byte %d bit %d went unnoticed", i, bit)
			}
		}
	}
	// The padding after END is signed: the client hashes what it receives.
	if _, err := Verify(msg[:len(msg)-1], key); !errors.Is(err, ErrDigest) {
		t.Fatalf("truncated padding: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	key := Key{1}
	base := forceRenew(nil, 1, 1)
	authAt := bytes.Index(base, AppendDigestOption(nil, 1))
	noAuth := bytes.Clone(base)
	copy(noAuth[authAt:], bytes.Repeat([]byte{dhcpwire.OptPad}, NonceOptionLen))
	keyOpt := bytes.Clone(base)
	copy(keyOpt[authAt:], AppendKeyOption(nil, 1, key))
	two := append(bytes.Clone(base[:authAt+NonceOptionLen]), base[authAt:authAt+NonceOptionLen]...)
	two = append(two, dhcpwire.OptEnd)
	truncated := append(bytes.Clone(base[:authAt]), dhcpwire.OptAuthentication, NonceDataLen, 3)
	badCookie := bytes.Clone(base)
	badCookie[dhcpwire.HeaderLen] = 0
	for _, c := range []struct {
		name string
		msg  []byte
		err  error
	}{
		{"no option 90", noAuth, ErrNoAuthOption},
		{"a key, not a digest", keyOpt, ErrNotDigest},
		{"two options 90", two, ErrTwoAuthOptions},
		{"option 90 runs past the end", truncated, dhcpwire.ErrOptionLen},
		{"shorter than a header", base[:100], dhcpwire.ErrShort},
		{"bad cookie", badCookie, dhcpwire.ErrCookie},
	} {
		m := bytes.Clone(c.msg)
		if err := Sign(m, key); !errors.Is(err, c.err) {
			t.Errorf("%s: Sign = %v, want %v", c.name, err, c.err)
		}
		if !bytes.Equal(m, c.msg) {
			t.Errorf("%s: a refused Sign changed the message", c.name)
		}
		if _, err := Verify(c.msg, key); !errors.Is(err, c.err) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.err)
		}
	}
}
