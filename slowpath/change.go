package slowpath

import (
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// cause is why a binding changes. change applies its policies by it and
// commit fans a committed batch out by it.
type cause uint8

const (
	// causeAck: the slow path acknowledges a grant (a new binding or a renewal).
	causeAck cause = iota + 1
	// causeReplaced: a new grant to the client ends its other binding in
	// the subnet (ARCHITECTURE.md invariant 8).
	causeReplaced
	causeRelease
	causeDecline
	// causeExpire: the sweeper's batch (ACTIVE → EXPIRED, a late fast-path
	// grant adopted, EXPIRED/RELEASED/ABANDONED → FREE).
	causeExpire
	// causeFold: a renewal the fast path answered, folded in.
	causeFold
	// causeAssume: AssumeGrantedToHorizon and LoadHoldingGrants, for a
	// start after grants past the records may have been lost.
	causeAssume
	// causeHorizon: AdvanceHorizons.
	causeHorizon
	// causePartner: a binding update from the failover partner
	// (ApplyPartner); it is not echoed back.
	causePartner
	// causeForceRenew: a FORCERENEW starts or ends; the lease is
	// republished with its serve bit (serveLocked) and nothing else.
	causeForceRenew
	// causePartnerAck: the partner acknowledged an update (AckedExp
	// raised, the partner mark cleared); nothing goes back to it.
	causePartnerAck
	// causePool: pool balance moves FREE and BACKUP addresses between
	// the partners (Rebalance).
	causePool
	// causeRenumber: a served interface came back with a new index
	// (RenumberInterface); where the client is reached is this server's
	// own business, not the partner's.
	causeRenumber
)

// fromPartner: changes the partner told us of, which are not sent back
// to it and leave its mark alone.
func (c cause) fromPartner() bool { return c == causePartner || c == causePartnerAck }

// forPartner: changes the partner must hear of (marked pending for it and
// sent to it once committed).
func (c cause) forPartner() bool { return !c.fromPartner() && c != causeRenumber }

// movesHorizon: the changes that push the promise horizon ahead.
func (c cause) movesHorizon() bool { return c == causeAck || c == causeHorizon }

// republish: whether a committed change must be written to the fast path.
// What the fast path granted itself (folded renewals), or what it held when
// its map was lost, it already has or will get from PublishAll.
func (c cause) republish() bool { return c != causeFold && c != causeAssume && c != causePartnerAck }

// horizonLocked is the promise horizon a lease may have at now: now plus
// HorizonAhead, no later than the partner's cap. ok is false while the
// fast path is off (HorizonAhead zero). This is the one place the rule of
// ARCHITECTURE.md invariant 2 is written.
func (s *Server) horizonLocked(l *lease.Lease, now time.Time) (time.Time, bool) {
	ahead := s.set.HorizonAhead
	if ahead <= 0 {
		return time.Time{}, false
	}
	h := now.Add(ahead)
	if s.partner != nil {
		if c, ok := s.partner.Cap(l, now); ok && c.Before(h) {
			h = c
		}
	}
	return h, true
}

// serveLocked decides a lease's serve bit, the fast path's permission to
// answer its renewals alone: always, unless a FORCERENEW is pending for it
// (the slow path must see the REQUEST that answers it: to stop
// retransmitting, and to NAK it for a move), its client is to be moved at
// its next renewal, the configuration no longer answers as the entry would
// (configCurrent; sub is l's subnet), or the partner says otherwise.
func (s *Server) serveLocked(l *lease.Lease, sub *Subnet) bool {
	if s.frPending[l.IP] != nil {
		return false
	}
	if m := s.moveNext[l.IP]; m != nil && m.key == l.ClientKey() {
		return false // to be NAKed at its next renewal: a Move campaign could not force it
	}
	if !configCurrent(l, sub) {
		return false // the slow path NAKs it, or sends the new server-id and stores it
	}
	return s.partner == nil || s.partner.Serve(l)
}

// configCurrent says whether the fast path's entry for l, in subnet sub,
// still answers as the slow path would under the configuration now. A
// reload may since have:
//   - reserved the address for another client, or taken it out of every
//     pool: the slow path NAKs the renewal (availableForLocked);
//   - changed the subnet's server-id: the slow path answers with the new
//     one (serverIDLocked) and stores it, where the entry holds the old
//     one until that ACK. A relay's RFC 5107 override, kept in the
//     stored option 82, stands.
func configCurrent(l *lease.Lease, sub *Subnet) bool {
	if res, ok := sub.ReservedIP[l.IP]; ok {
		if res.ClientKey != l.ClientKey() && res.ClientKey != lease.ClientKey(nil, l.HWType, l.HWAddr) {
			return false
		}
	} else if !sub.set.Contains(l.IP) {
		return false
	}
	if !sub.ServerID.IsValid() || l.ServerID == sub.ServerID {
		return true
	}
	_, override := dhcpwire.SubOption(l.RelayInfo, dhcpwire.SubOptServerIDOverr)
	return override
}

// changeLocked is the one way a binding changes. It applies edit to ip's
// record (a new one when there is none), then every policy once:
//   - the lease-time cap: an expiry this server grants (causeAck) goes no
//     later than the partner's cap;
//   - the promise horizon (invariant 2), raised to horizonLocked for the
//     causes that move it;
//   - the partner mark: every change not from the partner is pending for
//     it, with PotExp the latest the client may hold the address through
//     us (its expiry, or while active its horizon if later);
//   - state bookkeeping: StateAt, the metrics' counts, the pool (taken
//     while bound, abandoned or the partner's; freed when it becomes
//     reusable, unless reserved), the expiry heap and the FREE queue.
//
// It installs the record and returns a copy to commit (the table keeps
// its own), with Reserved set for the partner; the caller holds s.mu and
// commits the copy after releasing it.
func (s *Server) changeLocked(ip netip.Addr, c cause, now time.Time, edit func(l *lease.Lease)) *lease.Lease {
	return s.markReservedLocked(s.applyLocked(ip, c, now, edit))
}

// applyLocked is changeLocked without marking the reservation, for callers
// that send only some changes to the partner, or none.
func (s *Server) applyLocked(ip netip.Addr, c cause, now time.Time, edit func(l *lease.Lease)) *lease.Lease {
	l := s.leases.Get(ip)
	known := l != nil
	if !known {
		l = &lease.Lease{IP: ip}
	}
	s.applyToLocked(l, known, c, now, edit)
	return l
}

// applyToLocked is applyLocked on l, ip's record as read (known) or a new
// one, which it then stores: for a scan that holds the table's own
// scratch copy (lease.Table.Range) and keeps nothing.
func (s *Server) applyToLocked(l *lease.Lease, known bool, c cause, now time.Time, edit func(l *lease.Lease)) {
	ip := l.IP
	was, wasExp := l.State, l.Expiry.Unix()
	client := lease.Lease{HWType: l.HWType, HWAddr: l.HWAddr, ClientID: l.ClientID}
	edit(l)
	sn := s.subs.forAddr(ip)
	if l.State != lease.Active || !lease.SameClient(&client, l) {
		// The horizon on disk is another binding's, or this record
		// promises nothing now: nothing may be granted on it. A new
		// epoch, so that no version of an earlier binding landing later
		// sets it again (SetDurableHorizon) before this one lands.
		l.DurableHorizon = time.Time{}
		if known && (was == lease.Active || l.State == lease.Active) {
			l.Epoch++
		}
	}

	desired := l.Expiry
	if c == causeAck && s.partner != nil {
		if cp, ok := s.partner.Cap(l, now); ok && l.Expiry.After(cp) {
			l.Expiry = cp
		}
	}
	if c.movesHorizon() && l.State == lease.Active {
		if h, ok := s.horizonLocked(l, now); ok && h.After(l.Horizon) {
			l.Horizon = h
		}
	}
	if c.forPartner() {
		l.PartnerPending = true
		l.PotExp = l.Expiry
		if c == causeAck && s.partner != nil {
			// Ahead of the grant (draft-12 §7.1.5), so that once the
			// partner acks it the next renewal is not cut to MCLT.
			l.PotExp = s.partner.PotentialExpiry(now, l.Expiry, desired)
		}
		if l.State == lease.Active && l.Horizon.After(l.PotExp) {
			l.PotExp = l.Horizon
		}
	}

	if l.State != was {
		l.StateAt = now
		if sn != nil {
			if known {
				s.countLocked(sn, was, -1)
			}
			s.countLocked(sn, l.State, 1)
		}
		if l.State.Ending() {
			s.toFree = append(s.toFree, ip)
		}
	}
	if sn != nil {
		_, reserved := sn.ReservedIP[ip]
		switch {
		case !l.State.Reusable():
			sn.set.Take(ip)
		case (!known || !was.Reusable()) && !reserved:
			sn.set.Free(ip)
		}
		switch {
		case l.State == lease.Backup && (!known || was != lease.Backup) && !reserved:
			if _, offered := s.offers[ip]; !offered {
				sn.backup.Free(ip)
			}
		case l.State != lease.Backup:
			sn.backup.Take(ip)
		}
	}
	// An active or abandoned record has an entry in the expiry heap at or
	// before its expiry; the sweep moves one it finds early on to the
	// record's expiry (Sweep). So a renewal, which only moves the expiry
	// later, adds none. An entry for every renewal, kept until its own
	// time an hour on, grew the heap by a megabyte a second at 60,000
	// renewals a second, and each time it grew, copying it under s.mu
	// stalled the server for 27 to 38 ms (an execution trace).
	if (l.State == lease.Active || l.State == lease.Abandoned) && (!known || l.State != was || l.Expiry.Unix() < wasExp) {
		s.expiry.push(ip, l.Expiry, l.StateAt)
	}
	s.leases.Put(l)
}

// markReservedLocked sets Reserved on l, a copy of a record, from the
// configuration (memory-only: the R flag of its binding updates), and
// returns it.
func (s *Server) markReservedLocked(l *lease.Lease) *lease.Lease {
	if sn := s.subs.forAddr(l.IP); sn != nil {
		_, l.Reserved = sn.ReservedIP[l.IP]
	}
	return l
}
