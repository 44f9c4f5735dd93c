package bench

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
)

// blast sends msgs round-robin to the server, open loop and as fast as the
// transport takes batches of them, for d, while a receiver reads answers
// in batches and sorts them with valid. Answers arriving within half a
// second after the end still count.
func blast(ctx context.Context, tr loadgen.Transport, msgs [][]byte, d time.Duration, valid func([]byte) bool) (sent, answered, wrong int64) {
	return paced(ctx, tr, msgs, d, 0, valid)
}

// paced is blast at rate messages per second (0: as fast as possible),
// sent in batches of 64 on a schedule. It serves requests that are not
// client exchanges (leasequery), which loadgen's engine does not model.
func paced(ctx context.Context, tr loadgen.Transport, msgs [][]byte, d time.Duration, rate int, valid func([]byte) bool) (sent, answered, wrong int64) {
	var ans, bad atomic.Int64
	stop := make(chan struct{})
	done := readUntil(tr, stop, 200*time.Millisecond, false, func(b []byte) {
		if valid(b) {
			ans.Add(1)
		} else {
			bad.Add(1)
		}
	})
	wb := make([]loadgen.Packet, 64)
	start := time.Now()
	end := start.Add(d)
	next := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		if rate > 0 {
			// Sleep until this batch is due.
			if due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
		}
		for j := range wb {
			wb[j] = loadgen.Packet{Payload: msgs[next]}
			next = (next + 1) % len(msgs)
		}
		n, err := tr.Send(wb)
		if err != nil {
			time.Sleep(50 * time.Microsecond) // socket buffer full
		}
		sent += int64(n)
	}
	time.Sleep(500 * time.Millisecond) // late answers
	close(stop)
	<-done
	return sent, ans.Load(), bad.Load()
}

// readUntil reads tr in batches, each datagram given to fn, until stop is
// closed; the channel it returns is closed once it has stopped. A receive
// error ends it, or, with retry, is waited out.
func readUntil(tr loadgen.Transport, stop <-chan struct{}, wait time.Duration, retry bool, fn func([]byte)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		rb := make([]loadgen.Received, 64)
		for i := range rb {
			rb[i].Buf = make([]byte, 1500)
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := tr.Recv(rb, wait)
			if err != nil {
				if !retry {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			for _, m := range rb[:n] {
				fn(m.Buf[:m.N])
			}
		}
	}()
	return done
}

// findRate finds the highest offered rate at which try loses at most
// maxLoss: it doubles from start until a step fails, then bisects. It
// returns the best step's answered rate and loss.
func findRate(ctx context.Context, start int, maxLoss float64, bisect int, try func(rate int) (answered, loss float64)) (best, bestLoss float64, at int) {
	lo, hi := 0, 0
	for rate := start; ctx.Err() == nil; rate *= 2 {
		a, l := try(rate)
		if l > maxLoss {
			hi = rate
			break
		}
		lo, best, bestLoss, at = rate, a, l, rate
		if rate > 4_000_000 {
			return
		}
	}
	for range bisect {
		if hi == 0 || ctx.Err() != nil {
			break
		}
		mid := (lo + hi) / 2
		a, l := try(mid)
		if l > maxLoss {
			hi = mid
		} else {
			lo, best, bestLoss, at = mid, a, l, mid
		}
	}
	return
}
