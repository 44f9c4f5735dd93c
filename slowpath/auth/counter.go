package auth

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Floor keeps the replay counter's reservation durably, so that a
// restarted server never reuses a value (the slow path stores it in
// bbolt).
type Floor interface {
	// Load returns the last value stored, or 0 when none was.
	Load() (uint64, error)
	// Store durably records v before returning: once it returns, every
	// later Load returns at least v.
	Store(v uint64) error
}

// ErrCounterExhausted is returned once the counter has handed out
// 2^64-1: a strictly increasing 64-bit counter has nowhere to go.
var ErrCounterExhausted = errors.New("replay counter exhausted (2^64-1 handed out)")

// DefaultReserve is how far ahead of the clock Counter reserves when no
// CounterOptions.Reserve is given: one Floor write per this much wall
// time at most, however many messages are signed.
const DefaultReserve = 10 * time.Second

// CounterOptions tunes a Counter; the zero value is the default.
type CounterOptions struct {
	// Now is the clock (time.Now when nil); tests step it.
	Now func() time.Time
	// Reserve is how far ahead of the clock each Floor write reserves
	// (DefaultReserve when zero).
	Reserve time.Duration
}

// Counter is the server's replay detection counter (RFC 3118 RDM 0): every
// option 90 the server sends, in ACKs and FORCERENEWs alike, takes the next
// value, so a client never sees a value twice or a smaller one after a
// larger, whatever happened to the server in between.
//
// A value is max(last+1, the wall clock in nanoseconds since 1970). The
// last+1 makes it strictly increasing while the process runs, whatever
// the clock does. The clock (RFC 3118 suggests a time of day) keeps it
// ahead of an earlier run's values even if the floor were lost, as long
// as the clock is right. Across restarts the Floor carries it: before
// handing out a value above the reservation, Counter stores a new
// reservation (the value plus Reserve worth of nanoseconds) and only then
// returns the value (durable before sent, as invariant 6 has it for
// leases). A restarted Counter starts above the stored reservation, so it
// never repeats a value the previous run may have sent, even when the
// clock was stepped back meanwhile. In steady state the clock crosses the
// reservation once per Reserve, so signing costs one Floor write per
// Reserve, not one per message.
//
// Counter is safe for concurrent use.
type Counter struct {
	floor Floor
	now   func() time.Time
	span  uint64

	mu       sync.Mutex
	last     uint64 // the last value handed out (or the loaded floor)
	reserved uint64 // the last value stored in floor
}

// NewCounter starts a counter above what f holds.
func NewCounter(f Floor, o CounterOptions) (*Counter, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Reserve == 0 {
		o.Reserve = DefaultReserve
	}
	if o.Reserve < 0 {
		return nil, fmt.Errorf("replay counter: negative reserve %v", o.Reserve)
	}
	v, err := f.Load()
	if err != nil {
		return nil, fmt.Errorf("replay counter: loading the floor: %w", err)
	}
	return &Counter{floor: f, now: o.Now, span: uint64(o.Reserve.Nanoseconds()), last: v, reserved: v}, nil
}

// Next returns the next replay detection value. It fails, handing out
// nothing, when the floor cannot be stored or the counter is exhausted.
func (c *Counter) Next() (uint64, error) {
	t := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == math.MaxUint64 {
		return 0, ErrCounterExhausted
	}
	v := max(c.last+1, t)
	if v > c.reserved {
		r := uint64(math.MaxUint64)
		if v <= math.MaxUint64-c.span {
			r = v + c.span
		}
		if err := c.floor.Store(r); err != nil {
			return 0, fmt.Errorf("replay counter: storing the floor %d: %w", r, err)
		}
		c.reserved = r
	}
	c.last = v
	return v, nil
}

// clock is the wall clock in nanoseconds since 1970, 0 before it.
func (c *Counter) clock() uint64 {
	n := c.now().UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}
