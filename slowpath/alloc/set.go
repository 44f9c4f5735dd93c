package alloc

import (
	"net/netip"
	"sort"
)

// Set is the allocator for one subnet: its pools, in address order.
type Set struct {
	pools []*Pool
}

// NewSet builds a Set from ranges [start, end]; ranges must not overlap
// (the config package refuses overlapping pools).
func NewSet(ranges [][2]netip.Addr) (*Set, error) {
	s := &Set{}
	for _, r := range ranges {
		p, err := NewPool(r[0], r[1])
		if err != nil {
			return nil, err
		}
		s.pools = append(s.pools, p)
	}
	sort.Slice(s.pools, func(i, j int) bool { return s.pools[i].start < s.pools[j].start })
	return s, nil
}

// NewEmptySet builds a Set over the same ranges as NewSet with no address
// available: a failover secondary's BACKUP addresses, which become
// available one by one (Free) as the primary hands them over.
func NewEmptySet(ranges [][2]netip.Addr) (*Set, error) {
	s, err := NewSet(ranges)
	if err != nil {
		return nil, err
	}
	for _, p := range s.pools {
		p.fresh = newBitset(p.size, false)
	}
	return s, nil
}

// Pool returns the pool holding ip, or nil.
func (s *Set) Pool(ip netip.Addr) *Pool {
	if !ip.Is4() {
		return nil
	}
	v := u32(ip)
	i := sort.Search(len(s.pools), func(i int) bool { return s.pools[i].start > v }) - 1
	if i >= 0 && v-s.pools[i].start < s.pools[i].size {
		return s.pools[i]
	}
	return nil
}

// Drain marks the pool [start, end] as draining (no new grants: Allocate
// skips it and Available leaves it out), or clears the mark. It reports
// false when no pool is exactly that range.
func (s *Set) Drain(start, end netip.Addr, on bool) bool {
	p := s.Pool(start)
	if p == nil || p.addr(p.size-1) != end || p.addr(0) != start {
		return false
	}
	p.drain = on
	return true
}

// Fix marks the pool [start, end] as fixed (see Pool.fixed); it reports
// false when no pool is exactly that range.
func (s *Set) Fix(start, end netip.Addr) bool {
	p := s.Pool(start)
	if p == nil || p.addr(p.size-1) != end || p.addr(0) != start {
		return false
	}
	p.fixed = true
	return true
}

// UpperHalf returns the first address of the upper half of the pool
// holding ip (the lower half has the odd address of an odd size).
func (s *Set) UpperHalf(ip netip.Addr) (netip.Addr, bool) {
	p := s.Pool(ip)
	if p == nil {
		return netip.Addr{}, false
	}
	return p.addr((p.size + 1) / 2), true
}

// TakeUpper takes the upper half of the pool holding ip (see UpperHalf),
// or with fresh, makes it available as never used instead.
func (s *Set) TakeUpper(ip netip.Addr, fresh bool) {
	p := s.Pool(ip)
	if p == nil {
		return
	}
	for o := (p.size + 1) / 2; o < p.size; o++ {
		p.reuse.clear(o)
		if fresh {
			p.fresh.set(o)
		} else {
			p.fresh.clear(o)
		}
	}
}

// Draining reports whether ip is in a draining pool.
func (s *Set) Draining(ip netip.Addr) bool {
	p := s.Pool(ip)
	return p != nil && p.drain
}

// DrainingInUse is the number of addresses of draining pools still in
// use (leased, offered, reserved or quarantined): what renumbering has
// yet to move out. It falls to zero as the pools empty.
func (s *Set) DrainingInUse() uint64 {
	var n uint64
	for _, p := range s.pools {
		if p.drain {
			n += uint64(p.InUse())
		}
	}
	return n
}

// Contains reports whether ip is in one of the pools.
func (s *Set) Contains(ip netip.Addr) bool { return s.Pool(ip) != nil }

// Take, Free, MarkFresh and IsAvailable act on the pool holding ip.
func (s *Set) Take(ip netip.Addr) {
	if p := s.Pool(ip); p != nil {
		p.Take(ip)
	}
}

// Free makes ip reusable (see Pool.Free).
func (s *Set) Free(ip netip.Addr) {
	if p := s.Pool(ip); p != nil {
		p.Free(ip)
	}
}

// MarkFresh makes ip available as never used.
func (s *Set) MarkFresh(ip netip.Addr) {
	if p := s.Pool(ip); p != nil {
		p.MarkFresh(ip)
	}
}

// IsAvailable reports whether ip is in a pool and could be allocated (a
// draining pool's address never could).
func (s *Set) IsAvailable(ip netip.Addr) bool {
	p := s.Pool(ip)
	return p != nil && !p.drain && p.IsAvailable(ip)
}

// Allocate takes an address: a fresh one from any pool first, then the least
// recently freed one. Draining pools are skipped.
func (s *Set) Allocate() (netip.Addr, bool) { return s.allocate(false) }

// AllocateMovable is Allocate leaving out fixed pools: the addresses pool
// balance may hand to the partner.
func (s *Set) AllocateMovable() (netip.Addr, bool) { return s.allocate(true) }

func (s *Set) allocate(movable bool) (netip.Addr, bool) {
	for _, p := range s.pools {
		if p.fresh.count > 0 && !p.drain && !(movable && p.fixed) {
			return p.Allocate()
		}
	}
	for _, p := range s.pools {
		if p.drain || movable && p.fixed {
			continue
		}
		if a, ok := p.Allocate(); ok {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Size is the total number of addresses in the pools.
func (s *Set) Size() uint64 {
	var n uint64
	for _, p := range s.pools {
		n += uint64(p.size)
	}
	return n
}

// Available is the number of addresses Allocate could still return
// (none of a draining pool's).
func (s *Set) Available() uint64 { return s.available(false) }

// AvailableMovable is the number AllocateMovable could still return.
func (s *Set) AvailableMovable() uint64 { return s.available(true) }

func (s *Set) available(movable bool) uint64 {
	var n uint64
	for _, p := range s.pools {
		if p.drain || movable && p.fixed {
			continue
		}
		n += uint64(p.Available())
	}
	return n
}
