// Package loader loads the XDP program, pins its maps, program and links
// under bpffs so that renewals keep being answered while the daemon is
// down, attaches it to interfaces (native first, then generic), swaps a
// new program into existing links in place, and detaches everything.
package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xdhcp/xdhcp/bpf"
)

// DefaultPinDir is where maps, program and links are pinned.
const DefaultPinDir = "/sys/fs/bpf/xdhcp"

// Mode selects how XDP is attached.
type Mode string

// Attach modes.
const (
	Auto    Mode = "auto"    // native, falling back to generic; generic on a veth (see attachOrder)
	Native  Mode = "native"  // driver mode only
	Generic Mode = "generic" // skb mode only
	// Existing is what Attach reports when it swapped the program into a
	// link left pinned by a previous daemon, whose mode it keeps.
	Existing Mode = "existing"
)

// Options configure Load.
type Options struct {
	PinDir    string // DefaultPinDir when empty
	MaxLeases uint32 // capacity of the lease map; the compiled default when 0
	Logger    *slog.Logger
}

// Program is the loaded program with its maps.
type Program struct {
	Objs   bpf.XdpObjects
	pinDir string  // the path pins are made through (see PinInfo.Via)
	dir    *pinDir // open and locked while the program is loaded
	log    *slog.Logger
	// Pins says where the pins are and whether they outlive the daemon.
	Pins  PinInfo
	links map[string]link.Link
	// Reused is set when the lease map and the grants map were already
	// pinned, in this program's layout: the entries and what the program
	// granted survived since the last run.
	Reused bool
	// Upgraded is set when pins of an older version were retired. Until
	// the new program is swapped in, the old one still runs, against the
	// shared lease map, whose entries the new daemon rewrites for maps the
	// old program does not have, or against a retired lease map whose
	// grants the new daemon never sees: it must not answer meanwhile (the
	// settings map, which tells it so, has kept its layout so far).
	Upgraded bool
}

const progPin = "prog_xdp_dhcp"

func linkPin(ifname string) string { return "link_" + ifname }

// retiredPins are maps of earlier versions: xdhcp_events was a ring buffer
// before the per-CPU event rings (xdhcp_evring, xdhcp_evheads), and
// xdhcp_templates a hash before the template array (xdhcp_tmpls).
var retiredPins = []string{"xdhcp_events", "xdhcp_templates"}

// incompatiblePins returns the maps in pinDir that spec would pin by name
// but whose type, key or value size, capacity or flags differ, with what
// differs. Nothing is removed yet: that waits until the new program has
// loaded, so that a program this kernel refuses leaves the old one's
// state intact.
func incompatiblePins(spec *ebpf.CollectionSpec, pinDir string) (map[string]error, error) {
	out := map[string]error{}
	for _, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(pinDir, ms.Name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening pinned map %s: %w", path, err)
		}
		why := ms.Compatible(m)
		if why == nil {
			why = sameFields(ms, m)
		}
		m.Close()
		if why == nil {
			continue
		}
		if !errors.Is(why, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("comparing pinned map %s with the program's: %w", path, why)
		}
		out[ms.Name] = why
	}
	return out, nil
}

// sameFields compares the fields of a map's value struct, by the BTF the
// pinned map was created with, with the program's: sizes alone would let
// a reordered or retyped field of the same size pass, and the new program
// would read old entries wrongly. A pinned map without BTF cannot tell
// and passes on its sizes.
func sameFields(ms *ebpf.MapSpec, m *ebpf.Map) error {
	want, ok := btf.UnderlyingType(ms.Value).(*btf.Struct)
	if !ok {
		return nil
	}
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("map info: %w", err)
	}
	id, ok := info.BTFID()
	if !ok {
		return nil
	}
	h, err := btf.NewHandleFromID(id)
	if err != nil {
		return fmt.Errorf("map BTF %d: %w", id, err)
	}
	defer h.Close()
	spec, err := h.Spec(nil)
	if err != nil {
		return fmt.Errorf("map BTF %d: %w", id, err)
	}
	var got *btf.Struct
	if err := spec.TypeByName(want.Name, &got); err != nil {
		return fmt.Errorf("%w: the pinned map's BTF has no struct %s", ebpf.ErrMapIncompatible, want.Name)
	}
	if len(got.Members) != len(want.Members) {
		return fmt.Errorf("%w: struct %s has %d fields, want %d", ebpf.ErrMapIncompatible, want.Name, len(got.Members), len(want.Members))
	}
	for i, w := range want.Members {
		g := got.Members[i]
		gs, _ := btf.Sizeof(g.Type)
		ws, _ := btf.Sizeof(w.Type)
		if g.Name != w.Name || g.Offset != w.Offset || gs != ws {
			return fmt.Errorf("%w: struct %s field %d is %s (%d bytes at bit %d), want %s (%d bytes at bit %d)",
				ebpf.ErrMapIncompatible, want.Name, i, g.Name, gs, g.Offset, w.Name, ws, w.Offset)
		}
	}
	return nil
}

// GrantSlots is the size of the grants map for maxLeases lease entries:
// a slot for each, a quarter more, and slot 0, which no entry names. A
// binding's slot is freed when its entry is replaced, and reused only
// after a grace period (fastpath), so the spare quarter is what lets a
// full lease map be handed to new clients with a few grace periods
// rather than one per entry.
func GrantSlots(maxLeases uint32) uint32 { return maxLeases + maxLeases/4 + 1 }

// xdpSpec reads the program's object and sizes its maps: the lease map
// and the grants map (GrantSlots) for maxLeases (0: as compiled), the event rings for
// the possible CPUs.
// The ring map is compiled with one CPU's slots, so that the slot count
// is written down once, in the C source.
func xdpSpec(maxLeases uint32) (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadXdp()
	if err != nil {
		return nil, fmt.Errorf("reading the XDP object: %w", err)
	}
	if maxLeases > 0 {
		spec.Maps[bpf.XdpMapXdhcpLeases].MaxEntries = maxLeases
		spec.Maps[bpf.XdpMapXdhcpGrants].MaxEntries = GrantSlots(maxLeases)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting CPUs for the event rings: %w", err)
	}
	spec.Maps[bpf.XdpMapXdhcpEvring].MaxEntries *= uint32(cpus)
	spec.Maps[bpf.XdpMapXdhcpEvheads].MaxEntries = uint32(cpus)
	return spec, nil
}

// Load loads the program, reusing maps already pinned in the pin directory
// (their contents survive: that is how a restarted daemon keeps serving)
// and pinning new ones. A pinned map whose layout no longer matches the
// program (an older version's lease entry or counters, or a lease map of
// another capacity) is retired, as the renamed maps in retiredPins are,
// and the program gets a fresh one: the daemon refills it from bbolt.
func Load(o Options) (*Program, error) {
	pr, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	return pr.Load()
}

// Prepared is a program about to be loaded: the pin directory is locked
// and what becomes of each pinned map is decided (Reused, Upgraded), so
// that the caller can act on it (load the leases holding their grants,
// or not) while Load does the slow part, on another goroutine: making
// the maps (a lease map for millions of entries is hundreds of MB the
// kernel zeroes) and verifying the program.
type Prepared struct {
	o      Options
	spec   *ebpf.CollectionSpec
	p      *Program
	retire map[string]error
}

// Prepare reads the program, locks the pin directory and decides which
// pinned maps are reused and which retired. Load or Abandon must follow.
func Prepare(o Options) (*Prepared, error) {
	if o.PinDir == "" {
		o.PinDir = DefaultPinDir
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	spec, err := xdpSpec(o.MaxLeases)
	if err != nil {
		return nil, err
	}
	dir, err := openPinDir(o.PinDir, true)
	if err != nil {
		return nil, err
	}
	o.PinDir = dir.path
	p := &Program{pinDir: dir.path, dir: dir, Pins: dir.info, log: o.Logger, links: map[string]link.Link{}}
	retire, err := incompatiblePins(spec, o.PinDir)
	if err != nil {
		dir.close() // and with it the lock
		return nil, err
	}
	// Grants are keyed by the generations of the lease entries: they go
	// with their lease map.
	if why := retire[bpf.XdpMapXdhcpLeases]; why != nil && retire[bpf.XdpMapXdhcpGrants] == nil {
		if _, err := os.Stat(filepath.Join(o.PinDir, bpf.XdpMapXdhcpGrants)); err == nil {
			retire[bpf.XdpMapXdhcpGrants] = fmt.Errorf("its lease map is retired (%w)", why)
		}
	}
	for name := range retire {
		spec.Maps[name].Pinning = ebpf.PinNone // fresh, pinned below once loaded
	}
	p.Upgraded = len(retire) > 0
	// A retired lease map is not reused: its grants are known only up to
	// their horizons. Neither is one without its grants (an older
	// version's, whose entries held them, or one whose grants map was
	// retired): what the program granted is not readable.
	p.Reused = true
	for _, name := range []string{bpf.XdpMapXdhcpLeases, bpf.XdpMapXdhcpGrants} {
		if _, err := os.Stat(filepath.Join(o.PinDir, name)); err != nil || retire[name] != nil {
			p.Reused = false
		}
	}
	return &Prepared{o: o, spec: spec, p: p, retire: retire}, nil
}

// Reused is the loaded Program's Reused: whether the pinned lease map,
// and with it what the program granted, survives.
func (pr *Prepared) Reused() bool { return pr.p.Reused }

// Abandon unlocks the pin directory of a program that will not be
// loaded.
func (pr *Prepared) Abandon() { pr.p.dir.close() }

// Load loads the prepared program. On failure the pin directory is
// unlocked.
func (pr *Prepared) Load() (*Program, error) {
	o, spec, p, retire := pr.o, pr.spec, pr.p, pr.retire
	loaded := false
	defer func() {
		if !loaded {
			p.dir.close() // and with it the lock
		}
	}()
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: o.PinDir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("pinned maps in %s do not match this program (run `xdhcpd detach` to clear them): %w", o.PinDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the XDP program: %w", err)
	}
	defer coll.Close() // what Assign did not take
	// The program loaded: only now do the old maps make way. The running
	// program keeps its own references to them until it is swapped out.
	for _, name := range slices.Sorted(maps.Keys(retire)) {
		path := filepath.Join(o.PinDir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("retiring pinned map %s (%v): %w", path, retire[name], err)
		}
		if err := coll.Maps[name].Pin(path); err != nil {
			return nil, fmt.Errorf("pinning map %s: %w", path, err)
		}
		o.Logger.Info("retired a pinned map whose layout differs from this program's", "map", name, "change", retire[name])
	}
	if err := coll.Assign(&p.Objs); err != nil {
		return nil, fmt.Errorf("loading the XDP program: %w", err)
	}
	// Maps earlier versions pinned and this one no longer uses.
	for _, name := range retiredPins {
		err := os.Remove(filepath.Join(o.PinDir, name))
		if err == nil {
			p.Upgraded = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			p.Upgraded = true
			o.Logger.Warn("removing a retired pin", "pin", name, "err", err)
		}
	}
	// Replace the program pin: the links below hold the program that runs.
	path := filepath.Join(o.PinDir, progPin)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.Objs.Close()
		return nil, fmt.Errorf("replacing pinned program: %w", err)
	}
	if err := p.Objs.XdpDhcp.Pin(path); err != nil {
		p.Objs.Close()
		return nil, fmt.Errorf("pinning the XDP program: %w", err)
	}
	loaded = true
	return p, nil
}

// Attach runs the program on ifname. When a link is already pinned for
// the interface (left by a previous daemon) and runs in a mode the
// configured one allows, the new program is swapped into it in place,
// which drops no packets. When the pinned link runs in another mode (the
// configuration changed between runs), it is removed and a link in the
// configured mode is made: the kernel cannot change a link's mode, nor
// hold a native and a generic program on one interface at once, so for
// the few microseconds between the two system calls no XDP program runs
// there and renewals reach the kernel's UDP socket, where the slow path
// (already listening when the daemon attaches) answers them. Otherwise a
// link is created in the requested mode and pinned. It returns the mode
// in use (Existing when swapped in place).
func (p *Program) Attach(ifname string, mode Mode) (Mode, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("attaching XDP: %w", err)
	}
	try, err := attachOrder(ifname, mode)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.pinDir, linkPin(ifname))
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		info, ierr := l.Info()
		same := ierr == nil && info.XDP() != nil && info.XDP().Ifindex == uint32(ifc.Index)
		if same {
			cur, err := AttachedMode(ifname)
			if err != nil {
				l.Close()
				return "", err
			}
			if slices.Contains(try, cur) {
				if err := l.Update(p.Objs.XdpDhcp); err != nil {
					l.Close()
					return "", fmt.Errorf("swapping the program on %s: %w", ifname, err)
				}
				p.keepLink(ifname, l)
				p.log.Info("XDP program swapped in place", "interface", ifname, "mode", string(cur))
				return Existing, nil
			}
			p.log.Warn("XDP re-attached in the configured mode: renewals go to the slow path for the moment between detach and attach",
				"interface", ifname, "was", string(cur), "configured", string(mode))
		}
		// The interface was recreated (the old link is dead), or the
		// link runs in another mode: removing its last reference
		// detaches it.
		l.Unpin()
		l.Close()
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPDriverMode
		if m == Generic {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p.Objs.XdpDhcp, Interface: ifc.Index, Flags: flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		if err := l.Pin(path); err != nil {
			l.Close()
			return "", fmt.Errorf("pinning the XDP link on %s: %w", ifname, err)
		}
		p.keepLink(ifname, l)
		p.log.Info("XDP attached", "interface", ifname, "mode", string(m))
		return m, nil
	}
	return "", fmt.Errorf("attaching XDP to %s: %w", ifname, errors.Join(errs...))
}

// keepLink holds l as ifname's link, closing the one it replaces (the
// interface was re-created, or the program re-attached): an Attach per
// re-creation would otherwise leak a descriptor each time.
func (p *Program) keepLink(ifname string, l link.Link) {
	if old := p.links[ifname]; old != nil {
		old.Close()
	}
	p.links[ifname] = l
}

// attachOrder lists the modes to try on ifname for the configured mode.
// Auto means native, then generic, except on a veth, where it means
// generic: native XDP_TX on a veth is delivered only while the peer veth
// has an XDP program of its own, and the kernel drops the reply otherwise
// (counting an xdp_tx_error on the veth, nothing the sender sees). The
// peer often lives in another namespace, beyond this daemon's view, and
// its program can come and go at any time, so no check made at attach
// time would hold; generic mode transmits through the stack and always
// delivers. Native stays available by asking for it.
func attachOrder(ifname string, mode Mode) ([]Mode, error) {
	switch mode {
	case Native, Generic:
		return []Mode{mode}, nil
	case Auto, "":
	default:
		return nil, fmt.Errorf("attaching XDP to %s: unknown mode %q", ifname, mode)
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("attaching XDP to %s: reading the link: %w", ifname, err)
	}
	if l.Type() == "veth" {
		return []Mode{Generic}, nil
	}
	return []Mode{Native, Generic}, nil
}

// AttachedMode reports how an XDP program runs on ifname, as the kernel
// tells it over netlink (what `ip link` shows as xdp or xdpgeneric):
// Native, Generic, or "" when none is attached. An offloaded program
// reports "hw".
func AttachedMode(ifname string) (Mode, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("reading the XDP mode of %s: %w", ifname, err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return "", nil
	}
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return Native, nil
	case nl.XDP_ATTACHED_SKB:
		return Generic, nil
	case nl.XDP_ATTACHED_HW:
		return "hw", nil
	}
	return "", fmt.Errorf("reading the XDP mode of %s: attach mode %d", ifname, x.AttachMode)
}

// Detach removes the program from one interface.
func (p *Program) Detach(ifname string) error {
	l, ok := p.links[ifname]
	if !ok {
		return nil
	}
	delete(p.links, ifname)
	if err := l.Unpin(); err != nil {
		l.Close()
		return fmt.Errorf("unpinning the XDP link on %s: %w", ifname, err)
	}
	return l.Close()
}

// DetachOthers removes the program from every interface with a pinned
// link that is not in keep, and returns their names. A link left on an
// interface no longer served would go on answering from state the daemon
// no longer keeps for it (and, after a map was retired, from a map nobody
// updates).
func (p *Program) DetachOthers(keep []string) ([]string, error) {
	ents, err := os.ReadDir(p.pinDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p.pinDir, err)
	}
	var gone []string
	var errs []error
	for _, e := range ents {
		ifname, ok := strings.CutPrefix(e.Name(), "link_")
		if !ok || slices.Contains(keep, ifname) {
			continue
		}
		path := filepath.Join(p.pinDir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening %s: %w", path, err))
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpinning the XDP link on %s: %w", ifname, err))
		} else {
			gone = append(gone, ifname)
		}
		l.Close()
		if own, ok := p.links[ifname]; ok { // this process's handle holds the link too
			own.Close()
			delete(p.links, ifname)
		}
	}
	return gone, errors.Join(errs...)
}

// Close releases this process's handles. Pinned objects stay, and with
// them the program keeps answering renewals.
func (p *Program) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, p.Objs.Close())
	errs = append(errs, p.dir.close()) // the lock goes last
	return errors.Join(errs...)
}

// DetachAll removes every link, program and map pinned under pinDir and
// the directory itself; the program stops on every interface.
// It finds the pins as Load does (in the host's bpffs when this mount
// namespace has none) and refuses, naming it, while a daemon holds the
// directory: that daemon would go on with pins removed under it.
func DetachAll(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	name := pinDir
	dir, err := openPinDir(pinDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.close()
	pinDir = dir.path
	ents, err := os.ReadDir(pinDir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	var errs []error
	// Links first, so that nothing runs on half-removed state.
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		path := filepath.Join(pinDir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening %s: %w", path, err))
			os.Remove(path)
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, err)
		}
		l.Close()
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		if err := os.Remove(filepath.Join(pinDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// By its own path: pinDir may lead through the open directory.
	rm := name
	if dir.info.Via != "" {
		rm = dir.info.Via
	}
	if err := os.Remove(rm); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LoadUnpinned loads a private copy of the program and its maps, pinned
// nowhere and attached nowhere: for BPF_PROG_TEST_RUN tests and the
// per-packet benchmark.
func LoadUnpinned(maxLeases uint32) (*bpf.XdpObjects, error) {
	spec, err := xdpSpec(maxLeases)
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var objs bpf.XdpObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("loading the XDP program: %w", err)
	}
	return &objs, nil
}
