package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestFailoverPairConfigs: both sides of the xdhcpd pair parse, point at
// each other with opposite roles and the same pools (check-config's own
// test of a pair), and keep the load on the primary (no load balancing,
// no pool handed over).
func TestFailoverPairConfigs(t *testing.T) {
	x := &XdhcpdPair{}
	p, err := config.Parse("primary.yaml", []byte(x.config("/tmp/p", "primary", foPrimaryAddr, foSecondaryAddr, ServerIf, "native")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.Parse("secondary.yaml", []byte(x.config("/tmp/s", "secondary", foSecondaryAddr, foPrimaryAddr, foIf, "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckPartner(&config.Partner{Source: "xdhcpd", Name: s.Failover.Name, Role: s.Failover.Role,
		Listen: s.Failover.Listen, Peer: s.Failover.Peer, Pools: pools(s)}); err != nil {
		t.Fatalf("the pair's configurations do not match: %v", err)
	}
	if p.Failover.LoadBalanceMaxSecs != 0 || p.Failover.MaxLeaseMisbalance != 100 || !p.Fastpath.Enabled || s.Fastpath.Enabled {
		t.Fatalf("primary %+v fast %v, secondary fast %v", p.Failover, p.Fastpath.Enabled, s.Fastpath.Enabled)
	}
	if p.Server.Interfaces[0] != ServerIf || s.Server.Interfaces[0] != foIf {
		t.Fatalf("interfaces %v %v", p.Server.Interfaces, s.Server.Interfaces)
	}
}

func pools(c *config.Config) []config.Pool {
	var out []config.Pool
	for _, sn := range c.Subnets {
		out = append(out, sn.Pools...)
	}
	return out
}

// TestKeaHAConfig: the Kea pair's configuration is JSON Kea can read, with
// both hooks, hot-standby, and each side naming itself.
func TestKeaHAConfig(t *testing.T) {
	for _, name := range []string{"primary", "standby"} {
		var v struct {
			Dhcp4 struct {
				Hooks []struct {
					Library    string `json:"library"`
					Parameters struct {
						HA []struct {
							This  string `json:"this-server-name"`
							Mode  string `json:"mode"`
							Peers []struct{ Name, URL, Role string }
						} `json:"high-availability"`
					} `json:"parameters"`
				} `json:"hooks-libraries"`
				MT struct {
					Enable bool `json:"enable-multi-threading"`
				} `json:"multi-threading"`
			}
		}
		if err := json.Unmarshal([]byte(keaHAConfig("/tmp/k", foIf, name)), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := v.Dhcp4.Hooks
		if len(h) != 2 || !strings.HasSuffix(h[0].Library, "libdhcp_lease_cmds.so") || !strings.HasSuffix(h[1].Library, "libdhcp_ha.so") || !v.Dhcp4.MT.Enable {
			t.Fatalf("%s: hooks %+v, multi-threading %v", name, h, v.Dhcp4.MT.Enable)
		}
		ha := h[1].Parameters.HA
		if len(ha) != 1 || ha[0].This != name || ha[0].Mode != "hot-standby" || len(ha[0].Peers) != 2 {
			t.Fatalf("%s: %+v", name, ha)
		}
	}
}

// TestFailoverSectionRatios: the report divides each pair's rates by its
// server's without failover.
func TestFailoverSectionRatios(t *testing.T) {
	row := func(name string, dora, renew float64, acked float64) FailoverRow {
		return FailoverRow{Server: name, DORA: ScenarioResult{Best: loadgen.Result{Rate: dora}}, Renew: ScenarioResult{Best: loadgen.Result{Rate: renew}}, DORAAckedPS: acked}
	}
	pair, dhcpdPair := row("xdhcpd+failover", 16000, 95000, 8000), row("xdhcpd+failover-dhcpd", 9000, 95000, 2000)
	pair.NormalSeconds, dhcpdPair.NormalSeconds = 1.3, 23.5
	rep := &Report{Failover: &FailoverReport{Rows: []FailoverRow{
		row("xdhcpd", 20000, 100000, 0), pair, dhcpdPair,
		row(Kea{}.Name(), 6000, 10000, 0), row((&KeaHA{}).Name(), 1500, 2000, 0)}}}
	var b strings.Builder
	rep.failoverSection(&b)
	mustContain(t, "section", b.String(), "DORA 0.80", "renewals 0.95", "| xdhcpd+failover | 16000 | 95000 | 8000 | – |", "| xdhcpd+failover-dhcpd | 9000 | 95000 | 2000 | – |", "DORA 0.25, renewals 0.20",
		"the rig waits 1m0s): xdhcpd+failover 1.3 s, xdhcpd+failover-dhcpd 23.5 s.")
}

// TestDhcpdPeerConfig: the dhcpd secondary's configuration is what
// check-config accepts as the xdhcpd primary's partner (same name, pools,
// addresses), and dhcpd itself parses it (dhcpd -t).
func TestDhcpdPeerConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "dhcpd.conf")
	if err := os.WriteFile(conf, []byte(dhcpdPeerConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	x := &XdhcpdPair{DhcpdPeer: true}
	p, err := config.Parse("primary.yaml", []byte(x.config("/tmp/p", "primary", foPrimaryAddr, foSecondaryAddr, ServerIf, "native")))
	if err != nil {
		t.Fatal(err)
	}
	partner, err := config.LoadPartner(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckPartner(partner); err != nil {
		t.Fatalf("check-config refuses the pair: %v\n%s", err, dhcpdPeerConfig())
	}
	if _, err := exec.LookPath("dhcpd"); err != nil {
		testenv.Skip(t, "dhcpd is not installed (make deps installs isc-dhcp-server)")
	}
	if out, err := exec.Command("dhcpd", "-t", "-4", "-cf", conf).CombinedOutput(); err != nil {
		t.Fatalf("dhcpd -t: %v\n%s", err, out)
	}
}
