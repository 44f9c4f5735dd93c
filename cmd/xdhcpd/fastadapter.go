package main

import (
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/fastpath"
)

// fastAdapter lets the slow path drive the BPF maps (slowpath.FastPath).
// slowpath.FastLease and slowpath.Renewal are fastpath.Lease and
// fastpath.Renewal, so nothing is converted on the way.
type fastAdapter struct{ m *fastpath.Maps }

func (a fastAdapter) Publish(ls []fastpath.Lease) error {
	out := make([]fastpath.Lease, 0, len(ls))
	for i := range ls {
		if !fastpath.Publishable(&ls[i]) {
			continue // the slow path answers it
		}
		out = append(out, ls[i])
	}
	return a.m.Publish(out)
}

func (a fastAdapter) Remove(ips []netip.Addr) error { return a.m.Remove(ips) }

func (a fastAdapter) Granted(ip netip.Addr) (time.Time, bool) { return a.m.Granted(ip) }
