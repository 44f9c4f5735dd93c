// Package testenv lets tests skip for what the machine lacks (root, a
// command, a kernel feature) on a developer's machine, and fail for it in
// CI. A CI run whose end-to-end tests all skipped would pass without
// testing anything, so there, with CI=true in the environment, every such
// skip is a failure naming what is missing.
//
// Skips that are not about the environment (-short, a test binary
// re-executed as a child process) stay plain t.Skip calls.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Strict reports whether a missing tool or privilege fails the test
// instead of skipping it: CI=true in the environment.
func Strict() bool { return os.Getenv("CI") == "true" }

// Skip skips the test for something the environment lacks, or fails it
// when Strict.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("CI=true: %s (a CI machine must provide it: make deps installs the tools; root and the kernel's features are the machine's)", reason)
	}
	t.Skip(reason)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// RequireRoot skips (or fails, when Strict) unless the test runs as
// root; why says what needs it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: "+why)
	}
}

// RequireCommands skips (or fails, when Strict) unless every command is
// found in PATH, where the test will look for it when it runs it.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, c := range names {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		Skipf(t, "%v not installed (make deps installs them)", missing)
	}
}

// RSSFile is this process's resident file pages (RssFile in
// /proc/self/status), in bytes: what a test sees of a mapped database's
// pages it has read.
func RSSFile(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
