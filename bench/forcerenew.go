package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
)

// The renumbering campaign's pools, all on the rig's link (layer 2:
// FORCERENEW is unicast to the client's address, which only the layer 2
// transport receives; a relay's clients are not routed back to it). The
// subnet is the link's /15 widened to a /14 so that pool A (the upper
// /15, made on-link in the server's namespace for the run) and pool B
// (the link's own two pools) each hold over 130,000 addresses.
const (
	frSubnet     = "10.76.0.0/14"
	frPoolAPfx   = "10.78.0.0/15"
	frPoolAStart = "10.78.0.1"
	frPoolAEnd   = "10.79.255.254"
	// Pool B is two ranges (the server's and the client's addresses sit
	// between them).
	frPoolB1Start = "10.76.0.10"
	frPoolB1End   = "10.76.255.254"
	frPoolB2Start = "10.77.1.0"
	frPoolB2End   = "10.77.255.254"
	// FRMaxClients is how many clients pool B holds.
	FRMaxClients = 65525 + 65279
)

// ForceRenewOptions shape one renumbering run (xdhcp-bench forcerenew).
type ForceRenewOptions struct {
	Bin     string  // the xdhcpd binary
	Fast    string  // the fast path mode: "" (off), "native" or "generic"
	Clients int     // emulated clients bound in pool A, then moved to pool B
	Rate    float64 // the campaign's clients forced per second; 0: unlimited
	// Timeout bounds the campaign and the clients' settling after it;
	// 0 means 10 minutes.
	Timeout  time.Duration
	Progress io.Writer // a line a second while the campaign runs; nil for none
}

// ForceRenewResult is what a renumbering run measured.
type ForceRenewResult struct {
	Clients int     `json:"clients"`
	Rate    float64 `json:"rate"` // requested; 0: unlimited
	Fast    string  `json:"fast,omitempty"`
	// Seconds is the campaign's wall time: from the forcerenew command to
	// the status saying done.
	Seconds float64 `json:"campaign-seconds"`
	// SentPerSecond is the FORCERENEWs sent (retransmissions included)
	// over Seconds.
	SentPerSecond float64                 `json:"forcerenew-sent-per-second"`
	Campaign      control.CampaignInfo    `json:"campaign"`
	ClientsSaw    loadgen.ForceRenewStats `json:"clients-saw"`
	// The end state, from the daemon's lease list and the generator's
	// clients: leases left in pool A, leases in pool B, clients holding an
	// address in pool B (of Clients).
	LeasesInA     int     `json:"leases-in-pool-a"`
	LeasesInB     int     `json:"leases-in-pool-b"`
	ClientsInB    int     `json:"clients-in-pool-b"`
	SettleSeconds float64 `json:"settle-seconds"` // after done, until every client was in pool B (or the timeout)
	Err           string  `json:"error,omitempty"`
}

// frConfig renders the daemon's configuration: pool A alone, or pool A
// draining beside pool B (the operator's edit before the campaign).
func frConfig(dir, fast string, moved bool) string {
	pools := fmt.Sprintf("[%s-%s]", frPoolAStart, frPoolAEnd)
	if moved {
		pools = fmt.Sprintf("[{range: %s-%s, drain: true}, %s-%s, %s-%s]", frPoolAStart, frPoolAEnd,
			frPoolB1Start, frPoolB1End, frPoolB2Start, frPoolB2End)
	}
	// The holdoffs as in the rest of the rig (XdhcpdConfig): the clients
	// answer FORCERENEW moments after their DORA's REQUEST.
	return fastpathYAML(fast, "xdhcp-bench-fr") + fmt.Sprintf(`server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: ""
  log-level: warn
  request-holdoff: `+RigRequestHoldoff+`
  discover-holdoff: `+RigDiscoverHoldoff+`
subnets:
  - subnet: %s
    pools: %s
    lease-time: 1h
    options:
      routers: [%s]
`, ServerIf, dir, dir, frSubnet, pools, ServerAddr)
}

func inRange(ip netip.Addr, start, end string) bool {
	return ip.Compare(netip.MustParseAddr(start)) >= 0 && ip.Compare(netip.MustParseAddr(end)) <= 0
}

func inPoolB(ip netip.Addr) bool {
	return inRange(ip, frPoolB1Start, frPoolB1End) || inRange(ip, frPoolB2Start, frPoolB2End)
}

// ForceRenew starts xdhcpd with pool A, binds o.Clients emulated clients
// (layer 2, answering FORCERENEW) there, marks pool A draining beside a
// new pool B and reloads, as an operator would, then runs a move
// campaign over pool A through the control socket and waits for it and
// for the clients to settle. It counts what ended where.
func (r *Rig) ForceRenew(ctx context.Context, o ForceRenewOptions) ForceRenewResult {
	res := ForceRenewResult{Clients: o.Clients, Rate: o.Rate, Fast: o.Fast}
	fail := func(err error) ForceRenewResult { res.Err = err.Error(); return res }
	if o.Clients <= 0 || o.Clients > FRMaxClients {
		return fail(fmt.Errorf("clients %d: want 1 to %d (the pools' size)", o.Clients, FRMaxClients))
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "xdhcp-bench-fr-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	// Pool A on-link for the server: its unicasts to clients there (ARP,
	// FORCERENEW, renewal ACKs) and rp_filter's check of their REQUESTs.
	if _, err := r.Srv.Exec(ctx, "ip", "route", "add", frPoolAPfx, "dev", ServerIf); err != nil {
		return fail(fmt.Errorf("route to pool A: %w", err))
	}
	defer r.Srv.Exec(context.Background(), "ip", "route", "del", frPoolAPfx, "dev", ServerIf)
	cfgPath := filepath.Join(dir, "xdhcpd.yaml")
	if err := os.WriteFile(cfgPath, []byte(frConfig(dir, o.Fast, false)), 0o600); err != nil {
		return fail(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	p, err := r.Srv.StartHostMounts(ctx, o.Bin, "--config", cfgPath)
	if err != nil {
		return fail(err)
	}
	defer stopServer(Xdhcpd{Bin: o.Bin, Fast: o.Fast}, p, r.Srv, dir)
	if err := waitFor(ctx, p, func() bool { return socketAnswers(sock) }); err != nil {
		return fail(err)
	}
	tr, err := r.transport("l2")
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	cfg := genConfig(ScenarioOptions{Mode: "l2", Clients: o.Clients, Pop: DefaultPopulation(false, true, 0)}, p.Pid())
	cfg.ForceRenew = true
	g, err := loadgen.New(cfg, tr)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	if _, err := g.Acquire(ctx, o.Clients); err != nil {
		return fail(fmt.Errorf("binding clients in pool A: %w", err))
	}
	if k := g.ForceRenewStats().Keys; k < int64(o.Clients) {
		return fail(fmt.Errorf("%d of %d clients were given a forcerenew key", k, o.Clients))
	}
	// The operator's edit: pool A draining, pool B beside it.
	if err := os.WriteFile(cfgPath, []byte(frConfig(dir, o.Fast, true)), 0o600); err != nil {
		return fail(err)
	}
	if err := control.Call(ctx, sock, "reload", nil, nil); err != nil {
		return fail(fmt.Errorf("reloading with pool A draining: %w", err))
	}

	t0 := time.Now()
	var ci control.CampaignInfo
	args := control.ForceRenewArgs{Pool: frPoolAStart + "-" + frPoolAEnd, Move: true, Rate: o.Rate}
	if err := control.Call(ctx, sock, "forcerenew", args, &ci); err != nil {
		return fail(fmt.Errorf("starting the campaign: %w", err))
	}
	lastTick := t0
	for !ci.Done {
		select {
		case <-ctx.Done():
			res.Campaign = ci
			return fail(fmt.Errorf("campaign %s not done after %v: %w", ci.ID, time.Since(t0).Round(time.Millisecond), ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
		if err := control.Call(ctx, sock, "forcerenew-status", control.CampaignID{ID: ci.ID}, &ci); err != nil {
			return fail(fmt.Errorf("campaign status: %w", err))
		}
		if o.Progress != nil && time.Since(lastTick) >= time.Second {
			lastTick = time.Now()
			fmt.Fprintf(o.Progress, "\r  %4.0fs  sent %d/%d  renewed %d  moved %d  no answer %d  no key %d  remaining %d   ",
				time.Since(t0).Seconds(), ci.Sent, ci.Total, ci.Renewed, ci.Moved, ci.NoAnswer, ci.NoKey, ci.Remaining)
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	if o.Progress != nil {
		fmt.Fprintln(o.Progress)
	}
	res.Campaign = ci
	if res.Seconds > 0 {
		res.SentPerSecond = float64(ci.Transmissions) / res.Seconds
	}
	// A moved client's DISCOVER may still be on its way when the daemon
	// counts it moved (the NAK ends its part): wait for every client to
	// hold an address in pool B, or for the timeout.
	t1 := time.Now()
	for {
		res.ClientsInB = 0
		for _, l := range g.Leases() {
			if inPoolB(l.IP) {
				res.ClientsInB++
			}
		}
		if res.ClientsInB == o.Clients || ctx.Err() != nil || time.Since(t1) > 30*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.SettleSeconds = time.Since(t1).Seconds()
	res.ClientsSaw = g.ForceRenewStats()
	var leases []control.LeaseInfo
	if err := control.Call(ctx, sock, "leases", nil, &leases); err != nil {
		return fail(fmt.Errorf("listing leases: %w", err))
	}
	for _, l := range leases {
		ip, err := netip.ParseAddr(l.IP)
		if err != nil || l.State != "active" {
			continue
		}
		switch {
		case inRange(ip, frPoolAStart, frPoolAEnd):
			res.LeasesInA++
		case inPoolB(ip):
			res.LeasesInB++
		}
	}
	return res
}

// SignResult is signed FORCERENEWs a second on one goroutine.
type SignResult struct {
	Signed    int     `json:"signed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"signed-per-second"`
}

// SignRate measures what the daemon does per FORCERENEW before the send:
// render option 90 with a fresh counter value into a FORCERENEW padded
// to 300 bytes as the daemon sends it, and sign it (HMAC-MD5 over every byte), in a loop on one
// goroutine locked to its thread, for d.
func SignRate(d time.Duration) (SignResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key, err := auth.NewKey()
	if err != nil {
		return SignResult{}, err
	}
	h := dhcpwire.Header{Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: 0x01020304,
		CIAddr: netip.MustParseAddr("10.76.0.10")}
	copy(h.CHAddr[:], []byte{2, 0xb0, 0, 0, 0, 1})
	base := dhcpwire.AppendHeader(make([]byte, 0, 600), h)
	base = append(base, dhcpwire.OptMessageType, 1, dhcpwire.ForceRenew)
	base = dhcpwire.AppendAddrOption(base, dhcpwire.OptServerID, netip.MustParseAddr(ServerAddr))
	n := len(base)
	msg := base
	var res SignResult
	start := time.Now()
	for replay := uint64(1); ; replay++ {
		msg = auth.AppendDigestOption(msg[:n], replay)
		msg = append(msg, dhcpwire.OptEnd)
		for len(msg) < 300 { // the BOOTP minimum the daemon pads to
			msg = append(msg, 0)
		}
		if err := auth.Sign(msg, key); err != nil {
			return res, fmt.Errorf("signing: %w", err)
		}
		res.Signed++
		if res.Signed%1024 == 0 && time.Since(start) >= d {
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	// What was timed must be what a client accepts.
	if _, err := auth.Verify(msg, key); err != nil {
		return res, fmt.Errorf("the last message signed does not verify: %w", err)
	}
	res.PerSecond = float64(res.Signed) / res.Seconds
	return res, nil
}

// ForceRenewReport is xdhcp-bench forcerenew's part of a report.
type ForceRenewReport struct {
	// Sign is SignRate on one goroutine; the goal is 50,000 a second.
	Sign SignResult         `json:"sign"`
	Runs []ForceRenewResult `json:"campaigns"`
}

// forceRenewSection renders rep.FR.
func (rep *Report) forceRenewSection(b *strings.Builder) {
	fr := rep.FR
	if fr == nil {
		return
	}
	fmt.Fprintf(b, "\n## FORCERENEW (issue 16)\n\nSigned FORCERENEW/s on one goroutine (option 90 rendered with a new counter value, HMAC-MD5 over the 300-byte message): **%.0f** (%d in %.1f s; goal ≥ 50,000).\n",
		fr.Sign.PerSecond, fr.Sign.Signed, fr.Sign.Seconds)
	if len(fr.Runs) == 0 {
		return
	}
	b.WriteString("\nRenumbering: clients bound in pool A (layer 2, each verifying the FORCERENEW's digest under its key), pool A made draining beside pool B by a reload, then `forcerenew --pool A --move` over the control socket. Wall time from the command to the status saying done.\n\n")
	b.WriteString("| clients | rate | fast path | campaign wall time | FORCERENEW sent/s | sent / transmissions | moved | renewed | no answer | no key | leases left in A | leases in B | clients in B | settle after done |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range fr.Runs {
		rate := "unlimited"
		if r.Rate > 0 {
			rate = fmt.Sprintf("%.0f/s", r.Rate)
		}
		c := r.Campaign
		fmt.Fprintf(b, "| %d | %s | %s | %.2f s | %.0f | %d / %d | %d | %d | %d | %d | %d | %d | %d | %.2f s |\n",
			r.Clients, rate, cmp.Or(r.Fast, "off"), r.Seconds, r.SentPerSecond, c.Sent, c.Transmissions, c.Moved, c.Renewed,
			c.NoAnswer, c.NoKey, r.LeasesInA, r.LeasesInB, r.ClientsInB, r.SettleSeconds)
		if r.Err != "" {
			fmt.Fprintf(b, "\nerror (%d clients): %s\n", r.Clients, r.Err)
		}
	}
}
