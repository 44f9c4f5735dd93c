package dhcpwire

import (
	"encoding/binary"
	"net/netip"
)

// Header holds the fixed BOOTP fields of a message to be written.
type Header struct {
	Op, HType, HLen, Hops uint8
	XID                   uint32
	Secs, Flags           uint16
	CIAddr, YIAddr        netip.Addr
	SIAddr, GIAddr        netip.Addr
	CHAddr                [16]byte
}

// ReplyHeader starts a reply to req with the fields RFC 2131 Table 3 copies.
func ReplyHeader(req *Packet) Header {
	return Header{
		Op: BootReply, HType: req.HType, HLen: req.HLen,
		XID: req.XID, Flags: req.Flags, GIAddr: req.GIAddr, CHAddr: req.CHAddrRaw,
	}
}

// AppendHeader writes the fixed header and magic cookie (240 bytes).
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, h.Op, h.HType, h.HLen, h.Hops)
	b = binary.BigEndian.AppendUint32(b, h.XID)
	b = binary.BigEndian.AppendUint16(b, h.Secs)
	b = binary.BigEndian.AppendUint16(b, h.Flags)
	for _, a := range [...]netip.Addr{h.CIAddr, h.YIAddr, h.SIAddr, h.GIAddr} {
		b = appendAddr(b, a)
	}
	b = append(b, h.CHAddr[:]...)
	b = append(b, make([]byte, snameLen+fileLen)...)
	return append(b, MagicCookie[:]...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	return append(b, 0, 0, 0, 0)
}

// AppendOption writes one option, split into several instances when longer
// than 255 bytes (RFC 3396).
func AppendOption(b []byte, code uint8, val []byte) []byte {
	for {
		n := min(len(val), 255)
		b = append(b, code, byte(n))
		b = append(b, val[:n]...)
		val = val[n:]
		if len(val) == 0 {
			return b
		}
	}
}

// AppendUint32Option writes a 4-byte integer option such as 51, 58 or 59.
func AppendUint32Option(b []byte, code uint8, v uint32) []byte {
	return binary.BigEndian.AppendUint32(append(b, code, 4), v)
}

// AppendAddrOption writes a 4-byte address option such as 54.
func AppendAddrOption(b []byte, code uint8, a netip.Addr) []byte {
	return appendAddr(append(b, code, 4), a)
}

// OptionLen is the number of bytes AppendOption writes for a value of n bytes.
func OptionLen(n int) int {
	if n == 0 {
		return 2
	}
	return n + 2*((n+254)/255)
}
