package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/failover/hba"
)

const failoverBase = `server:
  interfaces: [veth-srv]
  state-dir: /var/lib/xdhcp
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
`

func TestFailoverSection(t *testing.T) {
	c, err := Parse("x.yaml", []byte(failoverBase+`failover:
  name: edge-pair
  role: primary
  peer: 10.0.0.2
  listen: 10.0.0.1:6470
  mclt: 30m
  split: 64
  auto-partner-down: 10m
  tls: {cert: /etc/xdhcp/fo.pem, key: /etc/xdhcp/fo-key.pem, ca: /etc/xdhcp/ca.pem}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Failover
	if !f.Enabled() || f.Name != "edge-pair" || f.Role != "primary" || f.Peer != netip.MustParseAddrPort("10.0.0.2:647") ||
		f.Listen != netip.MustParseAddrPort("10.0.0.1:6470") || f.MCLT != 30*time.Minute || f.HBA != hba.Split(64) ||
		f.MaxResponseDelay != 20*time.Second || f.MaxUnackedUpdates != 100 || f.LoadBalanceMaxSecs != 3 || f.AutoPartnerDown != 10*time.Minute ||
		f.MaxSkew != time.Minute || f.TLS == nil || *f.TLS != (FailoverTLS{Cert: "/etc/xdhcp/fo.pem", Key: "/etc/xdhcp/fo-key.pem", CA: "/etc/xdhcp/ca.pem"}) {
		t.Fatalf("%+v", f)
	}
	if len(c.Warnings()) != 0 {
		t.Fatalf("warnings %q", c.Warnings())
	}
	c, err = Parse("x.yaml", []byte(failoverBase))
	if err != nil || c.Failover.Enabled() {
		t.Fatalf("no section: %+v %v", c.Failover, err)
	}
	// A secondary's mclt and split are the primary's to give; and
	// auto-partner-down off is said.
	c, err = Parse("x.yaml", []byte(failoverBase+"failover: {name: p, role: secondary, peer: 10.0.0.1, listen: 10.0.0.2, mclt: 1h, split: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"mclt", "split", "auto-partner-down", "plain TCP"} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning about %s in %q", want, w)
		}
	}
	// dhcpd's knobs that bound nothing here are said to, when set.
	c, err = Parse("x.yaml", []byte(failoverBase+"failover: {name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, max-lease-ownership: 20, max-balance: 2h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	w = strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"max-lease-ownership: has no effect", "max-balance: bounds nothing"} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning %q in %q", want, w)
		}
	}
}

// TestIndependentPools: failover-allocation per pool; a value other than
// proportional or independent is an error, and independent without a
// failover section is warned about.
func TestIndependentPools(t *testing.T) {
	yaml := func(mode string) string {
		return strings.Replace(failoverBase, "pools: [10.77.0.100-10.77.0.199]", "pools: [{range: 10.77.0.100-10.77.0.199, failover-allocation: "+mode+"}, 10.77.0.200-10.77.0.209]", 1)
	}
	c, err := Parse("x.yaml", []byte(yaml("independent")+"failover: {name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, auto-partner-down: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := c.Subnets[0].Pools; !ps[0].Independent || ps[1].Independent {
		t.Fatalf("pools %+v", ps)
	}
	if _, err := Parse("x.yaml", []byte(yaml("halves"))); err == nil || !strings.Contains(err.Error(), "subnets[0].pools[0].failover-allocation") {
		t.Fatalf("a bad mode: %v", err)
	}
	c, err = Parse("x.yaml", []byte(yaml("independent")))
	if err != nil || !strings.Contains(strings.Join(c.Warnings(), "\n"), "no failover section") {
		t.Fatalf("independent without failover: %v %q", err, c.Warnings())
	}
}

func TestFailoverSectionErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"{role: primary, peer: 10.0.0.2, listen: 10.0.0.1}", "failover.name"},
		{"{name: p, role: leader, peer: 10.0.0.2, listen: 10.0.0.1}", "failover.role"},
		{"{name: p, role: primary, peer: nowhere, listen: 10.0.0.1}", "failover.peer"},
		{"{name: p, role: primary, peer: 10.0.0.1, listen: 10.0.0.1}", "own listen address"},
		{"{name: p, role: primary, peer: 10.0.0.2}", "failover.listen"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, split: 10, hba: 'ff'}", "not both"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, split: 300}", "0..256"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, hba: 'ff:00'}", "32"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, mclt: 1s}", "failover.mclt"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, max-response-delay: 1s}", "max-response-delay"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, max-unacked-updates: 0}", "max-unacked-updates"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, min-balance: 2h, max-balance: 1h}", "max-balance"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, mlct: 1h}", "mlct"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, tls: {cert: a.pem, ca: c.pem}}", "failover.tls.key"},
		{"{name: p, role: primary, peer: 10.0.0.2, listen: 10.0.0.1, tls: {cert: a.pem, key: b.pem, ca: c.pem, crl: d.pem}}", "crl"},
	} {
		_, err := Parse("x.yaml", []byte(failoverBase+"failover: "+c.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.yaml, err, c.want)
		}
	}
}
