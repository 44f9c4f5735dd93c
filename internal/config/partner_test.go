package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const partnerHere = failoverBase + `failover:
  name: edge-pair
  role: primary
  listen: 10.0.0.1
  peer: 10.0.0.2
`

func TestCheckPartnerDhcpd(t *testing.T) {
	c, err := Parse("x.yaml", []byte(partnerHere))
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPartner("testdata/partner-dhcpd.conf")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != "dhcpd" || p.Name != "edge-pair" || p.Role != "secondary" || p.Listen.String() != "10.0.0.2:647" ||
		p.Peer.String() != "10.0.0.1:647" || len(p.Pools) != 1 {
		t.Fatalf("read %+v", p)
	}
	if err := c.CheckPartner(p); err != nil {
		t.Fatalf("matching pair: %v", err)
	}
	ci, _ := Parse("x.yaml", []byte(strings.Replace(partnerHere, "pools: [10.77.0.100-10.77.0.199]", "pools: [{range: 10.77.0.100-10.77.0.199, failover-allocation: independent}]", 1)))
	if err := ci.CheckPartner(p); err == nil || !strings.Contains(err.Error(), "independent needs an xdhcpd partner") {
		t.Fatalf("independent with a dhcpd partner: %v", err)
	}
	ct, _ := Parse("x.yaml", []byte(partnerHere+"  tls: {cert: a.pem, key: b.pem, ca: c.pem}\n"))
	if err := ct.CheckPartner(p); err == nil || !strings.Contains(err.Error(), "ISC dhcpd speaks only plain TCP") {
		t.Fatalf("TLS with a dhcpd partner: %v", err)
	}
	bad, err := LoadPartner("testdata/partner-dhcpd-mismatch.conf")
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckPartner(bad)
	for _, want := range []string{`"edge-pair" here, "other-pair"`, "roles", "listens on 10.0.0.9:647",
		"pool 10.77.0.100-10.77.0.150 is on the partner's side only", "pool 10.77.0.100-10.77.0.199 is on this side only"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch report lacks %q: %v", want, err)
		}
	}
}

func TestCheckPartnerXdhcpd(t *testing.T) {
	c, _ := Parse("x.yaml", []byte(partnerHere))
	dir := t.TempDir()
	other := filepath.Join(dir, "b.yaml")
	os.WriteFile(other, []byte(strings.NewReplacer("role: primary", "role: secondary", "listen: 10.0.0.1", "listen: 10.0.0.2",
		"peer: 10.0.0.2", "peer: 10.0.0.1").Replace(partnerHere)), 0o600)
	p, err := LoadPartner(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckPartner(p); err != nil {
		t.Fatalf("matching xdhcpd pair: %v", err)
	}
	os.WriteFile(other, []byte(strings.Replace(partnerHere, "10.77.0.199", "10.77.0.198", 1)), 0o600)
	p, _ = LoadPartner(other)
	if err := c.CheckPartner(p); err == nil || !strings.Contains(err.Error(), "10.77.0.100-10.77.0.198 is on the partner's side only") ||
		!strings.Contains(err.Error(), "roles") {
		t.Fatalf("mismatch: %v", err)
	}
	// TLS on one side only can never connect.
	withTLS := partnerHere + "  tls: {cert: a.pem, key: b.pem, ca: c.pem}\n"
	ct, _ := Parse("x.yaml", []byte(withTLS))
	os.WriteFile(other, []byte(strings.NewReplacer("role: primary", "role: secondary", "listen: 10.0.0.1", "listen: 10.0.0.2",
		"peer: 10.0.0.2", "peer: 10.0.0.1").Replace(partnerHere)), 0o600)
	p, _ = LoadPartner(other)
	if err := ct.CheckPartner(p); err == nil || !strings.Contains(err.Error(), "tls: set on one side only") {
		t.Fatalf("TLS here only: %v", err)
	}
	// An independent pool must be independent on both sides.
	indep := strings.Replace(partnerHere, "pools: [10.77.0.100-10.77.0.199]", "pools: [{range: 10.77.0.100-10.77.0.199, failover-allocation: independent}]", 1)
	ci, err := Parse("x.yaml", []byte(indep))
	if err != nil || !ci.Subnets[0].Pools[0].Independent {
		t.Fatalf("independent pool: %+v %v", ci.Subnets[0].Pools, err)
	}
	if err := ci.CheckPartner(p); err == nil || !strings.Contains(err.Error(), "10.77.0.100-10.77.0.199 (failover-allocation: independent) is on this side only") {
		t.Fatalf("independent here only: %v", err)
	}
	if _, err := LoadPartner(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file accepted")
	}
	os.WriteFile(other, []byte("subnet 10.0.0.0 netmask 255.0.0.0 { range 10.0.0.1 10.0.0.9; }\n"), 0o600)
	if _, err := LoadPartner(other); err == nil || !strings.Contains(err.Error(), "no failover peer") {
		t.Fatalf("a dhcpd.conf without failover: %v", err)
	}
}
