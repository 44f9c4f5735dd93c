package failover

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
)

// link is one TCP connection to the partner: a reader that hands decoded
// messages to the loop, and a writer draining a bounded queue so that the
// loop never blocks on a slow partner.
type link struct {
	c    net.Conn
	log  *slog.Logger
	out  chan []byte
	once sync.Once
	done chan struct{}
	// established: CONNECT and CONNECTACK have been exchanged.
	established bool
	now         func() time.Time
	// recvAt and sentAt are when the last message was read and queued
	// to send, as time since base (the link's start): durations, so
	// that they keep the monotonic clock's reading. As wall-clock times
	// a step of the system clock would delay the silence check by the
	// step (backwards) or drop a live link (forwards).
	base           time.Time
	recvAt, sentAt atomic.Int64
}

// outQueue bounds the messages waiting to be written; a partner that lets
// it fill is not reading, and its connection is dropped.
const outQueue = 4096

// newLink wraps c. now is the relationship's clock: the times a link
// keeps are compared with it (it may be offset from the system's).
func newLink(c net.Conn, log *slog.Logger, now func() time.Time) *link {
	return &link{c: c, log: log, out: make(chan []byte, outQueue), done: make(chan struct{}), now: now, base: now()}
}

func (l *link) lastRecv() time.Time { return l.base.Add(time.Duration(l.recvAt.Load())) }
func (l *link) lastSent() time.Time { return l.base.Add(time.Duration(l.sentAt.Load())) }

// since is now as a duration since the link's start, for recvAt and sentAt.
func (l *link) since() int64 { return int64(l.now().Sub(l.base)) }

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.c.Close()
	})
}

// finish closes l once what is queued has been written (a DISCONNECT
// or a refusal must reach the partner before the connection goes).
func (l *link) finish() {
	select {
	case l.out <- nil:
	default:
		l.close()
	}
}

// start runs the link's reader and writer under wg.
func (l *link) start(ctx context.Context, wg *sync.WaitGroup, events chan<- event) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.read(ctx, events)
	}()
	go func() {
		defer wg.Done()
		l.write()
	}()
}

func (l *link) read(ctx context.Context, events chan<- event) {
	br := bufio.NewReaderSize(l.c, 64<<10)
	buf := make([]byte, wire.MaxLen)
	// The link's end is always reported while the loop runs, also when
	// the link was closed here: the writer closes it when a write fails
	// (the partner died and its kernel reset the connection), and then
	// done and the read error are ready together. A select that could
	// take done would sometimes swallow the end, and the loop would keep
	// a dead link as the partner's until max-response-delay.
	end := func(err error) {
		select {
		case events <- event{l: l, err: err}:
		case <-ctx.Done():
		}
	}
	for {
		b, err := wire.ReadMessage(br, buf)
		if err != nil {
			end(err)
			return
		}
		l.recvAt.Store(l.since())
		m, err := wire.Decode(b)
		if errors.Is(err, wire.ErrIgnore) {
			continue // draft-12 §6.1: types 128-255 are ignored
		}
		if err != nil {
			end(err)
			return
		}
		// A message read after the link was closed here is not applied:
		// the loop has given the link up, or will on its end.
		select {
		case events <- event{l: l, msg: m}:
		case <-l.done:
			end(net.ErrClosed)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (l *link) write() {
	for {
		select {
		case b := <-l.out:
			if b == nil {
				l.close()
				return
			}
			l.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := l.c.Write(b); err != nil {
				l.log.Debug("failover: writing to the partner", "err", err)
				l.close()
				return
			}
		case <-l.done:
			return
		}
	}
}

// sendOn queues m on l with the next xid unless it has one (replies carry
// the request's) and this server's time.
func (r *Relationship) sendOn(l *link, m *wire.Message) {
	if l == nil {
		return
	}
	if m.XID == 0 {
		r.xid++
		if r.xid == 0 {
			r.xid++
		}
		m.XID = r.xid
	}
	l.queue(m, r.now())
}

// queue encodes m, stamped with now, for the writer; it touches nothing
// of the relationship's, so a store callback may answer through it.
func (l *link) queue(m *wire.Message, now time.Time) {
	m.Time = wire.Seconds(now)
	b, err := m.Marshal()
	if err != nil {
		l.log.Error("failover: encoding a message", "type", m.Type, "err", err)
		return
	}
	select {
	case l.out <- b:
		l.sentAt.Store(l.since())
	default:
		l.log.Warn("failover: the partner is not reading; dropping the connection")
		l.close()
	}
}

// sendLocked sends on the established connection, if any.
func (r *Relationship) sendLocked(m *wire.Message) {
	if r.link != nil && r.link.established {
		r.sendOn(r.link, m)
	}
}
