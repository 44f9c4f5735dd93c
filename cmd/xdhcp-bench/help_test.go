package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpAndVersion: every command's --help prints its own usage lines on
// stdout and exits 0 before anything else is checked: the --xdhcpd binary
// (absent here, as on a clean clone), root, or flag values.
func TestHelpAndVersion(t *testing.T) {
	bad := []string{"--xdhcpd", "/nonexistent/xdhcpd", "--vlans", "9"}
	type tc struct {
		args []string
		want string
	}
	cases := []tc{
		{[]string{"--help"}, "xdhcp-bench selftest"},
		{[]string{"-h"}, "xdhcp-bench selftest"},
		{[]string{"help"}, "xdhcp-bench selftest"},
		{[]string{"--version"}, "xdhcp-bench, "},
		{append([]string{"run", "--version"}, bad...), "built with go"},
	}
	for _, cmd := range commands {
		want := "  xdhcp-bench " + cmd + " "
		for _, a := range [][]string{
			{cmd, "--help"}, {cmd, "-h"}, append(append([]string{cmd}, bad...), "--help"), {"help", cmd},
		} {
			cases = append(cases, tc{a, want})
		}
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), c.want) || errb.Len() > 0 {
			t.Errorf("xdhcp-bench %q: exit %d, stdout %q, stderr %q; want 0 and %q on stdout only", c.args, code, out.String(), errb.String(), c.want)
		}
	}
	// A command's help holds its own line and no other command's.
	var out, errb bytes.Buffer
	run([]string{"cost", "--help"}, &out, &errb)
	if strings.Contains(out.String(), "xdhcp-bench run ") {
		t.Errorf("cost --help printed other commands: %q", out.String())
	}
	errb.Reset()
	if code := run([]string{"overload", "--xdhcpd", "/nonexistent", "--order", "sorted"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--order") {
		t.Errorf("a bad --order: exit %d, stderr %q; want 2 naming the flag", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"overload", "--xdhcpd", "/nonexistent", "--scenario", "dora", "--order", "scattered"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--order scattered") {
		t.Errorf("--order scattered for DORA: exit %d, stderr %q; want 2 saying why", code, errb.String())
	}
	if code := run([]string{"no-such-command", "--xdhcpd", "/nonexistent"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 naming it", code, errb.String())
	}
}
