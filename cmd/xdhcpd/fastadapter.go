package main

import (
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/slowpath"
)

// fastAdapter lets the slow path drive the BPF maps (slowpath.FastPath).
type fastAdapter struct{ m *fastpath.Maps }

func (a fastAdapter) Publish(ls []slowpath.FastLease) error {
	out := make([]fastpath.Lease, 0, len(ls))
	for _, l := range ls {
		fl := fastpath.Lease(l)
		if !fastpath.Publishable(&fl) {
			continue // the slow path answers it
		}
		out = append(out, fl)
	}
	return a.m.Publish(out)
}

func (a fastAdapter) Remove(ips []netip.Addr) error { return a.m.Remove(ips) }

func (a fastAdapter) Granted(ip netip.Addr) (time.Time, bool) { return a.m.Granted(ip) }

func renewals(rs []fastpath.Renewal) []slowpath.Renewal {
	out := make([]slowpath.Renewal, len(rs))
	for i, r := range rs {
		out[i] = slowpath.Renewal(r)
	}
	return out
}
