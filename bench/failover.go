package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// The failover pair's own link: the measured server (the primary, in the
// rig's server namespace) and its secondary in a namespace of its own.
const (
	foPrimaryAddr   = "10.201.0.1"
	foSecondaryAddr = "10.201.0.2"
	foIf            = "fo0"
)

// XdhcpdPair is xdhcpd as the primary of a failover pair (issue 17), the
// measured server, with its secondary (another xdhcpd, fast path off) in a
// namespace of its own joined to the server's by a veth. Every binding the
// primary makes goes to the secondary as a binding update and is
// acknowledged. Load balancing is off and no pool is handed over
// (max-lease-misbalance 100), so the primary answers all of the load, as
// the single server does: the rows compare the cost of failover, not of
// half the clients.
type XdhcpdPair struct {
	Bin, Ctl, Fast string

	peer     *netns.NS
	peerProc *netns.Proc
	dir      string
	started  time.Time
	// Final is the primary's failover status when the pair was stopped,
	// and Ran how long it had been NORMAL by then.
	Final failover.Status
	Ran   time.Duration
}

// Name implements Server.
func (x *XdhcpdPair) Name() string {
	return Xdhcpd{Fast: x.Fast}.Name() + "+failover"
}

// Version implements Server.
func (x *XdhcpdPair) Version() string {
	return "xdhcpd (this tree), failover primary with an xdhcpd secondary"
}

func (x *XdhcpdPair) config(dir, role, listen, peer, iface, fast string) string {
	return strings.Replace(XdhcpdConfig(dir, fast), "interfaces: ["+ServerIf+"]", "interfaces: ["+iface+"]", 1) +
		fmt.Sprintf(`failover:
  name: bench
  role: %s
  listen: %s
  peer: %s
  mclt: 1h
  load-balance-max-seconds: 0
  max-lease-misbalance: 100
  auto-partner-down: 0s
`, role, listen, peer)
}

// Start implements Server: the secondary, then the primary, and waits until
// both are NORMAL.
func (x *XdhcpdPair) Start(ctx context.Context, ns *netns.NS, dir string) (*netns.Proc, error) {
	peer, err := netns.NewUnique("xb-peer")
	if err != nil {
		return nil, err
	}
	x.peer, x.dir = peer, dir
	if err := netns.Veth(ns, foIf, netip.MustParsePrefix(foPrimaryAddr+"/30"), peer, foIf, netip.MustParsePrefix(foSecondaryAddr+"/30")); err != nil {
		x.stopPeer()
		return nil, err
	}
	sdir := filepath.Join(dir, "secondary")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		x.stopPeer()
		return nil, err
	}
	scfg := filepath.Join(sdir, "xdhcpd.yaml")
	if err := os.WriteFile(scfg, []byte(x.config(sdir, "secondary", foSecondaryAddr, foPrimaryAddr, foIf, "")), 0o600); err != nil {
		x.stopPeer()
		return nil, err
	}
	if x.peerProc, err = peer.Start(ctx, x.Bin, "--config", scfg); err != nil {
		x.stopPeer()
		return nil, err
	}
	if err := waitFor(ctx, x.peerProc, func() bool { return socketAnswers(filepath.Join(sdir, "ctl.sock")) }); err != nil {
		x.stopPeer()
		return nil, fmt.Errorf("secondary: %w", err)
	}
	cfg := filepath.Join(dir, "xdhcpd.yaml")
	if err := os.WriteFile(cfg, []byte(x.config(dir, "primary", foPrimaryAddr, foSecondaryAddr, ServerIf, x.Fast)), 0o600); err != nil {
		x.stopPeer()
		return nil, err
	}
	p, err := ns.StartHostMounts(ctx, x.Bin, "--config", cfg)
	if err != nil {
		x.stopPeer()
		return nil, err
	}
	sock := filepath.Join(dir, "ctl.sock")
	err = waitFor(ctx, p, func() bool {
		var st failover.Status
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return control.Call(c, sock, "failover-status", nil, &st) == nil && st.State == "normal" && st.PartnerState == "normal"
	})
	if err != nil {
		p.Stop()
		x.stopPeer()
		return nil, fmt.Errorf("the pair did not reach normal: %w", err)
	}
	x.started = time.Now()
	return p, nil
}

// stop records the primary's final status, then stops the secondary.
func (x *XdhcpdPair) stop() {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st failover.Status
	if control.Call(c, filepath.Join(x.dir, "ctl.sock"), "failover-status", nil, &st) == nil {
		x.Final, x.Ran = st, time.Since(x.started)
	}
	x.stopPeer()
}

func (x *XdhcpdPair) stopPeer() {
	if x.peerProc != nil {
		x.peerProc.Stop()
		x.peerProc = nil
	}
	if x.peer != nil {
		x.peer.Close()
		x.peer = nil
	}
}

// FailoverRow is one server's DORA and renewal results in the failover
// comparison.
type FailoverRow struct {
	Server string         `json:"server"`
	DORA   ScenarioResult `json:"dora"`
	Renew  ScenarioResult `json:"renew"`
	// For the pair: binding updates the secondary acknowledged during
	// each scenario's run, and per second of it.
	DORAAcked    uint64  `json:"dora-bndupd-acked,omitempty"`
	RenewAcked   uint64  `json:"renew-bndupd-acked,omitempty"`
	DORAAckedPS  float64 `json:"dora-bndupd-acked-per-second,omitempty"`
	RenewAckedPS float64 `json:"renew-bndupd-acked-per-second,omitempty"`
	Rejected     uint64  `json:"bndupd-rejected,omitempty"`
}

// FailoverReport is xdhcp-bench failover: the single server and the pair,
// side by side, in one run.
type FailoverReport struct {
	Rows []FailoverRow `json:"rows"`
	// KeaHA says why Kea's HA hook has no row.
	KeaHA string `json:"kea-ha"`
}

// FailoverOptions shape one comparison.
type FailoverOptions struct {
	Bin, Ctl, Fast string
	Clients        int
	Step           time.Duration
	StartRate      int
	Log            func(format string, args ...any)
}

// Failover measures DORA and renewals (through XDP when Fast is set) with
// and without a failover partner, each with the rig's loss-limited rate
// search.
func (r *Rig) Failover(ctx context.Context, o FailoverOptions) FailoverReport {
	var rep FailoverReport
	single := Xdhcpd{Bin: o.Bin, Ctl: o.Ctl, Fast: o.Fast}
	pair := &XdhcpdPair{Bin: o.Bin, Ctl: o.Ctl, Fast: o.Fast}
	for _, s := range []Server{single, pair} {
		row := FailoverRow{Server: s.Name()}
		for _, sc := range []string{"dora", "renew"} {
			so := ScenarioOptions{Scenario: sc, Mode: "relay", Clients: o.Clients, Pop: DefaultPopulation(false, true, 0),
				MaxLoss: 0.01, StartRate: o.StartRate, Bisect: 2, Step: o.Step}
			res := r.Scenario(ctx, s, so)
			o.Log("  %-28s %-5s %8.0f answered/s (target %.0f/s, 0: open loop; loss %.2f%%) %s\n", s.Name(), sc, res.Best.Rate,
				float64(res.Best.TargetRate), 100*res.Best.Loss, res.Err)
			if sc == "dora" {
				row.DORA = res
			} else {
				row.Renew = res
			}
			if p, ok := s.(*XdhcpdPair); ok && p.Ran > 0 {
				ps := float64(p.Final.UpdatesAcked) / p.Ran.Seconds()
				if sc == "dora" {
					row.DORAAcked, row.DORAAckedPS = p.Final.UpdatesAcked, ps
				} else {
					row.RenewAcked, row.RenewAckedPS = p.Final.UpdatesAcked, ps
				}
				row.Rejected += p.Final.UpdatesRejected
				o.Log("  %-28s %-5s %d binding updates acknowledged in %s (%.0f/s), %d rejected, %d still queued\n", s.Name(), sc,
					p.Final.UpdatesAcked, p.Ran.Round(time.Second), ps, p.Final.UpdatesRejected, p.Final.QueueDepth+p.Final.Unacked)
			}
			if ctx.Err() != nil {
				return rep
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.KeaHA = "not measured: Kea 2.2's HA hook (libdhcp_ha.so) is installed, but its peers exchange lease updates over HTTP, through kea-ctrl-agent (not among make deps) or HA+MT's dedicated listener, and that pair is not built into this rig yet"
	return rep
}

// failoverSection renders the comparison.
func (rep *Report) failoverSection(b *strings.Builder) {
	fr := rep.Failover
	if fr == nil || len(fr.Rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Failover (issue 17)\n\nThe single server and the same server as the primary of a failover pair (secondary: xdhcpd in its own namespace; load balancing off, no pool handed over, so the primary answers all of the load). Highest answered rate within 1%% loss.\n\n")
	fmt.Fprintf(b, "| server | DORA/s | renewals/s | BNDUPD acked/s (DORA run) | BNDUPD acked/s (renew run) |\n|---|---:|---:|---:|---:|\n")
	for _, r := range fr.Rows {
		ack := func(v float64) string {
			if v == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %s | %s |\n", r.Server, r.DORA.Best.Rate, r.Renew.Best.Rate, ack(r.DORAAckedPS), ack(r.RenewAckedPS))
	}
	if len(fr.Rows) == 2 {
		a, p := fr.Rows[0], fr.Rows[1]
		ratio := func(x, y float64) string {
			if y == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2f", x/y)
		}
		fmt.Fprintf(b, "\nRatios, failover on / off: DORA %s (goal ≥ 0.80; Kea's HA hot-standby publishes 0.48), renewals %s (goal: no measurable loss).\n",
			ratio(p.DORA.Best.Rate, a.DORA.Best.Rate), ratio(p.Renew.Best.Rate, a.Renew.Best.Rate))
	}
	fmt.Fprintf(b, "\nKea HA: %s.\n", fr.KeaHA)
}
