package slowpath

import (
	"bytes"
	"container/list"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Clients configured by DHCPINFORM (issue 16: "a client configured by
// INFORM gets FORCERENEW too").
//
// Such a client holds no lease, so the server remembers it apart: one
// record per ciaddr, refreshed by each INFORM answered, holding what a
// FORCERENEW to it needs. dhcpcd (src/dhcp.c, 9.4.1 and 8b31291) checks a
// FORCERENEW's xid against its current one before anything else, which
// is the last INFORM's (each INFORM draws a new one), and takes a
// reconfigure key (option 90, type 1) from any ACK, an INFORM's included.
// So the record keeps the INFORM's xid and, for a client that sent 145,
// the key its ACK delivered: a fresh one with each INFORM, durable before
// that ACK leaves (ARCHITECTURE.md invariant 6), drawn from the one
// replay counter. The table is bounded (least recently informed out
// first) and a record lapses after InformedTTL without an INFORM.
//
// How dhcpcd answers: its FORCERENEW handler re-INFORMs only in INFORM
// state, the moments between sending an INFORM and its ACK; the ACK
// binds it (dhcp_bind sets DHS_BOUND whatever the mode, with an infinite
// lease), so a FORCERENEW it accepts makes it renew: a unicast REQUEST
// from its address with ciaddr set and a new xid. Seen with dhcpcd 9.4.1
// (TestForceRenewDhcpcdInform). A NAK to that REQUEST would make it drop
// its hand-configured address (dhcp_drop) and DISCOVER, so such a
// REQUEST is answered as the client's INFORM is (informedRenewalLocked):
// a configuration-only ACK, yiaddr 0 and ciaddr echoed, no lease time,
// which dhcpcd in INFORM mode takes as a new approval. That ACK keeps the
// client's key (it delivers none: the client keeps the one it holds) and
// records the REQUEST's xid for the next FORCERENEW. A client that does
// answer with a new INFORM (other clients, or dhcpcd in INFORM state) is
// answered as any INFORM.

// Defaults of the informed-client table's bounds (Settings.InformedMax,
// Settings.InformedTTL).
const (
	DefaultInformedMax = 65536
	DefaultInformedTTL = 24 * time.Hour
)

// InformStore keeps informed clients durable (slowpath/store.Store
// implements it). Without one, the records live in memory only and INFORM
// ACKs carry no key, since the key could not be durable before the ACK.
type InformStore interface {
	// SubmitInformed queues records (a nil value deletes) and calls done
	// once they are on disk; done must not wait for the server.
	SubmitInformed(recs map[netip.Addr][]byte, done func(error))
	// InformedRecords reads every stored record.
	InformedRecords() (map[netip.Addr][]byte, error)
}

// informedClient is one client configured by INFORM; guarded by Server.mu.
// Stored as JSON (the table is small and written once per INFORM).
type informedClient struct {
	IP       netip.Addr       `json:"ip"`
	HWType   uint8            `json:"htype"`
	HWAddr   net.HardwareAddr `json:"hw-address"`
	ClientID []byte           `json:"client-id,omitempty"`
	// XID is the last INFORM's: a FORCERENEW carries it.
	XID    uint32       `json:"xid"`
	Subnet netip.Prefix `json:"subnet"`
	// ServerID is option 54 of the INFORM's ACK, the FORCERENEW's too.
	ServerID netip.Addr `json:"server-id"`
	// IfIndex is where the INFORM came in; 0 when it was relayed (the
	// client is then reached by routing).
	IfIndex int       `json:"ifindex,omitempty"`
	Seen    time.Time `json:"seen"`
	// Key is the FORCERENEW key the last INFORM's ACK delivered; empty
	// for a client that did not send 145.
	Key []byte `json:"key,omitempty"`

	elem *list.Element // in Server.informLRU, most recent at the front
}

// clientKey is the client's identity as leases have it (RFC 2131 §4.2).
func (c *informedClient) clientKey() string { return lease.ClientKey(c.ClientID, c.HWType, c.HWAddr) }

// matchInformed reports whether sel names an informed client (the fields
// a lease would be matched on).
func (sel Selector) matchInformed(c *informedClient) bool {
	return sel.match(&lease.Lease{IP: c.IP, HWAddr: c.HWAddr, ClientID: c.ClientID})
}

func (s *Server) informedMaxLocked() int {
	if s.set.InformedMax > 0 {
		return s.set.InformedMax
	}
	return DefaultInformedMax
}

func (s *Server) informedTTLLocked() time.Duration {
	if s.set.InformedTTL > 0 {
		return s.set.InformedTTL
	}
	return DefaultInformedTTL
}

// pendingInform is an INFORM's ACK waiting for the record whose key it
// carries to be on disk.
type pendingInform struct {
	recs map[netip.Addr][]byte
	out  []Outgoing
}

// recordInformLocked remembers r's client, configured by INFORM at its
// ciaddr (already checked usable by informLocked), and, when it sent 145
// and the record can be made durable, puts a fresh key in r.auth for the
// ACK. It returns the records to write (nil value: delete), and wait true
// when the ACK must wait for them. Nothing is recorded for an address an
// active lease holds: that client is the lease's, forced as one.
func (s *Server) recordInformLocked(r *req) (recs map[netip.Addr][]byte, wait bool) {
	ip := r.p.CIAddr
	if l := s.leases.Get(ip); l != nil && l.State == lease.Active {
		return nil, false
	}
	recs = map[netip.Addr][]byte{}
	c := s.informed[ip]
	if c != nil && c.clientKey() != r.key {
		// Another client now at the address: nothing of the old one's
		// (its key least of all) carries over.
		s.dropInformedLocked(c)
		c = nil
	}
	if c == nil {
		c = &informedClient{IP: ip}
		s.informed[ip] = c
		c.elem = s.informLRU.PushFront(c)
		for s.informLRU.Len() > s.informedMaxLocked() {
			old := s.informLRU.Back().Value.(*informedClient)
			s.dropInformedLocked(old)
			recs[old.IP] = nil
			s.m.InformedEvicted.Inc()
		}
	} else {
		s.informLRU.MoveToFront(c.elem)
	}
	cid, _ := r.p.Option(dhcpwire.OptClientID)
	c.HWType, c.HWAddr, c.ClientID = r.p.HType, bytes.Clone(r.p.CHAddr()), bytes.Clone(cid)
	c.XID, c.Subnet, c.ServerID, c.Seen = r.p.XID, r.sub.Prefix, r.sid, r.now
	c.IfIndex = r.in.IfIndex
	if !r.p.GIAddr.IsUnspecified() {
		c.IfIndex = 0
	}
	switch {
	case r.p.MessageType() == dhcpwire.Request:
		// A renewal answering FORCERENEW (informedRenewalLocked): the
		// client keeps the key it holds; only the xid is new, and no ACK
		// waits for its write.
	case s.informs != nil && s.ctr != nil && nonceCapable(r.p):
		// An INFORM from a client that takes a key: the client holds the
		// key of this ACK; one it was given before is gone (a restarted
		// dhcpcd sends 145 again and takes the new one).
		c.Key = nil
		k, err := auth.NewKey()
		var replay uint64
		if err == nil {
			replay, err = s.ctr.Next()
		}
		if err != nil {
			// No OFFER promised this client a key: it is answered
			// without one, and cannot be forced until its next INFORM.
			s.logLimited(slog.LevelError, "forcerenew_key", "no FORCERENEW key for an INFORM's ACK; answering without", "client", hwAddr(r.p.CHAddr()), "err", err)
		} else {
			c.Key = k[:]
			r.auth = auth.AppendKeyOption(nil, replay, k)
			wait = true
		}
	default:
		// An INFORM without 145 (or no durable store): no key, and a
		// key given before is forgotten.
		c.Key = nil
	}
	if s.informs == nil {
		return nil, false
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Plain data: cannot fail; if it did, the ACK must not carry a
		// key that is not stored.
		s.logLimited(slog.LevelError, "informed_encode", "encoding an informed client", "ip", ip, "err", err)
		r.auth, c.Key = nil, nil
		return recs, false
	}
	recs[ip] = b
	return recs, wait
}

// dropInformedLocked forgets an informed client (the caller deletes its
// stored record).
func (s *Server) dropInformedLocked(c *informedClient) {
	s.informLRU.Remove(c.elem)
	delete(s.informed, c.IP)
}

// expireInformedLocked forgets informed clients not heard from within
// InformedTTL and returns the records to delete; Sweep calls it. The
// least recently informed are at the back, so it stops at the first
// that is still fresh.
func (s *Server) expireInformedLocked(now time.Time) map[netip.Addr][]byte {
	ttl := s.informedTTLLocked()
	var del map[netip.Addr][]byte
	for e := s.informLRU.Back(); e != nil; e = s.informLRU.Back() {
		c := e.Value.(*informedClient)
		if now.Sub(c.Seen) < ttl {
			break
		}
		s.dropInformedLocked(c)
		s.m.InformedExpired.Inc()
		if del == nil {
			del = map[netip.Addr][]byte{}
		}
		del[c.IP] = nil
	}
	return del
}

// submitInformedLocked queues informed records for the disk. It is called
// under the lock so that writes for one address reach the store in the
// order they were made; done does not take the lock.
func (s *Server) submitInformedLocked(recs map[netip.Addr][]byte, done func(error)) {
	if s.informs == nil || len(recs) == 0 {
		if done != nil {
			done(nil)
		}
		return
	}
	s.informs.SubmitInformed(recs, func(err error) {
		if err != nil {
			s.m.CommitErrors.Inc()
			s.logLimited(slog.LevelError, "informed_commit", "storing informed clients failed", "records", len(recs), "err", err)
		}
		if done != nil {
			done(err)
		}
	})
}

// loadInformedLocked reads the stored informed clients (called by Load):
// those lapsed while the server was down are deleted, the rest kept, the
// most recently informed first, up to the bound.
func (s *Server) loadInformedLocked() error {
	if s.informs == nil {
		return nil
	}
	recs, err := s.informs.InformedRecords()
	if err != nil {
		return fmt.Errorf("loading informed clients: %w", err)
	}
	var cs []*informedClient
	del := map[netip.Addr][]byte{}
	for ip, v := range recs {
		c := &informedClient{}
		if err := json.Unmarshal(v, c); err != nil || c.IP != ip || (len(c.Key) != 0 && len(c.Key) != auth.KeyLen) {
			// A bad record costs one client's FORCERENEW until its
			// next INFORM, not the server's start.
			s.log.Error("informed client record not loaded", "ip", ip, "err", err)
			del[ip] = nil
			continue
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *informedClient) int { return b.Seen.Compare(a.Seen) })
	now, ttl, max := s.now(), s.informedTTLLocked(), s.informedMaxLocked()
	for _, c := range cs {
		if now.Sub(c.Seen) >= ttl || s.informLRU.Len() >= max {
			del[c.IP] = nil
			continue
		}
		s.informed[c.IP] = c
		c.elem = s.informLRU.PushBack(c)
	}
	s.submitInformedLocked(del, nil)
	return nil
}

// InformedCount is the number of informed clients remembered (the
// xdhcp_informed_clients gauge).
func (s *Server) InformedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.informed)
}

// forceInformedLocked starts forcing the informed client at ip for c and
// reports whether a FORCERENEW is to be sent now. There is no fast-path
// entry to turn off (the client holds no lease), so nothing waits for a
// commit; the client's answer is an INFORM, which the slow path always
// sees.
func (s *Server) forceInformedLocked(c *campaign, ip netip.Addr, t *target) bool {
	ic := s.informed[ip]
	if ic == nil || !bytes.Equal(ic.HWAddr, t.hw) {
		// Forgotten, or another client informed from the address since
		// the campaign started (a resumed one, say).
		c.finish(ip, outSkipped)
		return false
	}
	if l := s.leases.Get(ip); l != nil && l.State == lease.Active {
		// The address has been leased since: the lease's client is not
		// this one.
		c.finish(ip, outSkipped)
		return false
	}
	if (len(ic.Key) != auth.KeyLen || s.ctr == nil) && !s.forceRenewSettingsLocked(ip).AllowUnauthenticated {
		s.m.ForceRenewNoKey.Inc()
		c.finish(ip, outNoKey)
		return false
	}
	t.sent = true
	c.sent++
	c.inflight++
	if p := s.frPending[ip]; p != nil {
		// Already being forced by another campaign: this one shares its
		// outcome.
		p.campaigns = append(p.campaigns, c)
		return false
	}
	s.frPending[ip] = &frPending{campaigns: []*campaign{c}, informed: true, key: ic.clientKey()}
	return true
}

// pendingClientLocked reports whether the client a pending FORCERENEW was
// started for still holds ip (its lease, or its informed record), and
// its hardware address.
func (s *Server) pendingClientLocked(ip netip.Addr, p *frPending) (net.HardwareAddr, bool) {
	if p.informed {
		ic := s.informed[ip]
		if ic == nil || ic.clientKey() != p.key {
			return nil, false
		}
		if l := s.leases.Get(ip); l != nil && l.State == lease.Active {
			return nil, false
		}
		return ic.HWAddr, true
	}
	l := s.leases.Get(ip)
	if l == nil || l.State != lease.Active || l.ClientKey() != p.key {
		return nil, false
	}
	return l.HWAddr, true
}

// informedRenewalLocked reports whether a REQUEST is an informed client
// renewing, as dhcpcd configured by INFORM answers a FORCERENEW: RENEWING
// or REBINDING in form (ciaddr set, neither option 50 nor 54), from the
// client remembered at ciaddr, for an address no active lease holds.
// Such a REQUEST is answered as an INFORM (see the comment at the top).
func (s *Server) informedRenewalLocked(r *req) bool {
	p := r.p
	if p.CIAddr.IsUnspecified() {
		return false
	}
	if _, ok := p.AddrOption(dhcpwire.OptServerID); ok {
		return false
	}
	if _, ok := p.AddrOption(dhcpwire.OptRequestedIP); ok {
		return false
	}
	c := s.informed[p.CIAddr]
	if c == nil || c.clientKey() != r.key {
		return false
	}
	l := s.leases.Get(p.CIAddr)
	return l == nil || l.State != lease.Active
}
