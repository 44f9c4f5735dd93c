package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxResponseDelay = 20 * time.Second
	DefaultMaxUnacked       = 100
	DefaultMaxSkew          = 60 * time.Second
	// DefaultStartupWait is how long a starting server waits to hear the
	// partner's state before it takes up its previous one (dhcpd: 15 s).
	DefaultStartupWait = 15 * time.Second
	// DefaultRetryAfterReject is the pause before connecting again after
	// the partner refused or ended a connection (draft-12 §8.2 asks for a
	// minute or two; dhcpd waits 90 s, which makes a restarted pair slow).
	DefaultRetryAfterReject = 30 * time.Second
	// DefaultLazyDelay is how long a fast-path renewal's binding update
	// waits to be coalesced: a benchmark's clients renew many times a
	// second, and each renewal need not be a write on the partner.
	DefaultLazyDelay = time.Second
)

// Batching of binding updates between xdhcpd partners: bindings per
// BNDUPD message, and how long a partly filled batch waits for more.
const (
	batchBindings = 64
	batchWait     = 2 * time.Millisecond
)

// vendorPrefix starts the vendor-class this server sends, by which an
// xdhcpd partner is known (and sent richer binding updates).
const vendorPrefix = "xdhcp"

// Relationship is this server's side of one failover relationship. Create
// it with New, hand it to the slow path as its slowpath.Partner, then Run.
type Relationship struct {
	cfg Config
	log *slog.Logger
	m   *Metrics
	now func() time.Time
	q   *queue
	v   atomic.Pointer[view]
	// StartupWait and RetryAfterReject are the timers above; tests
	// shorten them. LazyDelay is how long a fast-path renewal's update
	// may wait to be coalesced with the client's next ones.
	StartupWait, RetryAfterReject, LazyDelay time.Duration

	cmds chan command

	// The rest belongs to Run's loop; mu guards it for Status.
	mu      sync.Mutex
	p       persisted
	hist    bool      // a stored state was found at start
	prevOp  time.Time // when this server last operated before this start
	startAt time.Time
	reason  string              // why the current state was entered
	link    *link               // the established connection, nil when none
	links   map[*link]time.Time // every open connection, and when it opened
	commsOK bool                // a STATE has been received on link
	partner partnerInfo
	skew    time.Duration
	skews   []time.Duration // recent observations (see observeSkew)
	// updReqSent: an UPDREQ(ALL) of ours awaits its UPDDONE.
	updReqSent bool
	// owed: addresses the partner asked for (UPDREQ/UPDREQALL) not yet
	// acknowledged; UPDDONE goes when it empties. nil: nothing asked.
	owed map[netip.Addr]bool
	// sweep is what remains of an UPDREQALL's addresses, read into the
	// queue a window at a time (sweepLocked); UPDDONE waits for it too.
	sweep       []netip.Addr
	nextDial    time.Time
	dialing     bool
	xid         uint32
	lastBalance time.Time
	lastSave    time.Time
	counts      struct{ sent, acked, rejected, received uint64 }
	pools       struct{ free, backup int }
}

// persisted is what survives a restart (draft-12 §9: every transition is
// stable before it is acted on).
type persisted struct {
	MyState      string    `json:"my_state"`
	MySince      time.Time `json:"my_since"`
	PartnerState string    `json:"partner_state,omitempty"`
	PartnerSince time.Time `json:"partner_since,omitempty"`
	MCLT         int64     `json:"mclt_s"`
	LastOp       time.Time `json:"last_operating"`
}

type partnerInfo struct {
	state      wire.ServerState
	since      time.Time
	startup    bool
	maxUnacked int
	recvTimer  time.Duration
	vendor     string
	hba        []byte
}

// New checks cfg and returns a relationship ready to Run.
func New(cfg Config) (*Relationship, error) {
	if cfg.Name == "" {
		return nil, errors.New("failover: a relationship name is required")
	}
	if cfg.Role != Primary && cfg.Role != Secondary {
		return nil, fmt.Errorf("failover %q: role must be primary or secondary", cfg.Name)
	}
	if !cfg.Peer.IsValid() || !cfg.Listen.IsValid() {
		return nil, fmt.Errorf("failover %q: peer and listen addresses are required", cfg.Name)
	}
	if cfg.Role == Primary && cfg.MCLT <= 0 {
		return nil, fmt.Errorf("failover %q: the primary needs an MCLT", cfg.Name)
	}
	if cfg.Bindings == nil || cfg.Meta == nil {
		return nil, fmt.Errorf("failover %q: Bindings and Meta are required", cfg.Name)
	}
	if cfg.MaxResponseDelay <= 0 {
		cfg.MaxResponseDelay = DefaultMaxResponseDelay
	}
	if cfg.MaxUnacked <= 0 {
		cfg.MaxUnacked = DefaultMaxUnacked
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MaxLeaseMisbalance <= 0 {
		cfg.MaxLeaseMisbalance = 15
	}
	if cfg.MinBalance <= 0 {
		cfg.MinBalance = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relationship{cfg: cfg, log: cfg.Logger.With("failover", cfg.Name), m: cfg.Metrics, now: cfg.Now, q: newQueue(),
		StartupWait: DefaultStartupWait, RetryAfterReject: DefaultRetryAfterReject, LazyDelay: DefaultLazyDelay, cmds: make(chan command), links: map[*link]time.Time{}}
	r.v.Store(&view{role: cfg.Role, state: wire.StateStartup, mclt: cfg.MCLT, hba: cfg.HBA, lbMaxSecs: cfg.LoadBalanceMaxSecs})
	return r, nil
}

func (r *Relationship) metaKey() string { return "failover/" + r.cfg.Name }

// The slowpath.Partner methods, answered from the current view.

// Cap implements slowpath.Partner.
func (r *Relationship) Cap(l *lease.Lease, now time.Time) (time.Time, bool) {
	return r.v.Load().cap(l, now)
}

// Serve implements slowpath.Partner.
func (r *Relationship) Serve(l *lease.Lease) bool { return r.v.Load().serve(l) }

// Answer implements slowpath.Partner.
func (r *Relationship) Answer(k slowpath.RequestKind, key []byte, secs uint16) bool {
	return r.v.Load().answer(k, key, secs)
}

// Allocate implements slowpath.Partner.
func (r *Relationship) Allocate(now time.Time) (free, backup bool) { return r.v.Load().allocate(now) }

// PotentialExpiry implements slowpath.Partner.
func (r *Relationship) PotentialExpiry(now, granted, desired time.Time) time.Time {
	return r.v.Load().potentialExpiry(now, granted, desired)
}

// MayReuse implements slowpath.Partner.
func (r *Relationship) MayReuse(l *lease.Lease, now time.Time) bool {
	return r.v.Load().mayReuse(l, now)
}

// Primary implements slowpath.Partner.
func (r *Relationship) Primary() bool { return r.cfg.Role == Primary }

// Update implements slowpath.Partner: committed changes are queued for the
// partner, renewals the fast path answered (lazy) coalesced for up to
// LazyDelay.
func (r *Relationship) Update(ls []*lease.Lease, lazy bool) {
	if lazy {
		r.q.addLazy(ls, r.now())
		return
	}
	r.q.add(ls)
}

var _ slowpath.Partner = (*Relationship)(nil)

// batching reports whether updates go batched: to an xdhcpd partner (dhcpd
// reads one binding per BNDUPD).
func (r *Relationship) batching() bool { return strings.HasPrefix(r.partner.vendor, vendorPrefix) }

type command struct {
	partnerDown bool
	done        chan error
}

// PartnerDown is the operator's word that the partner is down (draft-12
// §9.4): this server then serves every client and, MCLT later, the
// partner's free addresses too. It is refused while the partner is
// connected and talking, where it would let both give the same addresses.
func (r *Relationship) PartnerDown(ctx context.Context) error {
	c := command{partnerDown: true, done: make(chan error, 1)}
	select {
	case r.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status reports the relationship for the operator.
func (r *Relationship) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.v.Load()
	queued, inflight := r.q.depth()
	s := Status{
		Name: r.cfg.Name, Role: r.cfg.Role.String(), State: stateName(v.state), StateSince: r.p.MySince, StateReason: r.reason,
		PartnerState: stateName(r.partner.state), PartnerStateSince: r.partner.since, Connected: r.commsOK, TLS: r.cfg.TLS != nil, Peer: r.cfg.Peer.String(),
		Skew: r.skew, MCLT: v.mclt, QueueDepth: queued, Unacked: inflight,
		UpdatesSent: r.counts.sent, UpdatesAcked: r.counts.acked, UpdatesRejected: r.counts.rejected, UpdatesReceived: r.counts.received,
		Free: r.pools.free, Backup: r.pools.backup,
	}
	s.Waiting, s.WaitingUntil = r.waitingLocked(v)
	return s
}

// waitingLocked says what the pair waits for, and until when if a timer
// ends it.
func (r *Relationship) waitingLocked(v *view) (string, time.Time) {
	switch {
	case v.state == wire.StateStartup:
		return "the partner's state before serving (startup)", r.startAt.Add(r.StartupWait)
	case r.link == nil:
		w := fmt.Sprintf("connection to %s", r.cfg.Peer)
		if v.state == wire.StateCommInterrupted {
			if r.cfg.AutoPartnerDown > 0 {
				return w + "; partner-down automatically", r.p.MySince.Add(r.cfg.AutoPartnerDown)
			}
			return w + "; partner-down only by command (auto-partner-down is off)", time.Time{}
		}
		if v.state == wire.StatePartnerDown && r.p.MySince.Add(v.mclt).After(r.now()) {
			return w + "; the partner's free addresses are used after MCLT", r.p.MySince.Add(v.mclt)
		}
		return w, r.nextDial
	case !r.commsOK:
		return "the partner's STATE", time.Time{}
	case v.state == wire.StateRecover:
		return "the partner's binding updates (UPDDONE)", time.Time{}
	case v.state == wire.StateRecoverWait:
		q, f := r.q.depth()
		return fmt.Sprintf("the partner to acknowledge this server's pending bindings (%d queued, %d in flight)", q, f), time.Time{}
	case v.state == wire.StateRecoverDone:
		return "the partner to reach normal or recover-done", time.Time{}
	case v.state == wire.StatePotentialConflict:
		return "conflict resolution: the partner's binding updates", time.Time{}
	case v.state == wire.StateCommInterrupted || v.state == wire.StatePartnerDown:
		return "the partner to leave " + stateName(r.partner.state), time.Time{}
	}
	return "", time.Time{}
}

// Run runs the relationship until ctx ends: it listens for the partner,
// connects to it, and owns every goroutine it starts.
func (r *Relationship) Run(ctx context.Context) error {
	if err := r.load(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", r.cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("failover %q: listening on %s: %w", r.cfg.Name, r.cfg.Listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	events := make(chan event, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.accept(ctx, ln, events)
	}()
	r.cfg.Bindings.Pending(func(l *lease.Lease) bool { r.q.add([]*lease.Lease{l}); return true })
	if r.cfg.AutoPartnerDown <= 0 {
		r.log.Info("failover: auto-partner-down is off: if the partner dies, this server serves its clients only after `xdhcpctl failover partner-down`")
	}
	r.log.Info("failover starting", "role", r.cfg.Role, "listen", r.cfg.Listen, "peer", r.cfg.Peer,
		"previous_state", r.p.MyState, "waiting_for_partner", r.StartupWait)
	err = r.loop(ctx, events, &wg)
	cancel()
	ln.Close()
	r.mu.Lock()
	for l := range r.links {
		l.close()
	}
	r.mu.Unlock()
	wg.Wait()
	// A connection accepted or dialed as the loop ended may still sit
	// in events, which nothing reads now.
	for {
		select {
		case ev := <-events:
			if ev.conn != nil {
				ev.conn.Close()
			}
		default:
			return err
		}
	}
}

// load reads the persisted state.
func (r *Relationship) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startAt = r.now()
	b, err := r.cfg.Meta.GetMeta(r.metaKey())
	if err != nil {
		return fmt.Errorf("failover %q: reading its stored state: %w", r.cfg.Name, err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.p); err != nil {
			return fmt.Errorf("failover %q: stored state %q: %w", r.cfg.Name, b, err)
		}
		if r.p.MyState == "" {
			// Written in a first STARTUP before save learned to wait
			// for a state of its own: no history (a fresh server
			// killed then must start again, not refuse to).
			r.log.Warn("failover: stored state names no state of this server; starting without history", "stored", string(b))
			r.p = persisted{}
			return nil
		}
		if _, err := parseStateName(r.p.MyState); err != nil {
			return fmt.Errorf("failover %q: stored state: %w", r.cfg.Name, err)
		}
		r.hist, r.prevOp = true, r.p.LastOp
		if r.p.PartnerState != "" {
			if s, err := parseStateName(r.p.PartnerState); err == nil {
				r.partner.state, r.partner.since = s, r.p.PartnerSince
			}
		}
		if r.cfg.Role == Secondary && r.p.MCLT > 0 {
			r.setView(func(v *view) { v.mclt = time.Duration(r.p.MCLT) * time.Second })
		}
	}
	return nil
}

func (r *Relationship) setView(edit func(v *view)) {
	v := *r.v.Load()
	edit(&v)
	r.v.Store(&v)
}

// save persists the relationship's state (before it is acted on).
func (r *Relationship) save(ctx context.Context) {
	if r.p.MyState == "" {
		// A fresh server in its first STARTUP has no state of its own
		// to keep yet; stored, it would read as history.
		r.lastSave = r.now()
		return
	}
	v := r.v.Load()
	r.p.MCLT = int64(v.mclt / time.Second)
	if v.serving() {
		r.p.LastOp = r.now()
	}
	r.lastSave = r.now()
	b, _ := json.Marshal(&r.p)
	if err := r.cfg.Meta.PutMeta(ctx, r.metaKey(), b); err != nil && ctx.Err() == nil {
		r.log.Error("failover: storing the relationship's state", "err", err)
	}
}

// event is what the loop's helpers tell it.
type event struct {
	conn    net.Conn // a new connection (accepted or dialed)
	dialed  bool
	dialErr error
	tlsErr  bool // dialErr is the TLS handshake's
	l       *link
	msg     *wire.Message
	err     error // the link failed (read error, bad message)
}

func (r *Relationship) accept(ctx context.Context, ln net.Listener, events chan<- event) {
	var lastTLSWarn, lastAcceptWarn time.Time
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: the partner still needs
			// this listener once it passes. Returning would leave its
			// connections in the backlog, never accepted, and nothing
			// logged.
			if now := time.Now(); now.Sub(lastAcceptWarn) >= time.Minute {
				lastAcceptWarn = now
				r.log.Warn("failover: accepting the partner's connection failed; retrying (logged once a minute)", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		ra, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if ra.Addr().Unmap() != r.cfg.Peer.Addr() {
			// draft-12 §13: only the configured partner.
			r.m.Disconnects.WithLabelValues("not-the-partner").Inc()
			r.log.Warn("failover: connection refused: not from the partner", "from", ra, "partner", r.cfg.Peer.Addr())
			c.Close()
			continue
		}
		// The handshake runs here, one at a time: only the partner's
		// address gets this far, and handshakeTimeout bounds it.
		if c, err = r.secure(ctx, c, false); err != nil {
			r.m.Disconnects.WithLabelValues("tls").Inc()
			if now := time.Now(); now.Sub(lastTLSWarn) >= time.Minute {
				lastTLSWarn = now
				r.log.Warn("failover: partner's TLS connection refused (logged once a minute)", "err", err)
			}
			continue
		}
		select {
		case events <- event{conn: c}:
		case <-ctx.Done():
			c.Close()
			return
		}
	}
}

// loop is the relationship's one owner of state.
func (r *Relationship) loop(ctx context.Context, events chan event, wg *sync.WaitGroup) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var fill <-chan time.Time // a batch being filled
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			if r.link != nil && r.link.established {
				r.sendLocked(&wire.Message{Type: wire.Disconnect, RejectReason: wire.ReasonUnknown, Text: "shutting down"})
			}
			r.save(context.Background())
			r.mu.Unlock()
			return nil
		case ev := <-events:
			r.mu.Lock()
			r.handleEvent(ctx, ev, events, wg)
			r.mu.Unlock()
		case <-r.q.wake():
			// Between xdhcpd partners a short wait fills messages
			// (64 bindings each), so that a busy server sends, and its
			// partner commits, a few large batches rather than many
			// small ones; a full message goes at once.
			r.mu.Lock()
			if q, _ := r.q.depth(); r.batching() && q < batchBindings && fill == nil {
				fill = time.After(batchWait)
			} else if fill == nil {
				r.pumpLocked()
			}
			r.mu.Unlock()
		case <-fill:
			fill = nil
			r.mu.Lock()
			r.pumpLocked()
			r.mu.Unlock()
		case c := <-r.cmds:
			r.mu.Lock()
			c.done <- r.commandLocked(ctx, c)
			r.mu.Unlock()
		case <-tick.C:
			r.mu.Lock()
			r.tickLocked(ctx, events, wg)
			r.mu.Unlock()
		}
	}
}

func (r *Relationship) handleEvent(ctx context.Context, ev event, events chan event, wg *sync.WaitGroup) {
	switch {
	case ev.conn != nil:
		if ev.dialed {
			r.dialing = false
		}
		if r.cfg.Role == Primary && r.link != nil {
			ev.conn.Close() // connected already; only the primary's CONNECT would use it
			return
		}
		l := newLink(ev.conn, r.log, r.now)
		r.links[l] = r.now()
		l.start(ctx, wg, events)
		if r.cfg.Role == Primary && r.link == nil {
			// dhcpd's primary sends CONNECT on every connection, the
			// ones the secondary opens too.
			v := r.v.Load()
			r.sendOn(l, &wire.Message{Type: wire.Connect, Name: r.cfg.Name, MaxUnacked: uint32(r.cfg.MaxUnacked),
				ReceiveTimer: uint32(r.cfg.MaxResponseDelay / time.Second), VendorClass: vendorPrefix + "-1",
				ProtoVersion: 1, MCLT: uint32(v.mclt / time.Second), HBA: r.cfg.HBA[:]})
		}
	case ev.dialErr != nil && ev.tlsErr:
		// A certificate problem does not mend in 2 s.
		r.dialing = false
		r.nextDial = r.now().Add(r.RetryAfterReject)
		r.m.Disconnects.WithLabelValues("tls").Inc()
		r.log.Warn("failover: TLS with the partner failed", "peer", r.cfg.Peer, "err", ev.dialErr, "retry_in", r.RetryAfterReject)
	case ev.dialErr != nil:
		r.dialing = false
		r.log.Debug("failover: connecting to the partner", "peer", r.cfg.Peer, "err", ev.dialErr)
	case ev.err != nil:
		var we *wire.Error
		if errors.As(ev.err, &we) {
			// ARCHITECTURE.md invariant 7: nonsense from the partner
			// ends the connection with a reason; nothing of it applied.
			r.sendOn(ev.l, &wire.Message{Type: wire.Disconnect, RejectReason: we.Reason, Text: we.Msg})
			r.m.Disconnects.WithLabelValues("bad-message").Inc()
			r.log.Warn("failover: bad message from the partner, disconnecting", "err", ev.err)
		} else if ev.l == r.link {
			r.m.Disconnects.WithLabelValues("connection-lost").Inc()
		}
		r.dropLinkLocked(ctx, ev.l, "connection lost: "+ev.err.Error(), 0)
	case ev.msg != nil:
		r.messageLocked(ctx, ev.l, ev.msg)
	}
}

// dropLinkLocked closes l; when it was the partner's connection,
// communications have failed.
func (r *Relationship) dropLinkLocked(ctx context.Context, l *link, why string, retryAfter time.Duration) {
	l.finish()
	if l != r.link {
		return
	}
	r.link, r.commsOK, r.updReqSent, r.owed, r.sweep = nil, false, false, nil, nil
	r.q.requeue()
	r.nextDial = r.now().Add(retryAfter)
	r.log.Warn("failover: communications with the partner failed", "why", why)
	r.evaluateLocked(ctx, "communications failed: "+why)
}

func (r *Relationship) tickLocked(ctx context.Context, events chan event, wg *sync.WaitGroup) {
	now := r.now()
	for l, at := range r.links {
		select {
		case <-l.done:
			delete(r.links, l)
			continue
		default:
		}
		if !l.established && now.Sub(at) > 15*time.Second {
			// dhcpd allows 15 s for the handshake, too.
			l.close()
		}
	}
	v := r.v.Load()
	if v.state == wire.StateStartup && !now.Before(r.startAt.Add(r.StartupWait)) {
		r.leaveStartupLocked(ctx, "no word from the partner within "+r.StartupWait.String())
	}
	if l := r.link; l != nil && l.established {
		if now.Sub(l.lastRecv()) >= r.cfg.MaxResponseDelay {
			r.sendLocked(&wire.Message{Type: wire.Disconnect, RejectReason: wire.ReasonNoTraffic,
				Text: fmt.Sprintf("nothing received for %s", r.cfg.MaxResponseDelay)})
			r.m.Disconnects.WithLabelValues("no-traffic").Inc()
			r.dropLinkLocked(ctx, l, fmt.Sprintf("nothing received for %s", r.cfg.MaxResponseDelay), 0)
		} else if rt := r.partner.recvTimer; rt > 0 && now.Sub(l.lastSent()) >= rt/3 {
			r.sendLocked(&wire.Message{Type: wire.Contact})
		}
	}
	if r.link == nil && !r.dialing && !now.Before(r.nextDial) {
		r.dialing = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: r.cfg.Listen.Addr().AsSlice()}}
			c, err := d.DialContext(ctx, "tcp", r.cfg.Peer.String())
			ev := event{conn: c, dialed: true, dialErr: err}
			if err != nil {
				ev.conn = nil
			} else if ev.conn, err = r.secure(ctx, c, true); err != nil {
				ev.dialErr, ev.tlsErr = err, true
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				if c != nil {
					c.Close()
				}
			}
		}()
		// Both sides connect (as dhcpd does): a secondary's
		// connection lets a primary that retries slowly send CONNECT.
		r.nextDial = now.Add(2 * time.Second)
	}
	switch v.state {
	case wire.StateRecoverWait:
		r.recoverWaitLocked(ctx)
	case wire.StateCommInterrupted:
		if r.cfg.AutoPartnerDown > 0 && !now.Before(r.p.MySince.Add(r.cfg.AutoPartnerDown)) {
			r.enterLocked(ctx, wire.StatePartnerDown, fmt.Sprintf("auto-partner-down: no contact for %s", r.cfg.AutoPartnerDown))
		}
	case wire.StateNormal:
		if r.cfg.Role == Primary && r.commsOK && now.Sub(r.lastBalance) >= r.cfg.MinBalance {
			r.lastBalance = now
			r.balanceLocked(ctx)
		}
	}
	// Every tick, not only when lazy updates were promoted: a wake-up
	// spent while there was no partner to send to leaves the queue
	// waiting for the next change, which a quiet server may not have.
	r.q.promote(now.Add(-r.LazyDelay))
	r.pumpLocked()
	if now.Sub(r.lastSave) >= 10*time.Second {
		r.save(ctx)
	}
	r.metricsLocked()
}

func (r *Relationship) metricsLocked() {
	v := r.v.Load()
	r.m.State.Reset()
	r.m.State.WithLabelValues("local", stateName(v.state)).Set(1)
	if r.partner.state != 0 {
		r.m.State.WithLabelValues("partner", stateName(r.partner.state)).Set(1)
	}
	q, f := r.q.depth()
	r.m.QueueDepth.Set(float64(q + f))
	r.m.Skew.Set(r.skew.Seconds())
	r.pools.free, r.pools.backup = r.cfg.Bindings.PoolCounts()
	r.m.PoolAddresses.WithLabelValues("primary").Set(float64(r.pools.free))
	r.m.PoolAddresses.WithLabelValues("secondary").Set(float64(r.pools.backup))
}

// balanceLocked: the primary evens FREE and BACKUP (dhcpd's rule).
func (r *Relationship) balanceLocked(ctx context.Context) {
	free, backup := r.cfg.Bindings.PoolCounts()
	n := rebalance(free, backup, r.cfg.MaxLeaseMisbalance)
	if n == 0 {
		return
	}
	moved, err := r.cfg.Bindings.Rebalance(ctx, n)
	if err != nil {
		r.log.Error("failover: pool balance", "err", err)
		return
	}
	r.log.Info("failover: pool balance", "free", free, "backup", backup, "moved", moved, "to", map[bool]string{true: "backup", false: "free"}[n > 0])
}

func (r *Relationship) commandLocked(ctx context.Context, c command) error {
	if !c.partnerDown {
		return errors.New("unknown command")
	}
	v := r.v.Load()
	switch v.state {
	case wire.StatePartnerDown:
		return nil
	case wire.StateCommInterrupted, wire.StateResolutionInterrupted:
		r.enterLocked(ctx, wire.StatePartnerDown, "operator: partner-down")
		return nil
	}
	if r.commsOK {
		return fmt.Errorf("failover %q: the partner is connected and in %s: partner-down would let both servers give the same addresses", r.cfg.Name, stateName(r.partner.state))
	}
	return fmt.Errorf("failover %q: partner-down is for communications-interrupted or resolution-interrupted; this server is in %s", r.cfg.Name, stateName(v.state))
}
