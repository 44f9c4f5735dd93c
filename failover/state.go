package failover

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/failover/hba"
	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// messageLocked handles one message from link l.
func (r *Relationship) messageLocked(ctx context.Context, l *link, m *wire.Message) {
	if !l.established {
		r.handshakeLocked(ctx, l, m)
		return
	}
	if l != r.link {
		return // an old connection's last words
	}
	r.observeSkewLocked(m.Time)
	switch m.Type {
	case wire.State:
		r.partnerStateLocked(ctx, m)
	case wire.Contact:
	case wire.BndUpd:
		r.bindUpdateLocked(ctx, m)
	case wire.BndAck:
		r.bindAckLocked(ctx, m)
	case wire.UpdReq, wire.UpdReqAll:
		r.updateRequestLocked(m.Type == wire.UpdReqAll)
	case wire.UpdDone:
		r.updateDoneLocked(ctx)
	case wire.PoolReq:
		r.poolRequestLocked(ctx, m)
	case wire.PoolResp:
		r.log.Info("failover: the primary gave addresses", "addresses", m.AddrsTransferred)
	case wire.Disconnect:
		r.m.Disconnects.WithLabelValues("partner-disconnected").Inc()
		r.dropLinkLocked(ctx, l, fmt.Sprintf("the partner disconnected: reason %d %q", m.RejectReason, m.Text), r.RetryAfterReject)
	default: // CONNECT, CONNECTACK on an established connection
		r.sendOn(l, &wire.Message{Type: wire.Disconnect, RejectReason: wire.ReasonUnknown, Text: m.Type.String() + " on an established connection"})
		r.dropLinkLocked(ctx, l, "protocol error: "+m.Type.String()+" after the handshake", r.RetryAfterReject)
	}
}

// handshakeLocked: CONNECT (to a secondary) and CONNECTACK (to the
// primary) establish a connection (draft-12 §7.2, §7.3).
func (r *Relationship) handshakeLocked(ctx context.Context, l *link, m *wire.Message) {
	reject := func(reason wire.Reason, text string) {
		r.m.Disconnects.WithLabelValues(fmt.Sprintf("reject-%d", reason)).Inc()
		r.log.Warn("failover: refusing the partner's connection", "message", m.Type, "reason", reason, "why", text)
		if m.Type == wire.Connect {
			r.sendOn(l, &wire.Message{Type: wire.ConnectAck, XID: m.XID, Name: r.cfg.Name, ProtoVersion: 1, RejectReason: reason, Text: text})
		} else {
			r.sendOn(l, &wire.Message{Type: wire.Disconnect, RejectReason: reason, Text: text})
		}
		l.finish()
		if reason != wire.ReasonDuplicate {
			// Both sides connect every 2 s while apart; a refused
			// partner would be refused (and logged) that often.
			r.nextDial = r.now().Add(r.RetryAfterReject)
		}
	}
	skew := time.Duration(int64(m.Time)-r.now().Unix()) * time.Second
	switch {
	case m.Type == wire.Disconnect:
		// The partner refused this connection before it was made.
		r.m.Disconnects.WithLabelValues(fmt.Sprintf("rejected-%d", m.RejectReason)).Inc()
		r.log.Warn("failover: the partner refused the connection", "reason", m.RejectReason, "message", m.Text)
		l.close()
		r.nextDial = r.now().Add(r.RetryAfterReject)
		return
	case m.Type == wire.Connect && r.cfg.Role == Primary:
		reject(wire.ReasonInvalidPartner, "CONNECT to the primary: both sides are configured as primary")
		return
	case m.Type == wire.ConnectAck && r.cfg.Role == Secondary:
		reject(wire.ReasonInvalidPartner, "CONNECTACK to the secondary")
		return
	case m.Type != wire.Connect && m.Type != wire.ConnectAck:
		reject(wire.ReasonUnknown, m.Type.String()+" before CONNECT")
		return
	case m.Type == wire.ConnectAck && m.RejectReason != 0:
		r.m.Disconnects.WithLabelValues(fmt.Sprintf("rejected-%d", m.RejectReason)).Inc()
		r.log.Warn("failover: the partner refused the connection", "reason", m.RejectReason, "message", m.Text)
		l.close()
		r.nextDial = r.now().Add(r.RetryAfterReject)
		return
	case m.Name != r.cfg.Name:
		reject(wire.ReasonInvalidPartner, fmt.Sprintf("relationship %q, this server's is %q", m.Name, r.cfg.Name))
		return
	case m.ProtoVersion != 1:
		reject(wire.ReasonVersionMismatch, fmt.Sprintf("protocol version %d, want 1", m.ProtoVersion))
		return
	case skew > r.cfg.MaxSkew || -skew > r.cfg.MaxSkew:
		reject(wire.ReasonTimeMismatch, fmt.Sprintf("clocks %s apart, more than %s", skew, r.cfg.MaxSkew))
		return
	case m.Type == wire.Connect && len(m.HBA) != 32:
		reject(wire.ReasonHBAConflict, "no hash bucket assignment")
		return
	case m.Type == wire.Connect && m.MCLT == 0:
		reject(wire.ReasonInvalidMCLT, "no MCLT")
		return
	case r.link != nil:
		reject(wire.ReasonDuplicate, "already connected")
		return
	}
	l.established = true
	r.link = l
	r.skews = r.skews[:0]
	r.observeSkewLocked(m.Time)
	r.partner.maxUnacked = max(1, int(m.MaxUnacked))
	r.partner.recvTimer = time.Duration(m.ReceiveTimer) * time.Second
	r.partner.vendor = m.VendorClass
	if m.Type == wire.Connect {
		r.partner.hba = m.HBA
		mclt := time.Duration(m.MCLT) * time.Second
		r.setView(func(v *view) { v.mclt, v.hba = mclt, hba.Assignment(m.HBA) })
		r.sendOn(l, &wire.Message{Type: wire.ConnectAck, XID: m.XID, Name: r.cfg.Name, MaxUnacked: uint32(r.cfg.MaxUnacked),
			ReceiveTimer: uint32(r.cfg.MaxResponseDelay / time.Second), VendorClass: vendorPrefix + "-1", ProtoVersion: 1})
		r.save(ctx)
	}
	r.log.Info("failover: connected to the partner", "vendor", m.VendorClass, "skew", r.skew, "tls", r.cfg.TLS != nil)
	if r.cfg.TLS == nil && r.batching() {
		r.log.Warn("failover: the partner is xdhcpd and the connection is plain TCP: anyone on the path can read and forge binding updates; configure failover.tls on both")
	}
	r.sendStateLocked()
}

// observeSkewLocked: the partner's clock minus ours. Transit only makes a
// message look older, so the largest of the recent observations is the
// best estimate (draft-12 §8.1 corrects every time received by it).
func (r *Relationship) observeSkewLocked(t uint32) {
	if t == 0 {
		return
	}
	d := time.Duration(int64(t)-r.now().Unix()) * time.Second
	r.skews = append(r.skews, d)
	if len(r.skews) > 32 {
		r.skews = r.skews[1:]
	}
	r.skew = slices.Max(r.skews)
}

func (r *Relationship) sendStateLocked() {
	v := r.v.Load()
	st, flags := v.state, uint8(0)
	if st == wire.StateStartup {
		// draft-12 §9.3: STARTUP is never sent; the previous state
		// goes with the STARTUP flag (as dhcpd sends it).
		st, flags = r.previousStateLocked(), 1
	}
	r.sendLocked(&wire.Message{Type: wire.State, ServerState: st, ServerFlags: flags, StartOfState: wire.Seconds(r.p.MySince)})
}

// previousStateLocked is the stored state, or RECOVER for a server with
// no history (draft-12 §9.3.2).
func (r *Relationship) previousStateLocked() wire.ServerState {
	if s, err := parseStateName(r.p.MyState); err == nil && s != wire.StateStartup {
		return s
	}
	return wire.StateRecover
}

func (r *Relationship) partnerStateLocked(ctx context.Context, m *wire.Message) {
	first := !r.commsOK
	r.commsOK = true
	changed := m.ServerState != r.partner.state || first
	r.partner.state, r.partner.startup = m.ServerState, m.ServerFlags&1 != 0
	r.partner.since = wire.Unix(m.StartOfState).Add(-r.skew)
	r.p.PartnerState, r.p.PartnerSince = stateName(r.partner.state), r.partner.since
	if changed {
		r.log.Info("failover: partner state", "state", stateName(m.ServerState), "startup", r.partner.startup)
		r.save(ctx)
		r.cfg.Bindings.StateChanged()
	}
	if r.v.Load().state == wire.StateStartup {
		r.leaveStartupLocked(ctx, "the partner is in "+stateName(m.ServerState))
	} else {
		r.evaluateLocked(ctx, "the partner is in "+stateName(m.ServerState))
	}
	// Also on leaving STARTUP: the records pending at a crash were
	// queued before the connection, their wake-up spent on a pump that
	// had no partner, and a partner in PARTNER-DOWN says its state only
	// once; RECOVER-WAIT waits for exactly those records.
	r.pumpLocked()
}

// leaveStartupLocked takes up the previous state, mapped through
// "communications failed" for the states that need the partner (draft-12
// §9.3.2), then lets the partner's state decide.
func (r *Relationship) leaveStartupLocked(ctx context.Context, why string) {
	prev := r.previousStateLocked()
	next := prev
	switch prev {
	case wire.StateNormal, wire.StateRecoverDone:
		next = wire.StateCommInterrupted
	case wire.StatePotentialConflict, wire.StateConflictDone:
		next = wire.StateResolutionInterrupted
	case wire.StatePaused, wire.StateShutdown:
		next = wire.StateCommInterrupted
	}
	if r.commsOK && r.partner.state == wire.StatePartnerDown && (next == wire.StateCommInterrupted || next == wire.StatePartnerDown) {
		// The partner took over while this server was down: catch
		// up if it did so after this server stopped, else resolve.
		if r.partner.since.After(r.prevOp) {
			next = wire.StateRecover
		} else {
			next = wire.StatePotentialConflict
		}
	}
	// PARTNER-DOWN taken up again starts now, not when it was first
	// entered: the partner may have come back while this server was
	// down, in COMMUNICATIONS-INTERRUPTED, and granted its own free
	// addresses for up to MCLT. Only MCLT from now is sure to have
	// outlived those (draft-12 §5.2.2), so the partner's addresses wait
	// that long again after each restart.
	r.enterLocked(ctx, next, fmt.Sprintf("startup (previous state %s): %s", stateName(prev), why))
	r.evaluateLocked(ctx, why)
}

// enterLocked makes st the state: stored first, then published to the slow
// path, logged, announced to the partner, and its entry actions run.
func (r *Relationship) enterLocked(ctx context.Context, st wire.ServerState, why string) {
	v := r.v.Load()
	if v.state == st {
		return
	}
	from := v.state
	now := r.now()
	r.p.MyState, r.p.MySince = stateName(st), now
	r.reason = why
	r.setView(func(v *view) { v.state, v.stos = st, now })
	r.save(ctx)
	r.log.Info("failover state", "from", stateName(from), "to", stateName(st), "reason", why)
	r.cfg.Bindings.StateChanged()
	r.metricsLocked()
	r.sendStateLocked()
	switch st {
	case wire.StateRecover:
		r.updReqSent = false
		r.requestUpdatesLocked()
	case wire.StateRecoverWait:
		r.recoverWaitLocked(ctx)
	case wire.StateNormal:
		r.updReqSent = false
		if r.cfg.Role == Secondary {
			// draft-12 §9.8.1: ask for addresses, when short of them
			// (dhcpd logs "answering negatively" for a needless POOLREQ,
			// and its primary balances by itself anyway).
			if free, backup := r.cfg.Bindings.PoolCounts(); rebalance(free, backup, r.cfg.MaxLeaseMisbalance) > 0 {
				r.sendLocked(&wire.Message{Type: wire.PoolReq})
			}
		}
		r.pumpLocked()
	case wire.StatePotentialConflict:
		r.updReqSent = false
		if r.cfg.Role == Primary {
			r.requestUpdatesLocked()
		}
	}
}

// requestUpdatesLocked asks the partner for what this server missed:
// everything when it has no history of the relationship (new, or its
// database lost), else what it has not acknowledged.
func (r *Relationship) requestUpdatesLocked() {
	if !r.commsOK || r.updReqSent {
		return
	}
	t := wire.UpdReq
	if !r.hist {
		t = wire.UpdReqAll
	}
	r.updReqSent = true
	r.sendLocked(&wire.Message{Type: t})
}

// evaluateLocked runs the transitions the partner's state and the
// connection call for (draft-12 §9, digest D.11).
func (r *Relationship) evaluateLocked(ctx context.Context, why string) {
	for i := 0; i < 4; i++ { // a transition may enable another
		st := r.v.Load().state
		next := r.nextStateLocked(st)
		if next == st {
			return
		}
		r.enterLocked(ctx, next, why)
	}
}

func (r *Relationship) nextStateLocked(st wire.ServerState) wire.ServerState {
	p := r.partner.state
	conflicting := p == wire.StatePartnerDown || p == wire.StatePotentialConflict || p == wire.StateConflictDone || p == wire.StateResolutionInterrupted
	switch st {
	case wire.StateNormal:
		// A partner in CONFLICT-DONE is the primary that resolved
		// with us; it goes NORMAL once it sees this server's NORMAL.
		if !r.commsOK || (p != wire.StateNormal && p != wire.StateCommInterrupted && p != wire.StateRecoverDone && p != wire.StateConflictDone) {
			if p == wire.StateShutdown {
				return wire.StatePartnerDown
			}
			return wire.StateCommInterrupted
		}
	case wire.StateCommInterrupted:
		switch {
		case !r.commsOK:
		case p == wire.StateNormal || p == wire.StateCommInterrupted || p == wire.StateRecoverDone:
			return wire.StateNormal
		case conflicting:
			return wire.StatePotentialConflict
		case p == wire.StateShutdown:
			return wire.StatePartnerDown
		}
	case wire.StatePartnerDown:
		switch {
		case !r.commsOK || r.partner.startup:
		case p == wire.StateRecoverDone:
			return wire.StateNormal
		case p == wire.StateNormal || p == wire.StateCommInterrupted || conflicting:
			return wire.StatePotentialConflict
		}
	case wire.StateRecover:
		switch {
		case !r.commsOK:
			r.updReqSent = false
		case p == wire.StatePotentialConflict || p == wire.StateResolutionInterrupted || p == wire.StateConflictDone:
			return wire.StatePotentialConflict
		default:
			r.requestUpdatesLocked()
		}
	case wire.StateRecoverDone:
		if r.commsOK && (p == wire.StateNormal || p == wire.StateRecoverDone) {
			return wire.StateNormal
		}
	case wire.StatePotentialConflict:
		switch {
		case !r.commsOK:
			return wire.StateResolutionInterrupted
		case r.cfg.Role == Primary:
			r.requestUpdatesLocked()
		case p == wire.StateConflictDone:
			r.requestUpdatesLocked()
		}
	case wire.StateResolutionInterrupted:
		if r.commsOK {
			return wire.StatePotentialConflict
		}
	case wire.StateConflictDone:
		if r.commsOK && p == wire.StateNormal {
			return wire.StateNormal
		}
	}
	return st
}

// updateDoneLocked: the partner has sent everything asked for.
func (r *Relationship) updateDoneLocked(ctx context.Context) {
	if !r.updReqSent {
		return
	}
	r.updReqSent = false
	r.hist = true // this server now holds the relationship's bindings
	switch st := r.v.Load().state; {
	case st == wire.StateRecover:
		r.enterLocked(ctx, wire.StateRecoverWait, "the partner's updates are in (UPDDONE)")
	case st == wire.StatePotentialConflict && r.cfg.Role == Primary:
		r.enterLocked(ctx, wire.StateConflictDone, "conflicts resolved (UPDDONE)")
	case st == wire.StatePotentialConflict && r.partner.state == wire.StateConflictDone:
		r.enterLocked(ctx, wire.StateNormal, "conflicts resolved (UPDDONE)")
	case st == wire.StatePotentialConflict:
		// The answer to a request made while the primary was in
		// CONFLICT-DONE before a restart of its: it has left that state
		// (the STATE saying so came first on the stream), so it is
		// resolving again. Wait for its CONFLICT-DONE and ask again;
		// going NORMAL now, on a stale answer, made the pair swing
		// between states for good (TestRestartInEveryState).
		r.log.Info("failover: UPDDONE from a resolution the primary has left; waiting for its conflict-done", "partner", stateName(r.partner.state))
	}
	r.evaluateLocked(ctx, "after UPDDONE")
}

// updateRequestLocked queues what the partner asks for; UPDDONE follows
// once all of it is acknowledged.
func (r *Relationship) updateRequestLocked(all bool) {
	r.owed = map[netip.Addr]bool{}
	if all {
		// Every record, read a window at a time as the partner takes
		// them (sweepLocked).
		r.sweep = r.cfg.Bindings.Addrs()
		r.log.Info("failover: the partner asks for bindings", "all", true, "addresses", len(r.sweep))
		r.sweepLocked()
	} else {
		var ls []*lease.Lease
		r.cfg.Bindings.Pending(func(l *lease.Lease) bool {
			r.owed[l.IP] = true
			ls = append(ls, l)
			return true
		})
		r.log.Info("failover: the partner asks for bindings", "all", false, "bindings", len(ls))
		r.q.add(ls)
	}
	r.maybeDoneLocked()
}

// sweepWindow is how many of an UPDREQALL's records are read ahead of
// what the queue holds.
const sweepWindow = 8192

// sweepLocked moves the next of an UPDREQALL's records into the queue
// while it holds fewer than sweepWindow. draft-12 §7.7: only addresses
// ever bound, and the BACKUP ones so that a secondary learns its pool.
func (r *Relationship) sweepLocked() {
	for len(r.sweep) > 0 {
		queued, _ := r.q.depth()
		if queued >= sweepWindow {
			return
		}
		n := min(len(r.sweep), sweepWindow-queued)
		var ls []*lease.Lease
		for _, l := range r.cfg.Bindings.Records(r.sweep[:n]) {
			if l.State == lease.Free && len(l.HWAddr) == 0 && len(l.ClientID) == 0 {
				continue
			}
			r.owed[l.IP] = true
			ls = append(ls, l)
		}
		r.sweep = r.sweep[n:]
		r.q.add(ls)
	}
}

func (r *Relationship) maybeDoneLocked() {
	if r.owed != nil && len(r.owed) == 0 && len(r.sweep) == 0 {
		r.owed, r.sweep = nil, nil
		r.sendLocked(&wire.Message{Type: wire.UpdDone})
	}
}

// pumpLocked sends queued updates while the partner has room for them.
func (r *Relationship) pumpLocked() {
	if !r.commsOK || r.link == nil {
		return
	}
	rich := r.batching()
	perMsg := 1
	if rich {
		perMsg = batchBindings
	}
	for {
		r.sweepLocked()
		// max-unacked-bndupd bounds the BNDUPD messages in flight
		// (dhcpd sends one binding per message, so for it the two
		// counts are the same).
		room := r.partner.maxUnacked - r.q.messages()
		if room <= 0 {
			return
		}
		ls := r.q.next(min(room*perMsg, 4096))
		if len(ls) == 0 {
			return
		}
		bs := make([]wire.Binding, len(ls))
		for i, l := range ls {
			bs[i] = toBinding(l, sendOpts{rich: rich, keys: rich && r.cfg.TLS != nil, primary: r.cfg.Role == Primary})
		}
		i := 0
		for _, group := range packBindings(wire.BndUpd, bs, perMsg) {
			m := &wire.Message{Type: wire.BndUpd, Bindings: group}
			r.sendOn(r.link, m)
			r.q.sent(m.XID, ls[i:i+len(group)])
			i += len(group)
			r.counts.sent += uint64(len(group))
			r.m.Updates.WithLabelValues("sent", "sent").Add(float64(len(group)))
		}
	}
}

func (r *Relationship) bindAckLocked(ctx context.Context, m *wire.Message) {
	sent, ok := r.q.acked(m.XID)
	if !ok {
		r.log.Debug("failover: BNDACK for no update in flight", "xid", m.XID)
		return
	}
	reject := map[netip.Addr]wire.Binding{}
	for _, b := range m.Bindings {
		if b.Reject != 0 {
			reject[b.IP] = b
		}
	}
	acks := make([]Ack, len(sent))
	for i, l := range sent {
		acks[i] = Ack{Sent: l}
		if b, bad := reject[l.IP]; bad {
			acks[i].Reject, acks[i].Text = uint8(b.Reject), b.Text
			r.counts.rejected++
			r.m.Updates.WithLabelValues("sent", "rejected").Inc()
			r.log.Warn("failover: the partner rejected a binding update", "ip", l.IP, "state", l.State, "reason", b.Reject, "message", b.Text)
		} else {
			r.counts.acked++
			r.m.Updates.WithLabelValues("sent", "acked").Inc()
		}
		if r.owed != nil {
			delete(r.owed, l.IP)
		}
	}
	r.cfg.Bindings.Acked(acks)
	r.maybeDoneLocked()
	r.pumpLocked()
}

func (r *Relationship) bindUpdateLocked(ctx context.Context, m *wire.Message) {
	reasons := make([]uint8, len(m.Bindings))
	var ups []*lease.Lease
	var idx []int
	for i := range m.Bindings {
		l, err := fromBinding(&m.Bindings[i], r.skew)
		if err != nil {
			reasons[i] = uint8(wire.ReasonMissingBinding)
			r.log.Warn("failover: unusable binding update", "err", err)
			continue
		}
		ups = append(ups, l)
		idx = append(idx, i)
	}
	r.counts.received += uint64(len(m.Bindings))
	l := r.link
	ack := func(res []uint8, err error) {
		if err != nil {
			// Not on disk: no BNDACK (draft-12 §7.1.4); the partner
			// sends it again on the next connection.
			r.log.Error("failover: storing the partner's binding updates; dropping the connection", "err", err)
			l.finish()
			return
		}
		for j, i := range idx {
			reasons[i] = res[j]
		}
		a := &wire.Message{Type: wire.BndAck, XID: m.XID, Bindings: make([]wire.Binding, len(m.Bindings))}
		refused := 0
		for i, b := range m.Bindings {
			a.Bindings[i] = wire.Binding{IP: b.IP, Reject: wire.Reason(reasons[i])}
			if reasons[i] != 0 {
				a.Bindings[i].Text = fmt.Sprintf("refused (reason %d)", reasons[i])
				refused++
			}
		}
		r.m.Updates.WithLabelValues("received", "refused").Add(float64(refused))
		r.m.Updates.WithLabelValues("received", "applied").Add(float64(len(m.Bindings) - refused))
		// On the connection the update came in on, and only there
		// (draft-12 §8.6); it carries the update's xid, so sendOn
		// touches nothing of the loop's.
		l.queue(a, r.now())
	}
	if len(ups) == 0 {
		ack(nil, nil)
		return
	}
	// Resolved in order now; the BNDACK goes once the store has them,
	// while the loop reads on.
	r.cfg.Bindings.Apply(ups, ack)
}

func (r *Relationship) poolRequestLocked(ctx context.Context, m *wire.Message) {
	if r.cfg.Role != Primary {
		return
	}
	free, backup := r.cfg.Bindings.PoolCounts()
	n := poolRequestAnswer(free, backup)
	moved := 0
	if n > 0 {
		var err error
		if moved, err = r.cfg.Bindings.Rebalance(ctx, n); err != nil {
			r.log.Error("failover: giving the secondary addresses", "err", err)
		}
	}
	r.log.Info("failover: POOLREQ", "free", free, "backup", backup, "given", moved)
	r.sendLocked(&wire.Message{Type: wire.PoolResp, XID: m.XID, AddrsTransferred: uint32(moved)})
}

// recoverWaitLocked ends RECOVER-WAIT once the partner has acknowledged
// every binding this server holds pending. The draft (§9.7) and dhcpd wait
// MCLT here, so that bindings a recovering server granted and lost are
// over before it gives addresses again; this server's records are durable
// before any ACK (ARCHITECTURE.md invariant 6) and still marked until the
// partner acks them, so once they are acked nothing it granted is unknown
// to the partner, and waiting an MCLT (an hour, typically) would only keep
// the pair out of NORMAL: one of dhcpd's known pains.
func (r *Relationship) recoverWaitLocked(ctx context.Context) {
	if q, f := r.q.depth(); q+f == 0 && r.commsOK {
		r.enterLocked(ctx, wire.StateRecoverDone, "the partner has acknowledged every pending binding")
	}
}
