// Package dhcpwire reads and writes DHCPv4 messages (RFC 2131 §2) without
// allocating per option.
//
// insomniacslk/dhcp stays the library for building packets in tests and tools;
// this package exists because the server needs three things it does not give:
// option overload (option 52) on input, options written in a fixed order of our
// choosing on output (the fast path copies the same bytes), and no per-packet
// allocations on the hot path.
package dhcpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Fixed BOOTP layout (RFC 2131 figure 1).
const (
	HeaderLen  = 236
	CookieLen  = 4
	MinLen     = HeaderLen + CookieLen
	snameOff   = 44
	snameLen   = 64
	fileOff    = 108
	fileLen    = 128
	optionsOff = MinLen
)

// MagicCookie starts the options field.
var MagicCookie = [4]byte{99, 130, 83, 99}

// BOOTP op codes.
const (
	BootRequest = 1
	BootReply   = 2
)

// FlagBroadcast is the B bit of the flags field.
const FlagBroadcast = 0x8000

// Option codes used by the server.
const (
	OptPad               = 0
	OptSubnetMask        = 1
	OptRouters           = 3
	OptDNS               = 6
	OptHostname          = 12
	OptDomainName        = 15
	OptRequestedIP       = 50
	OptLeaseTime         = 51
	OptOverload          = 52
	OptMessageType       = 53
	OptServerID          = 54
	OptParamRequest      = 55
	OptMessage           = 56
	OptMaxMessageSize    = 57
	OptRenewalTime       = 58
	OptRebindingTime     = 59
	OptVendorClass       = 60
	OptClientID          = 61
	OptRelayAgentInfo    = 82
	OptAuthentication    = 90
	OptCLTT              = 91
	OptAssociatedIP      = 92
	OptSubnetSelection   = 118
	OptForceRenewNonce   = 145 // RFC 6704 FORCERENEW_NONCE_CAPABLE
	OptStatusCode        = 151 // RFC 6926
	OptBaseTime          = 152
	OptStartTimeOfState  = 153
	OptQueryStartTime    = 154
	OptQueryEndTime      = 155
	OptDHCPState         = 156
	OptDataSource        = 157
	OptEnd               = 255
	SubOptCircuitID      = 1
	SubOptRemoteID       = 2
	SubOptLinkSelection  = 5
	SubOptServerIDOverr  = 11
	SubOptRelayID        = 12
	SubOptRelaySourcePrt = 19
)

// Message types (option 53).
const (
	Discover        = 1
	Offer           = 2
	Request         = 3
	Decline         = 4
	Ack             = 5
	Nak             = 6
	Release         = 7
	Inform          = 8
	ForceRenew      = 9
	LeaseQuery      = 10
	LeaseUnassigned = 11
	LeaseUnknown    = 12
	LeaseActive     = 13
	BulkLeaseQuery  = 14
	LeaseQueryDone  = 15
)

var msgNames = map[uint8]string{
	Discover: "discover", Offer: "offer", Request: "request", Decline: "decline",
	Ack: "ack", Nak: "nak", Release: "release", Inform: "inform", ForceRenew: "forcerenew",
	LeaseQuery: "leasequery", LeaseUnassigned: "leaseunassigned", LeaseUnknown: "leaseunknown",
	LeaseActive: "leaseactive", BulkLeaseQuery: "bulkleasequery", LeaseQueryDone: "leasequerydone",
}

// MessageName is the lower-case name of a message type, as used in metrics.
func MessageName(t uint8) string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return "unknown"
}

// Parse errors. Callers count them by these values.
var (
	ErrShort     = errors.New("shorter than a BOOTP header")
	ErrCookie    = errors.New("bad magic cookie")
	ErrOptionLen = errors.New("option runs past the end of its field")
	ErrHLen      = errors.New("hlen greater than 16")
)

// Packet is a parsed view of a DHCP message. Option values alias the
// buffer given to Parse unless the option had to be concatenated.
type Packet struct {
	Op, HType, HLen, Hops uint8
	XID                   uint32
	Secs, Flags           uint16
	CIAddr, YIAddr        netip.Addr
	SIAddr, GIAddr        netip.Addr
	CHAddrRaw             [16]byte
	Sname, File           []byte // nil when used for options (overload)
	// The options, in first-seen order: the first inlineOpts in inline (a
	// request seldom carries more, and growing a slice from nil was four
	// allocations per message), the rest in more. No field points into the
	// Packet itself, so a Packet can live on its caller's stack.
	inline [inlineOpts]opt
	more   []opt
	nopts  int
	// Raw is the buffer the packet was parsed from.
	Raw []byte
}

type opt struct {
	code uint8
	val  []byte
}

// inlineOpts is how many options a Packet holds before it needs memory of
// its own for more.
const inlineOpts = 12

// CHAddr returns the client hardware address, hlen bytes long.
func (p *Packet) CHAddr() []byte { return p.CHAddrRaw[:p.HLen] }

// Broadcast reports whether the B flag is set.
func (p *Packet) Broadcast() bool { return p.Flags&FlagBroadcast != 0 }

// Option returns an option's value (concatenated per RFC 3396) and whether
// it was present.
func (p *Packet) Option(code uint8) ([]byte, bool) {
	for i := range p.nopts {
		if o := p.optAt(i); o.code == code {
			return o.val, true
		}
	}
	return nil, false
}

// optAt is the i-th option parsed.
func (p *Packet) optAt(i int) *opt {
	if i < inlineOpts {
		return &p.inline[i]
	}
	return &p.more[i-inlineOpts]
}

// Has reports whether an option is present.
func (p *Packet) Has(code uint8) bool { _, ok := p.Option(code); return ok }

// Codes returns the option codes present, in first-seen order.
func (p *Packet) Codes() []uint8 {
	c := make([]uint8, p.nopts)
	for i := range c {
		c[i] = p.optAt(i).code
	}
	return c
}

// MessageType returns option 53, or 0 when absent or malformed.
func (p *Packet) MessageType() uint8 {
	if v, ok := p.Option(OptMessageType); ok && len(v) == 1 {
		return v[0]
	}
	return 0
}

// AddrOption returns a 4-byte option as an address.
func (p *Packet) AddrOption(code uint8) (netip.Addr, bool) {
	if v, ok := p.Option(code); ok && len(v) == 4 {
		return netip.AddrFrom4([4]byte(v)), true
	}
	return netip.Addr{}, false
}

// MaxMessageSize returns the size the client accepts (option 57), at least
// 576 (RFC 2132 §9.10).
func (p *Packet) MaxMessageSize() int {
	if v, ok := p.Option(OptMaxMessageSize); ok && len(v) == 2 {
		if n := int(binary.BigEndian.Uint16(v)); n > 576 {
			return n
		}
	}
	return 576
}

// RelaySubOption returns a sub-option of option 82.
func (p *Packet) RelaySubOption(sub uint8) ([]byte, bool) {
	ri, ok := p.Option(OptRelayAgentInfo)
	if !ok {
		return nil, false
	}
	return SubOption(ri, sub)
}

// SubOption finds a sub-option in an option 82 style body (code, len, data).
func SubOption(body []byte, sub uint8) ([]byte, bool) {
	for i := 0; i+2 <= len(body); {
		c, n := body[i], int(body[i+1])
		if i+2+n > len(body) {
			return nil, false
		}
		if c == sub {
			return body[i+2 : i+2+n], true
		}
		i += 2 + n
	}
	return nil, false
}

// Parse reads a DHCP message. It accepts a missing END option (many relays
// and embedded clients omit it) but refuses options that run past their
// field.
func Parse(b []byte) (*Packet, error) {
	p := &Packet{}
	return p, p.Parse(b)
}

// Reset empties p for reuse: it keeps the memory it has for options beyond
// the first few, and lets go of the buffer it was parsed from.
func (p *Packet) Reset() {
	more := p.more
	clear(more)
	*p = Packet{more: more[:0]}
}

// Parse fills p from b, reusing the memory p has for options beyond the
// first few.
func (p *Packet) Parse(b []byte) error {
	if len(b) < MinLen {
		return fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if [4]byte(b[HeaderLen:MinLen]) != MagicCookie {
		return ErrCookie
	}
	if b[2] > 16 {
		return fmt.Errorf("%w: %d", ErrHLen, b[2])
	}
	more := p.more[:0]
	*p = Packet{
		Op: b[0], HType: b[1], HLen: b[2], Hops: b[3],
		XID:    binary.BigEndian.Uint32(b[4:]),
		Secs:   binary.BigEndian.Uint16(b[8:]),
		Flags:  binary.BigEndian.Uint16(b[10:]),
		CIAddr: netip.AddrFrom4([4]byte(b[12:16])),
		YIAddr: netip.AddrFrom4([4]byte(b[16:20])),
		SIAddr: netip.AddrFrom4([4]byte(b[20:24])),
		GIAddr: netip.AddrFrom4([4]byte(b[24:28])),
		more:   more,
		Raw:    b,
	}
	copy(p.CHAddrRaw[:], b[28:44])
	overload, err := p.parseOptions(b[optionsOff:])
	if err != nil {
		return err
	}
	// RFC 2131 §4.1: with overload, options continue in file, then sname.
	if overload&1 != 0 {
		if _, err := p.parseOptions(b[fileOff : fileOff+fileLen]); err != nil {
			return fmt.Errorf("file field: %w", err)
		}
	} else {
		p.File = b[fileOff : fileOff+fileLen]
	}
	if overload&2 != 0 {
		if _, err := p.parseOptions(b[snameOff : snameOff+snameLen]); err != nil {
			return fmt.Errorf("sname field: %w", err)
		}
	} else {
		p.Sname = b[snameOff : snameOff+snameLen]
	}
	return nil
}

// parseOptions appends the options in field to p and returns the overload
// value if option 52 was among them.
func (p *Packet) parseOptions(field []byte) (overload uint8, err error) {
	for i := 0; i < len(field); {
		code := field[i]
		switch code {
		case OptPad:
			i++
			continue
		case OptEnd:
			return overload, nil
		}
		if i+1 >= len(field) {
			return 0, fmt.Errorf("%w: option %d at offset %d has no length", ErrOptionLen, code, i)
		}
		n := int(field[i+1])
		if i+2+n > len(field) {
			return 0, fmt.Errorf("%w: option %d at offset %d wants %d bytes, %d left", ErrOptionLen, code, i, n, len(field)-i-2)
		}
		val := field[i+2 : i+2+n : i+2+n]
		if code == OptOverload && n == 1 {
			overload = val[0] & 3
		}
		p.add(code, val)
		i += 2 + n
	}
	return overload, nil
}

// add records an option, concatenating repeats as RFC 3396 requires.
func (p *Packet) add(code uint8, val []byte) {
	for i := range p.nopts {
		if o := p.optAt(i); o.code == code {
			merged := make([]byte, 0, len(o.val)+len(val))
			o.val = append(append(merged, o.val...), val...)
			return
		}
	}
	if p.nopts < inlineOpts {
		p.inline[p.nopts] = opt{code, val}
	} else {
		p.more = append(p.more, opt{code, val})
	}
	p.nopts++
}

// ErrMalformed is wrapped by Validate's errors: the message parses, but an
// option or header field the server acts on breaks its RFC's format.
var ErrMalformed = errors.New("malformed message")

// HTypeEthernet is the ARP hardware type of Ethernet (RFC 1700), whose
// addresses are 6 bytes.
const HTypeEthernet = 1

// Validate checks what Parse leaves to the caller: the lengths and values
// that the options a server acts on must have. A message that fails is to
// be dropped whatever else it carries (a 3-byte server identifier next to a
// requested address must not turn a SELECTING request into an
// INIT-REBOOT one). Options the server only stores or echoes are not
// judged here, except option 82, which is echoed to relays that parse it.
// A missing END option is accepted: the options then end with their field,
// which is unambiguous, and ISC dhcpd and Kea accept it too.
func (p *Packet) Validate() error {
	for i := range p.nopts {
		o := p.optAt(i)
		if err := checkOption(o.code, o.val); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	return nil
}

// checkOption holds the rule for one option (values concatenated per RFC
// 3396 first, as the server reads them).
func checkOption(code uint8, v []byte) error {
	exact := func(n int) error {
		if len(v) != n {
			return fmt.Errorf("option %d of %d bytes, want %d", code, len(v), n)
		}
		return nil
	}
	switch code {
	case OptRequestedIP, OptServerID, OptLeaseTime, OptSubnetSelection:
		// RFC 2132 §9.1, §9.2, §9.7; RFC 3011 §3: length 4.
		return exact(4)
	case OptMessageType:
		return exact(1) // RFC 2132 §9.6
	case OptOverload:
		// RFC 2132 §9.3: length 1, value 1 (file), 2 (sname) or 3 (both).
		if err := exact(1); err != nil {
			return err
		}
		if v[0] < 1 || v[0] > 3 {
			return fmt.Errorf("option 52 value %d, want 1, 2 or 3", v[0])
		}
	case OptMaxMessageSize:
		// RFC 2132 §9.10: length 2, "The minimum legal value is 576".
		if err := exact(2); err != nil {
			return err
		}
		if n := binary.BigEndian.Uint16(v); n < 576 {
			return fmt.Errorf("option 57 value %d, below the legal minimum 576", n)
		}
	case OptClientID:
		// RFC 2132 §9.14: a type byte and at least one byte.
		if len(v) < 2 {
			return fmt.Errorf("option 61 of %d bytes, want at least 2", len(v))
		}
	case OptRelayAgentInfo:
		return checkRelayInfo(v)
	}
	return nil
}

// checkRelayInfo checks option 82's sub-options (RFC 3046 §2.0: code,
// length, value, repeated to the option's end; at least one sub-option),
// and the lengths of the sub-options the server acts on: link selection
// (RFC 3527 §3) and server identifier override (RFC 5107 §4), 4 each.
func checkRelayInfo(v []byte) error {
	if len(v) == 0 {
		return errors.New("option 82 with no sub-options")
	}
	for i := 0; i < len(v); {
		if i+2 > len(v) || i+2+int(v[i+1]) > len(v) {
			return fmt.Errorf("option 82 sub-option at offset %d runs past the option", i)
		}
		c, n := v[i], int(v[i+1])
		if (c == SubOptLinkSelection || c == SubOptServerIDOverr) && n != 4 {
			return fmt.Errorf("option 82 sub-option %d of %d bytes, want 4", c, n)
		}
		i += 2 + n
	}
	return nil
}

// ValidateClientHeader checks the header of a message from a client (not
// of a leasequery, whose requester leaves chaddr empty to query by client
// identifier): RFC 2131 §2 makes hlen the hardware address length, 6 for
// Ethernet. With 0 there is no address to bind the lease to or to send
// the reply to.
func (p *Packet) ValidateClientHeader() error {
	if p.HType == HTypeEthernet && p.HLen != 6 {
		return fmt.Errorf("%w: hlen %d for Ethernet, want 6", ErrMalformed, p.HLen)
	}
	return nil
}
