package slowpath

import (
	"context"
	"sync"
)

// aheadSender hands the ACKs of renewals granted on their promise horizon
// (Settings.AckOnHorizon) to a goroutine of its own, Server.Run's, which
// sends them with those queued meanwhile. The Sender may still send them
// at the end of the packet reader's batch, when one is open then
// (pktio.Conn.Hold). Measured against sending them in the reader's batch
// with its other replies, as Handle does when no sender runs: there, at
// 80% of the ceiling, the queue bound dropped 5 to 10% of the renewals in
// five runs out of five, against about what the build before dropped
// here (README, Benchmarks, 2026-12-07 09:09).
type aheadSender struct {
	mu      sync.Mutex
	q       []Outgoing
	running bool
	wake    chan struct{}
}

func newAheadSender() *aheadSender { return &aheadSender{wake: make(chan struct{}, 1)} }

// queue hands o to the running sender; false when none runs (before Run,
// after it, in tests that do not run it): the caller sends o itself.
func (a *aheadSender) queue(o Outgoing) bool {
	a.mu.Lock()
	if !a.running {
		a.mu.Unlock()
		return false
	}
	a.q = append(a.q, o)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return true
}

// run sends what is queued, with send, until ctx ends; what is queued
// then is sent before it returns, and later ACKs are sent by their
// callers.
func (a *aheadSender) run(ctx context.Context, send func([]Outgoing)) {
	a.mu.Lock()
	a.running = true
	a.mu.Unlock()
	var spare []Outgoing
	flush := func() {
		a.mu.Lock()
		q := a.q
		a.q = spare[:0]
		a.mu.Unlock()
		if len(q) > 0 {
			send(q)
		}
		clear(q) // the payloads are the sender's now
		spare = q
	}
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			a.running = false
			a.mu.Unlock()
			flush()
			return
		case <-a.wake:
			flush()
		}
	}
}
