package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/control"
)

const failoverUsage = `usage: xdhcpctl [--socket PATH] failover status [--json]
       xdhcpctl [--socket PATH] failover partner-down --yes [--json]
status shows the failover relationship: this server's state and the
partner's (draft-ietf-dhc-failover-12 names in lower case: normal,
communications-interrupted, partner-down, recover, ...), since when and
why, the connection, clock skew, MCLT, binding updates queued, in flight,
sent, acknowledged, rejected and received, the pools' FREE (the primary's)
and BACKUP (the secondary's) addresses, and what the pair waits for and
until when.
partner-down tells this server that the partner is down: it then answers
every client and, MCLT later, gives the partner's free addresses too. Only
when the partner really is down (powered off, its database gone): if it is
alive and serving, both may give the same address to two clients. It is
refused while the partner is connected. --yes confirms.
`

// failoverCmd runs `xdhcpctl failover ...`.
func failoverCmd(ctx context.Context, args []string, sock string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, failoverUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("xdhcpctl failover " + sub)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	yes := fs.Bool("yes", false, "confirm partner-down")
	if err := fs.Parse(rest); err != nil || fs.NArg() > 0 {
		if err == nil {
			fmt.Fprintf(stderr, "xdhcpctl: failover %s: unexpected %q\n", sub, fs.Args())
		}
		fmt.Fprint(stderr, failoverUsage)
		return 2
	}
	var cmd string
	switch sub {
	case "status":
		cmd = "failover-status"
	case "partner-down":
		if !*yes {
			fmt.Fprint(stderr, "xdhcpctl: failover partner-down needs --yes: only when the partner really is down, or both may give one address to two clients\n")
			return 2
		}
		cmd = "failover-partner-down"
	default:
		fmt.Fprintf(stderr, "xdhcpctl: unknown failover command %q\n%s", sub, failoverUsage)
		return 2
	}
	var st failover.Status
	if err := control.Call(ctx, sock, cmd, nil, &st); err != nil {
		fmt.Fprintf(stderr, "xdhcpctl: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return 0
	}
	printFailover(stdout, st, time.Now())
	return 0
}

// printFailover renders a status for a person.
func printFailover(w io.Writer, s failover.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	since := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return fmt.Sprintf(" since %s (%s ago)", t.Local().Format(time.DateTime), now.Sub(t).Round(time.Second))
	}
	conn := "not connected"
	if s.Connected {
		conn = "connected"
	}
	if s.TLS {
		conn += " (mutual TLS)"
	} else {
		conn += " (plain TCP)"
	}
	fmt.Fprintf(tw, "relationship\t%s (%s), partner %s, %s\n", s.Name, s.Role, s.Peer, conn)
	fmt.Fprintf(tw, "state\t%s%s\n", s.State, since(s.StateSince))
	if s.StateReason != "" {
		fmt.Fprintf(tw, "  because\t%s\n", s.StateReason)
	}
	ps := s.PartnerState
	if ps == "" {
		ps = "unknown (never heard)"
	}
	fmt.Fprintf(tw, "partner state\t%s%s\n", ps, since(s.PartnerStateSince))
	if s.Waiting != "" {
		until := ""
		if !s.WaitingUntil.IsZero() {
			until = fmt.Sprintf(", until %s (in %s)", s.WaitingUntil.Local().Format(time.DateTime), s.WaitingUntil.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(tw, "waiting for\t%s%s\n", s.Waiting, until)
	}
	fmt.Fprintf(tw, "clock skew\t%s (partner minus this server)\n", s.Skew)
	fmt.Fprintf(tw, "mclt\t%s\n", s.MCLT)
	fmt.Fprintf(tw, "updates\tqueued %d, in flight %d; sent %d, acked %d, rejected %d; received %d\n",
		s.QueueDepth, s.Unacked, s.UpdatesSent, s.UpdatesAcked, s.UpdatesRejected, s.UpdatesReceived)
	fmt.Fprintf(tw, "pools\tFREE %d (primary's), BACKUP %d (secondary's)\n", s.Free, s.Backup)
	tw.Flush()
}
