package main

import (
	"log/slog"
	"net/netip"

	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func logLevel(c *config.Config) slog.Level { return c.Server.LogLevel }

// settingsFrom renders c into the slow path's settings; running is the
// configuration the daemon started with (c itself at start), which the
// restart-only settings come from.
func settingsFrom(c, running *config.Config) slowpath.Settings {
	s := slowpath.Settings{
		Authoritative: c.Server.Authoritative,
		OfferHold:     c.Server.OfferHold,
		DeclineHold:   c.Server.DeclineHold,
		// Offer bounds apply on reload, like the hold times.
		OfferPoolShare:  c.Server.OfferPoolShare,
		OfferPerCircuit: c.Server.OfferPerCircuit,
		MaxWait:         c.Server.MaxWait, QueueTarget: c.Server.QueueTarget, QueueInterval: c.Server.QueueInterval,
		DiscoverHoldoff: c.Server.DiscoverHoldoff,
		RequestHoldoff:  c.Server.RequestHoldoff,
	}
	// Horizons are kept for the fast path's grants, and for the slow
	// path's renewals ACKed on them (server.renewal-ack). Both settings
	// take effect at a restart: from the configuration the daemon
	// started with, on a reload too.
	s.AckOnHorizon = running.Server.RenewalAck == config.RenewalAckHorizon
	if running.Fastpath.Enabled || s.AckOnHorizon {
		s.HorizonAhead = c.Fastpath.Horizon
	}
	s.Leasequery = slowpath.Leasequery{Enabled: c.Leasequery.Enabled, Requesters: c.Leasequery.Requesters}
	return s
}

// subnetsFrom renders the configuration into the server's runtime view.
func subnetsFrom(c *config.Config) []*slowpath.Subnet {
	var out []*slowpath.Subnet
	for _, cs := range c.Subnets {
		s := &slowpath.Subnet{
			Prefix: cs.Prefix, LeaseTime: cs.LeaseTime, T1: cs.T1, T2: cs.T2,
			ServerID: cs.ServerID, Relays: cs.Relays,
			Reserved:   map[string]slowpath.Reservation{},
			ReservedIP: map[netip.Addr]slowpath.Reservation{},
		}
		for _, o := range cs.Options {
			s.Options = dhcpwire.AppendOption(s.Options, o.Code, o.Data)
		}
		for _, p := range cs.Pools {
			s.Pools = append(s.Pools, [2]netip.Addr{p.Start, p.End})
			if p.Drain {
				s.Drain = append(s.Drain, [2]netip.Addr{p.Start, p.End})
			}
			if p.Independent && c.Failover.Enabled() {
				s.Independent = append(s.Independent, [2]netip.Addr{p.Start, p.End})
			}
		}
		s.ForceRenew = slowpath.ForceRenewSettings{
			AllowUnauthenticated: cs.ForceRenew.AllowUnauthenticated,
			RetransmitStart:      cs.ForceRenew.RetransmitStart, RetransmitCount: cs.ForceRenew.RetransmitCount,
		}
		for _, r := range cs.Reservations {
			key := lease.ClientKey(r.ClientID, 1, r.HWAddr)
			res := slowpath.Reservation{IP: r.IP, ClientKey: key, Hostname: r.Hostname}
			s.Reserved[key] = res
			s.ReservedIP[r.IP] = res
		}
		out = append(out, s)
	}
	return out
}
