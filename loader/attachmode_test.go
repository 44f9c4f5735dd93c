package loader

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestAttachModeFollowsConfiguration: auto on a veth attaches generic
// (native XDP_TX there needs a program on the peer); a later load asking
// for native re-attaches the pinned generic link natively, and one asking
// for generic (or auto) moves it back, as `ip link` shows (xdpgeneric vs
// xdp); a load asking for the mode already running swaps in place.
func TestAttachModeFollowsConfiguration(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading and attaching XDP needs root")
	}
	ns := netns.ForTest(t, "xa")
	peer := netns.ForTest(t, "xb")
	if err := netns.Veth(ns, "lv0", netip.Prefix{}, peer, "lv1", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-mode-test-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })

	// ipMode is what ip link says runs on lv0.
	ipMode := func() string {
		out, err := ns.Exec(t.Context(), "ip", "link", "show", "lv0")
		if err != nil {
			t.Fatalf("ip link show lv0: %v: %s", err, out)
		}
		switch s := string(out); {
		case strings.Contains(s, "xdpgeneric"):
			return "generic"
		case strings.Contains(s, " xdp "):
			return "native"
		case strings.Contains(s, ": lv0@"):
			return "none"
		default:
			t.Fatalf("ip link show lv0 does not describe the link: %s", s)
		}
		return ""
	}
	for i, step := range []struct {
		mode   Mode
		report Mode   // what Attach returns
		ip     string // what ip link shows after
	}{
		{Auto, Generic, "generic"},
		{Auto, Existing, "generic"},
		{Native, Native, "native"},
		{Native, Existing, "native"},
		{Auto, Generic, "generic"},
		{Generic, Existing, "generic"},
	} {
		err := ns.Do(func() error {
			p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
			if err != nil {
				return err
			}
			defer p.Close() // the pins keep the program attached
			m, err := p.Attach("lv0", step.mode)
			if err != nil {
				return err
			}
			if m != step.report {
				return fmt.Errorf("Attach(%s) = %s, want %s", step.mode, m, step.report)
			}
			if got, err := AttachedMode("lv0"); err != nil || string(got) != step.ip {
				return fmt.Errorf("AttachedMode = %q, %v; want %s", got, err, step.ip)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, step.mode, err)
		}
		if got := ipMode(); got != step.ip {
			t.Fatalf("step %d (%s): ip link shows %s, want %s", i, step.mode, got, step.ip)
		}
	}
	if err := DetachAll(dir); err != nil {
		t.Fatal(err)
	}
	if got := ipMode(); got != "none" {
		t.Fatalf("after DetachAll ip link shows %s", got)
	}
}
