package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpAndVersion: every command's --help (and `help CMD`) prints its
// own usage on stdout and exits 0 before the daemon is contacted (the
// socket here does not exist) or other flags are checked.
func TestHelpAndVersion(t *testing.T) {
	sock := []string{"--socket", "/nonexistent/xdhcpd.sock"}
	type tc struct {
		args []string
		want string
	}
	cases := []tc{
		{[]string{"--help"}, "usage: xdhcpctl [--socket PATH] COMMAND"},
		{[]string{"-h"}, "usage: xdhcpctl [--socket PATH] COMMAND"},
		{[]string{"help"}, "usage: xdhcpctl [--socket PATH] COMMAND"},
		{[]string{"--version"}, "xdhcpctl, "},
		{append(sock, "stats", "--version"), "built with go"},
	}
	cmds := map[string]string{"leasequery": "usage: xdhcpctl leasequery --server"}
	for c, u := range commandUsage {
		cmds[c] = strings.SplitN(u, "\n", 2)[0]
	}
	for cmd, want := range cmds {
		for _, a := range [][]string{
			{cmd, "--help"}, {cmd, "-h"}, append(append([]string{}, sock...), cmd, "--help"),
			{"help", cmd}, {cmd, "--no-such-flag", "--help"},
		} {
			cases = append(cases, tc{a, want})
		}
	}
	cases = append(cases, tc{[]string{"lease", "get", "--help"}, "usage: xdhcpctl [--socket PATH] lease get"},
		tc{[]string{"leasequery", "--server", "bad", "--help"}, "-giaddr"})
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), c.want) || errb.Len() > 0 {
			t.Errorf("xdhcpctl %q: exit %d, stdout %q, stderr %q; want 0 and %q on stdout only", c.args, code, out.String(), errb.String(), c.want)
		}
	}
	var a, b bytes.Buffer
	if code := run([]string{"no-such-command"}, &a, &b); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
