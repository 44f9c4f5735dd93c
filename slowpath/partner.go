package slowpath

import (
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Partner is the slow path's view of a failover partner
// (draft-ietf-dhc-failover-12): what it allows this server to promise and
// to answer, and where committed binding changes go. A nil Partner is a
// server without failover: no cap, every request answered, every lease
// served, nothing sent. failover.Relationship implements it. Every method
// but Update is called with the server's lock held and must neither block
// nor call back into the Server.
type Partner interface {
	// Cap is the latest time failover lets this server promise l's
	// address until at now (the partner's acknowledged potential
	// expiration plus MCLT): no expiry granted here, and no horizon given
	// to the fast path, goes past it. ok is false when nothing caps it
	// (PARTNER-DOWN).
	Cap(l *lease.Lease, now time.Time) (cap time.Time, ok bool)
	// Serve reports whether the fast path may answer l's renewals on its
	// own; false makes it pass them up (a state in which this server
	// must not answer, or the partner's hash bucket while balancing).
	Serve(l *lease.Lease) bool
	// Answer reports whether this server answers a client's request of
	// kind k now: the state, and for a new client the load-balancing
	// bucket of hashKey (option 61's data with its type byte, else
	// chaddr) unless secs is past the partner's turn.
	Answer(k RequestKind, hashKey []byte, secs uint16) bool
	// Allocate says from which free addresses a new binding may come now:
	// FREE (the primary's in NORMAL), BACKUP (the secondary's), both (in
	// PARTNER-DOWN once MCLT has passed), or neither.
	Allocate(now time.Time) (free, backup bool)
	// PotentialExpiry is the potential-expiration-time to send the
	// partner for a grant at now of expiry granted, when desired was the
	// lease asked for before the cap: far enough ahead that the next
	// renewal is not cut short by MCLT.
	PotentialExpiry(now, granted, desired time.Time) time.Time
	// MayReuse reports whether an EXPIRED or RELEASED binding the
	// partner has not acknowledged may become FREE at now: in
	// PARTNER-DOWN only MCLT after the latest the client may hold it by
	// either server's promise (draft-12 §5.2.2; the dead partner's fast
	// path may go on renewing up to its horizon), never otherwise.
	MayReuse(l *lease.Lease, now time.Time) bool
	// Primary reports whether this server is the relationship's primary
	// (the conflict table of draft-12 §7.1.3 breaks a tie between two
	// clients by role).
	Primary() bool
	// Update hands the partner bindings changed here (copies), once they
	// are on disk, as binding updates. It queues and returns: it runs on
	// the store's commit goroutine. lazy marks renewals the fast path
	// answered, which may wait a moment to be coalesced (a client renewing
	// often is one update, not one per renewal): the horizon, already
	// within the partner's cap, is what keeps them safe meanwhile.
	Update(ls []*lease.Lease, lazy bool)
}

// RequestKind sorts client requests for Partner.Answer.
type RequestKind uint8

const (
	// RequestNew is a request that may bind a new address or client: a
	// DISCOVER, a SELECTING or INIT-REBOOT REQUEST. Load balancing
	// applies to it.
	RequestNew RequestKind = iota + 1
	// RequestRenew is a RENEWING or REBINDING REQUEST, answered by
	// either server in NORMAL (draft-12 §5.3).
	RequestRenew
	// RequestOther is an INFORM or a leasequery: no binding changes.
	RequestOther
)
