package slowpath

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/xdhcp/xdhcp/slowpath/alloc"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// Subnet is the server's runtime view of one configured subnet.
type Subnet struct {
	Prefix    netip.Prefix
	LeaseTime time.Duration
	T1, T2    time.Duration
	// Options is the rendered option block (option 1 first, then the
	// configured options in their contract order). It is the reply template
	// the fast path copies, so it must not depend on the request.
	Options  []byte
	ServerID netip.Addr   // optional option 54 override
	Relays   []netip.Addr // extra giaddrs that select this subnet
	Pools    [][2]netip.Addr
	// Drain lists pools (each one of Pools) being emptied for
	// renumbering: they make no new grants, while the leases in them
	// renew until FORCERENEW moves them.
	Drain [][2]netip.Addr
	// Independent are the pools (among Pools) with independent failover
	// allocation: the lower half of each is the primary's (FREE) and the
	// upper half the secondary's (BACKUP) for good, never rebalanced.
	// Set only under failover: without a partner every address is FREE.
	Independent [][2]netip.Addr
	// ForceRenew is the subnet's FORCERENEW policy.
	ForceRenew ForceRenewSettings
	// Reservations by client key (see lease.ClientKey) and by address.
	Reserved   map[string]Reservation
	ReservedIP map[netip.Addr]Reservation

	// set holds the addresses this server may give out without a
	// failover partner, and under failover the FREE ones (the primary's
	// in NORMAL); backup holds the BACKUP ones (the secondary's), which
	// only a partner's binding updates or Rebalance put there.
	set, backup *alloc.Set
	// poolKey names the subnet's bound on pending offers (poolBound),
	// made once: every DISCOVER counts against it.
	poolKey string
}

// Reservation pins an address to one client.
type Reservation struct {
	IP        netip.Addr
	ClientKey string
	Hostname  string
}

// subnets finds the subnet for an address or relay.
type subnets struct {
	list    []*Subnet // sorted by prefix address, most specific last for equal starts
	byRelay map[netip.Addr]*Subnet
}

func newSubnets(list []*Subnet) (*subnets, error) {
	s := &subnets{list: list, byRelay: map[netip.Addr]*Subnet{}}
	sort.Slice(s.list, func(i, j int) bool {
		a, b := s.list[i].Prefix, s.list[j].Prefix
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
	for _, sn := range list {
		set, err := sn.newSet()
		if err != nil {
			return nil, err
		}
		sn.set = set
		sn.poolKey = "pool " + sn.Prefix.String()
		if sn.backup, err = sn.newBackupSet(); err != nil {
			return nil, err
		}
		for _, r := range sn.Relays {
			s.byRelay[r] = sn
		}
		if sn.Reserved == nil {
			sn.Reserved = map[string]Reservation{}
		}
		if sn.ReservedIP == nil {
			sn.ReservedIP = map[netip.Addr]Reservation{}
		}
	}
	return s, nil
}

// newBackupSet builds the subnet's empty BACKUP allocator, its draining
// pools marked.
func (sn *Subnet) newBackupSet() (*alloc.Set, error) {
	set, err := alloc.NewEmptySet(sn.Pools)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: %w", sn.Prefix, err)
	}
	for _, d := range sn.Drain {
		set.Drain(d[0], d[1], true)
	}
	if err := sn.splitIndependent(set, true); err != nil {
		return nil, err
	}
	return set, nil
}

// splitIndependent marks the independent pools fixed in a new set and
// gives the secondary its half: in the BACKUP set (backup) the upper
// halves become available as never used; in the FREE set they are taken.
func (sn *Subnet) splitIndependent(set *alloc.Set, backup bool) error {
	for _, r := range sn.Independent {
		if !set.Fix(r[0], r[1]) {
			return fmt.Errorf("subnet %s: independent allocation for %s-%s, which is not one of its pools", sn.Prefix, r[0], r[1])
		}
		set.TakeUpper(r[0], backup)
	}
	return nil
}

// ownerState is the state a free address of the subnet is in: BACKUP in
// the upper half of an independent pool (the secondary's for good), FREE
// otherwise (the primary's until pool balance hands it over).
func (sn *Subnet) ownerState(ip netip.Addr) lease.State {
	for _, r := range sn.Independent {
		if ip.Compare(r[0]) >= 0 && ip.Compare(r[1]) <= 0 {
			if up, ok := sn.set.UpperHalf(r[0]); ok && ip.Compare(up) >= 0 {
				return lease.Backup
			}
			return lease.Free
		}
	}
	return lease.Free
}

// newSet builds the subnet's allocator, its draining pools marked.
func (sn *Subnet) newSet() (*alloc.Set, error) {
	set, err := alloc.NewSet(sn.Pools)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: %w", sn.Prefix, err)
	}
	for _, d := range sn.Drain {
		if !set.Drain(d[0], d[1], true) {
			return nil, fmt.Errorf("subnet %s: draining %s-%s, which is not one of its pools", sn.Prefix, d[0], d[1])
		}
	}
	if err := sn.splitIndependent(set, false); err != nil {
		return nil, err
	}
	return set, nil
}

// forAddr returns the most specific subnet containing a, or nil.
func (s *subnets) forAddr(a netip.Addr) *Subnet {
	if !a.Is4() {
		return nil
	}
	i := sort.Search(len(s.list), func(i int) bool { return a.Less(s.list[i].Prefix.Addr()) })
	var best *Subnet
	// Subnets do not overlap (config refuses it), so the nearest prefix
	// starting at or below a is the only candidate; nested prefixes are
	// handled by looking a little further back.
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if s.list[j].Prefix.Contains(a) && (best == nil || s.list[j].Prefix.Bits() > best.Prefix.Bits()) {
			best = s.list[j]
		}
	}
	return best
}

func (s *subnets) forRelay(giaddr netip.Addr) *Subnet {
	if sn := s.byRelay[giaddr]; sn != nil {
		return sn
	}
	return s.forAddr(giaddr)
}
