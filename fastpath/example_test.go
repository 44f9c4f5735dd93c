package fastpath_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Publishable says whether a lease fits an entry of the XDP lease map;
// one that does not (here, a client identifier longer than MaxClientID) is
// left to the slow path, which answers its renewals.
func ExamplePublishable() {
	now := time.Unix(1_800_000_000, 0)
	l := fastpath.Lease{
		IP: netip.MustParseAddr("10.77.0.100"), ServerID: netip.MustParseAddr("10.77.0.1"),
		HWType: 1, HWAddr: []byte{2, 0, 0, 0, 1, 1},
		ClientID: []byte{1, 2, 0, 0, 0, 1, 1},
		Expiry:   now.Add(time.Hour), Horizon: now.Add(4 * time.Hour),
		LeaseTime: 3600, T1: 1800, T2: 3150, Serve: true,
		Template: dhcpwire.AppendOption(nil, dhcpwire.OptSubnetMask, []byte{255, 255, 255, 0}),
	}
	fmt.Println("fits:", fastpath.Publishable(&l))
	l.ClientID = make([]byte, fastpath.MaxClientID+1)
	fmt.Println("with a", len(l.ClientID), "byte client-id:", fastpath.Publishable(&l))
	// Output:
	// fits: true
	// with a 33 byte client-id: false
}

// A relayed lease's entry keeps a fingerprint of its option 82 body under
// the map's secret key (Maps.FingerprintKey); a renewal through the relay
// carrying another body is passed up to the slow path, which stores the
// new one. relay_fp in bpf/xdp_dhcp.c computes the same values
// (TestRelayInfoFingerprintAgrees runs both); they are pinned here for a
// fixed key because entries in a pinned map outlive an upgrade, so a
// changed hash would pass every relayed renewal up once.
func ExampleRelayInfoFingerprint() {
	circuit := func(id string) []byte {
		return dhcpwire.AppendOption(nil, dhcpwire.SubOptCircuitID, []byte(id))
	}
	const key = 0 // the map's is random
	a, b := fastpath.RelayInfoFingerprint(key, circuit("olt-7/port-1")), fastpath.RelayInfoFingerprint(key, circuit("olt-7/port-2"))
	fmt.Printf("%#016x\n%#016x\n", a, b)
	fmt.Println("same body, same fingerprint:", a == fastpath.RelayInfoFingerprint(key, circuit("olt-7/port-1")))
	fmt.Println("another key, another fingerprint:", a != fastpath.RelayInfoFingerprint(0x5eed, circuit("olt-7/port-1")))
	fmt.Println("no option 82:", fastpath.RelayInfoFingerprint(key, nil))
	// Output:
	// 0x159029a7b4047c75
	// 0x14e9c2a7b57d9775
	// same body, same fingerprint: true
	// another key, another fingerprint: true
	// no option 82: 0
}
