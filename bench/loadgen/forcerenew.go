package loadgen

import (
	"net/netip"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
)

// keyState is what a client that sent option 145 keeps to check a
// FORCERENEW, as dhcpcd does (digest C.4): the key from option 90 of an
// ACK, the last replay counter accepted, and the xid of its last ACKed
// REQUEST (the xid a FORCERENEW must carry).
type keyState struct {
	key     auth.Key
	replay  uint64
	lastXID uint32
	hasKey  bool
	hasXID  bool
	tries   uint8 // retransmissions of the current forced REQUEST
}

// forcedTries is how often a forced REQUEST is sent again when nothing
// answers it before the exchange's timeout.
const forcedTries = 4

// ForceRenewStats counts what the clients did with FORCERENEWs. Unlike
// the phase counts, Acquire does not reset them: a campaign spans the
// phases of a run.
type ForceRenewStats struct {
	Keys     int64 `json:"keys"`     // ACKs that delivered a key
	Received int64 `json:"received"` // FORCERENEWs that arrived
	Accepted int64 `json:"accepted"` // verified and answered with a REQUEST
	// Rejected FORCERENEWs, by reason: no key yet, an xid other than the
	// last ACKed REQUEST's, a replay counter not above the last, a bad
	// digest, or a client already in an exchange.
	NoKey     int64 `json:"no-key"`
	WrongXID  int64 `json:"wrong-xid"`
	Replayed  int64 `json:"replayed"`
	BadDigest int64 `json:"bad-digest"`
	Busy      int64 `json:"busy"`
	Renewed   int64 `json:"renewed"` // forced REQUEST ACKed for the same address
	NAKed     int64 `json:"naked"`   // forced REQUEST NAKed: DISCOVER again
	Moved     int64 `json:"moved"`   // bound again after a NAK (on whatever was offered)
	Lost      int64 `json:"lost"`    // a forced REQUEST that timed out (the client keeps its lease)
	Retried   int64 `json:"retried"` // a forced REQUEST, or a moved client's DORA, timed out and was sent again
}

// ForceRenewStats returns the FORCERENEW counts so far.
func (g *Gen) ForceRenewStats() ForceRenewStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.frs
}

// keepKey records, for a client that sent 145, the key an ACK delivered
// (dhcpcd takes it from any ACK that carries one) and the xid of the
// REQUEST the ACK answered; it runs with g.mu held.
func (g *Gen) keepKey(j int, p *dhcpwire.Packet) {
	if g.keys == nil {
		return
	}
	k := &g.keys[j]
	k.lastXID, k.hasXID = p.XID, true
	v, ok := p.Option(dhcpwire.OptAuthentication)
	if !ok {
		return
	}
	n, err := auth.ParseNonce(v)
	if err != nil || n.Type != auth.InfoTypeKey {
		return
	}
	// The key's own counter is the floor for the FORCERENEWs that follow
	// (the server's counter is one sequence across every option 90).
	k.key, k.replay, k.hasKey = auth.Key(n.Value), n.Replay, true
	g.frs.Keys++
}

// forceRenew checks a FORCERENEW for client j as dhcpcd does (xid, then
// the digest under the client's key, then a replay counter above the
// last) and answers a good one with a unicast REQUEST in RENEWING state;
// it runs with g.mu held. b is the message as received: the digest
// covers every byte.
func (g *Gen) forceRenew(j int, b []byte, xid uint32, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	g.frs.Received++
	k := &g.keys[j]
	c := &g.clients[j]
	switch {
	case !k.hasKey:
		g.frs.NoKey++
		return out, arena
	case !k.hasXID || xid != k.lastXID:
		g.frs.WrongXID++
		return out, arena
	}
	n, err := auth.Verify(b, k.key)
	if err != nil {
		g.frs.BadDigest++
		return out, arena
	}
	if n.Replay <= k.replay {
		g.frs.Replayed++
		return out, arena
	}
	if c.state != bound {
		// Already renewing (a retransmission crossed our REQUEST) or
		// between leases: dhcpcd too acts only on a bound lease.
		g.frs.Busy++
		return out, arena
	}
	k.replay = n.Replay
	k.tries = 0
	g.frs.Accepted++
	c.op, c.start = opForce, now
	g.c.started[opForce]++
	g.inFlight++
	return g.forcedRequest(j, now, out, arena)
}

// forcedRequest sends client j's REQUEST in RENEWING state for a
// FORCERENEW (again, after a timeout); it runs with g.mu held.
func (g *Gen) forcedRequest(j int, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	c := &g.clients[j]
	c.seq++
	g.await(j, renewing, now)
	m := Message{Type: dhcpwire.Request, XID: g.xid(j), ID: g.cfg.Pop.Identity(j), CIAddr: c.ip, GIAddr: g.cfg.GIAddr,
		NonceCapable: true}
	return appendPacket(out, arena, m, c.ip)
}

// forcedNAK handles a NAK to a forced REQUEST: the client drops its
// address and DISCOVERs again, taking what is offered (the move); it runs
// with g.mu held and the exchange still counted in flight.
func (g *Gen) forcedNAK(j int, now int64, out []Packet, arena []byte) ([]Packet, []byte) {
	g.frs.NAKed++
	c := &g.clients[j]
	ip := c.ip
	if ip.IsValid() && g.byIP[ip] == int32(j) {
		delete(g.byIP, ip)
	}
	c.ip = netip.Addr{}
	return g.discover(j, now, out, arena)
}
