package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// RecoveryResult is one kill -9 of a failover secondary under a balanced
// pair (each server answers its half of the clients): how long until the
// survivor notices, takes over (auto-partner-down), binds new clients of
// both halves, and how long the restarted secondary takes back to NORMAL.
type RecoveryResult struct {
	AutoPartnerDown time.Duration `json:"auto-partner-down-ns"`
	// Seconds from the kill to the survivor's communications-interrupted
	// and partner-down.
	DetectSeconds      float64 `json:"detect-seconds"`
	PartnerDownSeconds float64 `json:"partner-down-seconds"`
	// ExitSeconds is from the kill until the secondary's process had
	// exited (it closes its connection to the survivor then): a process
	// in the middle of a write to a busy disk dies only once that write
	// returns. 0 in reports before it.
	ExitSeconds float64 `json:"exit-seconds,omitempty"`
	// Clients new clients (both hash halves) bound by the survivor after
	// partner-down, in ServeSeconds.
	Clients      int     `json:"clients"`
	Bound        int     `json:"bound"`
	ServeSeconds float64 `json:"serve-seconds"`
	// Seconds from the secondary's restart until both are NORMAL.
	RestartNormalSeconds float64 `json:"restart-normal-seconds"`
	Err                  string  `json:"error,omitempty"`
}

// RecoveryOptions shape xdhcp-bench failover-recovery.
type RecoveryOptions struct {
	Bin             string
	Clients         int
	AutoPartnerDown time.Duration
	Timeout         time.Duration
}

// FailoverRecovery kills the secondary of a balanced xdhcpd pair and times
// the survivor's take-over and the pair's return.
func (r *Rig) FailoverRecovery(ctx context.Context, o RecoveryOptions) RecoveryResult {
	res := RecoveryResult{AutoPartnerDown: o.AutoPartnerDown, Clients: o.Clients}
	fail := func(err error) RecoveryResult { res.Err = err.Error(); return res }
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "xdhcp-recovery")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	pair := &XdhcpdPair{Bin: o.Bin, Balanced: true, AutoPartnerDown: o.AutoPartnerDown}
	p, err := pair.Start(ctx, r.Srv, dir)
	if err != nil {
		return fail(err)
	}
	defer func() { p.Stop(); pair.stopPeer() }()
	psock, ssock := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "secondary", "ctl.sock")
	status := func(sock string) failover.Status {
		var st failover.Status
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		control.Call(c, sock, "failover-status", nil, &st)
		return st
	}
	// The primary's POOLREQ answer: the secondary holds BACKUP addresses,
	// so the survivor has the partner's share to take over.
	if err := waitFor(ctx, p, func() bool { return status(psock).Backup > 0 }); err != nil {
		return fail(fmt.Errorf("no pool handed to the secondary: %w", err))
	}

	killed := time.Now()
	if err := pair.peerProc.Signal(syscall.SIGKILL); err != nil {
		return fail(err)
	}
	// The survivor is watched from the kill on, while the process exits.
	exited := make(chan float64, 1)
	go func(proc *netns.Proc) {
		proc.Wait()
		exited <- time.Since(killed).Seconds()
	}(pair.peerProc)
	for res.PartnerDownSeconds == 0 {
		select {
		case res.ExitSeconds = <-exited:
		default:
		}
		if err := ctx.Err(); err != nil {
			return fail(fmt.Errorf("the survivor did not reach partner-down: %w", err))
		}
		switch st := status(psock); st.State {
		case "communications-interrupted":
			if res.DetectSeconds == 0 {
				res.DetectSeconds = time.Since(killed).Seconds()
			}
		case "partner-down":
			if res.DetectSeconds == 0 {
				res.DetectSeconds = time.Since(killed).Seconds()
			}
			res.PartnerDownSeconds = time.Since(killed).Seconds()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.ExitSeconds == 0 {
		res.ExitSeconds = <-exited // it was killed: it exits
	}

	tr, err := r.transport("relay")
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	g, err := loadgen.New(genConfig(ScenarioOptions{Mode: "relay", Clients: o.Clients, Pop: DefaultPopulation(false, true, 0)}, p.Pid()), tr)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	t0 := time.Now()
	if res.Bound, err = g.Acquire(ctx, o.Clients); err != nil {
		return fail(fmt.Errorf("binding clients after partner-down: %w", err))
	}
	res.ServeSeconds = time.Since(t0).Seconds()

	restarted := time.Now()
	if pair.peerProc, err = pair.peer.Start(ctx, o.Bin, "--config", pair.scfg); err != nil {
		return fail(err)
	}
	err = waitFor(ctx, p, func() bool {
		ps, ss := status(psock), status(ssock)
		return ps.State == "normal" && ss.State == "normal" && ps.PartnerState == "normal" && ss.PartnerState == "normal"
	})
	if err != nil {
		return fail(fmt.Errorf("the pair was not normal again: primary %+v: %w", status(psock), err))
	}
	res.RestartNormalSeconds = time.Since(restarted).Seconds()
	return res
}

// recoverySection renders the result.
func (rep *Report) recoverySection(b *strings.Builder) {
	r := rep.Recovery
	if r == nil {
		return
	}
	b.WriteString("\n## Failover: the secondary killed with -9, xdhcpd pair with load balancing\n\n")
	if r.Err != "" {
		fmt.Fprintf(b, "Not measured: %s\n", r.Err)
		return
	}
	b.WriteString("| auto-partner-down | kill → secondary exited | kill → communications-interrupted | kill → partner-down | new clients bound after partner-down | in | secondary restart → both normal |\n|---|---|---|---|---|---|---|\n")
	exit := "–"
	if r.ExitSeconds > 0 {
		exit = fmt.Sprintf("%.2f s", r.ExitSeconds)
	}
	fmt.Fprintf(b, "| %s | %s | %.2f s | %.2f s | %d of %d | %.2f s | %.2f s |\n", r.AutoPartnerDown, exit, r.DetectSeconds, r.PartnerDownSeconds,
		r.Bound, r.Clients, r.ServeSeconds, r.RestartNormalSeconds)
	b.WriteString("\nThe survivor learns of the kill from its connection's close when the process exits, or after max-response-delay (20 s) without a message.\n")
}
