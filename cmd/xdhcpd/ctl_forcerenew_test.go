package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/internal/control"
)

// TestSelectorFrom: the daemon checks the control socket's arguments
// itself (any client may send them), so each malformed selector is an
// error naming the field.
func TestSelectorFrom(t *testing.T) {
	for _, c := range []struct {
		args control.ForceRenewArgs
		want string // the selector as the slow path prints it, or the error
		ok   bool
	}{
		{control.ForceRenewArgs{IP: "10.77.0.100"}, "ip 10.77.0.100", true},
		{control.ForceRenewArgs{MAC: "02:00:00:00:16:01"}, "mac 02:00:00:00:16:01", true},
		{control.ForceRenewArgs{ClientID: "ff:00:00:16:01"}, "client-id ff00001601", true},
		{control.ForceRenewArgs{Subnet: "10.77.0.0/24"}, "subnet 10.77.0.0/24", true},
		{control.ForceRenewArgs{Pool: "10.77.0.100-10.77.0.149"}, "pool 10.77.0.100-10.77.0.149", true},
		{control.ForceRenewArgs{}, "give exactly one of ip, mac, client-id, subnet, pool (got 0: )", false},
		{control.ForceRenewArgs{IP: "10.77.0.100", Pool: "10.77.0.100-10.77.0.149"}, "(got 2: ip, pool)", false},
		{control.ForceRenewArgs{IP: "::1"}, `ip "::1" is not an IPv4 address`, false},
		{control.ForceRenewArgs{MAC: "nope"}, `mac "nope"`, false},
		{control.ForceRenewArgs{ClientID: "01"}, `client-id "01" is not 2 to 255 bytes of hex`, false},
		{control.ForceRenewArgs{Subnet: "10.77.0.1/24"}, `subnet "10.77.0.1/24" is not an IPv4 prefix without host bits`, false},
		{control.ForceRenewArgs{Pool: "10.77.0.149-10.77.0.100"}, `pool "10.77.0.149-10.77.0.100" is not an IPv4 range A-B`, false},
		{control.ForceRenewArgs{Pool: "10.77.0.100"}, `is not an IPv4 range`, false},
	} {
		sel, err := selectorFrom(c.args)
		switch {
		case c.ok && (err != nil || sel.String() != c.want):
			t.Errorf("selectorFrom(%+v) = %q, %v; want %q", c.args, sel.String(), err, c.want)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("selectorFrom(%+v): error %v, want one containing %q", c.args, err, c.want)
		}
	}
	if sel, _ := selectorFrom(control.ForceRenewArgs{Pool: "10.77.0.100-10.77.0.149"}); sel.Pool != [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.149")} {
		t.Errorf("pool read as %v", sel.Pool)
	}
}

// TestForceRenewArgsStrict: a misspelt selector is refused, not taken as
// no selector.
func TestForceRenewArgsStrict(t *testing.T) {
	var a control.ForceRenewArgs
	if err := strictJSON(json.RawMessage(`{"pool":"10.77.0.100-10.77.0.149","mvoe":true}`), &a); err == nil || !strings.Contains(err.Error(), "mvoe") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	if err := strictJSON(json.RawMessage(`{"ip":"10.77.0.100","move":true,"rate":2.5}`), &a); err != nil || a.IP != "10.77.0.100" || !a.Move || a.Rate != 2.5 {
		t.Fatalf("good arguments: %+v %v", a, err)
	}
}
