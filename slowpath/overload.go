package slowpath

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Request classes, each a queue of its own: the packet reader
// (slowpath/pktio) keeps DHCPDISCOVER and DHCPINFORM in one socket and the
// rest, the REQUESTs that finish a DORA or renew a lease among them, in
// another it reads first.
const (
	classPriority = iota
	classBulk
	classes
)

// classOf is the class of a message type, as bpf/steer.c sorts them. Only
// DISCOVER and INFORM are told apart here: the types that socket also
// takes (none, unknown ones) are dropped before this counts.
func classOf(mt uint8) int {
	if mt == dhcpwire.Discover || mt == dhcpwire.Inform {
		return classBulk
	}
	return classPriority
}

// backlog tracks how long requests wait between the kernel and the server
// (Incoming.Received) to bound the wait by time (Settings.MaxWait,
// QueueTarget, QueueInterval), per class. The sockets are the queues; the
// server only sees each request's age as it reads it.
type backlog struct {
	mu    sync.Mutex
	queue [classes]queueState
	// seen holds when each client's last DISCOVER was handled, for
	// Settings.DiscoverHoldoff; made when the bulk queue first falls
	// behind.
	seen *discoverSeen
}

// queueState is one class's overload state.
type queueState struct {
	// aboveSince is when requests started arriving older than the target
	// without a younger one since; zero when the last was younger.
	aboveSince time.Time
	// lastDrop is the last "overload" drop: a backlog that comes back
	// soon after is the same overload, dropped without waiting another
	// interval (else each interval would let a full interval's backlog
	// build up again, and its requests wait that long).
	lastDrop time.Time
}

// behind says whether the queue is in overload: requests older than the
// target for a whole interval, or a drop within ten intervals.
func (q *queueState) behind(now time.Time, interval time.Duration) bool {
	recent := !q.lastDrop.IsZero() && now.Sub(q.lastDrop) < 10*interval
	return recent || !q.aboveSince.IsZero() && now.Sub(q.aboveSince) >= interval
}

// discoverSlots is the size of discoverSeen: a flood's clients beyond it
// evict each other and get through more often than once a holdoff.
const discoverSlots = 1 << 17

// discoverSeen is a direct-mapped table of client hashes and the time
// their last DISCOVER was handled (Unix nanoseconds): 2 MiB, whatever a
// flood sends.
type discoverSeen struct {
	seed  maphash.Seed
	slots [discoverSlots]struct {
		client uint64
		at     int64
	}
}

// admit says why a request is dropped before it is handled, or "" to
// handle it:
//   - "stale": it waited past MaxWait (DISCOVER and INFORM: a quarter of
//     it; an answer that late finds its client retransmitted or gone);
//   - "overload": its queue has been behind QueueTarget for a
//     QueueInterval and it waited longer than QueueTarget;
//   - "repeat": a DISCOVER from a client whose last DISCOVER was handled
//     less than DiscoverHoldoff ago, while the bulk queue is behind.
//
// The kernel's timestamp is wall-clock time, so ages are taken on the
// system clock, not the server's (which tests may move).
func (s *Server) admit(mt uint8, in Incoming, p *dhcpwire.Packet, cid []byte) string {
	if in.Received.IsZero() {
		return ""
	}
	s.mu.Lock()
	maxWait, target, interval, holdoff := s.set.MaxWait, s.set.QueueTarget, s.set.QueueInterval, s.set.DiscoverHoldoff
	s.mu.Unlock()
	class := classOf(mt)
	if class == classBulk {
		maxWait /= 4
	}
	now := time.Now()
	age := now.Sub(in.Received)
	if maxWait > 0 && age > maxWait {
		return "stale"
	}
	if target <= 0 {
		return ""
	}
	b := &s.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	q := &b.queue[class]
	behind := q.behind(now, interval)
	if mt == dhcpwire.Discover && holdoff > 0 && (behind || b.seen != nil) {
		if b.seen == nil {
			b.seen = &discoverSeen{seed: maphash.MakeSeed()}
		}
		key := cid
		if len(key) == 0 {
			key = p.CHAddr()
		}
		h := maphash.Bytes(b.seen.seed, key)
		slot := &b.seen.slots[h%discoverSlots]
		if behind && slot.client == h && now.UnixNano()-slot.at < int64(holdoff) {
			// A drop like "overload": the queue stays behind while
			// the flood lasts.
			q.lastDrop = now
			return "repeat"
		}
		// Recorded whether or not the age check below lets it through:
		// the client was heard, and a DISCOVER from it again within the
		// holdoff is a flood's or one that ignored its OFFER. A client
		// that follows RFC 2131 waits about 4 s before it retransmits.
		slot.client, slot.at = h, now.UnixNano()
	}
	if age <= target {
		q.aboveSince = time.Time{}
		return ""
	}
	if q.aboveSince.IsZero() {
		q.aboveSince = now
	}
	if q.behind(now, interval) {
		q.lastDrop = now
		return "overload"
	}
	return ""
}
