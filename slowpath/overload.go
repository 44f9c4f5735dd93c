package slowpath

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Request classes, each a queue of its own: the packet reader
// (slowpath/pktio) keeps REQUEST, DECLINE, RELEASE and LEASEQUERY in a
// socket it reads first, and DISCOVER, INFORM and the rest in another
// (PriorityType).
const (
	classPriority = iota
	classBulk
	classes
)

// PriorityType says whether messages of type mt go to the priority
// socket: REQUEST, DECLINE, RELEASE and LEASEQUERY, as bpf/steer.c's
// steer_class sorts them. The rest go to the bulk socket.
func PriorityType(mt uint8) bool {
	switch mt {
	case dhcpwire.Request, dhcpwire.Decline, dhcpwire.Release, dhcpwire.LeaseQuery:
		return true
	}
	return false
}

// classOf is the class of a message of type mt that arrived as in: the
// socket it waited in. That is the type's (PriorityType) but for a
// DISCOVER that the kernel let into the priority socket as a client's
// retransmission (Incoming.Priority, bpf/steer.c): it waited in that
// queue, and its wait tells that queue's state, not the DISCOVER
// socket's.
func classOf(mt uint8, in Incoming) int {
	if in.Priority {
		return classPriority
	}
	return typeClass(mt)
}

// typeClass is the class, the socket, bpf/steer.c sorts type mt into.
func typeClass(mt uint8) int {
	if PriorityType(mt) {
		return classPriority
	}
	return classBulk
}

// backlog tracks how long requests wait between the kernel and the server
// (Incoming.Received) to bound the wait by time (Settings.MaxWait,
// QueueTarget, QueueInterval), per class. The sockets are the queues; the
// server only sees each request's age as it reads it.
type backlog struct {
	mu    sync.Mutex
	queue [classes]queueState
	// holdoff is what the HoldoffGate was last set to, per class (the
	// bulk class's holds off DISCOVERs, the priority class's REQUESTs).
	holdoff [classes]Holdoff
	// doublings is how often each class's holdoff may double for a
	// client's repeats, and doubledAt when it last changed (gateLocked).
	doublings [classes]uint32
	doubledAt [classes]time.Time
}

// queueState is one class's overload state.
type queueState struct {
	// aboveSince is when requests started arriving older than the target
	// without a younger one since; zero when the last was younger.
	aboveSince time.Time
	// lastDrop is the last "overload" drop: a backlog that comes back
	// soon after is the same overload, dropped without waiting another
	// interval (else each interval would let a full interval's backlog
	// build up again, and its requests wait that long).
	lastDrop time.Time
	// lastBehind is when the queue was last behind, or its socket more
	// than half full: its holdoff stays on for holdoffLinger after.
	// lastAged is when it last had a request older than the target while
	// behind: the holdoff's doublings follow that (gateLocked).
	lastBehind, lastAged time.Time
	// The "overload" decisions since sparedFrom, and how many of them
	// spare let through (Server.spared: REQUESTs taking an offer,
	// retransmitted DISCOVERs).
	sparedFrom time.Time
	overloaded int
	spared     int
}

// spareWindow, spareShare and spareMax bound what spare lets through, per
// queue: in each spareWindow, one for every spareShare of the queue's
// "overload" decisions (the spared included), and at most spareMax. The
// REQUEST queue's allowance goes to REQUESTs taking an offer, the
// DISCOVER queue's to retransmitted DISCOVERs (Server.spared). Under a
// flood of REQUESTs from clients the server never offered anything, or of
// DISCOVERs from MACs on their first try, the few spared are a sliver of
// those decisions and get through. When the queue is behind with such
// requests themselves (more DORAs than the server commits, a flooder's
// own DORAs from fresh MACs, a flooder that sets secs), a spared one
// costs a commit or an OFFER where a drop costs nothing, so spareMax caps
// the extra work at a few dozen a second a queue whatever the flood's
// size; the rest are dropped as before.
const (
	spareWindow = time.Second
	spareShare  = 8
	spareMax    = 64
)

// spare says whether a request of class that admit dropped for overload
// is handled after all, within spareWindow, spareShare and spareMax.
func (b *backlog) spare(class int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := &b.queue[class]
	q.sparedWindowLocked(now)
	if q.spared >= spareMax || (q.spared+1)*spareShare > q.overloaded {
		return false
	}
	q.spared++
	return true
}

// countOverloadLocked counts an "overload" decision for q, in the window
// spare reads.
func (q *queueState) countOverloadLocked(now time.Time) {
	q.sparedWindowLocked(now)
	q.overloaded++
}

// sparedWindowLocked starts a new spareWindow once the last is over.
func (q *queueState) sparedWindowLocked(now time.Time) {
	if now.Sub(q.sparedFrom) >= spareWindow {
		q.sparedFrom, q.overloaded, q.spared = now, 0, 0
	}
}

// behind says whether the queue is in overload: requests older than the
// target for a whole interval, or a drop within ten intervals.
func (q *queueState) behind(now time.Time, interval time.Duration) bool {
	recent := !q.lastDrop.IsZero() && now.Sub(q.lastDrop) < 10*interval
	return recent || !q.aboveSince.IsZero() && now.Sub(q.aboveSince) >= interval
}

// HoldoffGate holds off repeated messages of a client before the server
// reads them (slowpath/pktio does it in the kernel, bpf/steer.c).
type HoldoffGate interface {
	// SetHoldoffs sets the holdoff of DISCOVERs and that of REQUESTs,
	// each on (Base > 0) or off (the zero Holdoff).
	SetHoldoffs(discover, request Holdoff) error
}

// Holdoff is one class's holdoff as the HoldoffGate applies it: a
// client's message that comes within Base of its last one let in is
// dropped, and Base doubles for each of the client's repeats (a message
// within Base of its message before, let in or not) up to Doublings
// times. Clients that follow RFC 2131 retransmit after 4 s ± 1 s: with
// Base under 3 s they are never held off.
type Holdoff struct {
	Base      time.Duration
	Doublings uint32
}

// MaxHoldoffDoublings is the most Holdoff.Doublings the kernel applies
// (bpf/steer.c): 16 times the holdoff.
const MaxHoldoffDoublings = uint32(bpf.SteerSteerLimitsSTEER_MAX_DOUBLINGS)

// holdoffLinger is how long a class's holdoff stays on after its queue
// was last behind. The holdoff hides a flood from that queue, so the
// queue catches up while the flood goes on; turned off at once, it
// would let the flood in again. It costs clients that follow RFC 2131
// nothing (Settings.DiscoverHoldoff, RequestHoldoff).
const holdoffLinger = 10 * time.Second

// How a holdoff's doublings follow its queue (gateLocked): one when the
// holdoff goes on, one more every doublingUp while requests still come
// older than the target (or, for DISCOVERs, from a socket more than half
// full), one fewer for every doublingDown after the last of those (all
// gone within MaxHoldoffDoublings of them, inside the linger). A flood
// from many MACs costs the server one message per client per holdoff:
// at 2 s, 65,536 MACs sent 33,000 DISCOVERs a second past it, more than the server read, and
// the kernel dropped new clients' DISCOVERs with the flood's. Doubled
// four times, about 2,000 a second. Fixed at four, and kept on while the
// holdoff held many, the doublings held the bench's DORA clients, which
// start again within a second with the same MAC, for up to 32 s while
// the server idled (the open loop answered 415 to 3,000 DORAs a second
// where 4,500 to 6,200 were before): they go up only while the server
// is behind, and come down again once it keeps up. Each step down is a
// probe: if the queue falls behind again, the next doublingUp takes it
// back.
const (
	doublingUp   = 500 * time.Millisecond
	doublingDown = time.Second
)

// admit says why a request is dropped before it is handled, or "" to
// handle it, and whether its queue is behind (the server then sheds
// REQUESTs from clients it does not know: requestLocked):
//   - "stale": it waited past MaxWait (DISCOVER, INFORM and the other
//     types of the bulk socket, whichever socket they waited in: a
//     quarter of it; an answer that late finds its client retransmitted
//     or gone);
//   - "overload": its queue has been behind QueueTarget for a
//     QueueInterval and it waited longer than QueueTarget.
//
// While a queue is behind, and for holdoffLinger after, it has the
// HoldoffGate hold off its class's repeats (doubled for a client's own
// repeats as gateLocked says): DISCOVERs for the bulk queue, REQUESTs for
// the priority queue. The kernel's timestamp is
// wall-clock time, so ages are taken on the system clock, not the
// server's (which tests may move).
func (s *Server) admit(mt uint8, in Incoming) (why string, behind bool) {
	if in.Received.IsZero() {
		return "", false
	}
	s.mu.Lock()
	maxWait, target, interval := s.set.MaxWait, s.set.QueueTarget, s.set.QueueInterval
	holdoff := [classes]time.Duration{classPriority: s.set.RequestHoldoff, classBulk: s.set.DiscoverHoldoff}
	s.mu.Unlock()
	class := classOf(mt, in)
	if typeClass(mt) == classBulk {
		// By its type: a DISCOVER answered that late finds its
		// client retransmitted, whichever queue it waited in.
		maxWait /= 4
	}
	now := time.Now()
	age := now.Sub(in.Received)
	if maxWait > 0 && age > maxWait {
		return "stale", false
	}
	b := &s.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	if target <= 0 {
		// Both: a reload may turn the bounds off while a holdoff is on.
		for c := range classes {
			s.gateLocked(c, false, false, now, 0)
		}
		s.m.byClass[class].Observe(age.Seconds())
		return "", false
	}
	q := &b.queue[class]
	if age <= target {
		q.aboveSince = time.Time{}
	} else {
		if q.aboveSince.IsZero() {
			q.aboveSince = now
		}
		if q.behind(now, interval) {
			q.lastDrop = now
			why = "overload"
			q.countOverloadLocked(now)
		}
	}
	behind = q.behind(now, interval)
	// A bulk socket more than half full is behind too (with QueueTarget
	// 0 neither counts: the bounds are off), however young its
	// datagrams: a flood that comes in bursts fills the buffer, and the
	// kernel drops new clients' DISCOVERs with the flood's, while the
	// server reads each burst fast enough never to fall a target behind
	// (xdhcp-bench flood, T0828: one new client of ten waited 12 s, its
	// first two DISCOVERs dropped). The REQUEST socket's fill is not
	// measured.
	// The doublings go up only while requests still come older than the
	// target: behind lasts ten intervals past the last drop, and its
	// doublings meanwhile held the rig's clients off while the server
	// had caught up.
	full := class == classBulk && in.QueueFull
	s.gateLocked(class, full || behind, full || behind && age > target, now, holdoff[class])
	if why == "" {
		s.m.byClass[class].Observe(age.Seconds())
	}
	return why, behind
}

// gateLocked sets class's holdoff on the HoldoffGate: on while its queue
// is behind and for holdoffLinger after, off otherwise; its doublings go
// up while aged (a request older than the target while behind, or a
// DISCOVER socket more than half full) and down after (doublingUp,
// doublingDown). Only a change is written (both
// holdoffs at once: the gate keeps them together).
func (s *Server) gateLocked(class int, behind, aged bool, now time.Time, holdoff time.Duration) {
	b := &s.backlog
	if s.gate == nil {
		return
	}
	q := &b.queue[class]
	if behind {
		q.lastBehind = now
	}
	if aged {
		q.lastAged = now
	}
	var want Holdoff
	d := &b.doublings[class]
	if holdoff > 0 && !q.lastBehind.IsZero() && now.Sub(q.lastBehind) < holdoffLinger {
		want.Base = holdoff
		step, since := now.Sub(b.doubledAt[class]), now.Sub(q.lastAged)
		switch {
		case since < doublingUp && step >= doublingUp && *d < MaxHoldoffDoublings:
			*d++
			b.doubledAt[class] = now
		case since >= doublingDown && *d > 0:
			// One fewer for each doublingDown since the later of the
			// last step and the last aged request: counted in time,
			// not in calls, so a quiet class comes down too.
			if n := min(step, since) / doublingDown; n > 0 {
				*d -= min(*d, uint32(n))
				b.doubledAt[class] = now
			}
		}
		want.Doublings = *d
	} else {
		*d = 0
	}
	was := b.holdoff[class]
	if want == was {
		return
	}
	next := b.holdoff
	next[class] = want
	if err := s.gate.SetHoldoffs(next[classBulk], next[classPriority]); err != nil {
		// Tried again with the next message: limited.
		s.warnLimited("holdoff", "holdoffs not set", "err", err)
		return
	}
	b.holdoff = next
	what := "DISCOVER"
	if class == classPriority {
		what = "REQUEST"
	}
	switch {
	case want.Base > 0 && was.Base == 0:
		s.log.Info("behind with "+what+"s: repeated ones are held off", "holdoff", want.Base, "doublings", want.Doublings)
	case want.Base == 0:
		s.log.Info(what + " holdoff off")
	default:
		s.log.Debug(what+" holdoff doublings", "holdoff", want.Base, "doublings", want.Doublings)
	}
}

// behindStore is a Store that says how far it is behind what is
// submitted to it (store.Store.Behind).
type behindStore interface {
	Behind() time.Duration
}

// readyPoll is how often Ready looks at the store again while it waits.
const readyPoll = time.Millisecond

// Ready returns once the lease store is not behind by more than
// Settings.QueueInterval (store.Store.Behind: its transaction in flight
// has run, or its oldest change queued before that one has waited, that
// much longer than a transaction takes; a wait for the fold counts), at
// once with the bounds off (QueueTarget 0) or a store that cannot say.
// The packet reader calls it before each batch it hands to Handle. The
// store's queue is unbounded, and before, the reader never waited for
// it: with the disk behind (a stall, commits slower than the requests
// come), every request read went into the store's queue, admitted
// because it had not waited in its socket, and was answered as late as
// the disk was behind (a 3 s stall: every renewal read meanwhile ACKed
// when the disk came back). Now the backlog waits in the sockets, where
// admit drops what waited too long.
//
// The bound is the interval, as a socket is behind for good after a
// whole one, not QueueTarget: under CPU overload, commits run 10 ms long
// now and then, and pausing the reader for each cost goodput at 120% of
// the ceiling (86, 80, 88, 112, 80 and 98% against 99, 96, 90, 111, 85
// and 103 without, in pairs of 20 s runs), shedding load the socket's
// bound already sheds.
//
// The time spent waiting is counted as it passes
// (xdhcp_slowpath_store_behind_seconds_total); a wait of a second or more
// is logged when it ends. It returns ctx's error when ctx ends first.
func (s *Server) Ready(ctx context.Context) error {
	st, ok := s.store.(behindStore)
	if !ok {
		return nil
	}
	var since, last time.Time
	var tick *time.Ticker
	defer func() {
		if tick == nil {
			return
		}
		tick.Stop()
		now := time.Now()
		s.m.StoreBehind.Add(now.Sub(last).Seconds())
		if d := now.Sub(since); d >= time.Second {
			s.logLimited(slog.LevelWarn, "store_behind", "lease store behind: stopped reading requests until it caught up", "waited", d.Round(time.Millisecond))
		}
	}()
	for {
		// Read each time: a reload may turn the bound off meanwhile.
		s.mu.Lock()
		bound := s.set.QueueInterval
		if s.set.QueueTarget <= 0 {
			bound = 0
		}
		s.mu.Unlock()
		if bound <= 0 || st.Behind() <= bound {
			return nil
		}
		now := time.Now()
		if tick == nil {
			since, last, tick = now, now, time.NewTicker(readyPoll)
		}
		s.m.StoreBehind.Add(now.Sub(last).Seconds())
		last = now
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
