package failover

import (
	"fmt"
	"time"

	"github.com/xdhcp/xdhcp/failover/hba"
	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// view is a snapshot of the relationship, swapped whole on every change,
// from which the slow path's questions (slowpath.Partner) are answered
// under its lock without blocking.
type view struct {
	role    Role
	state   wire.ServerState // ours
	partner wire.ServerState // the partner's last known, 0 if never heard
	stos    time.Time        // when we entered state
	mclt    time.Duration
	hba     hba.Assignment
	// lbMaxSecs: a request whose secs is past it is answered whatever its
	// bucket; 0 turns load balancing off.
	lbMaxSecs uint16
}

// cap is the latest expiry this server may promise l until (draft-12
// §5.2.1, ISC's rule): MCLT past the partner's acknowledged potential
// expiration (or past now when that is behind). None in PARTNER-DOWN.
func (v *view) cap(l *lease.Lease, now time.Time) (time.Time, bool) {
	if v.state == wire.StatePartnerDown {
		return time.Time{}, false
	}
	base := now
	if l.AckedExp.After(base) {
		base = l.AckedExp
	}
	return base.Add(v.mclt), true
}

// serving reports whether this server answers clients at all in its state.
func (v *view) serving() bool {
	switch v.state {
	case wire.StateNormal, wire.StateCommInterrupted, wire.StatePartnerDown, wire.StateResolutionInterrupted,
		wire.StateConflictDone, wire.StateRecoverDone:
		return true
	}
	return false
}

// ours reports whether the client with this hash key is this server's to
// answer in NORMAL.
func (v *view) ours(key []byte) bool {
	return v.lbMaxSecs == 0 || v.hba.Mine(v.role == Primary, key)
}

// serve: the fast path may answer l's renewals alone.
func (v *view) serve(l *lease.Lease) bool {
	if !v.serving() {
		return false
	}
	if v.state == wire.StateNormal {
		return v.ours(hba.Key(l.ClientID, l.HWAddr))
	}
	return true
}

// answer: this server answers a request of kind k (draft-12 §5.3, §9).
func (v *view) answer(k slowpath.RequestKind, key []byte, secs uint16) bool {
	if !v.serving() {
		return false
	}
	switch v.state {
	case wire.StateRecoverDone:
		return k == slowpath.RequestRenew
	case wire.StateNormal:
		if k != slowpath.RequestNew {
			return true
		}
		return v.ours(key) || secs > v.lbMaxSecs
	}
	return true
}

// allocate: from which free addresses a new binding may come.
func (v *view) allocate(now time.Time) (free, backup bool) {
	own := func() (bool, bool) { return v.role == Primary, v.role == Secondary }
	switch v.state {
	case wire.StateNormal, wire.StateCommInterrupted, wire.StateResolutionInterrupted, wire.StateConflictDone:
		return own()
	case wire.StatePartnerDown:
		if !now.Before(v.stos.Add(v.mclt)) {
			return true, true // draft-12 §5.2.2: the partner's too, MCLT after
		}
		return own()
	}
	return false, false
}

// mayReuse: an EXPIRED or RELEASED binding the partner has not
// acknowledged may become FREE only in PARTNER-DOWN, MCLT after the latest
// the client may hold it by either server's promise: its expiry, the
// potential expiration sent or received, the one acknowledged (which bounds
// what the dead partner's fast path may still grant), and never before
// MCLT into PARTNER-DOWN (draft-12 §5.2.2, digest D.10).
func (v *view) mayReuse(l *lease.Lease, now time.Time) bool {
	if v.state != wire.StatePartnerDown {
		return false
	}
	last := v.stos
	for _, t := range []time.Time{l.Expiry, l.PotExp, l.AckedExp} {
		if t.After(last) {
			last = t
		}
	}
	return !now.Before(last.Add(v.mclt))
}

// potentialExpiry is what to tell the partner for a grant: ISC's rule,
// the desired expiry plus half the grant, never before the grant; the
// grant itself in PARTNER-DOWN, where nothing waits for the partner.
func (v *view) potentialExpiry(now, granted, desired time.Time) time.Time {
	if v.state == wire.StatePartnerDown {
		return granted
	}
	p := desired.Add(granted.Sub(now) / 2)
	if p.Before(granted) {
		return granted
	}
	return p
}

var stateNames = map[wire.ServerState]string{
	wire.StateStartup: "startup", wire.StateNormal: "normal", wire.StateCommInterrupted: "communications-interrupted",
	wire.StatePartnerDown: "partner-down", wire.StatePotentialConflict: "potential-conflict", wire.StateRecover: "recover",
	wire.StatePaused: "paused", wire.StateShutdown: "shutdown", wire.StateRecoverDone: "recover-done",
	wire.StateResolutionInterrupted: "resolution-interrupted", wire.StateConflictDone: "conflict-done",
	wire.StateRecoverWait: "recover-wait",
}

// stateName is the draft's name of s in lower case ("" for 0: never heard).
func stateName(s wire.ServerState) string {
	if s == 0 {
		return ""
	}
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// parseStateName is the inverse of stateName.
func parseStateName(n string) (wire.ServerState, error) {
	for s, name := range stateNames {
		if name == n {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown failover state %q", n)
}

// rebalance is how many addresses the primary moves (dhcpd's rule): half
// the difference between FREE and BACKUP, >0 FREE→BACKUP, <0 back, 0 while
// the difference is within misbalancePct percent of the total.
func rebalance(free, backup, misbalancePct int) int {
	lts := (free - backup) / 2
	thresh := (free + backup) * misbalancePct / 100
	if abs(lts) <= thresh || lts == 0 {
		return 0
	}
	return lts
}

// poolRequestAnswer is how many addresses a POOLREQ gets: what would even
// the pools, if the primary has more.
func poolRequestAnswer(free, backup int) int { return max(0, (free-backup)/2) }

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
