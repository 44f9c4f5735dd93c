package main

import (
	"context"
	"net/netip"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// failoverBindings is the lease table as the failover relationship sees
// it (failover.Bindings), over the slow path's server. It lives here
// because failover imports slowpath (the Partner interface's types), so
// slowpath cannot name failover's. srv is set once the server exists
// (before the relationship runs).
type failoverBindings struct{ srv *slowpath.Server }

var _ failover.Bindings = (*failoverBindings)(nil)

func (b *failoverBindings) Apply(ups []*lease.Lease, done func([]uint8, error)) {
	b.srv.ApplyPartnerAsync(ups, done)
}

func (b *failoverBindings) Acked(acks []failover.Ack) {
	pa := make([]slowpath.PartnerAck, len(acks))
	for i, a := range acks {
		pa[i] = slowpath.PartnerAck{Sent: a.Sent, Reject: a.Reject}
	}
	b.srv.PartnerAckedAsync(pa)
}

func (b *failoverBindings) Pending(fn func(*lease.Lease) bool) { b.srv.PartnerPending(fn) }

func (b *failoverBindings) Addrs() []netip.Addr { return b.srv.Addrs() }

func (b *failoverBindings) Records(ips []netip.Addr) []*lease.Lease { return b.srv.Records(ips) }

func (b *failoverBindings) PoolCounts() (free, backup int) { return b.srv.PoolCounts() }

func (b *failoverBindings) Rebalance(ctx context.Context, n int) (int, error) {
	return b.srv.Rebalance(ctx, n)
}

func (b *failoverBindings) StateChanged() { b.srv.PartnerStateChanged() }
