package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The helpers run in a child test binary, once with CI=true and once
// without, since a failing or skipping t cannot be observed from inside.
func TestSkipFailsOnlyUnderCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "" {
		t.Skip("child process of TestSkipFailsOnlyUnderCI")
	}
	for _, c := range []struct {
		ci       string
		wantFail bool
	}{{"true", true}, {"", false}, {"false", false}, {"1", false}} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChildMissingCommand$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+c.ci)
		out, err := cmd.CombinedOutput()
		failed := err != nil
		if failed != c.wantFail {
			t.Errorf("CI=%q: failed %v, want %v\n%s", c.ci, failed, c.wantFail, out)
		}
		want := "--- SKIP: TestChildMissingCommand"
		if c.wantFail {
			want = "--- FAIL: TestChildMissingCommand"
		}
		if !strings.Contains(string(out), want) || !strings.Contains(string(out), "xdhcp-no-such-command") {
			t.Errorf("CI=%q: output lacks %q naming the command:\n%s", c.ci, want, out)
		}
	}
}

// TestChildMissingCommand is run by TestSkipFailsOnlyUnderCI.
func TestChildMissingCommand(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "" {
		t.Skip("run as a child process by TestSkipFailsOnlyUnderCI")
	}
	RequireCommands(t, "sh", "xdhcp-no-such-command")
	t.Error("RequireCommands returned for a missing command")
}
