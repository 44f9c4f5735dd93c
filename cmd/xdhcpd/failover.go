package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// newFailover builds the configured relationship. Its Bindings is fb, whose
// server is set once the slow path exists: the slow path takes the
// relationship as its Partner, so one of the two is made first.
func newFailover(cfg *config.Config, st *store.Store, fb *failoverBindings, log *slog.Logger, clock func() time.Time) (*failover.Relationship, *failover.Metrics, error) {
	f := cfg.Failover
	role := failover.Primary
	if f.Role == "secondary" {
		role = failover.Secondary
	}
	m := failover.NewMetrics()
	tlsc, err := failoverTLS(&f)
	if err != nil {
		return nil, nil, err
	}
	rel, err := failover.New(failover.Config{
		TLS:  tlsc,
		Name: f.Name, Role: role, Peer: f.Peer, Listen: f.Listen, MCLT: f.MCLT, HBA: f.HBA,
		MaxResponseDelay: f.MaxResponseDelay, MaxUnacked: f.MaxUnackedUpdates, LoadBalanceMaxSecs: uint16(f.LoadBalanceMaxSecs),
		AutoPartnerDown: f.AutoPartnerDown, MaxLeaseMisbalance: f.MaxLeaseMisbalance, MaxLeaseOwnership: f.MaxLeaseOwnership,
		MinBalance: f.MinBalance, MaxBalance: f.MaxBalance, MaxSkew: f.MaxSkew,
		Logger: log, Metrics: m, Bindings: fb, Meta: st, Now: clock,
	})
	if err != nil {
		return nil, nil, err
	}
	return rel, m, nil
}

// failoverTLS is the relationship's TLS, its files checked; nil for plain
// TCP.
func failoverTLS(f *config.Failover) (*failover.TLS, error) {
	if f.TLS == nil {
		return nil, nil
	}
	t := &failover.TLS{Cert: f.TLS.Cert, Key: f.TLS.Key, CA: f.TLS.CA, PeerName: f.TLS.PeerName}
	if err := t.Check(f.Peer.Addr()); err != nil {
		return nil, fmt.Errorf("failover.tls: %w", err)
	}
	return t, nil
}

// errNoFailover answers the failover commands of a daemon without a
// relationship.
var errNoFailover = errors.New("failover is not configured (no failover: section in the configuration)")

// failoverHandlers are the control socket's failover commands:
// "failover-status" answers failover.Status, "failover-partner-down" the
// status after the operator's partner-down.
func (d *daemon) failoverHandlers(h map[string]control.Handler) {
	h["failover-status"] = func(context.Context, json.RawMessage) (any, error) {
		if d.failover == nil {
			return nil, errNoFailover
		}
		return d.failover.Status(), nil
	}
	h["failover-partner-down"] = func(ctx context.Context, _ json.RawMessage) (any, error) {
		if d.failover == nil {
			return nil, errNoFailover
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := d.failover.PartnerDown(ctx); err != nil {
			return nil, fmt.Errorf("partner-down: %w", err)
		}
		return d.failover.Status(), nil
	}
}

// partnerOf is the slow path's Partner: nil without failover (a typed nil
// would look like a partner).
func partnerOf(rel *failover.Relationship) slowpath.Partner {
	if rel == nil {
		return nil
	}
	return rel
}
