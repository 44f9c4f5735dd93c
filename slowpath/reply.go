package slowpath

import (
	"errors"
	"net/netip"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

var (
	errNoRequestedIP = errors.New("no requested address")
)

// Sizes both paths must agree on (ARCHITECTURE.md invariant 3) come from
// the XDP program through bpf2go, not copies.
const (
	// udpIPOverhead is what option 57 counts beyond the DHCP message itself
	// (RFC 2132 §9.10 gives the size of the whole IP datagram, as ISC reads it).
	udpIPOverhead = fastpath.UDPIPOverhead
	// bootpMinLen is the smallest BOOTP message some relays and clients
	// accept (RFC 1542 §2.1); replies are padded up to it.
	bootpMinLen = fastpath.ReplyMinLen
	// replyAlign: OFFERs and ACKs are padded to a multiple of it.
	replyAlign = fastpath.ReplyAlign
)

// replyTo renders an OFFER or ACK. times holds lease time, T1 and T2 and is
// used only when withLease is set (INFORM replies carry no lease time).
//
// The option order is a contract with the fast path (ARCHITECTURE.md invariant 3):
// 53, 54, 51, 58, 59, the subnet's option block, 61 echoed, 82 echoed, END.
// (r.auth, FORCERENEW's 145 or key, goes before the echoed options; it is
// set only for OFFERs, SELECTING or INIT-REBOOT ACKs and INFORMs' ACKs,
// never for a renewal.)
// (118 is echoed before 82 too, but the fast path passes up every request
// that carries it, so its replies never need it.)
func (s *Server) replyTo(r *req, typ uint8, yiaddr netip.Addr, times [3]uint32, withLease bool) Outgoing {
	p := r.p
	h := dhcpwire.ReplyHeader(p)
	h.YIAddr = yiaddr
	if typ == dhcpwire.Ack && !p.CIAddr.IsUnspecified() {
		h.CIAddr = p.CIAddr
	}
	echo82 := !(typ == dhcpwire.Ack && !withLease) // an INFORM reply goes straight to the client
	head := 3 + 6 + len(r.auth)
	if withLease {
		head += 18
	}
	tail := s.echoLen(p, echo82) + 1
	tmpl := fitOptions(r.sub, p, p.MaxMessageSize()-udpIPOverhead-dhcpwire.MinLen-head-tail)

	b, reuse := s.payload(dhcpwire.MinLen + head + len(tmpl) + tail + 64)
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, r.sid)
	if withLease {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, times[0])
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRenewalTime, times[1])
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRebindingTime, times[2])
	}
	b = append(b, tmpl...)
	// 145 in an OFFER, 90 with a key in an ACK (RFC 6704): after the
	// subnet's block, before the echoed options (82 stays last). Renewal
	// ACKs, the ones the fast path also builds, never carry them.
	b = append(b, r.auth...)
	b = s.appendEcho(b, p, echo82)
	o := s.addressed(r, typ, yiaddr, finishWords(b, p.MaxMessageSize()-udpIPOverhead))
	o.Reuse = reuse
	return o
}

// payload is an empty reply buffer with room for n bytes, the Sender's
// when it lends them (reuse).
func (s *Server) payload(n int) (b []byte, reuse bool) {
	if s.bufs != nil {
		return s.bufs.Payload(n), true
	}
	return make([]byte, 0, n), false
}

// nak renders a DHCPNAK (RFC 2131 Table 3): no addresses, 53, 54, 56,
// 61 and 82 echoed. Sent with the broadcast bit so a relay broadcasts it.
func (s *Server) nak(r *req, why string) Outgoing {
	h := dhcpwire.ReplyHeader(r.p)
	h.Flags |= dhcpwire.FlagBroadcast
	b := make([]byte, 0, 400)
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.Nak)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, r.sid)
	b = dhcpwire.AppendOption(b, dhcpwire.OptMessage, []byte(why))
	b = s.appendEcho(b, r.p, true)
	return s.addressed(r, dhcpwire.Nak, netip.Addr{}, finish(b))
}

func (s *Server) echoLen(p *dhcpwire.Packet, echo82 bool) int {
	n := 0
	if v, ok := p.Option(dhcpwire.OptClientID); ok {
		n += dhcpwire.OptionLen(len(v))
	}
	if v, ok := p.Option(dhcpwire.OptSubnetSelection); ok {
		n += dhcpwire.OptionLen(len(v))
	}
	if v, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok && echo82 {
		n += dhcpwire.OptionLen(len(v))
	}
	return n
}

// appendEcho copies the client identifier (RFC 6842), the subnet
// selection option (RFC 3011 §3: returned whether or not it was asked for)
// and the relay agent information (RFC 3046, always last) from the request.
func (s *Server) appendEcho(b []byte, p *dhcpwire.Packet, echo82 bool) []byte {
	if v, ok := p.Option(dhcpwire.OptClientID); ok {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, v)
	}
	if v, ok := p.Option(dhcpwire.OptSubnetSelection); ok {
		b = dhcpwire.AppendOption(b, dhcpwire.OptSubnetSelection, v)
	}
	if v, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok && echo82 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, v)
	}
	return b
}

// finish writes END and pads to the BOOTP minimum.
func finish(b []byte) []byte {
	b = append(b, dhcpwire.OptEnd)
	for len(b) < bootpMinLen {
		b = append(b, 0)
	}
	return b
}

// finishWords is finish for OFFERs and ACKs, padded on to a multiple of
// replyAlign (4) bytes where the client's maximum message size (max, the DHCP part)
// leaves room. The XDP program pads its renewal ACKs so (it sums and
// copies in words) and passes up a renewal whose padded reply would not
// fit, so both paths send a renewal ACK of the same length (ARCHITECTURE.md
// invariant 3).
func finishWords(b []byte, max int) []byte {
	b = finish(b)
	for len(b)%replyAlign != 0 && len(b) < max {
		b = append(b, 0)
	}
	return b
}

// fitOptions returns the subnet's option block, or, when it does not fit in
// room bytes, as much of it as fits: options the client did not ask for
// (option 55) are dropped first, from the end.
func fitOptions(sub *Subnet, p *dhcpwire.Packet, room int) []byte {
	if sub == nil {
		return nil
	}
	if len(sub.Options) <= room {
		return sub.Options
	}
	type span struct {
		code     uint8
		from, to int
	}
	var spans []span
	for i := 0; i+1 < len(sub.Options); {
		n := int(sub.Options[i+1])
		spans = append(spans, span{sub.Options[i], i, i + 2 + n})
		i += 2 + n
	}
	prl, _ := p.Option(dhcpwire.OptParamRequest)
	asked := func(c uint8) bool {
		for _, x := range prl {
			if x == c {
				return true
			}
		}
		return false
	}
	keep := make([]bool, len(spans))
	total := 0
	for pass := 0; pass < 2; pass++ {
		for i, sp := range spans {
			want := pass == 0 && (asked(sp.code) || sp.code == dhcpwire.OptSubnetMask) || pass == 1
			if !keep[i] && want && total+sp.to-sp.from <= room {
				keep[i] = true
				total += sp.to - sp.from
			}
		}
	}
	out := make([]byte, 0, total)
	for i, sp := range spans {
		if keep[i] {
			out = append(out, sub.Options[sp.from:sp.to]...)
		}
	}
	return out
}

// addressed decides where a reply goes (RFC 2131 §4.1).
func (s *Server) addressed(r *req, typ uint8, yiaddr netip.Addr, payload []byte) Outgoing {
	p := r.p
	o := Outgoing{Payload: payload, IfIndex: r.in.IfIndex, Src: s.sourceFor(r), Type: typ, Received: r.in.Received}
	switch {
	case typ == dhcpwire.Ack && yiaddr.IsUnspecified() && !p.CIAddr.IsUnspecified():
		// DHCPINFORM: straight to the client, even when relayed.
		o.Dst = netip.AddrPortFrom(p.CIAddr, 68)
	case typ == dhcpwire.Ack && yiaddr.IsUnspecified() && p.GIAddr.IsUnspecified():
		// A DHCPINFORM without ciaddr (RFC 2131 says the client fills it
		// in; some do not): answer the address it came from, else
		// broadcast, since yiaddr gives no address to unicast to.
		if a := r.in.Src.Addr(); a.IsValid() && !a.IsUnspecified() && !isBroadcast(a) {
			o.Dst = netip.AddrPortFrom(a, 68)
		} else {
			o.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68)
			o.HWDst = broadcastHW
		}
	case !p.GIAddr.IsUnspecified():
		port := uint16(67)
		if _, ok := p.RelaySubOption(dhcpwire.SubOptRelaySourcePrt); ok && r.in.Src.Port() != 0 {
			port = r.in.Src.Port() // RFC 8357
		}
		o.Dst = netip.AddrPortFrom(p.GIAddr, port)
	case typ == dhcpwire.Nak:
		o.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68)
		o.HWDst = broadcastHW
	case !p.CIAddr.IsUnspecified():
		o.Dst = netip.AddrPortFrom(p.CIAddr, 68)
	case p.Broadcast() || p.HType != 1 || p.HLen != 6:
		o.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68)
		o.HWDst = broadcastHW
	default:
		o.Dst = netip.AddrPortFrom(yiaddr, 68)
		o.HWDst = append([]byte(nil), p.CHAddr()...)
	}
	return o
}

// sourceFor picks the reply's source address: the address the request was
// sent to when that was one of ours, else the server identifier when it is
// on the receiving interface, else the interface's first address.
func (s *Server) sourceFor(r *req) netip.Addr {
	for _, a := range r.iface.Addrs {
		if a.Addr() == r.in.Dst {
			return r.in.Dst
		}
	}
	for _, a := range r.iface.Addrs {
		if a.Addr() == r.sid {
			return r.sid
		}
	}
	if len(r.iface.Addrs) > 0 {
		return r.iface.Addrs[0].Addr()
	}
	return r.sid
}
