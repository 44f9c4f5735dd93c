package failover

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/nettest"
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

// TestAcceptErrorsAreWaitedOut: an accept that fails for a while does not
// end the listener: the partner's next connection is taken. (It ended
// before without a word, and the partner's connections sat in the
// backlog for as long as the daemon ran.)
func TestAcceptErrorsAreWaitedOut(t *testing.T) {
	p := newPair(t)
	r, err := New(p.config(Primary, p.pDB))
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", p.pAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	ln := &nettest.FailingListener{Listener: tcp, N: 3}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan event, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.accept(ctx, ln, events)
	}()
	defer func() {
		cancel()
		tcp.Close()
		<-done
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: p.sAddr.Addr().AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", p.pAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case ev := <-events:
		if ev.conn == nil {
			t.Fatalf("event %+v, want the partner's connection", ev)
		}
		ev.conn.Close()
	case <-done:
		t.Fatal("the accept loop ended on a passing error")
	case <-time.After(5 * time.Second):
		t.Fatal("the partner's connection was not accepted")
	}
}
