package failover

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testcert"
)

// issue is a TLS setting for a server at ip holding a certificate of ca.
func issue(ca *testcert.CA, name, ip string) *TLS {
	f := ca.Issue(name, netip.MustParseAddr(ip))
	return &TLS{Cert: f.Cert, Key: f.Key, CA: ca.File}
}

// TestTLSPairReachesNormal: two servers with certificates from the same CA,
// each naming its address, connect over mutual TLS and exchange updates.
func TestTLSPairReachesNormal(t *testing.T) {
	ca := testcert.NewCA(t, "pair")
	p := newPair(t)
	pt, st := issue(ca, "primary", "127.0.0.1"), issue(ca, "secondary", "127.0.0.2")
	p.start(Primary, func(c *Config) { c.TLS = pt })
	p.start(Secondary, func(c *Config) { c.TLS = st })
	waitState(t, p.prim, "normal", 10*time.Second)
	waitState(t, p.sec, "normal", 10*time.Second)
	if n := testCounter(p.prim.m.Disconnects.WithLabelValues("tls")) + testCounter(p.sec.m.Disconnects.WithLabelValues("tls")); n != 0 {
		t.Fatalf("%v TLS refusals between good certificates", n)
	}
}

// TestTLSRefusesTheWrongPartner: a secondary whose certificate is from
// another CA, or from the right CA for another address, or which speaks
// plain TCP, never gets a relationship; the refusals are counted, and the
// side that refused waits before trying again.
func TestTLSRefusesTheWrongPartner(t *testing.T) {
	ca, other := testcert.NewCA(t, "pair"), testcert.NewCA(t, "other")
	good := issue(ca, "primary", "127.0.0.1")
	cases := []struct {
		name string
		sec  *TLS
	}{
		{"another CA", issue(other, "secondary", "127.0.0.2")},
		{"another address", issue(ca, "impostor", "127.0.0.9")},
		{"plain TCP", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			prim := p.start(Primary, func(c *Config) { c.TLS = good })
			if tc.sec != nil {
				// It trusts the pair's CA, so only the primary's check
				// can refuse it.
				tc.sec.CA = ca.File
			}
			sec := p.start(Secondary, func(c *Config) { c.TLS = tc.sec })
			waitFor(t, "the primary's refusal counted", 5*time.Second, func() bool {
				return testCounter(prim.m.Disconnects.WithLabelValues("tls")) > 0
			})
			time.Sleep(time.Second)
			for _, r := range []*Relationship{prim, sec} {
				if s := r.Status(); s.Connected || s.State == "normal" {
					t.Fatalf("%s connected (state %s) to a partner it should refuse", s.Role, s.State)
				}
			}
		})
	}
}

// TestTLSConfigErrors: unreadable or mismatched files are errors that
// name the file.
func TestTLSConfigErrors(t *testing.T) {
	ca := testcert.NewCA(t, "pair")
	good := issue(ca, "primary", "127.0.0.1")
	other := issue(ca, "secondary", "127.0.0.2")
	cases := []struct {
		name string
		tls  TLS
	}{
		{"missing certificate", TLS{Cert: filepath.Join(ca.Dir(), "nope.pem"), Key: good.Key, CA: good.CA}},
		{"key of another certificate", TLS{Cert: good.Cert, Key: other.Key, CA: good.CA}},
		{"CA without PEM", TLS{Cert: good.Cert, Key: good.Key, CA: good.Key}},
	}
	peer := netip.MustParseAddr("127.0.0.2")
	for _, tc := range cases {
		if _, err := tc.tls.config(peer, true); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := good.config(peer, false); err != nil {
		t.Fatalf("good files: %v", err)
	}
}
