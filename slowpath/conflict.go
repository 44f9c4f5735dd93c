package slowpath

import (
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// resolveConflict decides whether the partner's binding update got wins over
// the local record ours (nil: none), by the table of draft-ietf-dhc-
// failover-12 §7.1.3 (Fig. 7.1.3-1), applied to every update and not only in
// POTENTIAL-CONFLICT. Rows are our state, columns the update's:
//
//	ours \ got  ACTIVE     EXPIRED   RELEASED  FREE/BACKUP  RESET/ABANDONED
//	ACTIVE      accept(5)  time(2)   time(1)   time(2)      accept
//	EXPIRED     time(1)    accept    accept    accept       accept
//	RELEASED    time(1)    time(1)   accept    accept       accept
//	FREE/BACKUP accept     accept    accept    accept       accept
//	RESET       time(3)    accept    accept    accept       accept
//	ABANDONED   reject(4)  reject(4) reject(4) reject(4)    accept
//
// time(1): the update's CLTT is later than ours; time(2): our lease has
// expired; time(3): the update's CLTT is later than our state's start;
// each refused with "outdated binding information". (4): "less critical
// binding information". (5): the same client, or, for two clients, the
// secondary gives way and the primary refuses ("fatal conflict"). An
// update without a CLTT is never later; one with a CLTT against a record
// without one is.
func resolveConflict(ours *lease.Lease, got *lease.Lease, primary bool, now time.Time) (bool, uint8) {
	if ours == nil {
		return true, 0
	}
	later := func(a, b time.Time) bool { return !a.IsZero() && (b.IsZero() || a.After(b)) }
	outdated := uint8(wire.ReasonOutdated)
	ok := func(b bool) (bool, uint8) {
		if b {
			return true, 0
		}
		return false, outdated
	}
	g := got.State
	switch ours.State {
	case lease.Active:
		switch {
		case g == lease.Active:
			if ours.ClientKey() == got.ClientKey() || !primary {
				return true, 0
			}
			return false, uint8(wire.ReasonFatalConflict)
		case g == lease.Released:
			return ok(later(got.CLTT, ours.CLTT))
		case g == lease.Expired || g == lease.Free || g == lease.Backup:
			return ok(!now.Before(ours.Expiry))
		}
		return true, 0
	case lease.Expired:
		if g == lease.Active {
			return ok(later(got.CLTT, ours.CLTT))
		}
	case lease.Released:
		if g == lease.Active || g == lease.Expired {
			return ok(later(got.CLTT, ours.CLTT))
		}
	case lease.Reset:
		if g == lease.Active {
			return ok(later(got.CLTT, ours.StateAt))
		}
	case lease.Abandoned:
		if g != lease.Reset && g != lease.Abandoned {
			return false, uint8(wire.ReasonLessCritical)
		}
	}
	return true, 0
}
