package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

func TestPinReuseSwapAndDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading and attaching XDP needs root")
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
	if on, out, err := xdpAttached(t, ns, "lv0"); err != nil || on {
		t.Fatalf("XDP still attached after DetachAll (%v):\n%s", err, out)
	}
}

// xdpAttached says whether ip link shows an XDP program on ifname in ns.
// ip's error and output are checked, so an ip that failed or printed
// nothing about the link does not read as "detached".
func xdpAttached(t *testing.T, ns *netns.NS, ifname string) (bool, string, error) {
	t.Helper()
	out, err := ns.Exec(t.Context(), "ip", "link", "show", ifname)
	if err != nil {
		return false, string(out), fmt.Errorf("ip link show %s: %w", ifname, err)
	}
	if !strings.Contains(string(out), ": "+ifname+":") && !strings.Contains(string(out), ": "+ifname+"@") {
		return false, string(out), fmt.Errorf("ip link show %s: output does not describe the link", ifname)
	}
	return strings.Contains(string(out), "xdp"), string(out), nil
}

// TestLoadRetiresMapsOfAnotherLayout: an older version's lease map (a
// shorter entry) and counters (one fewer) pinned in the directory are
// retired, not refused: the program gets fresh maps in its own layout and
// reports an upgrade and no reused lease map (so that the daemon holds
// leases to their horizons and refills the map from bbolt), maps whose
// layout did not change are kept with their contents, and the next load
// reuses everything. A lease map of another capacity goes the same way.
func TestLoadRetiresMapsOfAnotherLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-retire-test-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	leaseSize, counters := p.Objs.XdhcpLeases.ValueSize(), p.Objs.XdhcpCounters.MaxEntries()
	settings := bpf.XdpXdhcpSettings{MinGrant: 77}
	if err := p.Objs.XdhcpConfig.Put(uint32(0), &settings); err != nil {
		t.Fatal(err)
	}
	p.Close()

	for name, spec := range map[string]*ebpf.MapSpec{
		bpf.XdpMapXdhcpLeases:   {Type: ebpf.Hash, KeySize: 4, ValueSize: leaseSize - 8, MaxEntries: 1024, Flags: unix.BPF_F_NO_PREALLOC},
		bpf.XdpMapXdhcpCounters: {Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: counters - 1},
	} {
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		old, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if err := old.Pin(path); err != nil {
			t.Fatal(err)
		}
	}
	p2, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("an older version's pinned maps: %v", err)
	}
	if p2.Reused || !p2.Upgraded {
		t.Fatalf("after retiring an older lease map: reused %v (want false), upgraded %v (want true)", p2.Reused, p2.Upgraded)
	}
	if n := p2.Objs.XdhcpLeases.ValueSize(); n != leaseSize {
		t.Fatalf("lease entries of %d bytes, want %d", n, leaseSize)
	}
	var got bpf.XdpXdhcpSettings
	if err := p2.Objs.XdhcpConfig.Lookup(uint32(0), &got); err != nil || got != settings {
		t.Fatalf("the settings map, unchanged in layout, was not kept: %+v %v", got, err)
	}
	p2.Close()
	for name, want := range map[string]uint32{bpf.XdpMapXdhcpLeases: leaseSize, bpf.XdpMapXdhcpCounters: 8} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.ValueSize() != want || (name == bpf.XdpMapXdhcpCounters && m.MaxEntries() != counters) {
			t.Fatalf("pinned %s: value size %d, %d entries", name, m.ValueSize(), m.MaxEntries())
		}
		m.Close()
	}

	p3, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if !p3.Reused || p3.Upgraded {
		t.Fatalf("the load after: reused %v (want true), upgraded %v (want false)", p3.Reused, p3.Upgraded)
	}
	p3.Close()

	p4, err := Load(Options{PinDir: dir, MaxLeases: 2048})
	if err != nil {
		t.Fatalf("another max-leases: %v", err)
	}
	defer p4.Close()
	if p4.Reused || !p4.Upgraded || p4.Objs.XdhcpLeases.MaxEntries() != 2048 {
		t.Fatalf("another max-leases: reused %v, upgraded %v, %d entries", p4.Reused, p4.Upgraded, p4.Objs.XdhcpLeases.MaxEntries())
	}
}

// A link pinned for an interface the configuration no longer serves is
// removed; the served ones keep theirs.
func TestDetachOthersKeepsOnlyServedInterfaces(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading and attaching XDP needs root")
	}
	ns := netns.ForTest(t, "xl")
	peer := netns.ForTest(t, "xm")
	for _, pair := range [][2]string{{"lv0", "lv1"}, {"lv2", "lv3"}} {
		if err := netns.Veth(ns, pair[0], netip.Prefix{}, peer, pair[1], netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-loader-others-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	err := ns.Do(func() error {
		p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
		if err != nil {
			return err
		}
		defer p.Close()
		for _, ifname := range []string{"lv0", "lv2"} {
			if _, err := p.Attach(ifname, Generic); err != nil {
				return err
			}
		}
		gone, err := p.DetachOthers([]string{"lv0"})
		if err != nil || len(gone) != 1 || gone[0] != "lv2" {
			return fmt.Errorf("DetachOthers = %v, %v; want [lv2]", gone, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "link_lv2")); !os.IsNotExist(err) {
			return fmt.Errorf("link_lv2 still pinned: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "link_lv0")); err != nil {
			return fmt.Errorf("link_lv0 of a served interface: %w", err)
		}
		// Gone while this process still runs, not only once it exits.
		if on, out, err := xdpAttached(t, ns, "lv2"); err != nil || on {
			return fmt.Errorf("lv2 still runs XDP (%v):\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for ifname, want := range map[string]bool{"lv0": true, "lv2": false} {
		got, out, err := xdpAttached(t, ns, ifname)
		if err != nil {
			t.Errorf("%s: %v:\n%s", ifname, err, out)
		} else if got != want {
			t.Errorf("%s: XDP attached %v, want %v:\n%s", ifname, got, want, out)
		}
	}
}

// A lease entry whose fields were reordered keeps its size; the BTF the
// pinned map was made with tells it apart, and it is retired.
func TestLoadRetiresALeaseMapWithReorderedFields(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-reorder-test-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	spec, err := xdpSpec(1024)
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[bpf.XdpMapXdhcpLeases].Copy()
	st := btf.Copy(ms.Value).(*btf.Struct)
	if st.Members[0].Name != "expiry" || st.Members[1].Name != "horizon" {
		t.Fatalf("lease entry starts with %s, %s; the test swaps expiry and horizon", st.Members[0].Name, st.Members[1].Name)
	}
	st.Members[0].Name, st.Members[1].Name = "horizon", "expiry"
	ms.Value, ms.Pinning = st, ebpf.PinNone
	old, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, bpf.XdpMapXdhcpLeases)); err != nil {
		t.Fatal(err)
	}
	p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Reused || !p.Upgraded {
		t.Fatalf("a lease map with expiry and horizon swapped: reused %v (want false), upgraded %v (want true)", p.Reused, p.Upgraded)
	}
}

// TestPinDirBelongsToOneLoader: while a program is loaded (or prepared)
// from a pin directory, a second Load and DetachAll on it are refused
// with an error naming the directory and the holder's pid; once it is
// closed (as when its daemon exits) or abandoned both go ahead. The pins are in the host's bpffs,
// which this daemon did not mount: they are reported persistent.
func TestPinDirBelongsToOneLoader(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-lock-test-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Pins.Persistent || p.Pins.Via != "" || p.Pins.Dir != dir {
		t.Errorf("pins in the host's /sys/fs/bpf reported as %+v", p.Pins)
	}
	for name, try := range map[string]func() error{
		"Load":      func() error { _, err := Load(Options{PinDir: dir, MaxLeases: 1024}); return err },
		"DetachAll": func() error { return DetachAll(dir) },
	} {
		err := try()
		if !errors.Is(err, ErrPinDirBusy) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
			t.Errorf("%s while the directory is held: %v; want ErrPinDirBusy naming %s and pid %d", name, err, dir, os.Getpid())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, progPin)); err != nil {
		t.Fatalf("a refused DetachAll removed pins: %v", err)
	}
	p.Close()
	p2, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("Load after the holder closed: %v", err)
	}
	p2.Close()

	// Prepare holds the directory as Load does, and Abandon gives it
	// back; what it says of the pinned maps is what the load does.
	pr, err := Prepare(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := Load(Options{PinDir: dir, MaxLeases: 1024}); !errors.Is(err, ErrPinDirBusy) {
		t.Errorf("Load while a prepared program holds the directory: %v; want ErrPinDirBusy", err)
	}
	pr.Abandon()
	pr, err = Prepare(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("Prepare after Abandon: %v", err)
	}
	if !pr.Reused() {
		t.Error("prepared with the lease and grants maps pinned: not reused")
	}
	p3, err := pr.Load()
	if err != nil {
		t.Fatalf("loading the prepared program: %v", err)
	}
	if p3.Reused != pr.Reused() {
		t.Errorf("loaded with Reused %v, prepared with %v", p3.Reused, pr.Reused())
	}
	p3.Close()
	if err := DetachAll(dir); err != nil {
		t.Fatalf("DetachAll after the holder closed: %v", err)
	}
}

// previousLeaseEntry is struct xdhcp_lease as it was before the grants
// map, when the program wrote its grants into the entry (expiry raised,
// cltt, xid, last_giaddr), built from the current entry's field types.
func previousLeaseEntry(t *testing.T, cur *btf.Struct) *btf.Struct {
	t.Helper()
	types := map[string]btf.Type{}
	for _, m := range cur.Members {
		types[m.Name] = m.Type
	}
	u64, u32 := types["expiry"], types["ifindex"]
	var ms []btf.Member
	off := 0
	add := func(name string, typ btf.Type) {
		if typ == nil {
			t.Fatalf("the lease entry has no field to take %s's type from", name)
		}
		n, err := btf.Sizeof(typ)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, btf.Member{Name: name, Type: typ, Offset: btf.Bits(off * 8)})
		off += n
	}
	for _, f := range []string{"expiry", "horizon", "cltt", "relay_fp"} {
		add(f, u64)
	}
	for _, f := range []string{"xid", "last_giaddr", "ifindex", "giaddr", "server_id", "lease_time", "t1", "t2", "tmpl_id"} {
		add(f, u32)
	}
	for _, f := range []string{"vlan", "htype", "hlen", "cid_len", "flags", "chaddr", "cid"} {
		add(f, types[f])
	}
	return &btf.Struct{Name: cur.Name, Size: uint32((off + 7) &^ 7), Members: ms}
}

// TestLoadUpgradesFromGrantsInTheLeaseEntry: the upgrade from the lease
// entry that held the program's grants to the lease and grants maps. The
// older lease map is retired (its grants are known only up to their
// horizons: not reused, an upgrade) and a grants map is made and pinned;
// the next load reuses both, with what the program granted; and when a
// lease map is retired again, the grants keyed by its generations go
// with it.
func TestLoadUpgradesFromGrantsInTheLeaseEntry(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-grants-upgrade-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	spec, err := xdpSpec(1024)
	if err != nil {
		t.Fatal(err)
	}
	pinOld := func() {
		t.Helper()
		ms := spec.Maps[bpf.XdpMapXdhcpLeases].Copy()
		old := previousLeaseEntry(t, btf.Copy(ms.Value).(*btf.Struct))
		if old.Size != 128 {
			t.Fatalf("the previous lease entry rebuilt as %d bytes, it was 128", old.Size)
		}
		ms.Value, ms.ValueSize, ms.Pinning = old, old.Size, ebpf.PinNone
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, bpf.XdpMapXdhcpLeases)
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := m.Pin(path); err != nil {
			t.Fatal(err)
		}
	}
	pinOld()
	p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("upgrading from the previous lease entry: %v", err)
	}
	if p.Reused || !p.Upgraded {
		t.Fatalf("from the previous lease entry: reused %v (want false), upgraded %v (want true)", p.Reused, p.Upgraded)
	}
	if n, want := p.Objs.XdhcpLeases.ValueSize(), spec.Maps[bpf.XdpMapXdhcpLeases].ValueSize; n != want {
		t.Fatalf("lease entries of %d bytes, want %d", n, want)
	}
	if n := p.Objs.XdhcpGrants.MaxEntries(); n != 1281 {
		t.Fatalf("grants map of %d slots for 1024 leases, want 1281 (a quarter more, and slot 0)", n)
	}
	k := uint32(7)
	g := bpf.XdpXdhcpGrant{Gen: 3, Expiry: 12345, ClttNs: 100e9}
	if err := p.Objs.XdhcpGrants.Put(k, &g); err != nil {
		t.Fatal(err)
	}
	p.Close()

	p2, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Reused || p2.Upgraded {
		t.Fatalf("the load after the upgrade: reused %v (want true), upgraded %v (want false)", p2.Reused, p2.Upgraded)
	}
	var got bpf.XdpXdhcpGrant
	if err := p2.Objs.XdhcpGrants.Lookup(k, &got); err != nil || got != g {
		t.Fatalf("the grant did not survive the restart: %+v %v", got, err)
	}
	p2.Close()

	pinOld()
	p3, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	if p3.Reused || !p3.Upgraded {
		t.Fatalf("lease map retired again: reused %v (want false), upgraded %v (want true)", p3.Reused, p3.Upgraded)
	}
	if err := p3.Objs.XdhcpGrants.Lookup(k, &got); err != nil || got != (bpf.XdpXdhcpGrant{}) {
		t.Fatalf("a grant of the retired lease map's bindings is still there: %+v %v", got, err)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.XdpMapXdhcpGrants), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if err := pinned.Lookup(k, &got); err != nil || got != (bpf.XdpXdhcpGrant{}) {
		t.Fatalf("the pinned grants map is not the fresh one: %+v %v", got, err)
	}
}

// TestLoadUpgradesFromHashGrants: the upgrade from the grants hash keyed
// by {IP, generation} (whose lease entry had no grant slot) to the grant
// slots. Both maps are of another layout: retired, not reused (an
// upgrade: the grants are known only up to their horizons), and fresh
// ones pinned in their place.
func TestLoadUpgradesFromHashGrants(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xdhcp-hash-grants-upgrade-%d", os.Getpid()))
	t.Cleanup(func() { DetachAll(dir) })
	spec, err := xdpSpec(1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	olds := map[ebpf.MapID]string{}
	pin := func(ms *ebpf.MapSpec, name string) {
		t.Helper()
		ms.Pinning = ebpf.PinNone
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatalf("%s of the hash-grants layout: %v", name, err)
		}
		defer m.Close()
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		olds[id] = name
	}
	// That layout's lease entry: today's without grant_slot, which took
	// its tail padding (same size, one member fewer).
	leases := spec.Maps[bpf.XdpMapXdhcpLeases].Copy()
	cur := btf.Copy(leases.Value).(*btf.Struct)
	if last := cur.Members[len(cur.Members)-1]; last.Name != "grant_slot" {
		t.Fatalf("the lease entry's last member is %s, not grant_slot", last.Name)
	}
	cur.Members = cur.Members[:len(cur.Members)-1]
	leases.Value = cur
	pin(leases, bpf.XdpMapXdhcpLeases)
	// Its grants: a hash keyed by {ip, pad, gen}, values without gen.
	var u32, u64 btf.Type
	for _, m := range cur.Members {
		switch m.Name {
		case "ifindex":
			u32 = m.Type
		case "expiry":
			u64 = m.Type
		}
	}
	key := &btf.Struct{Name: "xdhcp_grant_key", Size: 16, Members: []btf.Member{
		{Name: "ip", Type: u32}, {Name: "pad", Type: u32, Offset: 32}, {Name: "gen", Type: u64, Offset: 64}}}
	val := &btf.Struct{Name: "xdhcp_grant", Size: 24, Members: []btf.Member{
		{Name: "expiry", Type: u64}, {Name: "cltt", Type: u64, Offset: 64},
		{Name: "xid", Type: u32, Offset: 128}, {Name: "last_giaddr", Type: u32, Offset: 160}}}
	pin(&ebpf.MapSpec{Name: bpf.XdpMapXdhcpGrants, Type: ebpf.Hash, Flags: unix.BPF_F_NO_PREALLOC, KeySize: 16, ValueSize: 24,
		MaxEntries: 1024, Key: key, Value: val}, bpf.XdpMapXdhcpGrants)

	p, err := Load(Options{PinDir: dir, MaxLeases: 1024})
	if err != nil {
		t.Fatalf("upgrading from the hash-grants layout: %v", err)
	}
	defer p.Close()
	if p.Reused || !p.Upgraded {
		t.Fatalf("from the hash-grants layout: reused %v (want false), upgraded %v (want true)", p.Reused, p.Upgraded)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.XdpMapXdhcpGrants), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if pinned.Type() != ebpf.Array || pinned.MaxEntries() != GrantSlots(1024) {
		t.Fatalf("pinned grants map: %v of %d entries, want the %d grant slots", pinned.Type(), pinned.MaxEntries(), GrantSlots(1024))
	}
	for _, m := range []*ebpf.Map{p.Objs.XdhcpLeases, p.Objs.XdhcpGrants} {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := info.ID(); olds[id] != "" {
			t.Fatalf("the hash-grants layout's %s is still in use", olds[id])
		}
	}
}
