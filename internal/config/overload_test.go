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
	if s := c.Server; s.MaxWait != time.Second || s.QueueTarget != 10*time.Millisecond || s.QueueInterval != 100*time.Millisecond {
		t.Fatalf("defaults %v %v %v", s.MaxWait, s.QueueTarget, s.QueueInterval)
	}
	off := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  max-wait: 0s\n  queue-target: 0s", 1)
	if c, err := Parse("x.yaml", []byte(off)); err != nil || c.Server.MaxWait != 0 || c.Server.QueueTarget != 0 {
		t.Fatalf("turned off: %+v %v", c.Server, err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"max-wait: 2m", "server.max-wait"},
		{"max-wait: 1s\n  queue-target: 2s", "server.queue-target"},
		{"queue-target: 50ms\n  queue-interval: 10ms", "server.queue-interval"},
	} {
		y := strings.Replace(failoverBase, "state-dir: /var/lib/xdhcp", "state-dir: /var/lib/xdhcp\n  "+bad.yaml, 1)
		if _, err := Parse("x.yaml", []byte(y)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error naming %s", bad.yaml, err, bad.want)
		}
	}
}
