package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestCrashHoldsLeasesToTheirHorizon: with the fast path off, a renewal is
// ACKed on its promise horizon (server.renewal-ack's default), before its
// record is written. A kill -9 may lose that record, so the start after
// it holds every active lease to its horizon; a SIGTERM writes every
// record and marks the stop clean, and the start after it holds none.
func TestCrashHoldsLeasesToTheirHorizon(t *testing.T) {
	l, r := relayLab(t)
	rc := newRelayConn(t, r)
	hw := net.HardwareAddr{2, 0, 0, 0, 0x0e, 1}
	ip := rc.dora(t, hw)
	onHorizon := l.metricOrZero("xdhcp_slowpath_acks_on_horizon_total")
	renewed := time.Now()
	xid := rc.renew(t, hw, ip)
	if m, ok := rc.reply(xid, 3*time.Second); !ok || m.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: %v, answered %v", m, ok)
	}
	if got := l.metricOrZero("xdhcp_slowpath_acks_on_horizon_total") - onHorizon; got != 1 {
		t.Fatalf("%v renewals ACKed on their horizon, want 1", got)
	}

	l.daemon.Signal(sigKILL)
	l.daemon.Wait()
	l.start()
	if out := l.daemon.Output(); !strings.Contains(out, "held until their promise horizon") || !strings.Contains(out, "did not stop cleanly") {
		t.Fatalf("the start after kill -9 did not hold the leases to their horizons:\n%s", out)
	}
	li, ok := l.leaseFor(hw.String())
	exp, err := time.Parse(time.RFC3339, li.Expires)
	// The horizon is kept 4 lease times (4 h) ahead; at least half of it
	// is left.
	if !ok || li.State != "active" || err != nil || exp.Before(renewed.Add(2*time.Hour)) {
		t.Fatalf("after kill -9: %+v (%v), want active and held to its horizon, 2 h or more past %v", li, err, renewed)
	}

	waitOutputCount(t, l.daemon, "stored the leases held to their horizons", 1, 10*time.Second)
	stopped := l.daemon
	stopped.Stop()
	if !strings.Contains(stopped.Output(), "stopped cleanly") {
		t.Fatalf("SIGTERM did not mark the stop clean:\n%s", stopped.Output())
	}
	l.start()
	if out := l.daemon.Output(); strings.Contains(out, "held until their promise horizon") {
		t.Fatalf("the start after a clean stop held leases:\n%s", out)
	}
	if li2, ok := l.leaseFor(hw.String()); !ok || li2.Expires != li.Expires {
		t.Fatalf("after the clean restart: %+v, want %+v", li2, li)
	}
}
