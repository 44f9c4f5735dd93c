package linkwatch

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestWatchFollowsTheLink: in a namespace of its own, an interface that is
// missing, created, given an address, brought up, deleted and re-created
// (a new index), renamed away and back: Watch reports each state.
func TestWatchFollowsTheLink(t *testing.T) {
	testenv.RequireRoot(t, "a network namespace of its own")
	ns := netns.ForTest(t, "lw")
	ctx, cancel := context.WithCancel(context.Background())
	views := make(chan map[string]Link, 16)
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			return Watch(ctx, func() []string { return []string{"lw0"} }, Options{Resync: time.Hour}, func(m map[string]Link) { views <- m })
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	// next waits for a view that satisfies ok, and returns it.
	next := func(what string, ok func(map[string]Link) bool) map[string]Link {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case v := <-views:
				if ok(v) {
					return v
				}
			case <-deadline:
				t.Fatalf("no view where %s within 5 s", what)
			}
		}
	}
	in := func(f func() error) {
		t.Helper()
		if err := ns.Do(f); err != nil {
			t.Fatal(err)
		}
	}
	next("lw0 is missing", func(m map[string]Link) bool { _, ok := m["lw0"]; return !ok })

	add := func() {
		// A veth (this kernel has no dummy links); its peer goes with it.
		in(func() error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lw0"}, PeerName: "lwp0"})
		})
	}
	add()
	first := next("lw0 exists", func(m map[string]Link) bool { _, ok := m["lw0"]; return ok })["lw0"]
	if first.Index == 0 || first.Up || len(first.HWAddr) != 6 {
		t.Fatalf("new link %+v", first)
	}
	pfx := netip.MustParsePrefix("10.9.0.1/24")
	in(func() error {
		l, err := netlink.LinkByName("lw0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: netlink.NewIPNet(pfx.Addr().AsSlice())}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	// NewIPNet gives a /32; the prefix length is read back as set.
	up := next("lw0 is up with its address", func(m map[string]Link) bool {
		l := m["lw0"]
		return l.Up && slices.Contains(l.Addrs, netip.PrefixFrom(pfx.Addr(), 32))
	})["lw0"]
	if up.Index != first.Index {
		t.Fatalf("index moved from %d to %d without a re-creation", first.Index, up.Index)
	}

	in(func() error {
		l, err := netlink.LinkByName("lw0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	next("lw0 is gone", func(m map[string]Link) bool { _, ok := m["lw0"]; return !ok })
	add()
	again := next("lw0 is back", func(m map[string]Link) bool { _, ok := m["lw0"]; return ok })["lw0"]
	if again.Index == first.Index || len(again.Addrs) != 0 {
		t.Fatalf("re-created link %+v, first %+v", again, first)
	}

	in(func() error {
		l, err := netlink.LinkByName("lw0")
		if err != nil {
			return err
		}
		return netlink.LinkSetName(l, "lw1")
	})
	next("lw0 renamed away", func(m map[string]Link) bool { _, ok := m["lw0"]; return !ok })
	in(func() error {
		l, err := netlink.LinkByName("lw1")
		if err != nil {
			return err
		}
		return netlink.LinkSetName(l, "lw0")
	})
	back := next("lw0 renamed back", func(m map[string]Link) bool { _, ok := m["lw0"]; return ok })["lw0"]
	if back.Index != again.Index {
		t.Fatalf("a rename changed the index: %d -> %d", again.Index, back.Index)
	}
}
