package slowpath

import (
	"context"
	"sync"
)

// aheadSender sends the ACKs of renewals granted on their promise horizon
// (Settings.AckOnHorizon) from a goroutine of its own, Server.Run's.
// Sent by the packet reader at the end of its batch, as its other replies
// are, they made its loop longer by the sendmmsg (a quarter of the
// server's CPU, half of it the generator's receive path run in the
// system call): its sockets' queues grew, and at 80% of the ceiling the
// queue bound dropped a tenth of the renewals. ACKs that wait for their
// record leave from the lease store's callbacks, also beside the reader.
// ACKs that come while it sends go out together in its next sendmmsg.
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
