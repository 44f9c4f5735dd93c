// Package lease defines the lease record that the slow path stores in bbolt,
// publishes to the fast path and (later) exchanges with a failover partner.
//
// States are the failover binding states of draft-ietf-dhc-failover-12 §12.3
// so that a record can be sent to a partner without translation.
package lease

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// State is a binding state, numbered as the failover binding-status option.
type State uint8

// Binding states (draft-ietf-dhc-failover-12 §12.3).
const (
	Free      State = 1
	Active    State = 2
	Expired   State = 3
	Released  State = 4
	Abandoned State = 5
	Reset     State = 6
	Backup    State = 7
)

var stateNames = [...]string{"", "free", "active", "expired", "released", "abandoned", "reset", "backup"}

// String returns the lower-case state name used in JSON, metrics and logs.
func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if i > 0 && n == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown lease state %q", s)
}

// Valid reports whether s is one of the defined binding states.
func (s State) Valid() bool { return s >= Free && s <= Backup }

// Reusable reports whether an address in state s may be given to a new
// client: FREE, EXPIRED, RELEASED and RESET. ACTIVE is its client's,
// ABANDONED is quarantined, BACKUP is the failover partner's to give.
func (s State) Reusable() bool {
	switch s {
	case Free, Expired, Released, Reset:
		return true
	}
	return false
}

// Ending reports whether s is EXPIRED or RELEASED: reusable, and on its way
// to FREE, which the slow path's sweeper makes it (under failover, once the
// partner has acknowledged).
func (s State) Ending() bool { return s == Expired || s == Released }

// Lease is everything the server knows about one address. Zero times mean
// "not set". Times are kept at second precision on disk.
type Lease struct {
	IP    netip.Addr
	State State

	// Client identity. ClientID is option 61 as received (type byte
	// included), treated as opaque bytes (RFC 4361).
	HWType   uint8
	HWAddr   net.HardwareAddr
	ClientID []byte
	Hostname string

	Start    time.Time // when the current binding began
	Expiry   time.Time // what the client was told
	CLTT     time.Time // client-last-transaction-time
	StateAt  time.Time // when State was entered (start-time-of-state)
	PotExp   time.Time // potential expiration time sent to the partner
	AckedExp time.Time // potential expiration time the partner acknowledged
	// Horizon is the latest expiry the fast path may grant (ARCHITECTURE.md
	// invariant 2). It is on disk before it is in the BPF map.
	Horizon time.Time
	// DurableHorizon is kept in memory only (never encoded): the horizon
	// of the last version of this record that reached the disk while
	// active, zero when none did. The slow path changes Horizon before it
	// commits; only DurableHorizon is ever given to the fast path, so a
	// failed commit cannot leak a horizon the disk does not hold.
	DurableHorizon time.Time
	// Epoch is kept in memory only (never encoded): it changes whenever
	// the binding does (another client, or out of ACTIVE), so that a
	// version of the record that reaches the disk can be told from the
	// binding the table holds now (Table.SetDurableHorizon): an older
	// binding's horizon, the same client's included, promises nothing to
	// this one. It wraps; a version 256 bindings old is never in flight.
	Epoch uint8

	// Where the lease was granted: ingress interface and VLAN tags for a
	// directly attached client, giaddr for a relayed one.
	IfIndex uint32
	VLANs   [2]uint16
	GIAddr  netip.Addr
	// ServerID is the option 54 the client was given (it may be an RFC
	// 5107 override); renewals answered by the fast path repeat it.
	ServerID netip.Addr
	// RelayInfo is the raw option 82 body from the last relayed request.
	RelayInfo   []byte
	VendorClass []byte
	LastXID     uint32

	// ForceRenewKey is the RFC 6704 reconfigure key, empty when none.
	ForceRenewKey []byte
	// PartnerPending marks a change the failover partner has not yet acked.
	PartnerPending bool
	// Reserved is kept in memory only (never encoded): the failover R
	// flag (draft-12 IP-flags) of a binding update, set by the slow path
	// from its configured reservations on what it sends, and read from
	// the partner's updates.
	Reserved bool
}

// ClientKey returns the key that identifies the lease's client: the client
// identifier when present, else htype and chaddr (RFC 2131 §4.2).
func (l *Lease) ClientKey() string { return ClientKey(l.ClientID, l.HWType, l.HWAddr) }

// SameClient reports whether a and b have the same ClientKey, without
// building either key.
func SameClient(a, b *Lease) bool {
	if len(a.ClientID) > 0 || len(b.ClientID) > 0 {
		return bytes.Equal(a.ClientID, b.ClientID)
	}
	return a.HWType == b.HWType && bytes.Equal(a.HWAddr, b.HWAddr)
}

// ClientKey builds the identity key for a client. The first byte tells the
// two kinds apart so that a client-id can never collide with a chaddr.
func ClientKey(clientID []byte, htype uint8, chaddr []byte) string {
	if len(clientID) > 0 {
		b := make([]byte, 0, 1+len(clientID))
		b = append(b, 'c')
		return string(append(b, clientID...))
	}
	b := make([]byte, 0, 2+len(chaddr))
	b = append(b, 'h', htype)
	return string(append(b, chaddr...))
}

// Clone returns a deep copy, so records can be handed to other goroutines.
func (l *Lease) Clone() *Lease {
	// The byte fields share one allocation: a clone is made for every
	// change a commit carries, and allocations, not bytes, were most of
	// its cost.
	c, _ := l.CopyInto(make([]byte, 0, l.byteLen()))
	return &c
}

// CopyInto returns a copy of l whose byte fields are appended to arena,
// and the arena grown by them: many records copied into one arena cost
// one allocation instead of one each (a load hands records to another
// goroutine this way). Each field is capped at its length, so an append
// to one copies instead of running into the next.
func (l *Lease) CopyInto(arena []byte) (Lease, []byte) {
	c := *l
	part := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	c.HWAddr = part(l.HWAddr)
	c.ClientID = part(l.ClientID)
	c.RelayInfo = part(l.RelayInfo)
	c.VendorClass = part(l.VendorClass)
	c.ForceRenewKey = part(l.ForceRenewKey)
	return c, arena
}

// byteLen is the length of l's byte fields together.
func (l *Lease) byteLen() int {
	return len(l.HWAddr) + len(l.ClientID) + len(l.RelayInfo) + len(l.VendorClass) + len(l.ForceRenewKey)
}

// ActiveAt reports whether the lease is bound to its client at time t.
func (l *Lease) ActiveAt(t time.Time) bool {
	return l.State == Active && t.Before(l.Expiry)
}

const encVersion = 1

// MarshalBinary encodes the lease compactly for bbolt. The address itself
// is the bbolt key and is not repeated in the value.
func (l *Lease) MarshalBinary() ([]byte, error) {
	return l.AppendBinary(make([]byte, 0, 96))
}

// AppendBinary appends the encoding of l to b.
func (l *Lease) AppendBinary(b []byte) ([]byte, error) {
	if len(l.HWAddr) > 16 {
		return nil, fmt.Errorf("lease %s: hardware address of %d bytes", l.IP, len(l.HWAddr))
	}
	b = append(b, encVersion, byte(l.State), l.HWType)
	flags := byte(0)
	if l.PartnerPending {
		flags |= 1
	}
	b = append(b, flags)
	for _, t := range [...]time.Time{l.Start, l.Expiry, l.CLTT, l.StateAt, l.PotExp, l.AckedExp, l.Horizon} {
		b = binary.BigEndian.AppendUint64(b, uint64(unixOrZero(t)))
	}
	b = binary.BigEndian.AppendUint32(b, l.IfIndex)
	b = binary.BigEndian.AppendUint16(b, l.VLANs[0])
	b = binary.BigEndian.AppendUint16(b, l.VLANs[1])
	b = appendAddr(b, l.GIAddr)
	b = appendAddr(b, l.ServerID)
	b = binary.BigEndian.AppendUint32(b, l.LastXID)
	for _, f := range [...][]byte{l.HWAddr, l.ClientID, []byte(l.Hostname), l.RelayInfo, l.VendorClass, l.ForceRenewKey} {
		if len(f) > 0xffff {
			return nil, fmt.Errorf("lease %s: field of %d bytes is too long", l.IP, len(f))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// ErrCorrupt is returned (wrapped) when a stored record cannot be decoded.
var ErrCorrupt = errors.New("corrupt lease record")

// UnmarshalBinary decodes a record written by MarshalBinary. It does not
// set IP, which is the record's key.
func (l *Lease) UnmarshalBinary(b []byte) error { return l.unmarshal(b, true) }

// UnmarshalShared is UnmarshalBinary with the byte fields pointing into b
// instead of copied: l is valid only as long as b is, and must not be
// changed. It is for reading many records, each copied elsewhere at once
// (a lease table's load), without an allocation per field.
func (l *Lease) UnmarshalShared(b []byte) error { return l.unmarshal(b, false) }

func (l *Lease) unmarshal(b []byte, clone bool) error {
	const fixed = 4 + 7*8 + 4 + 4 + 4 + 4 + 4
	if len(b) < fixed {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrCorrupt, len(b), fixed)
	}
	if b[0] != encVersion {
		return fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	st := State(b[1])
	if !st.Valid() {
		return fmt.Errorf("%w: state %d", ErrCorrupt, b[1])
	}
	ip := l.IP
	*l = Lease{IP: ip, State: st, HWType: b[2], PartnerPending: b[3]&1 != 0}
	p := 4
	times := [...]*time.Time{&l.Start, &l.Expiry, &l.CLTT, &l.StateAt, &l.PotExp, &l.AckedExp, &l.Horizon}
	for _, t := range times {
		// 0 is "not set"; so is the one other value whose time IsZero
		// (0001-01-01 UTC), which MarshalBinary would write as 0.
		if u := time.Unix(int64(binary.BigEndian.Uint64(b[p:])), 0); !u.IsZero() && u.Unix() != 0 {
			*t = u
		}
		p += 8
	}
	l.IfIndex = binary.BigEndian.Uint32(b[p:])
	l.VLANs[0] = binary.BigEndian.Uint16(b[p+4:])
	l.VLANs[1] = binary.BigEndian.Uint16(b[p+6:])
	l.GIAddr = readAddr(b[p+8:])
	l.ServerID = readAddr(b[p+12:])
	l.LastXID = binary.BigEndian.Uint32(b[p+16:])
	p += 20
	var fields [6][]byte
	for i := range fields {
		if len(b)-p < 2 {
			return fmt.Errorf("%w: truncated at field %d", ErrCorrupt, i)
		}
		n := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if len(b)-p < n {
			return fmt.Errorf("%w: field %d wants %d bytes, %d left", ErrCorrupt, i, n, len(b)-p)
		}
		if n > 0 {
			fields[i] = b[p : p+n : p+n]
			if clone {
				fields[i] = bytes.Clone(fields[i])
			}
		}
		p += n
	}
	if len(fields[0]) > 16 {
		return fmt.Errorf("%w: hardware address of %d bytes", ErrCorrupt, len(fields[0]))
	}
	l.HWAddr = net.HardwareAddr(fields[0])
	l.ClientID = fields[1]
	l.Hostname = string(fields[2])
	l.RelayInfo = fields[3]
	l.VendorClass = fields[4]
	l.ForceRenewKey = fields[5]
	return nil
}

func appendAddr(b []byte, a netip.Addr) []byte {
	v := [4]byte{}
	if a.Is4() {
		v = a.As4()
	}
	return append(b, v[:]...)
}

// readAddr reads 4 bytes; 0.0.0.0 means "not set".
func readAddr(b []byte) netip.Addr {
	if a := netip.AddrFrom4([4]byte(b[:4])); !a.IsUnspecified() {
		return a
	}
	return netip.Addr{}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
