package slowpath

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestLogLimiter(t *testing.T) {
	r := newLogLimiter(time.Second)
	t0 := time.Unix(1_800_000_000, 0)
	type step struct {
		kind       string
		at         time.Duration
		ok         bool
		suppressed int
	}
	for i, s := range []step{
		{"a", 0, true, 0},
		{"a", 100 * time.Millisecond, false, 0},
		{"a", 900 * time.Millisecond, false, 0},
		{"b", 900 * time.Millisecond, true, 0}, // kinds are limited apart
		{"a", time.Second, true, 2},
		{"a", 1500 * time.Millisecond, false, 0},
		{"a", 5 * time.Second, true, 1},
		{"a", 6 * time.Second, true, 0},
		{"a", 3 * time.Second, true, 0}, // the clock stepped back: not held forever
	} {
		ok, n := r.allow(s.kind, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d (%s at %v): allowed %v with %d suppressed, want %v with %d", i, s.kind, s.at, ok, n, s.ok, s.suppressed)
		}
	}
}

// recorder keeps the records logged through it.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) warnings() (n int, suppressed []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level != slog.LevelWarn {
			continue
		}
		n++
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				suppressed = append(suppressed, a.Value.Int64())
			}
			return true
		})
	}
	return n, suppressed
}

func TestRefusedLeasequeriesDoNotFloodTheLog(t *testing.T) {
	f := lqFixture(t)
	rec := &recorder{}
	f.srv.log = slog.New(rec)
	stranger := netip.MustParseAddr("10.78.0.99")
	for range 50 {
		f.query(stranger, dhcpv4.WithClientIP([]byte{10, 77, 0, 100}))
	}
	if n, _ := rec.warnings(); n != 1 {
		t.Fatalf("%d warnings for 50 refused queries in the same second, want 1", n)
	}
	f.now = f.now.Add(time.Second)
	f.query(stranger, dhcpv4.WithClientIP([]byte{10, 77, 0, 100}))
	if n, sup := rec.warnings(); n != 2 || len(sup) != 1 || sup[0] != 49 {
		t.Fatalf("a second later: %d warnings, suppressed counts %v; want 2 and [49]", n, sup)
	}
}
