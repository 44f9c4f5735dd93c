package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestDrainingPoolsAndForceRenew: a pool written {range: A-B, drain: true}
// beside plain entries; the forcerenew section's defaults and values; a
// warning (not an error) for unauthenticated FORCERENEW.
func TestDrainingPoolsAndForceRenew(t *testing.T) {
	c, err := Parse("x.yaml", []byte(`server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
subnets:
  - subnet: 10.77.0.0/24
    pools:
      - {range: 10.77.0.100-10.77.0.149, drain: true}
      - 10.77.0.150-10.77.0.199
      - range: 10.77.0.64/28
  - subnet: 10.78.0.0/24
    pools: [10.78.0.10-10.78.0.20]
    forcerenew: {allow-unauthenticated: true, retransmit-start: 500ms, retransmit-count: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Subnets[0].Pools
	if len(p) != 3 || !p[0].Drain || p[1].Drain || p[2].Drain || p[0].Start != netip.MustParseAddr("10.77.0.100") || p[2].End != netip.MustParseAddr("10.77.0.78") {
		t.Fatalf("pools %+v", p)
	}
	if f := c.Subnets[0].ForceRenew; f.AllowUnauthenticated || f.RetransmitStart != 2*time.Second || f.RetransmitCount != 8 {
		t.Fatalf("forcerenew defaults %+v", f)
	}
	if f := c.Subnets[1].ForceRenew; !f.AllowUnauthenticated || f.RetransmitStart != 500*time.Millisecond || f.RetransmitCount != 3 {
		t.Fatalf("forcerenew %+v", f)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], "x.yaml:12: subnets[1].forcerenew.allow-unauthenticated: ") {
		t.Fatalf("warnings %q", w)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"    pools:\n      - {range: 10.77.0.1-10.77.0.9, drian: true}\n", `x.yaml:7: subnets[0].pools[0].drian: unknown key (did you mean "drain"?)`},
		{"    pools:\n      - {drain: true}\n", "x.yaml:7: subnets[0].pools[0]: a pool needs a range"},
		{"    pools:\n      - {range: 10.77.1.1-10.77.1.9, drain: true}\n", "x.yaml:7: subnets[0].pools[0].range: 10.77.1.1-10.77.1.9 is outside subnet"},
		{"    pools: [10.77.0.9-10.77.0.19]\n    forcerenew: {retransmit-count: 0}\n", "x.yaml:7: subnets[0].forcerenew.retransmit-count: 0 is outside 1..16"},
		{"    pools: [10.77.0.9-10.77.0.19]\n    forcerenew: {retransmit-start: soon}\n", `x.yaml:7: subnets[0].forcerenew.retransmit-start: "soon" is not a duration`},
	} {
		_, err := Parse("x.yaml", []byte("server:\n  interfaces: [veth-srv]\n  state-dir: /s\nsubnets:\n  - subnet: 10.77.0.0/24\n"+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
