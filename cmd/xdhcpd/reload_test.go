package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/internal/config"
)

func TestRestartOnlySettingsAreNamedOnReload(t *testing.T) {
	const base = `server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
fastpath:
  enabled: true
leasequery:
  enabled: true
  requesters: [10.78.0.2]
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
`
	parse := func(y string) *config.Config {
		t.Helper()
		c, err := config.Parse("x.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse(base)
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"pool change applies live", "10.77.0.199]", "10.77.0.150]", nil},
		{"requesters apply live", "[10.78.0.2]", "[10.78.0.3]", nil},
		{"state dir", "/var/lib/xdhcp", "/srv/xdhcp", []string{"server.state-dir"}},
		{"fast path off", "fastpath:\n  enabled: true", "fastpath:\n  enabled: false", []string{"fastpath.enabled"}},
		{"new interface under XDP", "[veth-srv]", "[veth-srv, veth-two]", []string{"server.interfaces (XDP attachment)"}},
		{"bulk listener", "  requesters: [10.78.0.2]\n", "  requesters: [10.78.0.2]\n  tcp-listen: \":6767\"\n", []string{"leasequery.tcp-listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(base, tc.from, tc.to, 1)
			if y == base {
				t.Fatal("test edit did not apply")
			}
			if got := config.RestartOnly(old, parse(y)); !slices.Equal(got, tc.want) {
				t.Fatalf("RestartOnly = %q, want %q", got, tc.want)
			}
		})
	}
}
