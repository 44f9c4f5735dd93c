package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/config"
)

// TestXdhcpdRigConfig: the rig's daemons run with the REQUEST holdoff off
// (XdhcpdConfig says why), except the flood's, and every variant parses
// with the daemon's own configuration reader.
func TestXdhcpdRigConfig(t *testing.T) {
	for _, c := range []struct {
		x    Xdhcpd
		want time.Duration
	}{
		{Xdhcpd{}, 0},
		{Xdhcpd{Fast: "native", Unbounded: true}, 0},
		{Xdhcpd{QueueTarget: "20ms", Metrics: "127.0.0.1:9"}, 0},
		{Xdhcpd{Metrics: floodMetrics, HoldRequests: true}, 2 * time.Second},
	} {
		cfg, err := config.Parse("xdhcpd.yaml", []byte(c.x.config(t.TempDir())))
		if err != nil {
			t.Fatalf("%+v: %v", c.x, err)
		}
		if got := cfg.Server.RequestHoldoff; got != c.want {
			t.Errorf("%+v: request-holdoff %v, want %v", c.x, got, c.want)
		}
	}
}

// TestRigHoldoffInReport: a report says what the rig's request-holdoff
// is; one from before the setting says nothing of it.
func TestRigHoldoffInReport(t *testing.T) {
	for _, c := range []struct {
		holdoff string
		want    bool
	}{{RigRequestHoldoff, true}, {"", false}} {
		md := (&Report{RigRequestHoldoff: c.holdoff}).Markdown()
		if got := strings.Contains(md, "xdhcpd runs with server.request-holdoff "+RigRequestHoldoff+", except in the flood sections"); got != c.want {
			t.Errorf("RigRequestHoldoff %q: sentence there %v, want %v", c.holdoff, got, c.want)
		}
	}
}
