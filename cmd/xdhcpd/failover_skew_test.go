package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// skewedPeer starts xdhcpd like xdhcpdPeer with its whole clock (slow
// path, failover, the XDP program's unix time) off by offset
// (clockOffsetEnv; the daemon inherits the test's environment).
func (f *foNet) skewedPeer(role, addr, peer string, offset time.Duration) *lab {
	f.t.Helper()
	os.Setenv(clockOffsetEnv, offset.String())
	defer os.Unsetenv(clockOffsetEnv)
	return f.xdhcpdPeer(role, addr, peer)
}

// restartWith appends lines to l's failover: section and restarts it,
// with its clock offset when offset is not zero.
func (l *lab) restartWith(extra string, offset time.Duration) {
	l.t.Helper()
	b, err := os.ReadFile(l.cfgPath)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(l.cfgPath, append(b, extra...), 0o600); err != nil {
		l.t.Fatal(err)
	}
	l.daemon.Stop()
	if offset != 0 {
		os.Setenv(clockOffsetEnv, offset.String())
		defer os.Unsetenv(clockOffsetEnv)
	}
	l.start()
}

// TestFailoverClockSkew: the secondary's clock runs 3 minutes ahead. With
// max-skew at its default (1 minute) the pair is refused at CONNECT with
// reject reason 4 and says why; with max-skew 10m the pair reaches
// NORMAL, measures the skew, and a binding the primary grants is stored
// on the secondary with its times on the secondary's clock (3 minutes
// later), which is what its MCLT arithmetic reads.
func TestFailoverClockSkew(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	needTools(t, "udhcpc", "ip")
	if os.Getenv(clockOffsetEnv) != "" {
		t.Fatalf("%s is set in the test's environment", clockOffsetEnv)
	}
	const skew = 3 * time.Minute
	f := newFoNet(t)
	f.tls = true
	p := f.xdhcpdPeer("primary", "10.79.0.1", "10.79.0.2")
	s := f.skewedPeer("secondary", "10.79.0.2", "10.79.0.1", skew)
	waitFor(t, "the secondary to refuse the skew", 20*time.Second, func() bool {
		return strings.Contains(s.daemon.Output(), "apart, more than 1m0s")
	})
	if st := foStatus(s); st.Connected || st.State == "normal" {
		t.Fatalf("the secondary is %s (connected %v) with its clock 3 minutes ahead", st.State, st.Connected)
	}
	if st := foStatus(p); st.Connected || st.State == "normal" {
		t.Fatalf("the primary is %s (connected %v) with its partner's clock 3 minutes ahead", st.State, st.Connected)
	}

	// The operator allows it: the pair connects and corrects.
	s.restartWith("  max-skew: 10m\n", skew)
	p.restartWith("  max-skew: 10m\n", 0)
	st := waitFoState(p, "normal", "normal", 60*time.Second)
	waitFoState(s, "normal", "normal", 10*time.Second)
	if d := st.Skew - skew; d.Abs() > 2*time.Second {
		t.Fatalf("the primary measured a skew of %s, want %s", st.Skew, skew)
	}
	t.Logf("the primary measures the secondary's clock %s ahead", st.Skew)
	mac := clientsByBucket(true, 1, 7)[0]
	if _, server, _ := f.client(mac).dora(t); server != "10.79.0.1" {
		t.Fatalf("%s was answered by %s, want the primary", mac, server)
	}
	pl, ok := p.leaseFor(mac)
	if !ok {
		t.Fatal("the primary has no lease for its client")
	}
	var sl struct{ Expires, CLTT string }
	waitFor(t, "the binding on the secondary", 10*time.Second, func() bool {
		l, ok := s.leaseFor(mac)
		sl.Expires, sl.CLTT = l.Expires, l.CLTT
		return ok && l.State == "active"
	})
	for _, c := range []struct{ what, prim, sec string }{{"expiry", pl.Expires, sl.Expires}, {"CLTT", pl.CLTT, sl.CLTT}} {
		pt, perr := time.Parse(time.RFC3339, c.prim)
		st, serr := time.Parse(time.RFC3339, c.sec)
		if perr != nil || serr != nil {
			t.Fatalf("%s: %q / %q: %v %v", c.what, c.prim, c.sec, perr, serr)
		}
		if d := st.Sub(pt) - skew; d.Abs() > 2*time.Second {
			t.Errorf("%s on the secondary %s, on the primary %s: %s apart, want %s (its clock)", c.what, st, pt, st.Sub(pt), skew)
		}
		t.Logf("%s: primary %s, secondary %s", c.what, pt, st)
	}
}
