package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

var (
	keyReplayFloor  = []byte("forcerenew-replay-floor") // in bucketMeta: the replay counter's reservation
	bucketCampaigns = []byte("forcerenew-campaigns")    // campaign id → sub-bucket
	keyCampaignMeta = []byte("meta")                    // in a campaign's bucket: its description
	bucketTargets   = []byte("targets")                 // in a campaign's bucket: 4-byte IPv4 → progress
)

// ReplayFloor is the FORCERENEW replay counter's durable floor
// (auth.Floor) in the lease database's meta bucket. Each Store writes
// through its own bbolt transaction, fsynced before it returns, outside
// the group committer: Counter.Next may be called while the slow path
// holds its lock, and the committer's callbacks take that lock, so
// waiting for the committer there could deadlock. bbolt serialises the
// two writers itself.
type ReplayFloor struct{ s *Store }

// ReplayFloor returns the store's replay counter floor.
func (s *Store) ReplayFloor() ReplayFloor { return ReplayFloor{s} }

// Load returns the stored floor, 0 when none was stored.
func (f ReplayFloor) Load() (uint64, error) {
	var v uint64
	err := f.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta).Get(keyReplayFloor)
		switch {
		case b == nil:
			return nil
		case len(b) != 8:
			return fmt.Errorf("replay floor of %d bytes, want 8", len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("loading the replay floor: %w", err)
	}
	return v, nil
}

// Store durably records v (bbolt fsyncs before Update returns). A value
// below the stored one is refused: the floor never goes back.
func (f ReplayFloor) Store(v uint64) error {
	err := f.s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if b := m.Get(keyReplayFloor); len(b) == 8 && binary.BigEndian.Uint64(b) > v {
			return fmt.Errorf("floor %d is below the stored %d", v, binary.BigEndian.Uint64(b))
		}
		return m.Put(keyReplayFloor, binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		return fmt.Errorf("storing the replay floor: %w", err)
	}
	return nil
}

// CampaignRecord is a FORCERENEW campaign as stored: its description (the
// slow path's encoding, opaque here) and the progress of each address it
// targets (a state byte and whatever the slow path adds, opaque here too).
type CampaignRecord struct {
	ID      string
	Meta    []byte
	Targets map[netip.Addr][]byte
}

// errCampaignID refuses ids bbolt cannot key a bucket by.
var errCampaignID = errors.New("campaign id must be 1 to 255 bytes")

// PutCampaign writes a campaign's description and the progress of the
// given targets (others keep what they had), durably before it returns,
// in one transaction of its own: a campaign's targets are written when it
// starts and then in batches as clients answer, never per packet.
func (s *Store) PutCampaign(id string, meta []byte, targets map[netip.Addr][]byte) error {
	if len(id) == 0 || len(id) > 255 {
		return errCampaignID
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		all, err := tx.CreateBucketIfNotExists(bucketCampaigns)
		if err != nil {
			return err
		}
		c, err := all.CreateBucketIfNotExists([]byte(id))
		if err != nil {
			return err
		}
		if meta != nil {
			if err := c.Put(keyCampaignMeta, meta); err != nil {
				return err
			}
		}
		tb, err := c.CreateBucketIfNotExists(bucketTargets)
		if err != nil {
			return err
		}
		for ip, v := range targets {
			if !ip.Is4() {
				return fmt.Errorf("target %v is not IPv4", ip)
			}
			k := ip.As4()
			if err := tb.Put(k[:], v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing campaign %q: %w", id, err)
	}
	return nil
}

// DeleteCampaign removes a campaign and its progress.
func (s *Store) DeleteCampaign(id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketCampaigns)
		if all == nil || all.Bucket([]byte(id)) == nil {
			return nil
		}
		return all.DeleteBucket([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("deleting campaign %q: %w", id, err)
	}
	return nil
}

// CampaignRecords reads every stored campaign.
func (s *Store) CampaignRecords() ([]CampaignRecord, error) {
	var out []CampaignRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketCampaigns)
		if all == nil {
			return nil
		}
		return all.ForEachBucket(func(id []byte) error {
			c := all.Bucket(id)
			r := CampaignRecord{ID: string(id), Meta: append([]byte(nil), c.Get(keyCampaignMeta)...), Targets: map[netip.Addr][]byte{}}
			if tb := c.Bucket(bucketTargets); tb != nil {
				err := tb.ForEach(func(k, v []byte) error {
					if len(k) != 4 {
						return fmt.Errorf("campaign %q: target key %x is not an IPv4 address", id, k)
					}
					r.Targets[netip.AddrFrom4([4]byte(k))] = append([]byte(nil), v...)
					return nil
				})
				if err != nil {
					return err
				}
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("loading campaigns: %w", err)
	}
	return out, nil
}
