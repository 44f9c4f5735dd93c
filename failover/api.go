// Package failover owns the failover relationship with a partner server
// (draft-ietf-dhc-failover-12 on the wire, as ISC dhcpd 4.4 speaks it): the
// TCP connection, the state machine and its persisted state, binding
// updates in both directions, MCLT, pool balance and load balancing. The
// slow path asks it what it may do (slowpath.Partner, which *Relationship
// implements) and hands it committed changes; it reaches the lease database
// only through the Bindings interface, which the slow path implements.
package failover

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Role is this server's side of the relationship.
type Role uint8

// Roles. The primary opens the connection and sends CONNECT; in NORMAL it
// allocates FREE addresses and the secondary BACKUP ones.
const (
	Primary   Role = 1
	Secondary Role = 2
)

// String returns "primary" or "secondary".
func (r Role) String() string {
	switch r {
	case Primary:
		return "primary"
	case Secondary:
		return "secondary"
	}
	return "role(?)"
}

// DefaultPort is the failover TCP port (draft-12 §8.2).
const DefaultPort = 647

// Config is everything New needs. Durations are whole seconds on the wire.
type Config struct {
	Name string // relationship-name; must match the partner's
	Role Role
	// Peer is where the partner listens (the primary connects to it;
	// connections from any other address are refused). Listen is where
	// this server accepts the partner's connection.
	Peer, Listen netip.AddrPort
	// MCLT is the maximum client lead time. The primary's is the pair's;
	// a secondary takes the primary's from CONNECT (its own is only a
	// default until then).
	MCLT time.Duration
	// HBA is the hash bucket assignment with ISC's meaning: bucket b
	// (RFC 3074 hash of the client) is the primary's when bit b is set
	// (byte b>>3, mask 1<<(b&7)). Only the primary's counts; it is sent
	// in CONNECT.
	HBA [32]byte
	// MaxResponseDelay: no message from the partner for this long and
	// the connection is declared dead (sent as receive-timer).
	MaxResponseDelay time.Duration
	// MaxUnacked is the number of BNDUPDs this server can take before
	// acknowledging (sent as max-unacked-bndupd); the partner's bounds what
	// this server sends.
	MaxUnacked int
	// LoadBalanceMaxSecs: a request whose secs field is greater is
	// answered whatever its hash bucket (the partner is not answering
	// it); 0 turns load balancing off, every request answered by both.
	LoadBalanceMaxSecs uint16
	// AutoPartnerDown moves COMMUNICATIONS-INTERRUPTED to PARTNER-DOWN
	// after this long (the draft's safe period); 0 is never.
	AutoPartnerDown time.Duration
	// Pool balance (primary only), dhcpd's knobs: rebalance when FREE and
	// BACKUP differ by more than MaxLeaseMisbalance percent of the
	// total, checked between MinBalance and MaxBalance apart.
	MaxLeaseMisbalance int
	MaxLeaseOwnership  int
	MinBalance         time.Duration
	MaxBalance         time.Duration
	// MaxSkew is the largest clock difference accepted at CONNECT
	// (reject reason 4 beyond it); smaller skews are measured and
	// corrected in every time received.
	MaxSkew time.Duration

	// TLS, when set, protects the connection with mutual TLS (between
	// xdhcpd partners; ISC dhcpd speaks only plain TCP).
	TLS *TLS

	Logger   *slog.Logger
	Metrics  *Metrics // optional
	Now      func() time.Time
	Bindings Bindings
	// Meta keeps the relationship's state across restarts (the lease
	// store's meta bucket).
	Meta Meta
}

// Meta is a small durable key-value store (slowpath/store.Store has it).
type Meta interface {
	GetMeta(key string) ([]byte, error)
	PutMeta(ctx context.Context, key string, val []byte) error
}

// Ack is the partner's answer to one binding this server sent.
type Ack struct {
	// Sent is the record as it was sent (a copy), PotExp the
	// potential-expiration-time it carried.
	Sent *lease.Lease
	// Reject is the partner's reject reason, 0 when it accepted.
	Reject uint8
	Text   string
}

// Bindings is the lease database as failover sees it; the slow path
// implements it. Every method may be called from failover's goroutines
// while the slow path serves.
type Bindings interface {
	// Apply resolves each of the partner's binding updates against the
	// local record (draft-12 §7.1.3, ARCHITECTURE.md) in order, before it
	// returns, and stores the accepted ones durably; done is called (on
	// another goroutine) once they are on disk, with one reject reason per
	// update (0 for accepted), or with the error that kept them off it:
	// the BNDACK follows done. The updates' times are already on this
	// server's clock; PotExp is the partner's potential-expiration-time.
	Apply(ups []*lease.Lease, done func([]uint8, error))
	// Acked records the partner's answers to updates sent: an accepted
	// one raises AckedExp to the PotExp sent and, when the record has not
	// changed since, clears PartnerPending (an EXPIRED or RELEASED record
	// may then go FREE); a rejected one clears PartnerPending without
	// raising AckedExp. It commits without waiting: an ack lost to a
	// crash only sends the update again.
	Acked(acks []Ack)
	// Pending calls fn with a copy of every record the partner has not
	// acknowledged (PartnerPending), until fn returns false.
	Pending(fn func(*lease.Lease) bool)
	// Addrs returns the address of every record (UPDREQALL), and Records
	// copies of the records of ips that exist. The relationship reads the
	// records a window at a time as it sends them: a copy of every record
	// at once cost hundreds of MB at a million leases.
	Addrs() []netip.Addr
	Records(ips []netip.Addr) []*lease.Lease
	// PoolCounts returns the FREE and BACKUP addresses of the pools.
	PoolCounts() (free, backup int)
	// Rebalance (primary) turns up to n FREE addresses into BACKUP when
	// n > 0, or up to -n BACKUP addresses into FREE when n < 0, committing
	// them (they reach the partner through Update). It returns how many
	// moved.
	Rebalance(ctx context.Context, n int) (int, error)
	// StateChanged tells the slow path that what this server may answer
	// changed (a new state, the partner's arrival), so it re-decides the
	// fast path's serve bits.
	StateChanged()
}

// Status is the relationship as `xdhcpctl failover status` shows it.
// States are the draft's names in lower case ("normal",
// "communications-interrupted", ...).
type Status struct {
	Name              string    `json:"name"`
	Role              string    `json:"role"`
	State             string    `json:"state"`
	StateSince        time.Time `json:"state_since"`
	StateReason       string    `json:"state_reason"`
	PartnerState      string    `json:"partner_state"`
	PartnerStateSince time.Time `json:"partner_state_since"`
	Connected         bool      `json:"connected"`
	// TLS: the connection is (or will be) mutual TLS; false is plain TCP.
	TLS  bool   `json:"tls"`
	Peer string `json:"peer"`
	// Skew is the partner's clock minus ours, as measured.
	Skew            time.Duration `json:"skew_ns"`
	MCLT            time.Duration `json:"mclt_ns"`
	QueueDepth      int           `json:"queue_depth"`
	Unacked         int           `json:"unacked"`
	UpdatesSent     uint64        `json:"updates_sent"`
	UpdatesAcked    uint64        `json:"updates_acked"`
	UpdatesRejected uint64        `json:"updates_rejected"`
	UpdatesReceived uint64        `json:"updates_received"`
	Free            int           `json:"free"`
	Backup          int           `json:"backup"`
	// Waiting says what the pair waits for ("connection to 10.0.0.2:647",
	// "RECOVER-WAIT: MCLT after the partner's last contact"), and until
	// when if a timer ends it.
	Waiting      string    `json:"waiting,omitempty"`
	WaitingUntil time.Time `json:"waiting_until,omitempty"`
}
