package loader

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/netns"
)

func TestPinReuseSwapAndDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading and attaching XDP needs root")
	}
	ns := netns.ForTest(t, "xl")
	peer := netns.ForTest(t, "xm")
	if err := netns.Veth(ns, "lv0", netip.Prefix{}, peer, "lv1", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-loader-test-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })

	err := ns.Do(func() error {
		p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
		if err != nil {
			return err
		}
		if p.Reused || p.Upgraded {
			return fmt.Errorf("first load reports reused maps (%v) or an upgrade (%v)", p.Reused, p.Upgraded)
		}
		if m, err := p.Attach("lv0", Generic); err != nil || m != Generic {
			return fmt.Errorf("attach: %v %v", m, err)
		}
		if err := p.Objs.XdhcpConfig.Put(uint32(0), &bpf.XdpXdhcpSettings{}); err != nil {
			return err
		}
		p.Close() // the pins keep the program attached

		// An older version's ring buffer, which this one retires.
		old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
		if err != nil {
			return err
		}
		defer old.Close()
		if err := old.Pin(filepath.Join(dir, "xdhcp_events")); err != nil {
			return err
		}
		// And its hash of reply templates, now an array under another name.
		oldT, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 516, MaxEntries: 16})
		if err != nil {
			return err
		}
		defer oldT.Close()
		if err := oldT.Pin(filepath.Join(dir, "xdhcp_templates")); err != nil {
			return err
		}

		p2, err := Load(Options{PinDir: dir, MaxLeases: 1024})
		if err != nil {
			return err
		}
		defer p2.Close()
		if !p2.Reused {
			return fmt.Errorf("second load did not reuse the pinned maps")
		}
		for _, name := range []string{"xdhcp_events", "xdhcp_templates"} {
			if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
				return fmt.Errorf("the retired map %s is still pinned: %v", name, err)
			}
		}
		if !p2.Upgraded {
			return fmt.Errorf("retiring an older version's maps is not reported as an upgrade")
		}
		cpus, _ := ebpf.PossibleCPU()
		if n := p2.Objs.XdhcpEvheads.MaxEntries(); n != uint32(cpus) {
			return fmt.Errorf("%d event ring heads for %d CPUs", n, cpus)
		}
		if m, err := p2.Attach("lv0", Generic); err != nil || m != "existing" {
			return fmt.Errorf("second attach should swap into the pinned link: %v %v", m, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := DetachAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pin directory left behind: %v", err)
	}
	out, _ := ns.Exec(t.Context(), "ip", "link", "show", "lv0")
	if strings.Contains(string(out), "xdp") {
		t.Fatalf("XDP still attached after DetachAll:\n%s", out)
	}
}
