package slowpath

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLimiter lets at most one message per interval through for each kind
// of event and counts the ones it holds back, so that a flood of refused
// queries from a misconfigured requester cannot flood the log; the drop
// counters still count every one. Kinds are a fixed set of names, so the
// map stays small.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, kinds: map[string]*limitState{}}
}

// allow reports whether a message of kind may be logged at now and, if
// so, how many of that kind were held back since the last one logged.
func (r *logLimiter) allow(kind string, now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.kinds[kind]
	if st == nil {
		st = &limitState{}
		r.kinds[kind] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < r.every && now.Sub(st.last) >= 0 {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// warnLimited logs a warning through the server's limiter; a message that
// follows held-back ones says how many.
func (s *Server) warnLimited(kind, msg string, args ...any) {
	s.logLimited(slog.LevelWarn, kind, msg, args...)
}

// logLimited logs at level through the server's limiter. Every log line a
// client's packet can cause at INFO or above goes through it (ARCHITECTURE.md 7:
// logging under load is rate-limited, with counts).
func (s *Server) logLimited(level slog.Level, kind, msg string, args ...any) {
	ok, n := s.logLimit.allow(kind, s.now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	s.log.Log(context.Background(), level, msg, args...)
}
