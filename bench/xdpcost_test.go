package bench

import (
	"context"
	"os"
	"testing"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// The cost harness itself: both cases must be answered with XDP_TX through
// the restoring wrapper (XDPCost fails otherwise), and the three figures
// must be consistent (the program costs something over the empty
// target). Speed is not asserted; make bench reports it.
func TestXDPCostHarness(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	res, err := XDPCost(context.Background(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d cases, want direct and relayed", len(res))
	}
	for _, c := range res {
		if c.Rounds != costRounds || c.Runs != 2000 || c.Baseline <= 0 || c.Measured <= c.Baseline || c.Unresize < 0 {
			t.Errorf("%+v", c)
		}
	}
}
