package main

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/xdhcp/xdhcp/slowpath/store"
)

// heldLeases are the active leases a start held to their promise horizons
// (holdReason), until they are stored: while they are not, this run's
// stop is not clean, so that the next start holds them again.
type heldLeases struct {
	pending atomic.Bool
}

// store writes the held leases with commit (slowpath.LoadHoldingGrants's).
// A failure is logged, not returned: the records stay extended in memory
// and reach the disk with their next change, and a restart holds them
// again. Not a reason to stop serving.
func (h *heldLeases) store(ctx context.Context, log *slog.Logger, commit func(context.Context) error) {
	if err := commit(ctx); err != nil {
		if ctx.Err() == nil {
			log.Error("storing leases held to their horizons", "err", err)
		}
		return
	}
	h.pending.Store(false)
	log.Info("stored the leases held to their horizons")
}

// markStopped records a clean stop for the next start (store.MarkStopped)
// once the store has drained, unless leases held at start are not all
// stored. fastOn is whether this run had the fast path on.
func markStopped(log *slog.Logger, st *store.Store, fastOn bool, h *heldLeases) {
	if h.pending.Load() {
		log.Warn("stop not marked clean: the leases held to their horizons at start are not all stored; the next start holds them again")
		return
	}
	clean, err := st.MarkStopped(fastOn)
	switch {
	case err != nil:
		log.Error("stop not marked clean; the next start holds active leases to their horizons", "err", err)
	case !clean:
		log.Warn("stop not marked clean: a lease commit failed in this run; the next start holds active leases to their horizons")
	default:
		log.Info("stopped cleanly: every change is on disk")
	}
}
