package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/config"
)

// TestXdhcpdRigConfig: the rig's daemons run with the holdoffs off
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
		{Xdhcpd{Metrics: floodMetrics, Holdoffs: true}, 2 * time.Second},
	} {
		cfg, err := config.Parse("xdhcpd.yaml", []byte(c.x.config(t.TempDir())))
		if err != nil {
			t.Fatalf("%+v: %v", c.x, err)
		}
		if got := cfg.Server.RequestHoldoff; got != c.want {
			t.Errorf("%+v: request-holdoff %v, want %v", c.x, got, c.want)
		}
		if got := cfg.Server.DiscoverHoldoff; got != c.want {
			t.Errorf("%+v: discover-holdoff %v, want %v", c.x, got, c.want)
		}
	}
}

// TestRigHoldoffInReport: a report says what the rig's holdoffs are; one
// from before the DISCOVER holdoff was turned off in the rig names the
// REQUEST holdoff alone, and one from before either says nothing of them.
func TestRigHoldoffInReport(t *testing.T) {
	for _, c := range []struct {
		request, discover string
		want              string
	}{
		{RigRequestHoldoff, RigDiscoverHoldoff, "xdhcpd runs with server.request-holdoff " + RigRequestHoldoff + " and server.discover-holdoff " + RigDiscoverHoldoff + ", except in the flood sections"},
		{RigRequestHoldoff, "", "xdhcpd runs with server.request-holdoff " + RigRequestHoldoff + ", except in the flood sections"},
		{"", "", ""},
	} {
		md := (&Report{RigRequestHoldoff: c.request, RigDiscoverHoldoff: c.discover}).Markdown()
		if c.want == "" && strings.Contains(md, "xdhcpd runs with") || c.want != "" && !strings.Contains(md, c.want) {
			t.Errorf("holdoffs %q, %q: want %q in\n%s", c.request, c.discover, c.want, md)
		}
	}
}
