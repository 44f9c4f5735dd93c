package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Error is a message that cannot be accepted, with the reject reason the
// failover package sends in its DISCONNECT.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("failover message: %s (reject reason %d)", e.Msg, e.Reason)
}

func bad(format string, a ...any) error {
	return &Error{Reason: ReasonUnknownError, Msg: fmt.Sprintf(format, a...)}
}

// ErrIgnore is returned (with the message's header) for a message type in
// 128–255, which a receiver must ignore (draft-12 §6.1).
var ErrIgnore = errors.New("failover message of an unknown type to be ignored")

// magicCookie starts client-request-options and client-reply-options.
var magicCookie = [4]byte{99, 130, 83, 99}

// ReadMessage reads one framed message into buf (grown to MaxLen if
// smaller) and returns it. A length outside 12..2048 is an *Error: the
// stream cannot be resynchronised after it.
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < MaxLen {
		buf = make([]byte, MaxLen)
	}
	buf = buf[:MaxLen]
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf))
	if n < HeaderLen || n > MaxLen {
		return nil, bad("length %d outside %d..%d", n, HeaderLen, MaxLen)
	}
	if _, err := io.ReadFull(r, buf[2:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading a %d-byte failover message: %w", n, err)
	}
	return buf[:n], nil
}

// Decode parses one whole message (as ReadMessage returns it).
// countAssigned counts the assigned-IP-address options of a payload (a
// capacity hint: framing errors are Decode's to report).
func countAssigned(b []byte) int {
	n := 0
	for p := 0; len(b)-p >= 4; {
		if OptCode(binary.BigEndian.Uint16(b[p:])) == OptAssignedIP {
			n++
		}
		p += 4 + int(binary.BigEndian.Uint16(b[p+2:]))
	}
	return n
}

func Decode(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, bad("%d bytes, shorter than the header", len(b))
	}
	if n := int(binary.BigEndian.Uint16(b)); n != len(b) {
		return nil, bad("length field %d, message of %d bytes", n, len(b))
	}
	m := &Message{Type: MsgType(b[2]), Time: binary.BigEndian.Uint32(b[4:]), XID: binary.BigEndian.Uint32(b[8:])}
	payoff := int(b[3])
	if payoff < HeaderLen || payoff > len(b) {
		return nil, bad("payload offset %d in a %d-byte message", payoff, len(b))
	}
	if m.Type >= 128 {
		return m, ErrIgnore
	}
	if m.Type < PoolReq || m.Type > Disconnect {
		return nil, bad("unknown message type %d", m.Type)
	}
	m.Has = map[OptCode]bool{}
	grouped := m.Type == BndUpd || m.Type == BndAck
	if grouped {
		// One allocation for the bindings: growing the slice an append
		// at a time was most of a catch-up's decoding garbage.
		m.Bindings = make([]Binding, 0, countAssigned(b[payoff:]))
	}
	var cur *Binding
	seen := map[OptCode]bool{} // within the current binding
	for p := payoff; p < len(b); {
		if len(b)-p < 4 {
			return nil, bad("option header truncated at byte %d", p)
		}
		code := OptCode(binary.BigEndian.Uint16(b[p:]))
		n := int(binary.BigEndian.Uint16(b[p+2:]))
		p += 4
		if len(b)-p < n {
			return nil, bad("option %d wants %d bytes, %d left", code, n, len(b)-p)
		}
		v := b[p : p+n]
		p += n
		if grouped && code == OptAssignedIP {
			if n != 4 {
				return nil, bad("assigned-IP-address of %d bytes", n)
			}
			m.Bindings = append(m.Bindings, Binding{IP: netip.AddrFrom4([4]byte(v))})
			cur = &m.Bindings[len(m.Bindings)-1]
			clear(seen)
			continue
		}
		if grouped && cur != nil && isBindingOpt(code) {
			if seen[code] {
				return nil, bad("option %d repeated for %s", code, cur.IP)
			}
			seen[code] = true
			if err := decodeBindingOpt(cur, code, v); err != nil {
				return nil, err
			}
			continue
		}
		if grouped && m.Type == BndUpd && cur == nil && isBindingOpt(code) {
			return nil, bad("binding option %d before the first assigned-IP-address", code)
		}
		if m.Has[code] {
			return nil, bad("option %d repeated", code)
		}
		known, err := decodeMsgOpt(m, code, v)
		if err != nil {
			return nil, err
		}
		if known {
			m.Has[code] = true
		}
	}
	if m.Type == BndUpd && len(m.Bindings) == 0 {
		return nil, &Error{Reason: ReasonMissingBinding, Msg: "BNDUPD without an assigned-IP-address"}
	}
	for _, bd := range m.Bindings {
		if m.Type == BndUpd && bd.Status == 0 {
			// draft-12 Table 7.1-1: binding-status is a MUST.
			return nil, &Error{Reason: ReasonMissingBinding, Msg: fmt.Sprintf("no binding-status for %s", bd.IP)}
		}
	}
	return m, nil
}

// isBindingOpt: the options that belong to one address's group.
func isBindingOpt(c OptCode) bool {
	switch c {
	case OptBindingStatus, OptIPFlags, OptClientID, OptClientHWAddr, OptLeaseExpiration, OptPotentialExpiration,
		OptStartTimeOfState, OptCLTT, OptClientRequestOptions, OptClientReplyOptions, OptRejectReason, OptMessage, OptDDNS:
		return true
	}
	return false
}

func u32(code OptCode, v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, bad("option %d of %d bytes, want 4", code, len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

func u8(code OptCode, v []byte) (uint8, error) {
	if len(v) != 1 {
		return 0, bad("option %d of %d bytes, want 1", code, len(v))
	}
	return v[0], nil
}

func dhcpOptions(code OptCode, v []byte) ([]byte, error) {
	if len(v) < 4 || [4]byte(v[:4]) != magicCookie {
		return nil, bad("option %d without the DHCP magic cookie", code)
	}
	return append([]byte(nil), v[4:]...), nil
}

func decodeBindingOpt(bd *Binding, code OptCode, v []byte) error {
	var err error
	switch code {
	case OptBindingStatus:
		var s uint8
		if s, err = u8(code, v); err == nil {
			if s < uint8(StatusFree) || s > uint8(StatusBackup) {
				return &Error{Reason: ReasonMissingBinding, Msg: fmt.Sprintf("binding-status %d for %s", s, bd.IP)}
			}
			bd.Status = Status(s)
		}
	case OptIPFlags:
		// ISC sends two bytes; the draft's figure shows one.
		switch len(v) {
		case 1:
			bd.Flags = uint16(v[0])
		case 2:
			bd.Flags = binary.BigEndian.Uint16(v)
		default:
			return bad("IP-flags of %d bytes", len(v))
		}
	case OptClientID:
		if len(v) == 0 {
			return bad("empty client-identifier for %s", bd.IP)
		}
		bd.ClientID = append([]byte(nil), v...)
	case OptClientHWAddr:
		if len(v) < 2 || len(v) > 17 || v[0] == 0 {
			return bad("client-hardware-address of %d bytes (type %v) for %s", len(v), v[:min(1, len(v))], bd.IP)
		}
		bd.HWType, bd.HWAddr = v[0], append([]byte(nil), v[1:]...)
	case OptLeaseExpiration:
		bd.Expiry, err = u32(code, v)
	case OptPotentialExpiration:
		bd.PotExp, err = u32(code, v)
	case OptStartTimeOfState:
		bd.StateAt, err = u32(code, v)
	case OptCLTT:
		bd.CLTT, err = u32(code, v)
	case OptClientRequestOptions:
		bd.RequestOptions, err = dhcpOptions(code, v)
	case OptClientReplyOptions:
		bd.ReplyOptions, err = dhcpOptions(code, v)
	case OptRejectReason:
		var r uint8
		r, err = u8(code, v)
		bd.Reject = Reason(r)
	case OptMessage:
		bd.Text = string(v)
	case OptDDNS:
		// Not used yet (no DNS updates); accepted and ignored.
	}
	return err
}

// decodeMsgOpt fills a message-level option; known is false for an option
// the receiver must ignore.
func decodeMsgOpt(m *Message, code OptCode, v []byte) (known bool, err error) {
	switch code {
	case OptAddressesTransferred:
		m.AddrsTransferred, err = u32(code, v)
	case OptHBA:
		if len(v) != 32 {
			return false, &Error{Reason: ReasonHBAConflict, Msg: fmt.Sprintf("hash-bucket-assignment of %d bytes, want 32", len(v))}
		}
		m.HBA = append([]byte(nil), v...)
	case OptMaxUnacked:
		m.MaxUnacked, err = u32(code, v)
	case OptMCLT:
		m.MCLT, err = u32(code, v)
	case OptMessage:
		m.Text = string(v)
	case OptMessageDigest:
		return false, &Error{Reason: ReasonDigestNotConfigured, Msg: "message digest not configured"}
	case OptReceiveTimer:
		m.ReceiveTimer, err = u32(code, v)
	case OptProtocolVersion:
		m.ProtoVersion, err = u8(code, v)
	case OptRejectReason:
		var r uint8
		r, err = u8(code, v)
		m.RejectReason = Reason(r)
	case OptRelationshipName:
		m.Name = string(v)
	case OptServerFlags:
		m.ServerFlags, err = u8(code, v)
	case OptServerState:
		var s uint8
		s, err = u8(code, v)
		m.ServerState = ServerState(s)
	case OptStartTimeOfState:
		m.StartOfState, err = u32(code, v)
	case OptTLSReply:
		m.TLSReply, err = u8(code, v)
	case OptTLSRequest:
		m.TLSRequest, err = u8(code, v)
	case OptVendorClass:
		m.VendorClass = string(v)
	default:
		return false, nil // draft-12 §6.1: options not understood are ignored
	}
	return err == nil, err
}

// Marshal encodes m with the options its type carries (draft-12 §7, as
// ISC dhcpd sends them); the other fields are ignored. The result is at
// most MaxLen bytes, or an error.
func (m *Message) Marshal() ([]byte, error) {
	size := 256
	if len(m.Bindings) > 0 {
		size = MaxLen // binding updates fill messages: one allocation, not four
	}
	b := make([]byte, HeaderLen, size)
	b[2], b[3] = byte(m.Type), HeaderLen
	binary.BigEndian.PutUint32(b[4:], m.Time)
	binary.BigEndian.PutUint32(b[8:], m.XID)
	switch m.Type {
	case Connect:
		b = appendStr(b, OptRelationshipName, m.Name)
		b = appendU32(b, OptMaxUnacked, m.MaxUnacked)
		b = appendU32(b, OptReceiveTimer, m.ReceiveTimer)
		b = appendStr(b, OptVendorClass, m.VendorClass)
		b = appendU8(b, OptProtocolVersion, m.ProtoVersion)
		b = appendU8(b, OptTLSRequest, m.TLSRequest)
		b = appendU32(b, OptMCLT, m.MCLT)
		if len(m.HBA) != 32 {
			return nil, fmt.Errorf("CONNECT with a hash bucket assignment of %d bytes, want 32", len(m.HBA))
		}
		b = appendOpt(b, OptHBA, m.HBA)
	case ConnectAck:
		b = appendStr(b, OptRelationshipName, m.Name)
		if m.RejectReason == 0 {
			b = appendU32(b, OptMaxUnacked, m.MaxUnacked)
			b = appendU32(b, OptReceiveTimer, m.ReceiveTimer)
			b = appendStr(b, OptVendorClass, m.VendorClass)
		}
		b = appendU8(b, OptProtocolVersion, m.ProtoVersion)
		b = appendU8(b, OptTLSReply, m.TLSReply)
		if m.RejectReason != 0 {
			b = appendU8(b, OptRejectReason, uint8(m.RejectReason))
			if m.Text != "" {
				b = appendStr(b, OptMessage, m.Text)
			}
		}
	case State:
		b = appendU8(b, OptServerState, uint8(m.ServerState))
		b = appendU8(b, OptServerFlags, m.ServerFlags)
		b = appendU32(b, OptStartTimeOfState, m.StartOfState)
	case Disconnect:
		b = appendU8(b, OptRejectReason, uint8(m.RejectReason))
		if m.Text != "" {
			b = appendStr(b, OptMessage, m.Text)
		}
	case PoolResp:
		b = appendU32(b, OptAddressesTransferred, m.AddrsTransferred)
	case BndUpd, BndAck:
		if len(m.Bindings) == 0 {
			return nil, fmt.Errorf("%s without bindings", m.Type)
		}
		for i := range m.Bindings {
			b = m.Bindings[i].append(b, m.Type)
		}
	}
	if len(b) > MaxLen {
		return nil, fmt.Errorf("%s of %d bytes exceeds %d", m.Type, len(b), MaxLen)
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)))
	return b, nil
}

// EncodedLen is the number of bytes bd adds to a message of type t.
func (bd *Binding) EncodedLen(t MsgType) int { return len(bd.append(nil, t)) }

func (bd *Binding) append(b []byte, t MsgType) []byte {
	ip := bd.IP.As4()
	b = appendOpt(b, OptAssignedIP, ip[:])
	if t == BndAck {
		if bd.Reject != 0 {
			b = appendU8(b, OptRejectReason, uint8(bd.Reject))
			if bd.Text != "" {
				b = appendStr(b, OptMessage, bd.Text)
			}
		}
		return b
	}
	b = appendU8(b, OptBindingStatus, uint8(bd.Status))
	if bd.Flags != 0 {
		b = appendOpt(b, OptIPFlags, binary.BigEndian.AppendUint16(nil, bd.Flags))
	}
	if len(bd.ClientID) > 0 {
		b = appendOpt(b, OptClientID, bd.ClientID)
	}
	if len(bd.HWAddr) > 0 {
		b = appendOpt(b, OptClientHWAddr, append([]byte{bd.HWType}, bd.HWAddr...))
	}
	if bd.Expiry != 0 {
		b = appendU32(b, OptLeaseExpiration, bd.Expiry)
	}
	if bd.PotExp != 0 {
		b = appendU32(b, OptPotentialExpiration, bd.PotExp)
	}
	if bd.StateAt != 0 {
		b = appendU32(b, OptStartTimeOfState, bd.StateAt)
	}
	if bd.CLTT != 0 {
		b = appendU32(b, OptCLTT, bd.CLTT)
	}
	if len(bd.RequestOptions) > 0 {
		b = appendOpt(b, OptClientRequestOptions, append(magicCookie[:len(magicCookie):len(magicCookie)], bd.RequestOptions...))
	}
	if len(bd.ReplyOptions) > 0 {
		b = appendOpt(b, OptClientReplyOptions, append(magicCookie[:len(magicCookie):len(magicCookie)], bd.ReplyOptions...))
	}
	return b
}

func appendOpt(b []byte, code OptCode, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendU32(b []byte, code OptCode, v uint32) []byte {
	return appendOpt(b, code, binary.BigEndian.AppendUint32(nil, v))
}

func appendU8(b []byte, code OptCode, v uint8) []byte { return appendOpt(b, code, []byte{v}) }

func appendStr(b []byte, code OptCode, s string) []byte { return appendOpt(b, code, []byte(s)) }

var msgNames = [...]string{"", "POOLREQ", "POOLRESP", "BNDUPD", "BNDACK", "CONNECT", "CONNECTACK", "UPDREQALL", "UPDDONE", "UPDREQ", "STATE", "CONTACT", "DISCONNECT"}

// String returns the draft's name of the message type.
func (t MsgType) String() string {
	if int(t) < len(msgNames) && t != 0 {
		return msgNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}
