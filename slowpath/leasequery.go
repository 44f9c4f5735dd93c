package slowpath

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Leasequery settings (RFC 4388).
type Leasequery struct {
	Enabled bool
	// Requesters may query; a query whose giaddr is elsewhere gets no
	// answer (it would be sent there).
	Requesters []netip.Prefix
}

// maxAssociated bounds option 92 (ISC sends at most 40 addresses).
const maxAssociated = 40

// Query kinds.
const (
	byIP = iota + 1
	byMAC
	byClientID
)

// lqQuery is a parsed DHCPLEASEQUERY.
type lqQuery struct {
	p    *dhcpwire.Packet
	in   Incoming
	kind int
	key  string // client key for byMAC and byClientID
}

// parseLeasequery picks the one key a query carries (RFC 4388 §6.1);
// more than one, or none, makes it unanswerable.
func parseLeasequery(p *dhcpwire.Packet) (lqQuery, string) {
	q := lqQuery{p: p}
	n := 0
	if !p.CIAddr.IsUnspecified() {
		q.kind, n = byIP, n+1
	}
	if cid, ok := p.Option(dhcpwire.OptClientID); ok {
		q.kind, q.key, n = byClientID, lease.ClientKey(cid, 0, nil), n+1
	}
	if p.HLen > 0 && slices.ContainsFunc(p.CHAddr(), func(b byte) bool { return b != 0 }) {
		q.kind, q.key, n = byMAC, lease.ClientKey(nil, p.HType, p.CHAddr()), n+1
	}
	switch {
	case n == 0:
		return q, "leasequery_no_key"
	case n > 1:
		return q, "leasequery_ambiguous"
	}
	return q, ""
}

// leasequery answers a DHCPLEASEQUERY. It runs without the server lock
// held: client lookups may read the per-client history from the store.
func (s *Server) leasequery(p *dhcpwire.Packet, in Incoming) {
	set := s.settings()
	if !set.Leasequery.Enabled {
		s.dropped("leasequery_disabled", in, nil)
		return
	}
	if p.GIAddr.IsUnspecified() {
		s.dropped("leasequery_no_giaddr", in, nil)
		return
	}
	if !slices.ContainsFunc(set.Leasequery.Requesters, func(pf netip.Prefix) bool { return pf.Contains(p.GIAddr) }) {
		s.dropped("leasequery_denied", in, nil)
		s.warnLimited("leasequery_denied", "leasequery from a requester not in leasequery.requesters", "giaddr", p.GIAddr, "src", in.Src)
		return
	}
	q, bad := parseLeasequery(p)
	if bad != "" {
		s.dropped(bad, in, nil)
		return
	}
	q.in = in
	now := s.now()

	var primary *lease.Lease
	var others []netip.Addr
	typ := uint8(dhcpwire.LeaseUnknown)
	switch q.kind {
	case byIP:
		l := s.Lookup(p.CIAddr)
		switch {
		case l != nil && bound(l, s.effectiveExpiry(l), now):
			primary, typ = l, dhcpwire.LeaseActive
		case s.ours(p.CIAddr):
			typ = dhcpwire.LeaseUnassigned // ours, not bound now
		}
	default:
		active := s.clientActive(q, now)
		if len(active) > 0 {
			primary, typ = active[0], dhcpwire.LeaseActive
			for _, l := range active[1:] {
				if len(others) < maxAssociated {
					others = append(others, l.IP)
				}
			}
		}
	}
	out, ok := s.leasequeryReply(q, typ, primary, others, now)
	if !ok {
		s.dropped("no_server_id", in, nil)
		return
	}
	s.emit([]Outgoing{out})
}

// clientActive returns the leases the client a query names holds at now,
// most recent transaction first.
func (s *Server) clientActive(q lqQuery, now time.Time) []*lease.Lease {
	var ls []*lease.Lease
	if q.kind == byMAC {
		ls = s.leasesForHW(q.p.HType, q.p.CHAddr())
	} else {
		ls = s.LookupClient(q.key)
	}
	ls = slices.DeleteFunc(ls, func(l *lease.Lease) bool { return !bound(l, s.effectiveExpiry(l), now) })
	slices.SortStableFunc(ls, func(a, b *lease.Lease) int { return b.CLTT.Compare(a.CLTT) })
	return ls
}

// effectiveExpiryLocked is when the binding l holds ends, as far as this
// server knows: its stored expiry, or, while it is active, the fast path's
// latest grant for the same client if that is later (a renewal XDP
// answered whose event has not been folded in yet). It changes nothing:
// leasequery, bulk leasequery and the sweeper all ask it. l may be a copy;
// the map's entry speaks for whoever holds the address now, so a record
// read before the address changed hands does not take the new client's
// grant. asked is false when there was no fast-path entry to ask (fast
// path off, map lost, not the same client). The caller holds s.mu.
func (s *Server) effectiveExpiryLocked(l *lease.Lease) (exp time.Time, asked bool) {
	exp = l.Expiry
	if s.fast == nil || l.State != lease.Active {
		return exp, false
	}
	cur := s.leases.Get(l.IP)
	if cur == nil || cur.State != lease.Active || cur.ClientKey() != l.ClientKey() {
		return exp, false
	}
	g, ok := s.fast.Granted(l.IP)
	if !ok {
		return exp, false
	}
	if g.After(exp) {
		exp = g
	}
	return exp, true
}

// effectiveExpiry is effectiveExpiryLocked for a caller without the lock.
func (s *Server) effectiveExpiry(l *lease.Lease) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, _ := s.effectiveExpiryLocked(l)
	return exp
}

// bound reports whether l is bound at now given its effective expiry:
// past it a lease is not, even before the sweeper has run.
func bound(l *lease.Lease, exp, now time.Time) bool {
	return l.State == lease.Active && now.Before(exp)
}

// ours reports whether this server hands ip out: it is in a pool or
// reserved. Other addresses of a served subnet (the router, the network
// address) are not bindings we could answer for, so a query for them is
// answered UNKNOWN, as ISC dhcpd and Kea do.
func (s *Server) ours(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.subs.forAddr(ip)
	if sn == nil {
		return false
	}
	_, reserved := sn.ReservedIP[ip]
	return reserved || sn.set.Contains(ip)
}

// leasesForHW returns copies of the leases bound to a hardware address,
// whatever client identifier they were taken with.
func (s *Server) leasesForHW(htype uint8, hw []byte) []*lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*lease.Lease
	for _, ip := range s.clients.hwAddrs(nil, lease.ClientKey(nil, htype, hw)) {
		if l := s.leases.Get(ip); l != nil && l.HWType == htype && bytes.Equal(l.HWAddr, hw) {
			out = append(out, l)
		}
	}
	return out
}

// leasequeryReply renders a reply (RFC 4388 §6.4): 53 and 54; for an
// active binding its address, hardware address, remaining times (51, 58,
// 59), 91, 92, 61, 60, what option 55 asks for from the subnet's block,
// and the stored option 82 last. Other replies copy the query's key back.
func (s *Server) leasequeryReply(q lqQuery, typ uint8, l *lease.Lease, others []netip.Addr, now time.Time) (Outgoing, bool) {
	p := q.p
	s.mu.Lock()
	var sub *Subnet
	if l != nil {
		sub = s.subs.forAddr(l.IP)
	} else if q.kind == byIP {
		sub = s.subs.forAddr(p.CIAddr)
	}
	sid := netip.Addr{}
	if sub != nil && sub.ServerID.IsValid() {
		sid = sub.ServerID
	} else if iface, ok := s.ifaces[q.in.IfIndex]; ok && len(iface.Addrs) > 0 {
		sid = iface.Addrs[0].Addr()
	}
	if !sid.IsValid() && q.in.Dst.IsValid() && !isBroadcast(q.in.Dst) {
		sid = q.in.Dst
	}
	var t1, t2 uint32
	var block []byte
	var exp time.Time
	if l != nil {
		exp, _ = s.effectiveExpiryLocked(l)
		t1, t2 = renewTimes(sub, l, exp)
		if sub != nil {
			block = sub.Options
		}
	}
	s.mu.Unlock()
	if !sid.IsValid() {
		return Outgoing{}, false
	}

	h := dhcpwire.ReplyHeader(p)
	h.Flags = 0
	switch {
	case l != nil:
		h.CIAddr = l.IP
		h.HType, h.HLen = l.HWType, uint8(len(l.HWAddr))
		h.CHAddr = [16]byte{}
		copy(h.CHAddr[:], l.HWAddr)
	case q.kind == byIP:
		h.CIAddr = p.CIAddr
	}
	b := make([]byte, 0, 512)
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, sid)
	if l != nil {
		b = appendLeaseTimes(b, l, exp, now, t1, t2)
		if len(others) > 0 {
			v := make([]byte, 0, 4*len(others))
			for _, a := range others {
				a4 := a.As4()
				v = append(v, a4[:]...)
			}
			b = dhcpwire.AppendOption(b, dhcpwire.OptAssociatedIP, v)
		}
		if len(l.ClientID) > 0 {
			b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, l.ClientID)
		}
		if len(l.VendorClass) > 0 {
			b = dhcpwire.AppendOption(b, dhcpwire.OptVendorClass, l.VendorClass)
		}
		b = append(b, requested(block, p, lqOwnOptions)...)
		if len(l.RelayInfo) > 0 {
			b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, l.RelayInfo)
		}
	} else if cid, ok := p.Option(dhcpwire.OptClientID); ok {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, cid)
	}
	return Outgoing{
		Payload: finish(b), IfIndex: q.in.IfIndex, Src: q.in.Dst, Type: typ, Received: q.in.Received,
		Dst: netip.AddrPortFrom(p.GIAddr, 67),
	}, true
}

// lqOwnOptions are the codes a leasequery reply fills in itself, so a
// subnet's option block must not add them a second time. Option 60 is among
// them although an operator may configure it (a PXE server sends its own
// 60): in a leasequery reply 60 is the client's vendor class, and the
// server's would be mistaken for it.
var lqOwnOptions = []byte{
	dhcpwire.OptLeaseTime, dhcpwire.OptMessageType, dhcpwire.OptServerID, dhcpwire.OptRenewalTime,
	dhcpwire.OptRebindingTime, dhcpwire.OptVendorClass, dhcpwire.OptClientID, dhcpwire.OptRelayAgentInfo,
	dhcpwire.OptCLTT, dhcpwire.OptAssociatedIP,
}

// requested returns the options of a subnet's block that option 55 asks
// for, leaving out the codes in skip.
func requested(block []byte, p *dhcpwire.Packet, skip []byte) []byte {
	prl, ok := p.Option(dhcpwire.OptParamRequest)
	if !ok {
		return nil
	}
	var out []byte
	for i := 0; i+1 < len(block); {
		n := int(block[i+1])
		if slices.Contains(prl, block[i]) && !slices.Contains(skip, block[i]) {
			out = append(out, block[i:i+2+n]...)
		}
		i += 2 + n
	}
	return out
}

// leaseFrom is when the lease's current grant began: the client's last
// transaction, or the binding's start when none is recorded.
func leaseFrom(l *lease.Lease) time.Time {
	if l.CLTT.IsZero() {
		return l.Start
	}
	return l.CLTT
}

// renewTimes returns T1 and T2 in seconds from leaseFrom for the grant the
// client holds (its effective expiry exp minus its last transaction): what it was told, by
// grantTimes, the arithmetic both paths use. A grant cut short at the
// promise horizon reports T1 and T2 scaled as XDP scaled them; one made
// before a reload changed the lease time reports the configured ones
// while the grant is at least the new lease time.
func renewTimes(sub *Subnet, l *lease.Lease, exp time.Time) (t1, t2 uint32) {
	g := grantTimes(sub, exp.Sub(leaseFrom(l)))
	return g[1], g[2]
}

// appendLeaseTimes adds 51 as time remaining from now to the effective
// expiry exp, 58 and 59 as time remaining (only while still ahead, counted
// from the client's last transaction) and 91 as seconds since that
// transaction.
func appendLeaseTimes(b []byte, l *lease.Lease, exp, now time.Time, t1, t2 uint32) []byte {
	remain := func(at time.Time) (uint32, bool) {
		d := at.Sub(now)
		return uint32(max(d, 0) / time.Second), d > 0
	}
	lt, _ := remain(exp)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, lt)
	from := leaseFrom(l)
	if r, ok := remain(from.Add(time.Duration(t1) * time.Second)); ok && t1 > 0 {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRenewalTime, r)
	}
	if r, ok := remain(from.Add(time.Duration(t2) * time.Second)); ok && t2 > 0 {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptRebindingTime, r)
	}
	return dhcpwire.AppendUint32Option(b, dhcpwire.OptCLTT, secondsBefore(now, l.CLTT))
}
