package slowpath

import (
	"hash/maphash"
	"net/netip"
	"slices"

	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// clientIndex finds a client's addresses: by client key the address it
// most recently held, and by hardware key (leasequery by MAC finds
// bindings whatever client-id they used) up to hwMax addresses bound to
// it. It is keyed by a seeded 64-bit hash of the key, not by the key:
// a string key and its map entry cost 200 bytes per subscriber, more than
// the lease record itself. What it returns is a candidate: the caller
// checks the record (it may have changed hands since, or, once in 2^64,
// belong to a client whose key has the same hash).
//
// A client without a client identifier has its hardware key as client key
// (lease.ClientKey), so its latest address is also one bound to its
// hardware address: hwAddrs counts it, and hw holds only the others. That
// halves the index for such clients (most of a cable or DSL network).
type clientIndex struct {
	seed   maphash.Seed
	latest map[uint64]uint32
	// hw holds a hardware key's one address besides latest's; hwMore
	// those with more than one (rare: a client that changed its
	// client-id, or one bound in several subnets), the oldest first.
	hw     map[uint64]uint32
	hwMore map[uint64][]uint32
}

// hwMax bounds the addresses remembered per hardware key.
const hwMax = 8

// newClientIndex returns an empty index. A load does not size it ahead:
// counting ten million records (every page's header) and making maps of
// that size (200 MB of memory touched) took 3.8 s before the load could
// begin. Grown as the load fills it, the index costs its stage of the load
// about 0.5 s more, and that stage waits for the table's anyway.
func newClientIndex() clientIndex {
	return clientIndex{seed: maphash.MakeSeed(), latest: map[uint64]uint32{}, hw: map[uint64]uint32{}, hwMore: map[uint64][]uint32{}}
}

// clientAddrsLocked lists the addresses a client may hold here: its last
// address (by client key), and those bound to its hardware address, which
// between them cover every binding a client key can have been granted.
// They are candidates: check each record.
func (s *Server) clientAddrsLocked(key, hwKey string) []netip.Addr {
	var cand []netip.Addr
	if ip, ok := s.clients.latestOf(key); ok {
		cand = append(cand, ip)
	}
	return s.clients.hwAddrs(cand, hwKey)
}

func (c *clientIndex) hash(key string) uint64 { return maphash.String(c.seed, key) }

// keyHash is hash(lease.ClientKey(clientID, htype, chaddr)) without
// making the key (a load hashes two keys for each of millions of
// records), and whether it is a hardware key.
func (c *clientIndex) keyHash(clientID []byte, htype uint8, chaddr []byte) (uint64, bool) {
	var h maphash.Hash
	h.SetSeed(c.seed)
	if len(clientID) > 0 {
		h.WriteByte('c')
		h.Write(clientID)
		return h.Sum64(), false
	}
	h.WriteByte('h')
	h.WriteByte(htype)
	h.Write(chaddr)
	return h.Sum64(), true
}

// latestOf is the address the client with key most recently held.
func (c *clientIndex) latestOf(key string) (netip.Addr, bool) { return c.latestOfHash(c.hash(key)) }

func (c *clientIndex) latestOfHash(h uint64) (netip.Addr, bool) {
	v, ok := c.latest[h]
	if !ok {
		return netip.Addr{}, false
	}
	return lease.AddrFromUint32(v), true
}

func (c *clientIndex) setLatest(key string, ip netip.Addr) {
	c.setLatestHash(c.hash(key), isHWKey(key), ip)
}

// setLatestHash is setLatest for a key's hash (hwKey: the key is a
// hardware key).
func (c *clientIndex) setLatestHash(h uint64, hwKey bool, ip netip.Addr) {
	v := lease.AddrUint32(ip)
	old, had := c.latest[h]
	c.latest[h] = v
	if had && old != v && hwKey {
		// The address it held stays bound to the hardware address
		// until its record says otherwise (the caller checks).
		c.addHWHash(h, old)
	}
}

// isHWKey tells a hardware key from a client-id key (lease.ClientKey).
func isHWKey(key string) bool { return len(key) > 0 && key[0] == 'h' }

// forget drops key's latest address if it is ip.
func (c *clientIndex) forget(key string, ip netip.Addr) {
	h := c.hash(key)
	if v, ok := c.latest[h]; ok && v == lease.AddrUint32(ip) {
		delete(c.latest, h)
	}
}

// addHW remembers ip as bound to the hardware key hk.
func (c *clientIndex) addHW(hk string, ip netip.Addr) { c.addHWHash(c.hash(hk), lease.AddrUint32(ip)) }

func (c *clientIndex) addHWHash(h uint64, v uint32) {
	if l, ok := c.latest[h]; ok && l == v {
		return // latest's, which hwAddrs counts
	}
	if more, ok := c.hwMore[h]; ok {
		if !slices.Contains(more, v) {
			if len(more) >= hwMax {
				more = slices.Delete(more, 0, 1)
			}
			c.hwMore[h] = append(more, v)
		}
		return
	}
	if one, ok := c.hw[h]; ok && one != v {
		delete(c.hw, h)
		c.hwMore[h] = []uint32{one, v}
		return
	}
	c.hw[h] = v
}

// hwAddrs appends the addresses remembered for the hardware key hk, the
// oldest first (a bulk leasequery by MAC lists them in this order).
func (c *clientIndex) hwAddrs(to []netip.Addr, hk string) []netip.Addr {
	h, n := c.hash(hk), len(to)
	if one, ok := c.hw[h]; ok {
		to = append(to, lease.AddrFromUint32(one))
	}
	for _, v := range c.hwMore[h] {
		to = append(to, lease.AddrFromUint32(v))
	}
	if v, ok := c.latest[h]; ok {
		// The most recent (in hw too if the client came back to it).
		if a := lease.AddrFromUint32(v); !slices.Contains(to[n:], a) {
			to = append(to, a)
		}
	}
	return to
}
