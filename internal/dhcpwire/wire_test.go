package dhcpwire

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func request(t testing.TB, mods ...dhcpv4.Modifier) []byte {
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.ToBytes()
}

func TestParseReadsHeaderAndOptions(t *testing.T) {
	b := request(t, dhcpv4.WithClientIP(net.ParseIP("10.0.0.5")), dhcpv4.WithGatewayIP(net.ParseIP("10.0.0.1")),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1400)))
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.MessageType() != Request || p.CIAddr.String() != "10.0.0.5" || p.GIAddr.String() != "10.0.0.1" ||
		!bytes.Equal(p.CHAddr(), []byte{2, 0, 0, 0, 0, 1}) || p.MaxMessageSize() != 1400 {
		t.Fatalf("parsed %+v", p)
	}
}

func TestOverloadAndConcatenation(t *testing.T) {
	b := make([]byte, MinLen)
	b[0], b[1], b[2] = 1, 1, 6
	copy(b[HeaderLen:], MagicCookie[:])
	// options: 53=3, 52=3 (file and sname), first half of option 61, END
	b = append(b, 53, 1, 3, 52, 1, 3, 61, 2, 1, 2, 255)
	// file: second half of option 61, then 12 "host", END
	copy(b[fileOff:], []byte{61, 2, 3, 4, 12, 4, 'h', 'o', 's', 't', 255})
	// sname: option 60, END
	copy(b[snameOff:], []byte{60, 3, 'x', 'y', 'z', 255})
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Option(OptClientID); !bytes.Equal(v, []byte{1, 2, 3, 4}) {
		t.Fatalf("option 61 split across fields: %v", v)
	}
	if v, _ := p.Option(OptHostname); string(v) != "host" {
		t.Fatalf("option 12 from file: %q", v)
	}
	if v, _ := p.Option(OptVendorClass); string(v) != "xyz" {
		t.Fatalf("option 60 from sname: %q", v)
	}
	if p.File != nil || p.Sname != nil {
		t.Fatal("overloaded fields must not be reported as names")
	}
}

func TestParseErrors(t *testing.T) {
	good := request(t)
	badCookie := append([]byte{}, good...)
	badCookie[HeaderLen] = 0
	longOpt := append(append([]byte{}, good[:MinLen]...), 53, 1, 3, 61, 200, 1)
	bigHLen := append([]byte{}, good...)
	bigHLen[2] = 17
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:200], ErrShort},
		{"cookie", badCookie, ErrCookie},
		{"option length", longOpt, ErrOptionLen},
		{"hlen", bigHLen, ErrHLen},
	} {
		if _, err := Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	req, _ := Parse(request(t))
	h := ReplyHeader(req)
	b := AppendHeader(nil, h)
	b = append(b, OptMessageType, 1, Ack)
	long := bytes.Repeat([]byte{7}, 300)
	b = AppendOption(b, 77, long)
	b = append(b, OptEnd)
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Option(77); !bytes.Equal(v, long) || p.Op != BootReply || p.XID != req.XID {
		t.Fatalf("round trip lost data (len %d)", len(v))
	}
	if OptionLen(300) != 304 || OptionLen(255) != 257 || OptionLen(0) != 2 {
		t.Fatal("OptionLen")
	}
}

// FuzzParse compares Parse with insomniacslk/dhcp's reader on the same
// bytes (see checkParse for where they may differ, and why).
func FuzzParse(f *testing.F) {
	f.Add(request(f))
	f.Add(request(f, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3}))))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
		if p, err := Parse(b); err == nil {
			p.MaxMessageSize()
			p.RelaySubOption(SubOptLinkSelection)
		}
	})
}

func TestValidate(t *testing.T) {
	g := func(code uint8, data ...byte) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.GenericOptionCode(code), Value: dhcpv4.OptionGeneric{Data: data}})
	}
	for _, tc := range []struct {
		name string
		mod  dhcpv4.Modifier
		ok   bool
	}{
		{"plain", nil, true},
		{"54 of 3", g(OptServerID, 10, 0, 0), false},
		{"54 of 0", g(OptServerID), false},
		{"50 of 4", g(OptRequestedIP, 10, 0, 0, 9), true},
		{"50 of 5", g(OptRequestedIP, 10, 0, 0, 9, 9), false},
		{"51 of 2", g(OptLeaseTime, 0, 60), false},
		{"118 of 2", g(OptSubnetSelection, 10, 77), false},
		{"57 of 576", g(OptMaxMessageSize, 2, 64), true},
		{"57 of 575", g(OptMaxMessageSize, 2, 63), false},
		{"57 of 0", g(OptMaxMessageSize, 0, 0), false},
		{"57 of 1 byte", g(OptMaxMessageSize, 5), false},
		{"61 of 1", g(OptClientID, 1), false},
		{"61 of 2", g(OptClientID, 0, 1), true},
		{"52 of 0", g(OptOverload, 0), false},
		{"82 empty", g(OptRelayAgentInfo), false},
		{"82 sub-option past its end", g(OptRelayAgentInfo, 1, 3, 'a'), false},
		{"82 dangling code", g(OptRelayAgentInfo, 1, 1, 'a', 2), false},
		{"82 link selection of 3", g(OptRelayAgentInfo, SubOptLinkSelection, 3, 10, 0, 0), false},
		{"82 well formed", g(OptRelayAgentInfo, 1, 1, 'a', 2, 0, SubOptServerIDOverr, 4, 10, 0, 0, 1), true},
		{"an option we only echo, of 0 bytes", g(OptHostname), true},
	} {
		var mods []dhcpv4.Modifier
		if tc.mod != nil {
			mods = append(mods, tc.mod)
		}
		p, err := Parse(request(t, mods...))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := p.Validate(); (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	// RFC 3396: a split option is judged as the whole it makes.
	b := append(request(t)[:MinLen:MinLen], OptMessageType, 1, 3, OptServerID, 2, 10, 0, OptServerID, 2, 0, 1, OptEnd)
	p, err := Parse(b)
	if err != nil || p.Validate() != nil {
		t.Fatalf("option 54 split into two 2-byte parts: %v / %v", err, p.Validate())
	}
	if a, ok := p.AddrOption(OptServerID); !ok || a.String() != "10.0.0.1" {
		t.Fatalf("the split option 54 was not read (%v %v); the check above shows nothing", a, ok)
	}
	for _, tc := range []struct {
		htype, hlen uint8
		ok          bool
	}{{1, 6, true}, {1, 0, false}, {1, 16, false}, {32, 0, true}, {6, 6, true}} {
		p := &Packet{HType: tc.htype, HLen: tc.hlen}
		if err := p.ValidateClientHeader(); (err == nil) != tc.ok {
			t.Errorf("htype %d hlen %d: %v, want ok %v", tc.htype, tc.hlen, err, tc.ok)
		}
	}
}
