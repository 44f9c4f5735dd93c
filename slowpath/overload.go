package slowpath

import (
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// backlog tracks how long requests wait between the kernel and the server
// (Incoming.Received) to bound the wait by time (Settings.MaxWait,
// QueueTarget, QueueInterval). The socket is the queue; the server only
// sees each request's age as it reads it.
type backlog struct {
	mu sync.Mutex
	// aboveSince is when requests started arriving older than the target
	// without a younger one since; zero when the last was younger.
	aboveSince time.Time
	// lastDrop is the last "overload" drop: a backlog that comes back
	// soon after is the same overload, dropped without waiting another
	// interval (else each interval would let a full interval's backlog
	// build up again, and its requests wait that long).
	lastDrop time.Time
}

// tooOld says why a request is dropped for its age ("stale": past
// MaxWait; "overload": past QueueTarget while the server is behind), or
// "" to handle it. DISCOVER and INFORM get a quarter of each bound: under
// a backlog the REQUESTs that finish a DORA or renew a lease go first. The
// kernel's timestamp is wall-clock time, so ages are taken on the system
// clock, not the server's (which tests may move).
func (s *Server) tooOld(mt uint8, in Incoming) string {
	if in.Received.IsZero() {
		return ""
	}
	s.mu.Lock()
	maxWait, target, interval := s.set.MaxWait, s.set.QueueTarget, s.set.QueueInterval
	s.mu.Unlock()
	now := time.Now()
	age := now.Sub(in.Received)
	share := func(d time.Duration) time.Duration {
		if mt == dhcpwire.Discover || mt == dhcpwire.Inform {
			return d / 4
		}
		return d
	}
	if maxWait > 0 && age > share(maxWait) {
		return "stale"
	}
	if target <= 0 {
		return ""
	}
	b := &s.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	if age <= target {
		b.aboveSince = time.Time{}
		return ""
	}
	if b.aboveSince.IsZero() {
		b.aboveSince = now
	}
	recent := !b.lastDrop.IsZero() && now.Sub(b.lastDrop) < 10*interval
	if (recent || now.Sub(b.aboveSince) >= interval) && age > share(target) {
		b.lastDrop = now
		return "overload"
	}
	return ""
}
