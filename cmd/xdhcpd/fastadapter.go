package main

import (
	"errors"
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
	var gone []netip.Addr
	for i := range ls {
		if !fastpath.Publishable(&ls[i]) {
			// The slow path answers it, so no entry may be left
			// answering from what the lease was before (a client-id
			// or option block that grew past an entry's room, a new
			// client for the address).
			if ls[i].IP.Is4() {
				gone = append(gone, ls[i].IP)
			}
			continue
		}
		out = append(out, ls[i])
	}
	err := a.m.Publish(out)
	if len(gone) > 0 {
		err = errors.Join(err, a.m.Remove(gone))
	}
	return err
}

func (a fastAdapter) Clock() (time.Time, bool) { return a.m.Clock() }

func (a fastAdapter) Remove(ips []netip.Addr) error { return a.m.Remove(ips) }

func (a fastAdapter) Granted(ip netip.Addr) (time.Time, bool) { return a.m.Granted(ip) }
