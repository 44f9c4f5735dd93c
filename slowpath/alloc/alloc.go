// Package alloc picks free addresses from a subnet's pools.
//
// It must stay fast for pools of millions of addresses and for pools that are
// nearly full, so it keeps two sets per pool, each a two-level bitmap (a bit
// per address and a bit per 64-address word that has any bit set): addresses
// never handed out ("fresh") and addresses freed after use ("reusable").
// Fresh addresses go first, so an address a client gave up stays unused as long
// as possible and a returning client is likely to get it back; reusable ones
// go in the order they were freed (least recently used first).
package alloc

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// Pool is one contiguous range of addresses.
type Pool struct {
	start, size uint32
	fresh       bitset
	reuse       bitset
	queue       []uint32 // offsets in the order they became reusable; may hold stale entries
	cursor      uint32   // where the next fresh search starts, so allocation spreads out
	// drain marks a pool being emptied for renumbering: Set.Allocate
	// skips it and its free addresses are not available, while the
	// leases already in it keep renewing until FORCERENEW moves them.
	drain bool
	// fixed marks a pool whose addresses are never moved between
	// failover partners (independent allocation): Set.AllocateMovable
	// and Set.AvailableMovable leave it out.
	fixed bool
}

// NewPool returns a pool for [start, end] with every address fresh.
func NewPool(start, end netip.Addr) (*Pool, error) {
	if !start.Is4() || !end.Is4() || end.Less(start) {
		return nil, fmt.Errorf("pool %s-%s: not an IPv4 range", start, end)
	}
	s, e := u32(start), u32(end)
	n := uint64(e) - uint64(s) + 1
	if n > 1<<31 {
		return nil, fmt.Errorf("pool %s-%s: %d addresses is too many", start, end, n)
	}
	p := &Pool{start: s, size: uint32(n)}
	p.fresh = newBitset(p.size, true)
	p.reuse = newBitset(p.size, false)
	return p, nil
}

// Contains reports whether ip is in the pool.
func (p *Pool) Contains(ip netip.Addr) bool {
	_, ok := p.offset(ip)
	return ok
}

func (p *Pool) offset(ip netip.Addr) (uint32, bool) {
	if !ip.Is4() {
		return 0, false
	}
	v := u32(ip)
	if v < p.start || v-p.start >= p.size {
		return 0, false
	}
	return v - p.start, true
}

// Size is the number of addresses in the pool.
func (p *Pool) Size() uint32 { return p.size }

// Draining reports whether the pool makes no new grants.
func (p *Pool) Draining() bool { return p.drain }

// InUse is the number of addresses not available: leased, offered,
// reserved or quarantined.
func (p *Pool) InUse() uint32 { return p.size - p.Available() }

// Available is the number of addresses that Allocate could return.
func (p *Pool) Available() uint32 { return p.fresh.count + p.reuse.count }

// Take removes ip from the available sets (it was leased, offered, reserved
// or found in use). Taking an address that is not available is a no-op.
func (p *Pool) Take(ip netip.Addr) {
	if o, ok := p.offset(ip); ok {
		p.fresh.clear(o)
		p.reuse.clear(o)
	}
}

// Free makes ip available again after use, behind every address freed before it.
func (p *Pool) Free(ip netip.Addr) {
	o, ok := p.offset(ip)
	if !ok || p.reuse.get(o) {
		return
	}
	p.fresh.clear(o)
	p.reuse.set(o)
	p.queue = append(p.queue, o)
	// Entries go stale when an address is taken again out of turn (a returning
	// client); compact so the queue cannot grow without bound.
	if len(p.queue) > 1024 && uint32(len(p.queue)) > 2*p.reuse.count {
		q := p.queue[:0]
		seen := newBitset(p.size, false)
		for _, o := range p.queue {
			if p.reuse.get(o) && !seen.get(o) {
				seen.set(o)
				q = append(q, o)
			}
		}
		p.queue = q
	}
}

// MarkFresh makes ip available as never used (used when loading a pool whose
// address has no record).
func (p *Pool) MarkFresh(ip netip.Addr) {
	if o, ok := p.offset(ip); ok {
		p.reuse.clear(o)
		p.fresh.set(o)
	}
}

// IsAvailable reports whether ip could be allocated.
func (p *Pool) IsAvailable(ip netip.Addr) bool {
	o, ok := p.offset(ip)
	return ok && (p.fresh.get(o) || p.reuse.get(o))
}

// Allocate returns and takes the best available address, or false when the
// pool is exhausted. The caller decides what to do with it; if it does not
// use it, it must Free or MarkFresh it.
func (p *Pool) Allocate() (netip.Addr, bool) {
	if p.fresh.count > 0 {
		o, ok := p.fresh.next(p.cursor)
		if !ok {
			o, ok = p.fresh.next(0)
		}
		if ok {
			p.fresh.clear(o)
			p.cursor = o + 1
			if p.cursor >= p.size {
				p.cursor = 0
			}
			return p.addr(o), true
		}
	}
	for len(p.queue) > 0 {
		o := p.queue[0]
		p.queue = p.queue[1:]
		if p.reuse.get(o) {
			p.reuse.clear(o)
			return p.addr(o), true
		}
	}
	return netip.Addr{}, false
}

func (p *Pool) addr(o uint32) netip.Addr { return fromU32(p.start + o) }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// bitset is a two-level bitmap: summary bit w is set when words[w] != 0, so
// finding the next set bit skips 4096 addresses per summary word.
type bitset struct {
	words   []uint64
	summary []uint64
	n       uint32
	count   uint32
}

func newBitset(n uint32, full bool) bitset {
	nw := (n + 63) / 64
	b := bitset{words: make([]uint64, nw), summary: make([]uint64, (nw+63)/64), n: n}
	if full {
		for w := range b.words {
			b.words[w] = ^uint64(0)
		}
		if r := n % 64; r != 0 {
			b.words[nw-1] = 1<<r - 1
		}
		for w := range b.words {
			b.summary[w/64] |= 1 << (w % 64)
		}
		b.count = n
	}
	return b
}

func (b *bitset) get(i uint32) bool { return b.words[i/64]&(1<<(i%64)) != 0 }

func (b *bitset) set(i uint32) {
	w := i / 64
	if b.words[w]&(1<<(i%64)) != 0 {
		return
	}
	b.words[w] |= 1 << (i % 64)
	b.summary[w/64] |= 1 << (w % 64)
	b.count++
}

func (b *bitset) clear(i uint32) {
	w := i / 64
	if b.words[w]&(1<<(i%64)) == 0 {
		return
	}
	b.words[w] &^= 1 << (i % 64)
	if b.words[w] == 0 {
		b.summary[w/64] &^= 1 << (w % 64)
	}
	b.count--
}

// next returns the first set bit at or after i.
func (b *bitset) next(i uint32) (uint32, bool) {
	if i >= b.n {
		return 0, false
	}
	w := i / 64
	if m := b.words[w] >> (i % 64); m != 0 {
		return i + uint32(bits.TrailingZeros64(m)), true
	}
	w++
	for s := w / 64; s < uint32(len(b.summary)); s++ {
		m := b.summary[s]
		if s == w/64 {
			m &= ^uint64(0) << (w % 64)
		}
		if m != 0 {
			ww := s*64 + uint32(bits.TrailingZeros64(m))
			return ww*64 + uint32(bits.TrailingZeros64(b.words[ww])), true
		}
	}
	return 0, false
}
