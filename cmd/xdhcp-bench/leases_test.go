package main

import (
	"bytes"
	"strings"
	"testing"
)

// A --leases list that does not parse is refused before anything else is
// set up (root, namespaces, the daemon), naming what is wrong.
func TestLeasesFlagIsCheckedFirst(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"startup", "--leases", "1000000,abc"}, `lease count "abc"`},
		{[]string{"startup", "--leases", "0"}, "want 1 to"},
		{[]string{"startup", "--leases", ""}, ""}, // the default
		{[]string{"failover-catchup", "--leases", "20M"}, "want 1 to 16777214"},
	} {
		var out, errb bytes.Buffer
		code := run(append(c.args, "--xdhcpd", "/nonexistent/xdhcpd"), &out, &errb)
		if c.want == "" {
			if strings.Contains(errb.String(), "--leases") {
				t.Errorf("%q: %s", c.args, errb.String())
			}
			continue
		}
		if code != 2 || !strings.Contains(errb.String(), "xdhcp-bench: --leases: ") || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
