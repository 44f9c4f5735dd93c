package status

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Entry is one log record the status page lists.
type Entry struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	// Attrs are the record's attributes as key=value pairs.
	Attrs string
}

// Recent is a slog.Handler that passes every record on to the handler it
// wraps and keeps the last few at WARN and above, for the status page: a
// box without a log collector still shows what went wrong lately.
type Recent struct {
	next  slog.Handler
	ring  *ring
	attrs string // attributes and groups added by WithAttrs/WithGroup
}

type ring struct {
	mu      sync.Mutex
	entries []Entry
	next    int
	full    bool
}

// NewRecent wraps next, keeping the last n warnings and errors.
func NewRecent(next slog.Handler, n int) *Recent {
	return &Recent{next: next, ring: &ring{entries: make([]Entry, max(n, 1))}}
}

// Enabled implements slog.Handler.
func (h *Recent) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler: it keeps a WARN or worse record, then
// passes it on.
func (h *Recent) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(h.attrs)
		r.Attrs(func(a slog.Attr) bool {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(a.String())
			return true
		})
		h.ring.add(Entry{Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: b.String()})
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Recent) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.String())
	}
	return &Recent{next: h.next.WithAttrs(as), ring: h.ring, attrs: b.String()}
}

// WithGroup implements slog.Handler.
func (h *Recent) WithGroup(name string) slog.Handler {
	return &Recent{next: h.next.WithGroup(name), ring: h.ring, attrs: h.attrs}
}

// Last returns the records kept, newest first.
func (h *Recent) Last() []Entry {
	return h.ring.last()
}

func (r *ring) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.next == 0 {
		r.full = true
	}
}

func (r *ring) last() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.entries)
	}
	out := make([]Entry, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.entries[(r.next-i+len(r.entries))%len(r.entries)])
	}
	return out
}
