package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func hba128() []byte {
	h := make([]byte, 32)
	for i := 0; i < 16; i++ {
		h[i] = 0xff
	}
	return h
}

// TestRoundTrip encodes each message type as it is sent and decodes it
// back to the same fields.
func TestRoundTrip(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.7")
	for _, m := range []*Message{
		{Type: Connect, Time: 1_800_000_000, XID: 1, Name: "pair", MaxUnacked: 100, ReceiveTimer: 20, VendorClass: "xdhcp-dev", ProtoVersion: 1, MCLT: 3600, HBA: hba128()},
		{Type: ConnectAck, Time: 2, XID: 1, Name: "pair", MaxUnacked: 10, ReceiveTimer: 60, VendorClass: "isc-4.4.3", ProtoVersion: 1},
		{Type: ConnectAck, Time: 2, XID: 1, Name: "pair", ProtoVersion: 1, RejectReason: ReasonTimeMismatch, Text: "clocks 300 s apart"},
		{Type: State, Time: 3, XID: 2, ServerState: StateNormal, ServerFlags: 1, StartOfState: 1_799_999_000},
		{Type: Disconnect, Time: 4, XID: 3, RejectReason: ReasonNoTraffic, Text: "nothing heard for 20 s"},
		{Type: PoolResp, Time: 5, XID: 4, AddrsTransferred: 123},
		{Type: PoolReq, Time: 5, XID: 5},
		{Type: UpdReqAll, Time: 6, XID: 6},
		{Type: UpdReq, Time: 6, XID: 7},
		{Type: UpdDone, Time: 6, XID: 8},
		{Type: Contact, Time: 7, XID: 9},
		{Type: BndUpd, Time: 8, XID: 10, Bindings: []Binding{
			{IP: ip, Status: StatusActive, Flags: FlagReserved, ClientID: []byte{1, 2, 0, 0, 0, 0, 1}, HWType: 1, HWAddr: []byte{2, 0, 0, 0, 0, 1},
				Expiry: 100, PotExp: 200, StateAt: 50, CLTT: 60, RequestOptions: []byte{82, 3, 1, 1, 'x'}},
			{IP: ip.Next(), Status: StatusBackup},
		}},
		{Type: BndAck, Time: 9, XID: 10, Bindings: []Binding{{IP: ip}, {IP: ip.Next(), Reject: ReasonOutdated, Text: "older"}}},
	} {
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decoding what was encoded: %v", m.Type, err)
		}
		got.Has = nil
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", m.Type, got, m)
		}
		rd, err := ReadMessage(bytes.NewReader(append(b, 0, 0)), nil)
		if err != nil || !bytes.Equal(rd, b) {
			t.Errorf("%s: ReadMessage %v %x", m.Type, err, rd)
		}
	}
}

// TestBadMessages: every malformed message is an *Error with a reason.
func TestBadMessages(t *testing.T) {
	good, _ := (&Message{Type: State, ServerState: StateNormal}).Marshal()
	hdr := func(typ byte, opts ...byte) []byte {
		b := append([]byte{0, 0, typ, 12, 0, 0, 0, 1, 0, 0, 0, 1}, opts...)
		b[0], b[1] = byte(len(b)>>8), byte(len(b))
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:10]},
		{"length field", append(append([]byte{}, good...), 0)},
		{"payoff below 12", func() []byte { b := append([]byte{}, good...); b[3] = 8; return b }()},
		{"payoff past the end", func() []byte { b := append([]byte{}, good...); b[3] = 200; return b }()},
		{"type 0", hdr(0)},
		{"type 13", hdr(13)},
		{"option truncated", hdr(byte(State), 0, 24, 0)},
		{"option longer than the message", hdr(byte(State), 0, 24, 0, 9, 2)},
		{"server-state of 2 bytes", hdr(byte(State), 0, 24, 0, 2, 0, 2)},
		{"state repeated", hdr(byte(State), 0, 24, 0, 1, 2, 0, 24, 0, 1, 2)},
		{"BNDUPD without an address", hdr(byte(BndUpd))},
		{"binding option before the address", hdr(byte(BndUpd), 0, 3, 0, 1, 2, 0, 2, 0, 4, 10, 0, 0, 1)},
		{"binding-status 9", hdr(byte(BndUpd), 0, 2, 0, 4, 10, 0, 0, 1, 0, 3, 0, 1, 9)},
		{"htype 0", hdr(byte(BndUpd), 0, 2, 0, 4, 10, 0, 0, 1, 0, 5, 0, 2, 0, 1)},
		{"short HBA", hdr(byte(Connect), 0, 11, 0, 2, 1, 2)},
		{"request options without the cookie", hdr(byte(BndUpd), 0, 2, 0, 4, 10, 0, 0, 1, 0, 8, 0, 2, 82, 0)},
		{"message digest", hdr(byte(Connect), 0, 17, 0, 2, 1, 0)},
	} {
		_, err := Decode(c.b)
		var we *Error
		if !errors.As(err, &we) || we.Reason == 0 {
			t.Errorf("%s: %v, want a *wire.Error with a reason", c.name, err)
		}
	}
	if m, err := Decode(hdr(200, 0, 1, 0, 0)); !errors.Is(err, ErrIgnore) || m == nil || m.Type != 200 {
		t.Errorf("type 200: %v %v, want ErrIgnore", m, err)
	}
	for _, n := range []int{11, 2049, 0} {
		if _, err := ReadMessage(bytes.NewReader([]byte{byte(n >> 8), byte(n), 0, 0}), nil); err == nil {
			t.Errorf("ReadMessage accepted a length of %d", n)
		}
	}
	// Unknown options are ignored; extra header bytes are skipped.
	b := hdr(byte(State), 0, 99, 0, 1, 7, 0, 24, 0, 1, 2)
	if m, err := Decode(b); err != nil || m.ServerState != StateNormal || m.Has[99] {
		t.Errorf("unknown option: %+v %v", m, err)
	}
	ext := append([]byte{0, 0, byte(State), 16, 0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef}, 0, 24, 0, 1, 2)
	ext[1] = byte(len(ext))
	if m, err := Decode(ext); err != nil || m.ServerState != StateNormal {
		t.Errorf("extra header: %+v %v", m, err)
	}
}

// TestBatchesFitTheLimit: a message carries bindings up to MaxLen and no
// further.
func TestBatchesFitTheLimit(t *testing.T) {
	bd := Binding{IP: netip.MustParseAddr("10.0.0.1"), Status: StatusActive, HWType: 1, HWAddr: make([]byte, 6), Expiry: 1, PotExp: 2, StateAt: 3, CLTT: 4}
	n := (MaxLen - HeaderLen) / bd.EncodedLen(BndUpd)
	m := &Message{Type: BndUpd}
	for i := 0; i < n; i++ {
		m.Bindings = append(m.Bindings, bd)
	}
	if _, err := m.Marshal(); err != nil {
		t.Fatalf("%d bindings: %v", n, err)
	}
	m.Bindings = append(m.Bindings, bd)
	if _, err := m.Marshal(); err == nil {
		t.Fatalf("%d bindings fit in %d bytes", n+1, MaxLen)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []*Message{
		{Type: Connect, Name: "p", ProtoVersion: 1, HBA: hba128()},
		{Type: BndUpd, Bindings: []Binding{{IP: netip.MustParseAddr("10.0.0.1"), Status: StatusActive, HWType: 1, HWAddr: []byte{1, 2, 3, 4, 5, 6}, Expiry: 9, RequestOptions: []byte{82, 0}}}},
		{Type: BndAck, Bindings: []Binding{{IP: netip.MustParseAddr("10.0.0.1"), Reject: 15, Text: "x"}}},
		{Type: State, ServerState: StateRecoverWait},
	} {
		b, _ := m.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.Type == Connect && len(m.HBA) != 32 {
			return // Marshal refuses a CONNECT it could not send
		}
		if (m.Type == BndAck) && len(m.Bindings) == 0 {
			return
		}
		again, err := m.Marshal()
		if err != nil {
			if len(b) > MaxLen-64 {
				return // re-encoding may add what the input omitted
			}
			t.Fatalf("re-encoding a decoded %s: %v", m.Type, err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("decoding a re-encoded %s: %v", m.Type, err)
		}
		if len(m2.Bindings) != len(m.Bindings) || m2.Type != m.Type || m2.XID != m.XID {
			t.Fatalf("re-encoded %s differs: %+v vs %+v", m.Type, m2, m)
		}
	})
}
