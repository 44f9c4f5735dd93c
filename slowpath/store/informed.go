package store

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// bucketInformed holds the clients configured by DHCPINFORM that the slow
// path remembers, so that FORCERENEW can reach them (issue 16): 4-byte
// IPv4 (the client's ciaddr) → the slow path's record, opaque here. The
// bucket is created by the first write, so databases written before it
// existed open unchanged.
var bucketInformed = []byte("informed")

// SubmitInformed queues records of informed clients (a nil value deletes
// the address's record) and returns at once; done (which may be nil) is
// called once they are on disk (as Submit's), in the same group
// commit as the leases queued with them, or with the error that kept them
// off it. An INFORM's ACK that carries a FORCERENEW key waits for done
// (ARCHITECTURE.md invariant 6).
func (s *Store) SubmitInformed(recs map[netip.Addr][]byte, done func(error)) {
	for ip := range recs {
		if !ip.Is4() {
			if done != nil {
				done(fmt.Errorf("informed client %v is not IPv4", ip))
			}
			return
		}
	}
	s.enqueue(job{informed: recs, done: done})
}

// putInformed writes one job's informed records in the committer's
// transaction.
func putInformed(tx *bolt.Tx, recs map[netip.Addr][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketInformed)
	if err != nil {
		return fmt.Errorf("informed clients bucket: %w", err)
	}
	for ip, v := range recs {
		k := ip.As4()
		if v == nil {
			err = b.Delete(k[:])
		} else {
			err = b.Put(k[:], v)
		}
		if err != nil {
			return fmt.Errorf("writing informed client %s: %w", ip, err)
		}
	}
	return nil
}

// InformedRecords reads every stored informed client's record: the
// tree's, and the journal's changes not yet folded over them.
func (s *Store) InformedRecords() (map[netip.Addr][]byte, error) {
	// Copied before the tree is read (LoadWithLookup).
	s.jmu.Lock()
	pending := maps.Clone(s.ov.informed)
	s.jmu.Unlock()
	out := map[netip.Addr][]byte{}
	defer func() {
		for ip, v := range pending {
			if v.val == nil {
				delete(out, netip.AddrFrom4(ip))
			} else {
				out[netip.AddrFrom4(ip)] = bytes.Clone(v.val)
			}
		}
	}()
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInformed)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 4 {
				return fmt.Errorf("informed client key %x is not an IPv4 address", k)
			}
			out[netip.AddrFrom4([4]byte(k))] = append([]byte(nil), v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("loading informed clients: %w", err)
	}
	return out, nil
}
