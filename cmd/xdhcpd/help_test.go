package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpAndVersion: --help, -h and `help CMD` print the command's own
// usage on stdout and exit 0 for every command, before the configuration
// (here one that does not exist) is looked at; --version prints the build.
func TestHelpAndVersion(t *testing.T) {
	missing := []string{"--config", "/nonexistent/xdhcpd.yaml"}
	cases := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"--help"}, "xdhcpd check-config [--config FILE]"},
		{[]string{"-h"}, "xdhcpd detach [--config FILE]"},
		{[]string{"help"}, "xdhcpd COMMAND --help"},
		{append(missing, "--help"), "usage:"},
		{[]string{"--version"}, "xdhcpd, "},
		{append([]string{"check-config", "--version"}, missing...), "built with go"},
	}
	for cmd := range commandUsage {
		first := strings.SplitN(commandUsage[cmd], "\n", 2)[0]
		for _, a := range [][]string{
			{cmd, "--help"}, {cmd, "-h"}, {cmd, "-help"}, append(append([]string{cmd}, missing...), "--help"),
			{"help", cmd}, append([]string{cmd, "--help", "--no-such-flag"}, missing...),
		} {
			cases = append(cases, struct {
				args []string
				want string
			}{a, first})
		}
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), c.want) || errb.Len() > 0 {
			t.Errorf("xdhcpd %q: exit %d, stdout %q, stderr %q; want 0 and %q on stdout only", c.args, code, out.String(), errb.String(), c.want)
		}
	}
	// Each command's help is its own, not the general text.
	var a, b bytes.Buffer
	run([]string{"check-config", "--help"}, &a, &b)
	if strings.Contains(a.String(), "detach") {
		t.Errorf("check-config --help printed the general usage: %q", a.String())
	}
	// A real error still exits 2.
	if code := run([]string{"no-such-command"}, &a, &b); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
