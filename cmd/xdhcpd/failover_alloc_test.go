package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestFailoverIndependentPoolWithReservation: a pair whose pool is split
// by configuration (failover-allocation: independent) and a reservation,
// with real udhcpc clients. In NORMAL each server gives the clients of its
// hash bucket addresses from its own half (the primary the lower, the
// secondary the upper) and the reserved client its address; with the
// primary stopped, the secondary, still COMMUNICATIONS-INTERRUPTED (no
// partner-down), goes on giving new clients of either bucket addresses
// from its half, and the reserved client its address.
func TestFailoverIndependentPoolWithReservation(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "udhcpc", "ip", "curl")
	const reservedMAC, reservedIP = "02:00:00:06:00:42", "10.79.0.50"
	tmpl := strings.Replace(foXdhcpdConfig, "    pools: [10.79.0.100-10.79.0.139]\n",
		"    pools: [{range: 10.79.0.100-10.79.0.139, failover-allocation: independent}]\n"+
			"    reservations: [{hw-address: "+reservedMAC+", ip: "+reservedIP+"}]\n", 1)
	if tmpl == foXdhcpdConfig {
		t.Fatal("foXdhcpdConfig no longer has the pool line this test replaces")
	}
	f := newFoNet(t)
	p := f.xdhcpdPeerFrom(tmpl, "primary", "10.79.0.1", "10.79.0.2", foMCLT*time.Second)
	s := f.xdhcpdPeerFrom(tmpl, "secondary", "10.79.0.2", "10.79.0.1", foMCLT*time.Second)
	waitFoState(p, "normal", "normal", 30*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)

	half := func(ip string) string {
		a := netip.MustParseAddr(ip)
		switch {
		case a.Compare(netip.MustParseAddr("10.79.0.100")) >= 0 && a.Compare(netip.MustParseAddr("10.79.0.119")) <= 0:
			return "lower"
		case a.Compare(netip.MustParseAddr("10.79.0.120")) >= 0 && a.Compare(netip.MustParseAddr("10.79.0.139")) <= 0:
			return "upper"
		}
		return "outside the pool"
	}
	for _, c := range []struct {
		mac          string
		server, half string
	}{
		{clientsByBucket(true, 1, 6)[0], "10.79.0.1", "lower"},
		{clientsByBucket(false, 1, 7)[0], "10.79.0.2", "upper"},
	} {
		ip, server, _ := f.client(c.mac).dora(t)
		if server != c.server || half(ip) != c.half {
			t.Errorf("%s got %s (%s) from %s, want the %s half from %s", c.mac, ip, half(ip), server, c.half, c.server)
		}
	}
	reserved := f.client(reservedMAC)
	if ip, server, _ := reserved.dora(t); ip != reservedIP {
		t.Errorf("the reserved client got %s from %s, want %s", ip, server, reservedIP)
	}

	p.daemon.Stop()
	waitFoState(s, "communications-interrupted", "", 15*time.Second)
	for _, mac := range []string{clientsByBucket(true, 1, 8)[0], clientsByBucket(false, 1, 9)[0]} {
		ip, server, _ := f.client(mac).dora(t)
		if server != "10.79.0.2" || half(ip) != "upper" {
			t.Errorf("with the primary down, %s got %s (%s) from %s, want the upper half from the secondary", mac, ip, half(ip), server)
		}
	}
	if ip, server, _ := reserved.dora(t); ip != reservedIP || server != "10.79.0.2" {
		t.Errorf("with the primary down, the reserved client got %s from %s, want %s from the secondary", ip, server, reservedIP)
	}
}
