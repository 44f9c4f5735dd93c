package dhcpwire

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// checkParse holds Parse to an independent reader of the same bytes,
// insomniacslk/dhcp's dhcpv4.FromBytes: where both accept a message they
// must read the same header and the same options (RFC 3396 concatenation
// included); where only one accepts, the difference must be one of those
// listed below, each a known and deliberate one.
//
// Where the two readers legitimately differ:
//
//  1. END. FromBytes requires an END option in the options field
//     (io.ErrUnexpectedEOF without one); Parse accepts a missing END
//     (relays and embedded clients omit it). Parse must then read exactly
//     what insomniacslk's Options.FromBytes (the same option reader without
//     the END check) reads from that field.
//  2. hlen above 16. Parse refuses it (ErrHLen); FromBytes cuts chaddr to
//     16 bytes and goes on.
//  3. Option overload (52). FromBytes does not implement it: it reads file
//     and sname as NUL-terminated strings, whatever option 52 says. For
//     Parse's reading of overloaded fields the reference is insomniacslk's
//     Options.FromBytes applied to the field, concatenated after the options
//     field in the RFC 3396 order (options, file, sname). Parse refuses an
//     overloaded field with an option running past it; FromBytes never
//     looks. Options.FromBytes also accepts a field whose last byte is an
//     option code with no length byte (the short read is not reported; the
//     code is kept with an empty value); Parse refuses that as an option
//     without a length.
//  4. Option 52 given more than once. insomniacslk concatenates the
//     instances into one value, which then has no single overload meaning;
//     Parse applies each one-byte instance as it meets it. With a
//     concatenated 52 that is not one byte long, only the options field is
//     compared (each of its options must begin Parse's value for that code,
//     which may go on with parts from file or sname).
//
// Any other disagreement fails the fuzz target: a new one must be
// understood and listed here, not hidden.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	orig := bytes.Clone(b)
	ours, ourErr := Parse(b)
	if !bytes.Equal(b, orig) {
		t.Fatal("Parse modified its input")
	}
	theirs, theirErr := dhcpv4.FromBytes(b)
	if !bytes.Equal(b, orig) {
		t.Fatal("dhcpv4.FromBytes modified its input")
	}

	switch {
	case ourErr != nil && theirErr != nil:
		return
	case ourErr != nil:
		// Case 2 or 3: nothing else makes Parse stricter.
		if errors.Is(ourErr, ErrHLen) && b[2] > 16 {
			return
		}
		ov, known := overloadOf(theirs.Options)
		if !known {
			ov = 3 // case 4: some one-byte instance may have selected either field
		}
		if ov != 0 && overloadFieldRefused(b, ov) {
			return
		}
		t.Fatalf("Parse refuses what dhcpv4.FromBytes accepts, for no documented reason: %v\n% x", ourErr, b)
	case theirErr != nil:
		// Case 1: FromBytes wanted an END that is not there. Everything
		// else it refuses (short, cookie) Parse refuses too.
		if !errors.Is(theirErr, io.ErrUnexpectedEOF) || hasEnd(b[optionsOff:]) {
			t.Fatalf("dhcpv4.FromBytes refuses what Parse accepts, for no documented reason: %v\n% x", theirErr, b)
		}
		// Read the header with FromBytes after all, from a copy whose
		// options field is cut to what was read and given an END.
		fixed := append(bytes.Clone(b[:optionsOff]), endlessOptions(t, b[optionsOff:])...)
		var err error
		if theirs, err = dhcpv4.FromBytes(append(fixed, OptEnd)); err != nil {
			t.Fatalf("with an END appended dhcpv4.FromBytes still refuses it: %v", err)
		}
	}
	compareHeader(t, ours, theirs, b)
	compareOptions(t, ours, theirs, b)
}

// compareHeader checks the fixed BOOTP fields.
func compareHeader(t *testing.T, ours *Packet, theirs *dhcpv4.DHCPv4, b []byte) {
	t.Helper()
	ip := func(v []byte) netip.Addr { return netip.AddrFrom4([4]byte(v)) }
	switch {
	case ours.Op != uint8(theirs.OpCode), ours.HType != uint8(theirs.HWType), ours.Hops != theirs.HopCount:
		t.Fatalf("op/htype/hops: ours %d/%d/%d, insomniacslk %d/%d/%d", ours.Op, ours.HType, ours.Hops, theirs.OpCode, theirs.HWType, theirs.HopCount)
	case int(ours.HLen) != len(theirs.ClientHWAddr) || ours.HLen != b[2]:
		t.Fatalf("hlen: ours %d, insomniacslk %d, wire %d", ours.HLen, len(theirs.ClientHWAddr), b[2])
	case ours.XID != beUint32(theirs.TransactionID[:]):
		t.Fatalf("xid: ours %#x, insomniacslk %x", ours.XID, theirs.TransactionID)
	case ours.Secs != theirs.NumSeconds, ours.Flags != theirs.Flags:
		t.Fatalf("secs/flags: ours %d/%#x, insomniacslk %d/%#x", ours.Secs, ours.Flags, theirs.NumSeconds, theirs.Flags)
	case ours.CIAddr != ip(theirs.ClientIPAddr.To4()), ours.YIAddr != ip(theirs.YourIPAddr.To4()),
		ours.SIAddr != ip(theirs.ServerIPAddr.To4()), ours.GIAddr != ip(theirs.GatewayIPAddr.To4()):
		t.Fatalf("addresses: ours %s %s %s %s, insomniacslk %s %s %s %s", ours.CIAddr, ours.YIAddr, ours.SIAddr, ours.GIAddr,
			theirs.ClientIPAddr, theirs.YourIPAddr, theirs.ServerIPAddr, theirs.GatewayIPAddr)
	case !bytes.Equal(ours.CHAddr(), theirs.ClientHWAddr):
		t.Fatalf("chaddr: ours % x, insomniacslk % x", ours.CHAddr(), theirs.ClientHWAddr)
	case !bytes.Equal(ours.CHAddrRaw[:], b[28:44]):
		t.Fatal("CHAddrRaw is not the 16 bytes of the chaddr field")
	}
	// sname and file: the raw field when not overloaded, which FromBytes
	// reads as a string up to the first NUL.
	for _, f := range []struct {
		name  string
		ours  []byte
		their string
	}{{"sname", ours.Sname, theirs.ServerHostName}, {"file", ours.File, theirs.BootFileName}} {
		if f.ours == nil {
			continue
		}
		if s, _, _ := strings.Cut(string(f.ours), "\x00"); s != f.their {
			t.Fatalf("%s: ours %q, insomniacslk %q", f.name, s, f.their)
		}
	}
}

func beUint32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// compareOptions checks every option Parse reports against insomniacslk's
// reading, the overloaded fields included (case 3 above).
func compareOptions(t *testing.T, ours *Packet, theirs *dhcpv4.DHCPv4, b []byte) {
	t.Helper()
	ov, known := overloadOf(theirs.Options)
	want := dhcpv4.Options{}
	for c, v := range theirs.Options {
		want[c] = bytes.Clone(v)
	}
	if known {
		// RFC 3396 §5: options, then file, then sname.
		if ov&1 != 0 {
			appendField(t, want, b[fileOff:fileOff+fileLen], "file")
		}
		if ov&2 != 0 {
			appendField(t, want, b[snameOff:snameOff+snameLen], "sname")
		}
		if (ours.File == nil) != (ov&1 != 0) || (ours.Sname == nil) != (ov&2 != 0) {
			t.Fatalf("overload %d, but Parse reports file %v sname %v as names", ov, ours.File != nil, ours.Sname != nil)
		}
	}
	codes := ours.Codes()
	seen := map[uint8]bool{}
	for _, c := range codes {
		if seen[c] {
			t.Fatalf("option %d listed twice by Codes (RFC 3396: one option, concatenated)", c)
		}
		seen[c] = true
		v, ok := ours.Option(c)
		if !ok {
			t.Fatalf("listed option %d missing", c)
		}
		w, present := want[c]
		switch {
		case known && (!present || !bytes.Equal(v, w)):
			t.Fatalf("option %d: ours % x (present), insomniacslk % x (present %v)", c, v, w, present)
		case !known && present && !bytes.HasPrefix(v, w):
			t.Fatalf("option %d: ours % x does not begin with the options field's % x", c, v, w)
		}
	}
	for c := range want {
		if !seen[c] {
			t.Fatalf("insomniacslk reads option %d (% x), Parse does not", c, want[c])
		}
	}
	if known && ours.MessageType() != uint8(dhcpv4.MessageType(messageTypeOf(want))) {
		t.Fatalf("message type: ours %d, insomniacslk %d", ours.MessageType(), messageTypeOf(want))
	}
}

func messageTypeOf(o dhcpv4.Options) uint8 {
	if v := o.Get(dhcpv4.OptionDHCPMessageType); len(v) == 1 {
		return v[0]
	}
	return 0
}

// overloadOf returns option 52's field selector from insomniacslk's
// (concatenated) options, and whether it has one meaning: absent (0), or
// one byte long.
func overloadOf(o dhcpv4.Options) (uint8, bool) {
	v, ok := o[OptOverload]
	switch {
	case !ok:
		return 0, true
	case len(v) == 1:
		return v[0] & 3, true
	}
	return 0, false
}

// appendField adds an overloaded field's options to o, as
// insomniacslk's Options.FromBytes reads them.
func appendField(t *testing.T, o dhcpv4.Options, field []byte, name string) {
	t.Helper()
	f := dhcpv4.Options{}
	if err := f.FromBytes(field); err != nil {
		t.Fatalf("Parse accepted the %s field, Options.FromBytes refuses it: %v", name, err)
	}
	// Options.FromBytes returns a map: the concatenation order within a
	// field is its own, and across fields ours.
	for c, v := range f {
		o[c] = append(o[c], v...)
	}
}

// overloadFieldRefused reports whether an overloaded field is one Parse
// refuses for a documented reason (case 3): an option running past the
// field, or a last byte that is an option code with no length.
func overloadFieldRefused(b []byte, ov uint8) bool {
	bad := func(field []byte) bool {
		for i := 0; i < len(field); {
			switch field[i] {
			case OptPad:
				i++
				continue
			case OptEnd:
				return false
			}
			if i+1 >= len(field) || i+2+int(field[i+1]) > len(field) {
				return true
			}
			i += 2 + int(field[i+1])
		}
		return false
	}
	return (ov&1 != 0 && bad(b[fileOff:fileOff+fileLen])) || (ov&2 != 0 && bad(b[snameOff:snameOff+snameLen]))
}

// hasEnd reports whether an options field reaches an END option.
func hasEnd(field []byte) bool {
	for i := 0; i < len(field); {
		switch field[i] {
		case OptPad:
			i++
		case OptEnd:
			return true
		default:
			if i+1 >= len(field) {
				return false
			}
			i += 2 + int(field[i+1])
		}
	}
	return false
}

// endlessOptions returns an options field without END that Parse accepted,
// checked against insomniacslk's reader without the END requirement.
func endlessOptions(t *testing.T, field []byte) []byte {
	t.Helper()
	o := dhcpv4.Options{}
	if err := o.FromBytes(field); err != nil {
		t.Fatalf("Parse accepted an options field that Options.FromBytes refuses: %v", err)
	}
	return field
}
