package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

func (d *daemon) handlers() map[string]control.Handler {
	h := d.baseHandlers()
	d.failoverHandlers(h)
	return h
}

func (d *daemon) baseHandlers() map[string]control.Handler {
	return map[string]control.Handler{
		"leases": func(context.Context, json.RawMessage) (any, error) {
			var out []control.LeaseInfo
			d.srv.Each(func(l *lease.Lease) { out = append(out, d.info(l)) })
			sort.Slice(out, func(i, j int) bool {
				a, _ := netip.ParseAddr(out[i].IP)
				b, _ := netip.ParseAddr(out[j].IP)
				return a.Less(b)
			})
			return out, nil
		},
		"lease": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct{ Key string }
			if err := json.Unmarshal(raw, &args); err != nil || args.Key == "" {
				return nil, fmt.Errorf("lease needs an IP address, MAC address or client-id")
			}
			ls, err := d.find(args.Key)
			if err != nil {
				return nil, err
			}
			out := make([]control.LeaseInfo, 0, len(ls))
			for _, l := range ls {
				out = append(out, d.info(l))
			}
			return out, nil
		},
		"stats": func(context.Context, json.RawMessage) (any, error) {
			pools := map[string]map[string]int64{}
			for p, m := range d.srv.PoolStats() {
				pools[p.String()] = m
			}
			// Whether renewals outlive the daemon is asked here first
			// when they stopped after a restart.
			fast := map[string]any{"enabled": d.fast != nil}
			if d.fast != nil {
				p := d.fast.prog.Pins
				fast["pin-dir"], fast["pins-persistent"], fast["why"] = p.Dir, p.Persistent, p.Why
				if p.Via != "" {
					fast["via"] = p.Via
				}
			}
			return map[string]any{
				"uptime-seconds": int64(time.Since(d.started).Seconds()),
				"leases":         d.srv.LeaseCount(),
				"pools":          pools,
				"store":          d.store.Stats(),
				"fastpath":       fast,
			}, nil
		},
		"reload": func(context.Context, json.RawMessage) (any, error) {
			if err := d.reload(); err != nil {
				return nil, err
			}
			return "reloaded", nil
		},
		"forcerenew":        d.forceRenew,
		"forcerenew-status": d.forceRenewStatus,
		"forcerenew-stop":   d.forceRenewStop,
	}
}

// find looks a lease up by address, or every lease whose hardware address
// or client identifier is the given hex (colons optional).
func (d *daemon) find(key string) ([]*lease.Lease, error) {
	if ip, err := netip.ParseAddr(key); err == nil {
		if l := d.srv.Lookup(ip); l != nil {
			return []*lease.Lease{l}, nil
		}
		return nil, nil
	}
	b, err := hex.DecodeString(strings.NewReplacer(":", "", "-", "", ".", "").Replace(key))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q is not an IP address, MAC address or hex client-id", key)
	}
	return d.srv.Find(func(l *lease.Lease) bool {
		return bytes.Equal(l.HWAddr, b) || bytes.Equal(l.ClientID, b)
	}), nil
}

func (d *daemon) info(l *lease.Lease) control.LeaseInfo {
	li := control.LeaseInfo{
		IP: l.IP.String(), State: l.State.String(), Hostname: l.Hostname,
		Expires: rfc3339(l.Expiry), CLTT: rfc3339(l.CLTT), Start: rfc3339(l.Start), Horizon: rfc3339(l.Horizon),
	}
	if len(l.HWAddr) > 0 {
		li.HWAddress = net.HardwareAddr(l.HWAddr).String()
	}
	if len(l.ClientID) > 0 {
		li.ClientID = colonHex(l.ClientID)
	}
	if p := d.srv.SubnetOf(l.IP); p.IsValid() {
		li.Subnet = p.String()
	}
	if l.GIAddr.IsValid() {
		li.GIAddr = l.GIAddr.String()
	}
	if len(l.RelayInfo) > 0 {
		li.RelayInfo = colonHex(l.RelayInfo)
	}
	if len(l.VendorClass) > 0 {
		li.VendorClass = string(l.VendorClass)
	}
	return li
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func colonHex(b []byte) string {
	s := make([]string, len(b))
	for i, c := range b {
		s[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(s, ":")
}
