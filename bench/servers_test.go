package bench

import (
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
