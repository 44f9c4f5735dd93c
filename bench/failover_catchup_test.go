package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/config"
)

// TestCatchupConfigs: both sides parse and match each other (check-config's
// test of a pair), in both allocation modes, and the pool has the size
// asked for and holds WriteLeases' addresses; with --profile both serve
// their profiles.
func TestCatchupConfigs(t *testing.T) {
	for _, mode := range []string{"independent", "proportional"} {
		profile := mode == "proportional"
		p, err := config.Parse("p.yaml", []byte(catchupConfig("/tmp/p", "primary", foPrimaryAddr, foSecondaryAddr, foIf, mode, 4194302, profile)))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		s, err := config.Parse("s.yaml", []byte(catchupConfig("/tmp/s", "secondary", foSecondaryAddr, foPrimaryAddr, foIf, mode, 4194302, profile)))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if err := p.CheckPartner(&config.Partner{Source: "xdhcpd", Name: s.Failover.Name, Role: s.Failover.Role,
			Listen: s.Failover.Listen, Peer: s.Failover.Peer, Pools: pools(s)}); err != nil {
			t.Fatalf("%s: the pair's configurations do not match: %v", mode, err)
		}
		q := p.Subnets[0].Pools[0]
		if q.Start.String() != "10.0.0.1" || q.End.String() != "10.63.255.254" || q.Independent != (mode == "independent") || p.Fastpath.Enabled {
			t.Fatalf("%s: pool %+v, fast path %v", mode, q, p.Fastpath.Enabled)
		}
		if want := foSecondaryAddr + ":" + catchupMetricsPort; profile && (!s.Server.Pprof || s.Server.MetricsListen != want) {
			t.Fatalf("%s: pprof %v on %q, want on %s", mode, s.Server.Pprof, s.Server.MetricsListen, want)
		}
	}
}

// TestCatchupSection: the report says what was measured, and an error in
// place of a time.
func TestCatchupSection(t *testing.T) {
	rep := &Report{Catchup: []CatchupRow{
		{Allocation: "independent", Leases: 1000000, PoolSize: 4194302, Seconds: 9.5, Received: 1000000, PerSecond: 105263, PrimaryPeakRSS: 1 << 30, SecondaryPeakRSS: 512 << 20},
		{Allocation: "proportional", Leases: 1000000, PoolSize: 4194302, Err: "timed out"},
	}}
	var b strings.Builder
	rep.catchupSection(&b)
	mustContain(t, "section", b.String(), "| independent | 1000000 | 4194302 | 9.5 | 1000000 | 105263 | 1024 MiB | 512 MiB |", "not caught up: timed out")
}

// TestRecoverySection: the kill -9 timings are reported, or why they are
// missing.
func TestRecoverySection(t *testing.T) {
	rep := &Report{Recovery: &RecoveryResult{AutoPartnerDown: 5 * time.Second, DetectSeconds: 0.05, PartnerDownSeconds: 5.3,
		Clients: 500, Bound: 500, ServeSeconds: 0.4, RestartNormalSeconds: 2.29}}
	var b strings.Builder
	rep.recoverySection(&b)
	// A report from before the exit was timed says nothing of it.
	mustContain(t, "section", b.String(), "| 5s | – | 0.05 s | 5.30 s | 500 of 500 | 0.40 s | 2.29 s |")
	rep.Recovery.ExitSeconds = 0.012
	b.Reset()
	rep.recoverySection(&b)
	mustContain(t, "section", b.String(), "| 5s | 0.01 s | 0.05 s | 5.30 s | 500 of 500 | 0.40 s | 2.29 s |")
	rep.Recovery.Err = "the survivor did not reach partner-down"
	b.Reset()
	rep.recoverySection(&b)
	if !strings.Contains(b.String(), "Not measured: the survivor did not reach partner-down") {
		t.Errorf("an error is not said:\n%s", b.String())
	}
}

// TestBalancedPairConfig: the recovery benchmark's pair balances load and
// pools and takes over by itself.
func TestBalancedPairConfig(t *testing.T) {
	x := &XdhcpdPair{Balanced: true, AutoPartnerDown: 10 * time.Second}
	c, err := config.Parse("p.yaml", []byte(x.config("/tmp/p", "primary", foPrimaryAddr, foSecondaryAddr, ServerIf, "")))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failover; f.LoadBalanceMaxSecs != 3 || f.MaxLeaseMisbalance != 15 || f.AutoPartnerDown != 10*time.Second {
		t.Fatalf("%+v", f)
	}
}
