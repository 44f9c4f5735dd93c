package config

import (
	"strings"
	"testing"
	"time"
)

// TestWaitBounds: the request wait bounds' defaults and their checks.
func TestWaitBounds(t *testing.T) {
	c, err := Parse("x.yaml", []byte(failoverBase))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Server; s.MaxWait != time.Second || s.QueueTarget != DefaultQueueTarget || s.QueueInterval != 100*time.Millisecond || s.DiscoverHoldoff != 2*time.Second || s.RequestHoldoff != 2*time.Second {
		t.Fatalf("defaults %v %v %v %v %v", s.MaxWait, s.QueueTarget, s.QueueInterval, s.DiscoverHoldoff, s.RequestHoldoff)
	}
	off := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  max-wait: 0s\n  queue-target: 0s", 1)
	if c, err := Parse("x.yaml", []byte(off)); err != nil || c.Server.MaxWait != 0 || c.Server.QueueTarget != 0 {
		t.Fatalf("turned off: %+v %v", c.Server, err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"max-wait: 2m", "server.max-wait"},
		{"max-wait: 1s\n  queue-target: 2s", "server.queue-target"},
		{"queue-target: 50ms\n  queue-interval: 10ms", "server.queue-interval"},
		{"discover-holdoff: -1s", "server.discover-holdoff"},
		{"discover-holdoff: 2m", "server.discover-holdoff"},
		{"request-holdoff: -1s", "server.request-holdoff"},
		{"request-holdoff: 2m", "server.request-holdoff"},
		// Each is checked whatever the other settings say.
		{"max-wait: 2m\n  request-holdoff: 2m", "server.request-holdoff"},
	} {
		y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+bad.yaml, 1)
		if _, err := Parse("x.yaml", []byte(y)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error naming %s", bad.yaml, err, bad.want)
		}
	}
}

// TestHoldoffWarning: a holdoff long enough to drop an RFC 2131 client's
// retransmission is taken, with a warning.
func TestHoldoffWarning(t *testing.T) {
	for _, key := range []string{"discover-holdoff", "request-holdoff"} {
		for _, tc := range []struct {
			holdoff string
			warned  bool
		}{{"2s", false}, {"3s", true}} {
			y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+key+": "+tc.holdoff, 1)
			c, err := Parse("x.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(strings.Join(c.Warnings(), "\n"), "server."+key); got != tc.warned {
				t.Errorf("%s %s: warned %v, want %v (%q)", key, tc.holdoff, got, tc.warned, c.Warnings())
			}
		}
	}
}

// TestGCPercent: server.gc-percent's default, a setting, and its bounds.
func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want int    // when err is ""
		err  string // part of the error
	}{
		{"", DefaultGCPercent, ""},
		{"gc-percent: 100", 100, ""},
		{"gc-percent: 10", 10, ""},
		{"gc-percent: 9", 0, "server.gc-percent: 9 is outside 10..1000"},
		{"gc-percent: 5000", 0, "server.gc-percent: 5000 is outside 10..1000"},
		{"gc-percent: lots", 0, "cannot unmarshal !!str `lots` into int"}, // named by its line
	} {
		y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+c.yaml, 1)
		cfg, err := Parse("x.yaml", []byte(y))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case c.err == "" && cfg.Server.GCPercent != c.want:
			t.Errorf("%q: gc-percent %d, want %d", c.yaml, cfg.Server.GCPercent, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one naming %q", c.yaml, err, c.err)
		}
	}
}

// TestJournal: server.journal-fold-every and journal-max, their defaults,
// settings and bounds.
func TestJournal(t *testing.T) {
	for _, c := range []struct {
		yaml  string
		every time.Duration // when err is ""
		max   int
		err   string // part of the error
	}{
		{"", time.Second, 1 << 18, ""},
		{"journal-fold-every: 250ms", 250 * time.Millisecond, 1 << 18, ""},
		{"journal-max: 4096", time.Second, 4096, ""},
		{"journal-fold-every: 1ms", 0, 0, "server.journal-fold-every: 1ms is outside 10ms..1m"},
		{"journal-fold-every: 2h", 0, 0, "server.journal-fold-every: 2h0m0s is outside 10ms..1m"},
		{"journal-fold-every: often", 0, 0, "server.journal-fold-every"},
		{"journal-max: 10", 0, 0, "server.journal-max: 10 is outside 1024..16777216"},
		{"journal-max: -1", 0, 0, "server.journal-max: -1 is outside"},
	} {
		y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+c.yaml, 1)
		cfg, err := Parse("x.yaml", []byte(y))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case c.err == "" && (cfg.Server.FoldEvery != c.every || cfg.Server.JournalMax != c.max):
			t.Errorf("%q: fold every %v, max %d; want %v, %d", c.yaml, cfg.Server.FoldEvery, cfg.Server.JournalMax, c.every, c.max)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one naming %q", c.yaml, err, c.err)
		}
	}
}

// TestRenewalAck: server.renewal-ack's default, its values, and the
// warning for a horizon too short for renewals to be ACKed on it.
func TestRenewalAck(t *testing.T) {
	for _, tc := range []struct {
		yaml, fastpath string
		want           string // when err is ""
		err            string // part of the error
		warned         bool   // fastpath.horizon named in a warning
	}{
		{yaml: "", want: RenewalAckHorizon},
		{yaml: "renewal-ack: record", want: RenewalAckRecord},
		{yaml: "renewal-ack: horizon", want: RenewalAckHorizon},
		{yaml: "renewal-ack: soon", err: `server.renewal-ack: "soon" is neither "horizon" nor "record"`},
		// The lease time defaults to an hour: horizons of 4h by default.
		{yaml: "", fastpath: "horizon: 90m", want: RenewalAckHorizon, warned: true},
		{yaml: "renewal-ack: record", fastpath: "horizon: 90m", want: RenewalAckRecord},
		{yaml: "", fastpath: "horizon: 2h", want: RenewalAckHorizon},
	} {
		y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+tc.yaml, 1)
		if tc.fastpath != "" {
			y += "fastpath:\n  " + tc.fastpath + "\n"
		}
		c, err := Parse("x.yaml", []byte(y))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q %q: %v", tc.yaml, tc.fastpath, err)
		}
		if c.Server.RenewalAck != tc.want {
			t.Errorf("%q: %q, want %q", tc.yaml, c.Server.RenewalAck, tc.want)
		}
		if got := strings.Contains(strings.Join(c.Warnings(), "\n"), "fastpath.horizon: 1h30m0s is less than twice the longest lease time"); got != tc.warned {
			t.Errorf("%q %q: warned %v, want %v (%q)", tc.yaml, tc.fastpath, got, tc.warned, c.Warnings())
		}
	}
}
