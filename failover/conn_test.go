package failover

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// TestLinkReportsItsEndWhenClosedHere: a link closed on this side (its
// writer failed on a connection the partner's death reset, or the partner
// stopped reading) must still tell the loop that it ended. The reader's
// error and the link's done channel become ready together; an end that
// was dropped left the relationship in NORMAL on a dead connection until
// max-response-delay (the 19 s partner-down delays of two bench runs).
func TestLinkReportsItsEndWhenClosedHere(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range 200 {
		here, there := net.Pipe()
		l := newLink(here, log, time.Now)
		events := make(chan event, 1)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		l.start(ctx, &wg, events)
		// The loop is busy (it is not receiving) when the link closes.
		l.close()
		time.Sleep(time.Millisecond)
		select {
		case ev := <-events:
			if ev.l != l || ev.err == nil {
				t.Fatalf("run %d: event %+v, want the link's end", i, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: the link closed here never reported its end", i)
		}
		cancel()
		wg.Wait()
		there.Close()
	}
}
