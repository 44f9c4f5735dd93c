package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestForceRenewCampaign renumbers 200 emulated clients end to end: bound
// in pool A, pool A marked draining beside pool B and reloaded, a move
// campaign at an unlimited rate; the clients verify each FORCERENEW's
// signature and answer it, are NAKed and take an address in pool B. It
// asserts where everything ended and the counts, not the timing.
func TestForceRenewCampaign(t *testing.T) {
	testenv.RequireRoot(t, "creates network namespaces")
	if testing.Short() {
		t.Skip("end to end; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "xdhcpd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdhcp/xdhcp/cmd/xdhcpd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rig, err := NewRig()
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	const n = 200
	for _, fast := range []string{"", "native"} {
		t.Run("fastpath="+fast, func(t *testing.T) {
			res := rig.ForceRenew(context.Background(), ForceRenewOptions{Bin: bin, Fast: fast, Clients: n, Timeout: time.Minute})
			if res.Err != "" {
				t.Fatalf("run failed: %s\n%+v", res.Err, res)
			}
			t.Logf("campaign %.2fs, %.0f FORCERENEW/s; campaign %+v; clients %+v", res.Seconds, res.SentPerSecond, res.Campaign, res.ClientsSaw)
			c := res.Campaign
			if c.Total != n || c.Sent != n || c.Moved != n || c.Renewed != 0 || c.NoAnswer != 0 || c.NoKey != 0 || c.Remaining != 0 || !c.Done {
				t.Errorf("campaign status %+v: want all %d sent and moved", c, n)
			}
			if c.Transmissions < n {
				t.Errorf("%d transmissions for %d clients", c.Transmissions, n)
			}
			if res.LeasesInA != 0 {
				t.Errorf("%d leases left in pool A", res.LeasesInA)
			}
			if res.LeasesInB != n || res.ClientsInB != n {
				t.Errorf("pool B: %d leases, %d of %d clients", res.LeasesInB, res.ClientsInB, n)
			}
			s := res.ClientsSaw
			if s.Accepted < n || s.NAKed < n || s.Moved != s.NAKed || s.BadDigest != 0 || s.NoKey != 0 {
				t.Errorf("clients' counts %+v: want every client to verify, be NAKed and move once", s)
			}
		})
	}
}

// TestSignRate checks that the measurement runs and that what it signed
// verifies (SignRate checks the last message; a rate of broken
// signatures would mean nothing); the rate itself is not asserted.
func TestSignRate(t *testing.T) {
	r, err := SignRate(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signed == 0 || r.PerSecond <= 0 {
		t.Fatalf("signed nothing: %+v", r)
	}
	t.Logf("%.0f signed FORCERENEW/s on one goroutine", r.PerSecond)
}
