package slowpath

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/fifo"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// req is one message being handled, with what the server worked out about it.
type req struct {
	p     *dhcpwire.Packet
	in    Incoming
	key   string // client-id, else chaddr (RFC 2131 §4.2)
	hwKey string // chaddr always: reservations by hardware address match it
	sub   *Subnet
	sid   netip.Addr
	now   time.Time
	iface Interface
	// auth is option 145 (an OFFER) or 90 with a key (an ACK) to add to
	// the reply (RFC 6704; replyTo places it).
	auth []byte
	// keyAck: an ACK to this request delivers a new FORCERENEW key if the
	// client can take one (SELECTING or INIT-REBOOT; never a renewal, on
	// which dhcpcd would reset its replay state).
	keyAck bool
	// behind: the request's queue is behind (admit); a REQUEST from a
	// client the server does not know is then dropped (requestLocked).
	behind bool
}

var broadcastHW = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Handle processes one datagram. A reply that acknowledges a lease is sent
// only once the lease is on disk, or for a renewal (Settings.AckOnHorizon)
// its horizon; the others are sent before Handle returns.
func (s *Server) Handle(in Incoming) {
	p := s.getPacket()
	defer s.putPacket(p)
	if err := p.Parse(in.Data); err != nil {
		s.dropped("malformed", in, err)
		return
	}
	if p.Op != dhcpwire.BootRequest {
		s.dropped("not_request", in, nil)
		return
	}
	// ARCHITECTURE.md 7: a message with a malformed option is dropped whatever
	// else it carries; read leniently, a 3-byte option 54 would turn a
	// SELECTING request into an INIT-REBOOT one and bind a lease.
	if err := p.Validate(); err != nil {
		s.dropped("malformed_option", in, err)
		return
	}
	mt := p.MessageType()
	if mt == 0 {
		s.dropped("no_message_type", in, nil)
		return
	}
	s.m.message(mt).Inc()
	drop, behind := s.admit(mt, in)
	if drop == "overload" {
		// The allowance is the type's queue's: a DISCOVER the kernel let
		// into the REQUEST socket draws on the DISCOVER queue's, which
		// the REQUESTs taking their offer do not share.
		if kept := s.spared(mt, p); kept != nil && s.backlog.spare(typeClass(mt), time.Now()) {
			kept.Inc()
			s.m.byClass[classOf(mt, in)].Observe(time.Since(in.Received).Seconds())
			drop = ""
		}
	}
	if drop != "" {
		s.dropped(drop, in, nil)
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		// Where a message came from and was sent to tells a renewal
		// (unicast) from a rebinding (broadcast) when troubleshooting.
		s.log.Debug("message", "type", dhcpwire.MessageName(mt), "xid", p.XID, "chaddr", hwAddr(p.CHAddr()),
			"ciaddr", p.CIAddr, "giaddr", p.GIAddr, "src", in.Src, "dst", in.Dst, "ifindex", in.IfIndex)
	}
	cid, _ := p.Option(dhcpwire.OptClientID)

	if mt == dhcpwire.LeaseQuery {
		s.leasequery(p, in)
		return
	}

	if err := p.ValidateClientHeader(); err != nil {
		s.dropped("malformed_header", in, err)
		return
	}
	if k, ok := requestKind(p, mt); ok && s.partner != nil && !s.partner.Answer(k, hashKey(cid, p), p.Secs) {
		// The failover state, or the partner's hash bucket while it
		// is answering (draft-12 §5.3): the partner's to answer.
		s.dropped("failover", in, nil)
		return
	}

	s.mu.Lock()
	iface, ok := s.ifaces[in.IfIndex]
	if !ok {
		s.mu.Unlock()
		s.dropped("interface", in, nil)
		return
	}
	r := &req{p: p, in: in, behind: behind, key: lease.ClientKey(cid, p.HType, p.CHAddr()), hwKey: lease.ClientKey(nil, p.HType, p.CHAddr()), now: s.now(), iface: iface}
	r.sub = s.selectSubnetLocked(r)
	var out []Outgoing
	var pending *pendingAck
	var informAck *pendingInform // an INFORM's ACK waiting for its record
	var changed *lease.Lease     // a copy, from changeLocked
	var why cause
	var serveOn *frAnswer // a FORCERENEW answered: the serve bit back on, then counted
	var move netip.Addr   // a FORCERENEW answered by a client to move
	if mt == dhcpwire.Request || mt == dhcpwire.Inform {
		serveOn, move = s.forceRenewAnswerLocked(r, mt)
	}
	switch {
	case move.IsValid():
		// The client is told its address is no longer valid and the
		// binding ends here (its fast-path entry is withdrawn with it):
		// its DISCOVER gets what the configuration gives it now.
		out = s.nakLocked(r, "moved: start over with DHCPDISCOVER")
		if ci := r.p.CIAddr; len(out) == 1 && !ci.IsUnspecified() && r.p.GIAddr.IsUnspecified() {
			// A RENEWING or REBINDING client listens on its address
			// (dhcpcd's socket is bound to ciaddr:68 then): a broadcast
			// NAK (RFC 2131 §4.1) would go unheard and the client would
			// renew on, NAKed, until T2. Sent as its ACK would be.
			out[0].Dst, out[0].HWDst = netip.AddrPortFrom(ci, 68), nil
		}
		changed, why, serveOn = s.moveLocked(r, move), causeRelease, nil
	case mt == dhcpwire.Discover:
		out = s.discoverLocked(r)
	case mt == dhcpwire.Request && s.informedRenewalLocked(r):
		// dhcpcd configured by INFORM answers FORCERENEW by renewing
		// (inform.go): answered as its INFORM is, never NAKed.
		out, informAck = s.informLocked(r)
	case mt == dhcpwire.Request:
		out, pending = s.requestLocked(r)
	case mt == dhcpwire.Decline:
		changed, why = s.declineLocked(r), causeDecline
	case mt == dhcpwire.Release:
		changed, why = s.releaseLocked(r), causeRelease
	case mt == dhcpwire.Inform:
		out, informAck = s.informLocked(r)
	default:
		s.mu.Unlock()
		s.dropped("unsupported_type", in, nil)
		return
	}
	if informAck != nil {
		// Queued under the lock, so one address's records reach the
		// store in the order made; the callback does not take the lock.
		// An ACK carrying a key leaves once its record is on disk
		// (ARCHITECTURE.md invariant 6).
		held := informAck.out
		s.submitInformedLocked(informAck.recs, func(err error) {
			if err == nil && len(held) > 0 {
				s.emit(held)
			}
		})
	}
	// Commits happen outside the lock: their callbacks take it.
	s.mu.Unlock()
	if changed != nil {
		s.commit([]*lease.Lease{changed}, why, nil)
	}
	if serveOn != nil {
		s.commitAnswers([]*frAnswer{serveOn})
	}
	if len(out) > 0 {
		s.emit(out)
	}
	if pending != nil && pending.onHorizon {
		// The promise is on disk already: the ACK leaves now, the record
		// with the next group commit.
		if !s.ahead.queue(pending.out) {
			s.emit([]Outgoing{pending.out})
		}
		s.m.AckedOnHorizon.Inc()
		if !in.Received.IsZero() {
			s.m.AckLatency.Observe(time.Since(in.Received).Seconds())
		}
		s.commit([]*lease.Lease{pending.l}, causeAck, nil)
		return
	}
	if pending != nil {
		handed := time.Now()
		s.commit(append([]*lease.Lease{pending.l}, pending.freed...), causeAck, func(err error) {
			if err == nil {
				s.m.StoreWait.Observe(time.Since(handed).Seconds())
				s.emit([]Outgoing{pending.out})
				if !in.Received.IsZero() {
					s.m.AckLatency.Observe(time.Since(in.Received).Seconds())
				}
			}
		})
	}
}

// getPacket gives Handle a Packet to parse into. Packets are reused: one
// is about 600 bytes (its first options are held inline), and allocating
// one per message was a quarter of what the slow path allocated per DORA,
// which the collector then paid for.
func (s *Server) getPacket() *dhcpwire.Packet {
	if p, ok := s.packets.Get().(*dhcpwire.Packet); ok {
		return p
	}
	return new(dhcpwire.Packet)
}

// putPacket takes back a Packet when Handle returns. Nothing handling a
// message keeps the Packet or a slice of it (a lease copies the hardware
// address it takes from it); emptying it (Reset) makes a use after return
// read zeros, which the tests would see, and lets go of the receive
// buffer.
func (s *Server) putPacket(p *dhcpwire.Packet) {
	p.Reset()
	s.packets.Put(p)
}

type pendingAck struct {
	l *lease.Lease
	// freed are the client's bindings the grant replaces, committed with it.
	freed []*lease.Lease
	out   Outgoing
	// onHorizon: the ACK may leave before the commit (ackOnHorizon).
	onHorizon bool
}

func (s *Server) emit(out []Outgoing) {
	for _, o := range out {
		s.m.reply(o.Type).Inc()
	}
	s.send.Send(out)
}

func (s *Server) dropped(reason string, in Incoming, err error) {
	s.m.Dropped.WithLabelValues(reason).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("message dropped", "reason", reason, "src", in.Src, "ifindex", in.IfIndex, "err", err)
	}
}

// selectSubnetLocked picks the client's subnet: RFC 3527 link selection,
// then RFC 3011 subnet selection, then giaddr (or a configured relay
// address), then ciaddr for unicast, then the receiving interface.
func (s *Server) selectSubnetLocked(r *req) *Subnet {
	p := r.p
	if v, ok := p.RelaySubOption(dhcpwire.SubOptLinkSelection); ok && len(v) == 4 && p.GIAddr.IsValid() && !p.GIAddr.IsUnspecified() {
		return s.subs.forAddr(netip.AddrFrom4([4]byte(v)))
	}
	if a, ok := p.AddrOption(dhcpwire.OptSubnetSelection); ok {
		return s.subs.forAddr(a)
	}
	if !p.GIAddr.IsUnspecified() {
		return s.subs.forRelay(p.GIAddr)
	}
	if !p.CIAddr.IsUnspecified() && !isBroadcast(r.in.Dst) {
		if sn := s.subs.forAddr(p.CIAddr); sn != nil {
			return sn
		}
	}
	for _, a := range r.iface.Addrs {
		if sn := s.subs.forAddr(a.Addr()); sn != nil {
			return sn
		}
	}
	return nil
}

func isBroadcast(a netip.Addr) bool {
	return !a.IsValid() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// serverIDLocked chooses option 54 (RFC 2131 §4.1; RFC 5107 override first).
func (s *Server) serverIDLocked(r *req) netip.Addr {
	if v, ok := r.p.RelaySubOption(dhcpwire.SubOptServerIDOverr); ok && len(v) == 4 {
		return netip.AddrFrom4([4]byte(v))
	}
	if r.sub != nil && r.sub.ServerID.IsValid() {
		return r.sub.ServerID
	}
	if r.p.GIAddr.IsUnspecified() && r.sub != nil {
		for _, a := range r.iface.Addrs {
			if r.sub.Prefix.Contains(a.Addr()) {
				return a.Addr()
			}
		}
	}
	if len(r.iface.Addrs) > 0 {
		return r.iface.Addrs[0].Addr()
	}
	if !isBroadcast(r.in.Dst) {
		return r.in.Dst
	}
	return netip.Addr{}
}

// isOurServerIDLocked reports whether a client's option 54 names us.
func (s *Server) isOurServerIDLocked(id netip.Addr, r *req) bool {
	if v, ok := r.p.RelaySubOption(dhcpwire.SubOptServerIDOverr); ok && len(v) == 4 && netip.AddrFrom4([4]byte(v)) == id {
		return true
	}
	for _, sn := range s.subs.list {
		if sn.ServerID == id {
			return true
		}
	}
	for _, i := range s.ifaces {
		for _, a := range i.Addrs {
			if a.Addr() == id {
				return true
			}
		}
	}
	return false
}

// reservation returns the client's reservation in sub, by client-id or by
// hardware address.
func (r *req) reservation(sub *Subnet) (Reservation, bool) {
	if res, ok := sub.Reserved[r.key]; ok {
		return res, true
	}
	res, ok := sub.Reserved[r.hwKey]
	return res, ok
}

// availableForLocked reports whether ip may be given to the client.
func (s *Server) availableForLocked(sub *Subnet, ip netip.Addr, r *req) bool {
	key, now := r.key, r.now
	if sub == nil || !sub.Prefix.Contains(ip) {
		return false
	}
	if res, ok := sub.ReservedIP[ip]; ok {
		if res.ClientKey != key && res.ClientKey != r.hwKey {
			return false
		}
	} else if !sub.set.Contains(ip) {
		return false
	} else if sub.set.Draining(ip) {
		// A draining pool makes no new grants: only the client holding
		// the address may keep it, by REQUEST (renewing, rebinding or
		// INIT-REBOOT), until FORCERENEW moves it; it is not offered.
		l := s.leases.Get(ip)
		return r.p.MessageType() == dhcpwire.Request && l != nil && l.State == lease.Active && l.ClientKey() == key
	}
	if o, ok := s.offers[ip]; ok && o.client != key && o.until.After(now) {
		return false
	}
	if s.partner == nil {
		// The record's state and client, without copying it.
		st, same, ok := s.leases.Holder(ip, key)
		if ok && st == lease.Active {
			return same
		}
		return !ok || st.Reusable()
	}
	l := s.leases.Get(ip)
	if l != nil && l.State == lease.Active {
		return l.ClientKey() == key
	}
	// Not abandoned; under failover, this server's to give (FREE or
	// BACKUP by role and state).
	return s.mayGiveLocked(sub, ip, l, key, now)
}

// pickLocked chooses an address for a DISCOVER: the reservation, the
// client's current or previous address, the address it asked for, then
// the pool.
func (s *Server) pickLocked(r *req) (netip.Addr, bool) {
	sub := r.sub
	if ip, ok := s.offerOf[r.key]; ok {
		// A retransmitted DISCOVER gets the same offer, while it is still
		// held for this client and still free: it may have lapsed and
		// been bound by another client, or a reload may have moved it.
		if o, held := s.offers[ip]; held && o.client == r.key && o.until.After(r.now) && s.availableForLocked(sub, ip, r) {
			return ip, true
		}
		delete(s.offerOf, r.key)
		if o, held := s.offers[ip]; held && o.client == r.key {
			s.removeOfferLocked(ip)
			s.returnAddrLocked(ip)
		}
	}
	if res, ok := r.reservation(sub); ok && s.availableForLocked(sub, res.IP, r) {
		return res.IP, true
	}
	if ip, ok := s.clients.latestOf(r.key); ok && s.availableForLocked(sub, ip, r) {
		return ip, true
	}
	if ip, ok := r.p.AddrOption(dhcpwire.OptRequestedIP); ok && s.availableForLocked(sub, ip, r) {
		return ip, true
	}
	for {
		ip, ok := s.allocateLocked(sub, r.now)
		if !ok {
			return netip.Addr{}, false
		}
		if s.availableForLocked(sub, ip, r) {
			return ip, true
		}
		// The allocator and the table disagree (an address bound
		// outside the allocator's knowledge); leave it taken.
	}
}

func (s *Server) discoverLocked(r *req) []Outgoing {
	if r.sub == nil {
		s.dropped("no_subnet", r.in, nil)
		return nil
	}
	if r.sid = s.serverIDLocked(r); !r.sid.IsValid() {
		s.dropped("no_server_id", r.in, nil)
		return nil
	}
	if ip, ok := s.offerOf[r.key]; !ok || s.offers[ip].client != r.key || !s.offers[ip].until.After(r.now) {
		// A new offer: make room under the bounds first (a retransmitted
		// DISCOVER keeps the offer it has).
		s.boundOffersLocked(r)
	}
	ip, ok := s.pickLocked(r)
	if !ok {
		s.dropped("pool_exhausted", r.in, nil)
		// A flood of DISCOVERs would write one line each (918k lines in
		// 20 s); the drop counter counts every one. One kind per subnet,
		// a set fixed by the configuration.
		s.warnLimited("pool_exhausted "+r.sub.Prefix.String(), "pool exhausted", "subnet", r.sub.Prefix)
		return nil
	}
	r.sub.takeAddr(ip)
	until := r.now.Add(s.set.OfferHold)
	if old, ok := s.offerOf[r.key]; ok && old != ip {
		if o, ok := s.offers[old]; ok && o.client == r.key {
			s.removeOfferLocked(old)
			s.returnAddrLocked(old)
		}
	}
	if o, ok := s.offers[ip]; !ok || o.client != r.key || o.until != until {
		s.addOfferLocked(ip, offer{client: r.key, until: until, pool: poolBound(r.sub), circuit: circuitBound(r.p)})
	}
	if s.ctr != nil && nonceCapable(r.p) {
		// RFC 6704: the OFFER's 145 tells the client its ACK will carry
		// a key (a client may DECLINE an ACK that then lacks one).
		r.auth = auth.AppendNonceCapable(nil)
	}
	return []Outgoing{s.replyTo(r, dhcpwire.Offer, ip, grantTimes(r.sub, r.sub.LeaseTime), true)}
}

// spared says whether p, of type mt, is a request that an "overload" drop
// spares within backlog.spare's bounds, and returns the counter of those
// spared then (nil: dropped as any other). MaxWait ("stale") applies to
// all. spare lets through a few a second, and only a share of the queue's
// drops, so that where such requests are themselves the overload (or a
// flooder's, who can send them too), most are dropped as before.
//   - A SELECTING REQUEST for the OFFER held for its client: its DORA is
//     half done, and dropped here the client would ask again only after
//     4 s, into the same queue (xdhcp-bench flood --kind request: one new
//     client of twenty lost three REQUESTs in a row, most likely to these
//     drops, and was not bound in 25 s).
//   - A DISCOVER whose client has been at it a second or more (secs, RFC
//     2131 §2: udhcpc, dhclient and dhcpcd all count it up in their
//     retransmissions; a flood from random MACs sends each MAC's first):
//     under a flood from MACs that never repeat, the holdoffs hold
//     nothing, and each DISCOVER, a real client's too, is read or
//     dropped at the flood's odds (in 21 runs of
//     TestRealClientsGetLeasesThroughAnOverloadingFlood before this,
//     dhclient, backing off 5 to 17 s, was bound after 17.6 and 22.9 s
//     in two). A client's retransmission is spared where the server
//     would drop it; where the kernel drops it for a full socket (most
//     likely so in the two slow runs of 24 after: no OFFER went out for
//     the lost retransmissions), this cannot help.
func (s *Server) spared(mt uint8, p *dhcpwire.Packet) prometheus.Counter {
	switch {
	case mt == dhcpwire.Request && s.answersOfferOf(p):
		return s.m.OfferRequestsKept
	case mt == dhcpwire.Discover && p.Secs > 0:
		return s.m.DiscoverRetriesKept
	}
	return nil
}

// answersOfferOf reports whether p, a REQUEST, is a SELECTING one (server
// identifier and requested address) from the client an offer of that
// address is held for. A lapsed offer not yet swept counts, as it does
// for knownRequestLocked: requestLocked would still bind it.
func (s *Server) answersOfferOf(p *dhcpwire.Packet) bool {
	if _, ok := p.AddrOption(dhcpwire.OptServerID); !ok {
		return false
	}
	want, ok := p.AddrOption(dhcpwire.OptRequestedIP)
	if !ok {
		return false
	}
	cid, _ := p.Option(dhcpwire.OptClientID)
	key := lease.ClientKey(cid, p.HType, p.CHAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.offers[want]
	return ok && o.client == key
}

// requestLocked classifies a DHCPREQUEST (RFC 2131 §4.3.2).
func (s *Server) requestLocked(r *req) ([]Outgoing, *pendingAck) {
	p := r.p
	sid, hasSID := p.AddrOption(dhcpwire.OptServerID)
	want, hasWant := p.AddrOption(dhcpwire.OptRequestedIP)
	if r.behind && !(hasSID && !s.isOurServerIDLocked(sid, r)) && !s.knownRequestLocked(r, hasSID, want, hasWant) {
		s.dropped("overload_unknown", r.in, nil)
		return nil, nil
	}
	switch {
	case hasSID: // SELECTING
		r.keyAck = true
		if !s.isOurServerIDLocked(sid, r) {
			s.withdrawOfferLocked(r.key)
			s.dropped("other_server", r.in, nil)
			return nil, nil
		}
		if !hasWant {
			s.dropped("malformed", r.in, errNoRequestedIP)
			return nil, nil
		}
		if o, ok := s.offers[want]; ok && o.client != r.key && o.until.After(r.now) {
			// A client that answers our OFFER beats one that only
			// got one: under a flood of DISCOVERs the bounds withdraw
			// offers within milliseconds, and the address a real
			// client was offered may already be offered to a flood
			// MAC that will never ask for it. The other client, if
			// real, gets a NAK for its REQUEST and starts again.
			s.removeOfferLocked(want)
			s.returnAddrLocked(want)
		}
		return s.bindOrNakLocked(r, want, "address not available")
	case hasWant: // INIT-REBOOT
		r.keyAck = true
		if r.sub == nil {
			s.dropped("no_subnet", r.in, nil)
			return nil, nil
		}
		if !r.sub.Prefix.Contains(want) {
			if !s.set.Authoritative {
				// Another server may own that network on this link.
				s.dropped("wrong_network", r.in, nil)
				return nil, nil
			}
			return s.nakLocked(r, "wrong network"), nil
		}
		if !s.set.Authoritative && !s.holdsLocked(want, r.key) {
			s.dropped("unknown_client", r.in, nil) // RFC 2131: MUST remain silent
			return nil, nil
		}
		return s.bindOrNakLocked(r, want, "address not available")
	case !p.CIAddr.IsUnspecified(): // RENEWING or REBINDING
		if r.sub == nil || !r.sub.Prefix.Contains(p.CIAddr) {
			if r.sub != nil && s.set.Authoritative {
				return s.nakLocked(r, "wrong network"), nil
			}
			s.dropped("no_subnet", r.in, nil)
			return nil, nil
		}
		if !s.set.Authoritative && !s.holdsLocked(p.CIAddr, r.key) {
			s.dropped("unknown_client", r.in, nil)
			return nil, nil
		}
		return s.bindOrNakLocked(r, p.CIAddr, "lease not valid")
	}
	s.dropped("malformed", r.in, errNoRequestedIP)
	return nil, nil
}

// knownRequestLocked says whether a REQUEST, read while its queue is
// behind, is to be answered: one whose answer costs no commit (a NAK for
// an address of another network, one another client holds, one outside
// the pools; or silence where the server is not authoritative), which a
// client must hear (RFC 2131 §3.2: an INIT-REBOOT client answered by no
// one may go on with its old address); or one from a client that holds
// the address it asks for (option 50, else ciaddr), has it reserved, or,
// SELECTING, was offered it. The rest, REQUESTs that would bind an
// address to a client the server has not seen, are dropped before an
// answer or a commit: a flood of REQUESTs from random MACs for free
// addresses would otherwise take the commits that bound clients'
// renewals need. What that costs a real client, only while the queue is
// behind: one whose lease record is gone, or whose client identifier
// changed, or whose offer a DISCOVER flood withdrew
// (Settings.OfferPoolShare) gets no answer rather than its ACK; an
// INIT-REBOOT client of those may go on with its address, which is free.
// A lapsed offer not yet swept still counts. (A SELECTING REQUEST naming
// another server is not asked about: it only withdraws this server's
// offer.)
func (s *Server) knownRequestLocked(r *req, selecting bool, want netip.Addr, hasWant bool) bool {
	ip := want
	if !hasWant {
		ip = r.p.CIAddr
	}
	if r.sub == nil || s.holdsLocked(ip, r.key) || !s.availableForLocked(r.sub, ip, r) {
		return true
	}
	if res, ok := r.reservation(r.sub); ok && res.IP == ip {
		return true
	}
	o, ok := s.offers[ip]
	return selecting && ok && o.client == r.key
}

// holdsLocked reports whether ip has a record and key names its client,
// without copying the record: a copy (512 B) and its client key for
// every renewal were a fifth of what BenchmarkRenewal's renewal allocated.
func (s *Server) holdsLocked(ip netip.Addr, key string) bool {
	_, same, ok := s.leases.Holder(ip, key)
	return ok && same
}

func (s *Server) bindOrNakLocked(r *req, ip netip.Addr, why string) ([]Outgoing, *pendingAck) {
	if r.sub == nil || !s.availableForLocked(r.sub, ip, r) {
		if r.sub == nil {
			r.sub = s.subs.forAddr(ip)
		}
		return s.nakLocked(r, why), nil
	}
	if r.sid = s.serverIDLocked(r); !r.sid.IsValid() {
		s.dropped("no_server_id", r.in, nil)
		return nil, nil
	}
	return nil, s.bindLocked(r, ip)
}

// bindLocked makes ip an active lease of the client and prepares the ACK.
func (s *Server) bindLocked(r *req, ip netip.Addr) *pendingAck {
	p, now := r.p, r.now
	var key []byte
	if r.keyAck && s.ctr != nil && nonceCapable(p) {
		// A fresh key for the binding in this ACK (RFC 6704), stored with
		// the lease by the change committed before the ACK leaves
		// (ARCHITECTURE.md invariant 6); again on each SELECTING or
		// INIT-REBOOT, since a restarted dhcpcd has forgotten its key.
		k, err := auth.NewKey()
		var replay uint64
		if err == nil {
			replay, err = s.ctr.Next()
		}
		if err != nil {
			// The OFFER promised a key: no ACK rather than one without;
			// nothing has changed yet (the offer still holds the address).
			s.logLimited(slog.LevelError, "forcerenew_key", "no FORCERENEW key for an ACK; not answering", "client", hwAddr(p.CHAddr()), "err", err)
			s.dropped("forcerenew_key", r.in, err)
			return nil
		}
		key = k[:]
		r.auth = auth.AppendKeyOption(nil, replay, k)
	}
	if _, ok := s.offers[ip]; ok {
		// Held for this client, for another whose offer lapsed, or for
		// another that a SELECTING request took it from.
		s.removeOfferLocked(ip)
	}
	lt := grantTimes(r.sub, r.sub.LeaseTime)[0]
	var renewal bool              // the client's own active binding, before the change
	var durable, wasExp time.Time // its horizon on disk and expiry, before the change
	cl := s.changeLocked(ip, causeAck, now, func(l *lease.Lease) {
		newClient := l.ClientKey() != r.key
		renewal, durable, wasExp = !newClient && l.State == lease.Active, l.DurableHorizon, l.Expiry
		if newClient {
			// The address changes hands: nothing the previous client told us
			// (its name, vendor class, relay information, FORCERENEW key,
			// where it lived) may be reported or reused for the new one.
			// Times and horizons belong to the address and stay.
			l.Hostname, l.VendorClass, l.RelayInfo, l.ForceRenewKey = "", nil, nil, nil
			l.GIAddr, l.IfIndex, l.VLANs = netip.Addr{}, 0, [2]uint16{}
		}
		if newClient || l.State != lease.Active {
			l.Start = now
		}
		cid, _ := p.Option(dhcpwire.OptClientID)
		l.HWType = p.HType
		l.HWAddr = bytes.Clone(p.CHAddr())
		l.ClientID = bytes.Clone(cid)
		if h, ok := p.Option(dhcpwire.OptHostname); ok {
			l.Hostname = string(h)
		} else if res, ok := r.sub.ReservedIP[ip]; ok && res.Hostname != "" {
			l.Hostname = res.Hostname
		}
		if v, ok := p.Option(dhcpwire.OptVendorClass); ok {
			l.VendorClass = bytes.Clone(v)
		}
		l.Expiry = now.Add(time.Duration(lt) * time.Second)
		l.CLTT = now
		l.LastXID = p.XID
		l.ServerID = r.sid
		s.recordPlaceLocked(r, l)
		if r.keyAck {
			// The client holds the key of this ACK, or none: a key it
			// was given before is gone (a restarted client).
			l.ForceRenewKey = key
		}
		l.State = lease.Active
	})
	freed := s.replaceOthersLocked(r, ip)
	s.moveClientLocked(r.key, ip)
	s.indexClientLocked(cl, true) // cl is the record as stored
	// The ACK tells what changeLocked granted: the lease time unless a
	// cap cut it short.
	times := grantTimes(r.sub, cl.Expiry.Sub(now))
	// Only a renewal: the same client's binding goes on, with nothing that
	// must be on disk before the ACK (one giving a FORCERENEW key waits for
	// its record; one that only drops an old key need not: a crash that
	// loses the drop brings back a key the restarted client has forgotten,
	// as before), and the horizon on disk is this binding's
	// (SetDurableHorizon).
	onHorizon := s.set.AckOnHorizon && renewal && len(freed) == 0 && key == nil &&
		!cl.Expiry.After(durable) && now.Before(wasExp)
	return &pendingAck{l: cl, freed: freed, out: s.replyTo(r, dhcpwire.Ack, ip, times, true), onHorizon: onHorizon}
}

// replaceOthersLocked ends the client's other active bindings in the
// subnet it is being granted ip in: one client holds at most one binding
// per subnet (ARCHITECTURE.md 8), so a client that asks for a second address
// (four REQUESTs for four addresses, or a CPE that lost its lease and
// INIT-REBOOTs elsewhere) gives up the first, as with Kea. The old
// binding is RELEASED now and FREE at the next sweep, as if the client
// had released it; its commit, in the same transaction as the new grant,
// withdraws it from the fast path. The candidates are the client's last
// address and the addresses bound to its hardware address, which between
// them cover every binding a client key can have been granted here.
// Returns copies of the changed records.
func (s *Server) replaceOthersLocked(r *req, ip netip.Addr) []*lease.Lease {
	var freed []*lease.Lease
	for _, old := range s.clientAddrsLocked(r.key, r.hwKey) {
		if old == ip || !r.sub.Prefix.Contains(old) {
			continue
		}
		if st, same, ok := s.leases.Holder(old, r.key); !ok || st != lease.Active || !same {
			continue
		}
		freed = append(freed, s.changeLocked(old, causeReplaced, r.now, func(l *lease.Lease) {
			l.State = lease.Released
			l.Expiry, l.CLTT = r.now, r.now
		}))
		s.m.Replaced.Inc()
	}
	return freed
}

// recordPlaceLocked remembers where the lease lives: the relay for a
// relayed request; the interface and VLAN for a directly attached client.
// A unicast renewal from a relayed client (giaddr 0, client not on our
// link) keeps the relay it was granted through.
func (s *Server) recordPlaceLocked(r *req, l *lease.Lease) {
	p := r.p
	if !p.GIAddr.IsUnspecified() {
		if ri, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok {
			l.RelayInfo = bytes.Clone(ri)
		} else if l.GIAddr != p.GIAddr {
			// Another relay, which adds no 82: the old relay's circuit
			// no longer says where the client is.
			l.RelayInfo = nil
		}
		l.GIAddr = p.GIAddr
		l.IfIndex = uint32(r.in.IfIndex)
		return
	}
	for _, a := range r.iface.Addrs {
		if a.Contains(l.IP) {
			l.GIAddr, l.RelayInfo = netip.Addr{}, nil
			l.IfIndex = uint32(r.in.IfIndex)
			return
		}
	}
}

// withdrawOfferLocked frees what we offered a client that chose another
// server (RFC 2131 §4.3.2: the offer may be reused at once).
func (s *Server) withdrawOfferLocked(key string) {
	ip, ok := s.offerOf[key]
	if !ok {
		return
	}
	delete(s.offerOf, key)
	if o, ok := s.offers[ip]; ok && o.client == key {
		s.removeOfferLocked(ip)
		s.returnAddrLocked(ip)
	}
}

// returnAddrLocked gives an address that was offered but not taken back
// to its pool.
func (s *Server) returnAddrLocked(ip netip.Addr) {
	sn := s.subs.forAddr(ip)
	if sn == nil {
		return
	}
	if _, reserved := sn.ReservedIP[ip]; reserved {
		return
	}
	l := s.leases.Get(ip)
	switch {
	case l == nil && sn.ownerState(ip) == lease.Backup:
		sn.backup.MarkFresh(ip)
	case l == nil:
		sn.set.MarkFresh(ip)
	case l.State.Reusable():
		sn.set.Free(ip)
	case l.State == lease.Backup:
		sn.backup.Free(ip)
	}
}

func (s *Server) nakLocked(r *req, why string) []Outgoing {
	if !r.sid.IsValid() {
		r.sid = s.serverIDLocked(r)
	}
	if !r.sid.IsValid() {
		s.dropped("no_server_id", r.in, nil)
		return nil
	}
	s.log.Debug("NAK", "client", hwAddr(r.p.CHAddr()), "ciaddr", r.p.CIAddr, "reason", why)
	return []Outgoing{s.nak(r, why)}
}

// declineLocked quarantines an address the client found in use (RFC 2131 §4.3.3).
func (s *Server) declineLocked(r *req) *lease.Lease {
	ip, ok := r.p.AddrOption(dhcpwire.OptRequestedIP)
	if !ok {
		s.dropped("malformed", r.in, errNoRequestedIP)
		return nil
	}
	if sid, ok := r.p.AddrOption(dhcpwire.OptServerID); ok && !s.isOurServerIDLocked(sid, r) {
		s.dropped("other_server", r.in, nil)
		return nil
	}
	l := s.leases.Get(ip)
	if l == nil || l.ClientKey() != r.key || l.State != lease.Active {
		s.dropped("decline_unknown", r.in, nil)
		return nil
	}
	s.warnLimited("declined", "address declined, quarantined", "ip", ip, "client", hwAddr(r.p.CHAddr()), "until", r.now.Add(s.set.DeclineHold))
	s.clients.forget(r.key, ip)
	return s.changeLocked(ip, causeDecline, r.now, func(l *lease.Lease) {
		l.State = lease.Abandoned
		// Failover draft §5.11: an abandoned binding carries no client.
		l.HWAddr, l.ClientID, l.Hostname = nil, nil, ""
		l.Expiry = r.now.Add(s.set.DeclineHold)
	})
}

// releaseLocked ends a lease at the client's request (RFC 2131 §4.3.4).
func (s *Server) releaseLocked(r *req) *lease.Lease {
	ip := r.p.CIAddr
	l := s.leases.Get(ip)
	if l == nil || l.ClientKey() != r.key || l.State != lease.Active {
		s.dropped("release_unknown", r.in, nil)
		return nil
	}
	return s.changeLocked(ip, causeRelease, r.now, func(l *lease.Lease) {
		l.State = lease.Released
		l.Expiry = r.now
		l.CLTT = r.now
	})
}

// informLocked answers DHCPINFORM with configuration only (RFC 2131 §4.3.5).
// A client with a usable ciaddr is remembered for FORCERENEW
// (recordInformLocked); the returned pendingInform holds its record, and
// the ACK when that carries a key and must wait for the disk.
func (s *Server) informLocked(r *req) ([]Outgoing, *pendingInform) {
	if ci := r.p.CIAddr; !ci.IsUnspecified() {
		// The ACK goes to ciaddr (RFC 2131 §4.3.5); nmap's probe sets
		// 255.255.255.255, which would make it a broadcast carrying a
		// subnet's options to the whole link. ISC dhcpd drops those too.
		// (A zero ciaddr, which some clients send, is answered as
		// before: to the source address, or broadcast.)
		if !ci.IsGlobalUnicast() { // also false for 255.255.255.255, multicast, loopback, link-local
			s.dropped("inform_ciaddr_not_unicast", r.in, nil)
			return nil, nil
		}
		if r.sub == nil {
			r.sub = s.subs.forAddr(ci)
		}
		if r.sub == nil || !r.sub.Prefix.Contains(ci) {
			s.dropped("inform_ciaddr_outside_subnet", r.in, nil)
			return nil, nil
		}
		if r.sub.Prefix.Bits() < 31 && (ci == r.sub.Prefix.Masked().Addr() || ci == lastAddr(r.sub.Prefix)) {
			// Network and broadcast addresses (RFC 3021: a /31 has neither).
			s.dropped("inform_ciaddr_not_unicast", r.in, nil)
			return nil, nil
		}
	}
	if r.sub == nil {
		s.dropped("no_subnet", r.in, nil)
		return nil, nil
	}
	if r.sid = s.serverIDLocked(r); !r.sid.IsValid() {
		s.dropped("no_server_id", r.in, nil)
		return nil, nil
	}
	var recs map[netip.Addr][]byte
	var wait bool
	if !r.p.CIAddr.IsUnspecified() {
		recs, wait = s.recordInformLocked(r)
	}
	out := []Outgoing{s.replyTo(r, dhcpwire.Ack, netip.IPv4Unspecified(), [3]uint32{}, false)}
	if !wait {
		if len(recs) == 0 {
			return out, nil
		}
		return out, &pendingInform{recs: recs}
	}
	return nil, &pendingInform{recs: recs, out: out}
}

// grantTimes returns lease time, T1 and T2 in seconds that a client is
// told for a grant of the given length; the only place they are computed.
// For a grant of the subnet's full lease time (or longer: one made before
// a reload shortened it) they are the configured ones, T1 and T2
// defaulting to the RFC 2131 §4.4.5 50% and 87.5% of the lease time; for
// a grant cut short (at the promise horizon, or by a cap) T1 and T2 are
// scaled by grant/lease time in whole seconds, exactly as bpf/xdp_dhcp.c
// scales them, so both paths and leasequery agree (ARCHITECTURE.md
// invariant 3). Without a subnet (removed by a reload) the defaults of
// the grant itself apply. grantTimes(sub, sub.LeaseTime) is the configured
// set, which offers carry and the fast path's entries hold.
func grantTimes(sub *Subnet, grant time.Duration) [3]uint32 {
	if grant <= 0 {
		return [3]uint32{}
	}
	g := uint32(grant / time.Second)
	if sub == nil {
		return [3]uint32{g, uint32(grant / 2 / time.Second), uint32(grant * 7 / 8 / time.Second)}
	}
	c1, c2 := sub.T1, sub.T2
	if c1 == 0 {
		c1 = sub.LeaseTime / 2
	}
	if c2 == 0 {
		c2 = sub.LeaseTime * 7 / 8
	}
	lt, t1, t2 := uint32(sub.LeaseTime/time.Second), uint32(c1/time.Second), uint32(c2/time.Second)
	if g < lt && lt > 0 {
		t1 = uint32(uint64(t1) * uint64(g) / uint64(lt))
		t2 = uint32(uint64(t2) * uint64(g) / uint64(lt))
		lt = g
	}
	return [3]uint32{lt, t1, t2}
}

// lastAddr is a prefix's last address, the subnet's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}

// hwAddr logs a hardware address as 02:00:00:00:00:23. slog's handlers
// print any byte slice, net.HardwareAddr included, as a quoted string.
type hwAddr []byte

// LogValue implements slog.LogValuer.
func (h hwAddr) LogValue() slog.Value { return slog.StringValue(net.HardwareAddr(h).String()) }

// poolBound and circuitBound name the bounds an offer counts against.
func poolBound(sub *Subnet) string { return sub.poolKey }

// circuitBound is the relay circuit a request came through: giaddr and
// option 82's circuit-id (RFC 3046 §2.1), or "" when it has none. A relay
// without a circuit-id aggregates many subscribers, so only the pool's
// bound applies there.
func circuitBound(p *dhcpwire.Packet) string {
	if p.GIAddr.IsUnspecified() {
		return ""
	}
	cid, ok := p.RelaySubOption(dhcpwire.SubOptCircuitID)
	if !ok {
		return ""
	}
	return "circuit " + p.GIAddr.String() + " " + string(cid)
}

// addOfferLocked records a pending offer; every offer is made here and
// ended by removeOfferLocked, which keeps the bounds' counts.
func (s *Server) addOfferLocked(ip netip.Addr, o offer) {
	if _, ok := s.offers[ip]; ok {
		s.removeOfferLocked(ip)
	}
	s.offers[ip] = o
	s.offerOf[o.client] = ip
	s.offerQ.Push(s.newOfferRef(ip, o.until))
	for _, b := range [2]string{o.pool, o.circuit} {
		if b != "" {
			s.offerCount[b]++
			q := s.offerFIFO[b]
			if q == nil {
				q = new(fifo.Queue[offerRef])
				s.offerFIFO[b] = q
			}
			q.Push(s.newOfferRef(ip, o.until))
		}
	}
}

// removeOfferLocked ends the offer of ip (the caller decides what
// becomes of the address).
func (s *Server) removeOfferLocked(ip netip.Addr) {
	o, ok := s.offers[ip]
	if !ok {
		return
	}
	delete(s.offers, ip)
	if s.offerOf[o.client] == ip {
		delete(s.offerOf, o.client)
	}
	for _, b := range [2]string{o.pool, o.circuit} {
		if b == "" {
			continue
		}
		if s.offerCount[b]--; s.offerCount[b] <= 0 {
			delete(s.offerCount, b)
			delete(s.offerFIFO, b)
		} else if q := s.offerFIFO[b]; q.Len() > 2*s.offerCount[b]+64 {
			// Entries of ended offers wait for the front; compact
			// before they outnumber the live ones.
			q.Keep(func(ref offerRef) bool { return s.isOfferLocked(ref, b) })
		}
	}
}

// isOfferLocked reports whether ref is still a pending offer counted
// against bound b.
func (s *Server) isOfferLocked(ref offerRef, b string) bool {
	o, ok := s.offers[ref.addr()]
	return ok && s.offerSince(o.until) == ref.until && (o.pool == b || o.circuit == b)
}

// boundOffersLocked makes room for one more offer to r's client: when its
// pool, or its relay circuit, already holds as many pending offers as
// Settings allow, the oldest one there is withdrawn (its address goes
// back behind every other free one, so the next DISCOVERs do not get it
// at once) and counted.
func (s *Server) boundOffersLocked(r *req) {
	if sh := s.set.OfferPoolShare; sh > 0 {
		b := poolBound(r.sub)
		unbound := float64(r.sub.set.Available()) + float64(s.offerCount[b])
		if limit := max(1, int(sh*unbound)); s.offerCount[b] >= limit {
			s.evictOldestLocked(b, "pool")
		}
	}
	if n := s.set.OfferPerCircuit; n > 0 {
		if b := circuitBound(r.p); b != "" && s.offerCount[b] >= n {
			s.evictOldestLocked(b, "circuit")
		}
	}
}

func (s *Server) evictOldestLocked(b, kind string) {
	q := s.offerFIFO[b]
	for q != nil && q.Len() > 0 {
		ref := q.Front()
		q.Pop()
		if !s.isOfferLocked(ref, b) {
			continue
		}
		ip := ref.addr()
		s.removeOfferLocked(ip)
		if sn := s.subs.forAddr(ip); sn != nil {
			if _, reserved := sn.ReservedIP[ip]; !reserved && sn.set.Contains(ip) {
				if l := s.leases.Get(ip); l == nil || l.State.Reusable() {
					sn.set.Free(ip)
				} else if l.State == lease.Backup {
					sn.backup.Free(ip)
				}
			}
		}
		s.m.OffersWithdrawn.WithLabelValues(kind).Inc()
		return
	}
}
