package slowpath

import (
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Partner is the slow path's view of a failover partner
// (draft-ietf-dhc-failover-12): what it allows this server to promise, and
// where committed binding changes go. A nil Partner is a server without
// failover: no cap, every lease served, nothing sent. Cap and Serve are
// called with the server's lock held and must not call back into the
// Server.
type Partner interface {
	// Cap is the latest time failover lets this server promise ip
	// until at now (the partner's acknowledged potential expiration plus
	// MCLT): no expiry granted here, and no horizon given to the fast path,
	// goes past it. ok is false when nothing caps ip.
	Cap(ip netip.Addr, now time.Time) (cap time.Time, ok bool)
	// Serve reports whether the fast path may answer l's renewals on its
	// own; false makes it pass them up (a partner that must hear first).
	Serve(l *lease.Lease) bool
	// Update hands the partner bindings changed here (copies), once they
	// are on disk, as binding updates. It queues and returns: it runs on
	// the store's commit goroutine.
	Update(ls []*lease.Lease)
}
