package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/failover"
)

func TestFailoverArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"promote"}, "unknown failover command"},
		{[]string{"partner-down"}, "needs --yes"},
		{[]string{"status", "extra"}, "unexpected"},
		{[]string{"status", "--bogus"}, "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		if code := failoverCmd(context.Background(), c.args, "/nonexistent.sock", &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q, want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := failoverCmd(context.Background(), []string{"status"}, "/nonexistent.sock", &out, &errb); code != 1 || errb.Len() == 0 {
		t.Errorf("no daemon: exit %d, stderr %q", code, errb.String())
	}
}

func TestPrintFailover(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printFailover(&b, failover.Status{Name: "edge", Role: "primary", State: "communications-interrupted", StateSince: now.Add(-90 * time.Second),
		StateReason: "communications failed: EOF", Peer: "10.0.0.2:647", Skew: 2 * time.Second, MCLT: time.Hour,
		QueueDepth: 12, Unacked: 3, UpdatesSent: 100, UpdatesAcked: 97, Free: 500, Backup: 480,
		Waiting: "connection to 10.0.0.2:647; partner-down automatically", WaitingUntil: now.Add(10 * time.Minute)}, now)
	s := b.String()
	for _, want := range []string{"edge (primary), partner 10.0.0.2:647, not connected", "communications-interrupted", "(1m30s ago)",
		"because", "EOF", "unknown (never heard)", "partner-down automatically", "(in 10m0s)", "queued 12, in flight 3; sent 100, acked 97",
		"FREE 500", "BACKUP 480", "1h0m0s"} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
}
