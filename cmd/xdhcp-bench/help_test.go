package main

import (
	"bytes"
	"slices"
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
	errb.Reset()
	if code := run([]string{"flood", "--xdhcpd", "/nonexistent", "--kind", "inform"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--kind") {
		t.Errorf("a bad --kind: exit %d, stderr %q; want 2 naming the flag", code, errb.String())
	}
	if code := run([]string{"no-such-command", "--xdhcpd", "/nonexistent"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 naming it", code, errb.String())
	}
}

// TestParseFractions: overload's shares are above 0; overload-xdp's may
// be 0 (the renewals alone); none may be negative, above 5 or not a
// number.
func TestParseFractions(t *testing.T) {
	for _, c := range []struct {
		in     string
		zeroOK bool
		want   []float64
	}{
		{"0.5,1,1.2", false, []float64{0.5, 1, 1.2}},
		{" 1.5 ", false, []float64{1.5}},
		{"0,1.2", true, []float64{0, 1.2}},
		{"0,1.2", false, nil},
		{"-1", true, nil},
		{"6", true, nil},
		{"a", false, nil},
		{"1,,2", false, nil},
	} {
		got, err := parseFractions(c.in, c.zeroOK)
		if c.want == nil {
			if err == nil || !strings.Contains(err.Error(), "want shares of the ceiling") {
				t.Errorf("parseFractions(%q, %v) = %v, %v; want an error saying what it wants", c.in, c.zeroOK, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseFractions(%q, %v) = %v, %v; want %v", c.in, c.zeroOK, got, err, c.want)
		}
	}
}
