package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestScenariosEndToEnd runs every generator scenario briefly against
// xdhcpd (XDP native) over the rig's veth, in both modes where they
// apply, and the selftest against the reflector. It asserts that answers
// came and were valid, not how fast.
func TestScenariosEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: creates network namespaces and attaches XDP")
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pop := DefaultPopulation(true, true, 0)
	for _, c := range []struct {
		scenario, mode string
		server         Server
		sender         string
		injection      string // for SenderXDP; "": live frames where the kernel runs them
	}{
		{loadgen.DORA, "relay", Xdhcpd{Bin: bin}, SenderSockets, ""},
		{loadgen.Renew, "relay", Xdhcpd{Bin: bin, Fast: "native"}, SenderSockets, ""},
		{loadgen.Renew, "l2", Xdhcpd{Bin: bin, Fast: "native"}, SenderSockets, ""},
		{loadgen.Mixed, "relay", Xdhcpd{Bin: bin, Fast: "native"}, SenderSockets, ""},
		{loadgen.Release, "l2", Xdhcpd{Bin: bin}, SenderSockets, ""},
		// Renewals from the kernel: answered by XDP, and by the slow path
		// (whose answers come back through the kernel's UDP stack).
		{loadgen.Renew, "relay", Xdhcpd{Bin: bin, Fast: "native"}, SenderXDP, ""},
		{loadgen.Renew, "l2", Xdhcpd{Bin: bin}, SenderXDP, ""},
		// The kernel sender's fallback, tested on kernels that run live
		// frames too (where they are refused, the rows above use it).
		{loadgen.Renew, "relay", Xdhcpd{Bin: bin, Fast: "native"}, SenderXDP, InjectTestRuns},
	} {
		t.Run(c.scenario+"-"+c.mode+"-"+c.server.Name()+"-"+c.sender+c.injection, func(t *testing.T) {
			r := rig.Scenario(ctx, c.server, ScenarioOptions{Scenario: c.scenario, Mode: c.mode, Clients: 300, Pop: pop, Rate: 400, Step: time.Second,
				Sender: c.sender, Injection: c.injection})
			checkResult(t, r)
			if c.sender == SenderXDP {
				checkInjection(t, r, c.injection)
			}
			if c.scenario == loadgen.Mixed && r.Best.Released == 0 {
				t.Error("mixed scenario released nothing")
			}
		})
	}
	t.Run("selftest-relay", func(t *testing.T) {
		checkResult(t, rig.Selftest(ctx, ScenarioOptions{Mode: "relay", Clients: 300, Pop: pop, Rate: 2000, Step: time.Second}))
	})
	t.Run("selftest-relay-xdp", func(t *testing.T) {
		r := rig.Selftest(ctx, ScenarioOptions{Mode: "relay", Clients: 300, Pop: pop, Rate: 2000, Step: time.Second, Sender: SenderXDP})
		checkResult(t, r)
		checkInjection(t, r, "")
	})
	// The kernel sender pins its thread to one CPU while it sends. No
	// thread may keep the pin: the rig's other work, and the servers it
	// starts (which inherit the starting thread's CPUs), would share that
	// CPU with the next sender.
	want, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		if got, w := cpusAllowed(b), cpusAllowed(want); got != w {
			t.Errorf("thread %s may run on CPUs %s, the process on %s", filepath.Base(filepath.Dir(f)), got, w)
		}
	}
}

// cpusAllowed is the Cpus_allowed_list line of a /proc status file.
func cpusAllowed(status []byte) string {
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Cpus_allowed_list:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "Cpus_allowed_list:"))
		}
	}
	return ""
}

// checkInjection: the kernel sender sent as asked, or, asked for
// nothing, in live frames exactly where the kernel runs them.
func checkInjection(t *testing.T, r ScenarioResult, asked string) {
	t.Helper()
	want := asked
	if want == "" {
		want = InjectLive
		if err := liveFrames(); err != nil {
			want = InjectTestRuns
			t.Logf("sent by test runs: %v", err)
		}
	}
	if r.Injection != want {
		t.Errorf("the kernel sender sent by %q, want %q", r.Injection, want)
	}
}

func checkResult(t *testing.T, r ScenarioResult) {
	t.Helper()
	x := r.Best
	t.Logf("%s %s %s %s: started %d answered %d dropped %d wrong %d late %d p99 %.0fµs", r.Server, r.Scenario, r.Mode, r.Sender, x.Started, x.Answered, x.Dropped, x.Wrong, x.Late, x.P99)
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	if x.Answered == 0 || x.Wrong != 0 || x.NAKs != 0 {
		t.Fatalf("want valid answers only: %+v", x)
	}
	// A second at a few hundred operations: nearly all are answered.
	if x.Answered < x.Started*9/10 {
		t.Fatalf("answered %d of %d started", x.Answered, x.Started)
	}
}
