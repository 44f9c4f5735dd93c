package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/loader"
)

// CostResult is the XDP program's cost for one kind of renewal.
type CostResult struct {
	Case     string  `json:"case"`
	Runs     int     `json:"runs"`        // per round
	Rounds   int     `json:"rounds"`      // program and baseline, interleaved
	Measured float64 `json:"measured-ns"` // wrapper and program, mean per run, median round
	Baseline float64 `json:"baseline-ns"` // the restoring wrapper with an empty target, median round
	// Unresize is the wrapper's own bpf_xdp_adjust_tail back to the
	// request's length, which only the program's runs pay: half the extra
	// cost of a target that resizes as the program does (median round).
	Unresize float64 `json:"unresize-ns"`
	Cost     float64 `json:"ns-per-packet"`
	Min      float64 `json:"min-ns-per-packet"` // the least disturbed round

	// Anchor is bpf/anchor.c (swap MACs, XDP_TX) run on the same request
	// without the wrapper, mean per run, median round: the least an
	// answering program costs on this host at this moment.
	Anchor float64 `json:"anchor-ns"`
	// Wrapper is the restoring wrapper's own cost: the anchor tail-called
	// through it minus the anchor alone (median round).
	Wrapper float64 `json:"wrapper-ns"`
	// PerPacket is the program as the anchor is timed, alone: measured
	// minus the wrapper and its resize (median round). Unlike Cost it
	// keeps BPF_PROG_TEST_RUN's own per-run work, which the anchor pays too.
	PerPacket float64 `json:"per-packet-ns"`
	// Ratio is PerPacket over Anchor, taken in each round (both timed in
	// it, so a neighbour's load moves both) and summarised over rounds.
	Ratio Spread `json:"anchor-ratio"`
	// Compare is the same case measured with another object of the
	// program (--compare), in the same rounds.
	Compare *CostCompare `json:"compare,omitempty"`
}

// CostCompare is another build of the program measured beside this
// tree's in the same rounds: an older version, to show what a change
// costs without the host's drift between two runs.
type CostCompare struct {
	Measured  float64 `json:"measured-ns"`   // wrapper and program, median round
	Cost      float64 `json:"ns-per-packet"` // as CostResult.Cost
	PerPacket float64 `json:"per-packet-ns"` // as CostResult.PerPacket
	Ratio     Spread  `json:"anchor-ratio"`  // its PerPacket over the anchor, per round
	// ThisOverIt is this tree's PerPacket over the compared object's,
	// per round: below 1 this tree is cheaper.
	ThisOverIt Spread `json:"this-over-compare"`
}

// Spread summarises a per-round ratio: median and quartiles.
type Spread struct {
	Median float64 `json:"median"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
}

// CostProgram is one object's xdp_dhcp as the kernel loaded it: what the
// verifier walked and what runs.
type CostProgram struct {
	Object string `json:"object"` // "this tree" or the --compare path
	// Verified is the verifier's "processed N insns" (instructions
	// walked over every path it explored; LogLevelStats prints the same
	// number the kernel keeps as verified_insns).
	Verified uint32 `json:"verified-insns"`
	Xlated   int    `json:"xlated-insns"` // instructions after the verifier's rewrites
	JITBytes uint32 `json:"jited-bytes"`
	// OwnMaps are the compared object's maps of another layout than this
	// tree's, and what it got in them instead.
	OwnMaps []string `json:"own-maps,omitempty"`
}

// CostOptions says what XDPCost measures.
type CostOptions struct {
	Runs int // BPF_PROG_TEST_RUN repetitions per measurement
	// Compare is the path of another xdp_dhcp object (a bpf2go output or
	// clang's) to measure beside this tree's in the same rounds. It shares
	// this tree's maps, so its map layout must be the same.
	Compare string
	// Rounds is how many interleaved rounds each case is measured in
	// (0: costRounds).
	Rounds int
}

// CostRun is what XDPCost measured: each case, and the programs.
type CostRun struct {
	Cases    []CostResult
	Programs []CostProgram
}

// costRounds is how many times each case is measured: on a shared
// virtual machine single rounds vary by a third, so the report gives the
// median and the least disturbed round.
const costRounds = 61

// XDPCost measures the program per renewal with BPF_PROG_TEST_RUN, warm,
// as it runs at line rate (see restorer), o.Runs times per
// measurement, together with the anchor (and o.Compare's program).
func XDPCost(ctx context.Context, o CostOptions) (CostRun, error) {
	objs, err := loader.LoadUnpinned(1 << 16)
	if err != nil {
		return CostRun{}, err
	}
	defer objs.Close()
	maps, err := fastpath.New(&objs.XdpMaps)
	if err != nil {
		return CostRun{}, err
	}
	defer maps.Close()
	if err := maps.SetSettings(fastpath.Settings{Answer: true, MinGrant: time.Minute}); err != nil {
		return CostRun{}, err
	}
	// The event rings are not read: the program's cost does not depend
	// on it (a ring the reader falls behind on is simply lapped), and a
	// reader would only add work on the other core.

	// Each object is loaded loadCopies times, all on the same maps, and
	// each copy of this tree is timed beside one of the compared object.
	// One object against itself, one copy each in rounds of about 350 ms,
	// read 0.94 to 1.02 over six runs; four paired copies in shorter
	// measurements, 0.98 to 1.02 over ten. Where the JIT places a copy
	// may be part of it; the pairing in time is the rest.
	var run CostRun
	progs := []*ebpf.Program{objs.XdpDhcp}
	for range loadCopies - 1 {
		spec, err := bpf.LoadXdp()
		if err != nil {
			return CostRun{}, fmt.Errorf("reading the XDP object: %w", err)
		}
		coll, _, err := loadOnMaps(spec, &objs.XdpMaps)
		if err != nil {
			return CostRun{}, fmt.Errorf("another copy of this tree's program: %w", err)
		}
		defer coll.Close()
		progs = append(progs, coll.Programs[compareProgram])
	}
	p, err := programStats("this tree", objs.XdpDhcp)
	if err != nil {
		return CostRun{}, err
	}
	// The kernel's count and the verifier's log (of a copy: the loader
	// asks for no log) must agree: the report gives one number for both.
	if n, err := processedInsns(progs[len(progs)-1].VerifierLog); err != nil || n != p.Verified {
		return CostRun{}, fmt.Errorf("this tree: verifier log says %d processed insns (%v), the kernel %d", n, err, p.Verified)
	}
	run.Programs = append(run.Programs, p)
	var olds []*ebpf.Program
	var translations []translation
	if o.Compare != "" {
		spec, err := ebpf.LoadCollectionSpec(o.Compare)
		if err != nil {
			return CostRun{}, fmt.Errorf("--compare %s: %w", o.Compare, err)
		}
		if _, ok := spec.Programs[compareProgram]; !ok {
			return CostRun{}, fmt.Errorf("--compare %s: no program %s", o.Compare, compareProgram)
		}
		for range loadCopies {
			coll, ts, err := loadOnMaps(spec.Copy(), &objs.XdpMaps)
			if err != nil {
				return CostRun{}, fmt.Errorf("--compare %s: %w", o.Compare, err)
			}
			translations = append(translations, ts...)
			defer coll.Close()
			olds = append(olds, coll.Programs[compareProgram])
		}
		p, err := programStats(o.Compare, olds[0])
		if err != nil {
			return CostRun{}, err
		}
		for _, t := range translations[:len(translations)/loadCopies] {
			p.OwnMaps = append(p.OwnMaps, t.String())
		}
		// The kernel's count and the verifier's log must agree: the
		// report gives one number for both.
		if n, err := processedInsns(olds[0].VerifierLog); err != nil || n != p.Verified {
			return CostRun{}, fmt.Errorf("%s: verifier log says %d processed insns (%v), the kernel %d", o.Compare, n, err, p.Verified)
		}
		run.Programs = append(run.Programs, p)
	}

	var tmpl []byte
	tmpl = dhcpwire.AppendOption(tmpl, dhcpwire.OptSubnetMask, []byte{255, 255, 255, 0})
	tmpl = dhcpwire.AppendOption(tmpl, dhcpwire.OptRouters, []byte{10, 77, 0, 1})
	tmpl = dhcpwire.AppendOption(tmpl, dhcpwire.OptDNS, []byte{10, 77, 0, 53, 10, 77, 0, 54})
	tmpl = dhcpwire.AppendOption(tmpl, dhcpwire.OptDomainName, []byte("example.net"))
	server := netip.MustParseAddr("10.77.0.1")
	relay := netip.MustParseAddr("10.78.0.1")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	now := time.Now()
	base := fastpath.Lease{
		Expiry: now.Add(time.Hour), Horizon: now.Add(48 * time.Hour), HWType: 1, HWAddr: mac,
		ClientID: append([]byte{1}, mac...), ServerID: server, IfIndex: 1,
		LeaseTime: 3600, T1: 1800, T2: 3150, Serve: true, Template: tmpl,
	}
	// The relay's option 82, as the slow path stored it with the lease:
	// the program answers renewals that carry the same.
	opt82 := []byte{1, 8, 'e', 't', 'h', '0', '/', '1', '/', '7', 2, 6, 2, 0, 0, 0, 0, 1}
	direct, relayed := base, base
	direct.IP = netip.MustParseAddr("10.77.0.100")
	relayed.IP, relayed.GIAddr, relayed.IfIndex, relayed.RelayInfo = netip.MustParseAddr("10.78.1.100"), relay, 0, opt82
	if err := maps.Publish([]fastpath.Lease{direct, relayed}); err != nil {
		return CostRun{}, err
	}
	for _, t := range translations {
		if err := t.run(); err != nil {
			return CostRun{}, fmt.Errorf("--compare %s: translating this tree's entries: %w", o.Compare, err)
		}
	}
	cases := []struct {
		name string
		r    Renewal
	}{
		{"direct renewal", Renewal{CIAddr: direct.IP, MAC: mac, ClientID: base.ClientID, Server: server, XID: 1}},
		{"relayed, option 82, two VLAN tags", Renewal{CIAddr: relayed.IP, MAC: mac, ClientID: base.ClientID, Server: server, XID: 2,
			GIAddr: relay, Opt82: opt82, VLANs: []uint16{100, 2001}}},
	}
	srvMAC := net.HardwareAddr{2, 0x53, 0, 0, 0, 1}
	tx, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3), asm.Return()}})
	if err != nil {
		return CostRun{}, fmt.Errorf("loading the empty program: %w", err)
	}
	defer tx.Close()
	var anchor bpf.AnchorObjects
	if err := bpf.LoadAnchorObjects(&anchor, nil); err != nil {
		return CostRun{}, fmt.Errorf("loading the anchor: %w", err)
	}
	defer anchor.Close()
	for _, c := range cases {
		t := costTargets{progs: progs, empty: tx, anchor: anchor.XdhcpAnchor, olds: olds}
		r, err := measureCost(ctx, t, c.r.Frame(mac, srvMAC), o.Runs, cmp.Or(o.Rounds, costRounds))
		if err != nil {
			return CostRun{}, fmt.Errorf("%s: %w", c.name, err)
		}
		r.Case = c.name
		run.Cases = append(run.Cases, r)
	}
	return run, nil
}

// compareProgram is the program a --compare object must hold.
const compareProgram = "xdp_dhcp"

// loadCopies is how many times each object is loaded and timed.
const loadCopies = 4

// loadOnMaps loads spec with this tree's maps in place of its own (same
// leases, settings and template; the loader's sizes), so that every copy
// and object answers the same renewals from the same state. An older
// object's map of another layout stays its own: where both entries are
// structs under the same keys (a lease entry that gained or lost fields)
// the returned translations copy this tree's entries into it field by
// field, by name, once this tree's are written; any other (the grants
// hash before the grant slots) starts empty and the object's program
// fills it from the first renewal on. A program that cannot answer from
// what it got fails the run (verdict other than XDP_TX), so a wrong
// translation shows. The verifier's statistics are kept in the
// programs' VerifierLog.
func loadOnMaps(spec *ebpf.CollectionSpec, ours *bpf.XdpMaps) (*ebpf.Collection, []translation, error) {
	oursSpec, err := bpf.LoadXdp()
	if err != nil {
		return nil, nil, fmt.Errorf("reading this tree's object: %w", err)
	}
	repl := map[string]*ebpf.Map{}
	type pending struct {
		name     string
		from     *ebpf.Map
		fromType *btf.Struct
		toType   *btf.Struct
	}
	var own []pending
	v := reflect.ValueOf(ours).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		m, ok := v.Field(i).Interface().(*ebpf.Map)
		ms := spec.Maps[name]
		if !ok || ms == nil || m == nil {
			continue
		}
		ms.MaxEntries = m.MaxEntries()
		if ms.Compatible(m) == nil {
			repl[name] = m
			continue
		}
		p := pending{name: name}
		from, to := btf.UnderlyingType(oursSpec.Maps[name].Value), btf.UnderlyingType(ms.Value)
		fs, fok := from.(*btf.Struct)
		ts, tok := to.(*btf.Struct)
		switch {
		case fok && tok && ms.Type == m.Type() && ms.KeySize == m.KeySize() && (ms.Type == ebpf.Hash || ms.Type == ebpf.Array):
			p.from, p.fromType, p.toType = m, fs, ts
		case name == bpf.XdpMapXdhcpGrants:
			// Only the program writes it: starting empty is its state
			// before the first renewal.
		default:
			return nil, nil, fmt.Errorf("map %s: %w", name, ms.Compatible(m))
		}
		own = append(own, p)
	}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl,
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	if err != nil {
		return nil, nil, fmt.Errorf("loading with this tree's maps: %w", err)
	}
	var ts []translation
	for _, p := range own {
		t := translation{name: p.name, from: p.from, to: coll.Maps[p.name], fromType: p.fromType, toType: p.toType}
		ts = append(ts, t)
	}
	return coll, ts, nil
}

// translation copies one of this tree's maps into an older object's map
// whose entries are another struct: each field the two share by name and
// size, the rest zero. Without from, the older object's map is its own
// and starts empty.
type translation struct {
	name             string
	from, to         *ebpf.Map
	fromType, toType *btf.Struct
}

// String says what became of the map, for the report.
func (t translation) String() string {
	if t.from == nil {
		return t.name + " (another layout: its own, empty at the start)"
	}
	return t.name + " (another layout: this tree's entries copied field by field, by name)"
}

func (t translation) run() error {
	if t.from == nil {
		return nil
	}
	var k, v []byte
	it := t.from.Iterate()
	for it.Next(&k, &v) {
		if err := t.to.Put(k, translateStruct(t.fromType, t.toType, v, int(t.to.ValueSize()))); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	return nil
}

// translateStruct is v, an entry of type from, as an entry of type to of
// size bytes: members matched by name and size, bit fields left zero.
func translateStruct(from, to *btf.Struct, v []byte, size int) []byte {
	out := make([]byte, size)
	for _, tm := range to.Members {
		for _, fm := range from.Members {
			if fm.Name != tm.Name || fm.BitfieldSize != 0 || tm.BitfieldSize != 0 {
				continue
			}
			fs, err1 := btf.Sizeof(fm.Type)
			ts, err2 := btf.Sizeof(tm.Type)
			fo, to := int(fm.Offset.Bytes()), int(tm.Offset.Bytes())
			if err1 == nil && err2 == nil && fs == ts && fo+fs <= len(v) && to+ts <= size {
				copy(out[to:to+ts], v[fo:fo+fs])
			}
		}
	}
	return out
}

// programStats reads what the kernel kept of prog's verification.
func programStats(object string, prog *ebpf.Program) (CostProgram, error) {
	info, err := prog.Info()
	if err != nil {
		return CostProgram{}, fmt.Errorf("%s: program info: %w", object, err)
	}
	p := CostProgram{Object: object}
	var ok bool
	if p.Verified, ok = info.VerifiedInstructions(); !ok {
		return CostProgram{}, fmt.Errorf("%s: the kernel does not report verified instructions (before 5.16)", object)
	}
	insns, err := info.Instructions()
	if err != nil {
		return CostProgram{}, fmt.Errorf("%s: translated instructions: %w", object, err)
	}
	for _, ins := range insns {
		p.Xlated += int(ins.Size() / asm.InstructionSize)
	}
	p.JITBytes, _ = info.JitedSize()
	return p, nil
}

var processedRE = regexp.MustCompile(`(?m)^processed (\d+) insns`)

// processedInsns reads the verifier's statistics line (LogLevelStats).
func processedInsns(log string) (uint32, error) {
	m := processedRE.FindStringSubmatch(log)
	if m == nil {
		return 0, errors.New("no \"processed N insns\" line in the verifier log")
	}
	n, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("verifier log: %w", err)
	}
	return uint32(n), nil
}

// costTargets are the programs one case times in each round: progs are
// this tree's copies, olds the compared object's (none without --compare).
type costTargets struct {
	progs, olds   []*ebpf.Program
	empty, anchor *ebpf.Program
}

// costRound is one round's figures, each a mean per run in ns.
type costRound struct {
	ms    []float64 // the program's copies through the wrapper
	b, r  float64   // empty target and resizer, through the wrapper
	a, aw float64   // the anchor alone and through the wrapper
	mos   []float64 // the compared program's copies, paired with ms
	ro    float64   // the compared program's resizer
}

// measureCost measures t.progs on pkt in rounds interleaved rounds
// against the empty target, a target that only resizes as the program
// does and the anchor (and t.olds). Each copy of the program runs next to
// its pair among the compared copies, which goes first every other round;
// each round starts one step further, so no figure always runs first.
func measureCost(ctx context.Context, t costTargets, pkt []byte, runs, rounds int) (CostResult, error) {
	resize, err := resizer(t.progs[0], pkt)
	if err != nil {
		return CostResult{}, err
	}
	defer resize.Close()
	type timed struct {
		name string
		run  func() (float64, error)
		dst  func(*costRound) *float64
	}
	var steps []timed
	var restorers []*restorer
	defer func() {
		for _, r := range restorers {
			r.Close()
		}
	}()
	wrapped := func(name string, target *ebpf.Program, dst func(*costRound) *float64) error {
		r, err := newRestorer(target, pkt)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		restorers = append(restorers, r)
		steps = append(steps, timed{name, func() (float64, error) { return r.runs(pkt, runs) }, dst})
		return nil
	}
	var oldResize *ebpf.Program
	if len(t.olds) > 0 {
		if len(t.olds) != len(t.progs) {
			return CostResult{}, fmt.Errorf("%d compared copies for %d of this tree's", len(t.olds), len(t.progs))
		}
		if oldResize, err = resizer(t.olds[0], pkt); err != nil {
			return CostResult{}, fmt.Errorf("compared program: %w", err)
		}
		defer oldResize.Close()
	}
	for k, p := range t.progs {
		if err := wrapped("program", p, func(c *costRound) *float64 { return &c.ms[k] }); err != nil {
			return CostResult{}, err
		}
		if len(t.olds) > 0 {
			if err := wrapped("compared program", t.olds[k], func(c *costRound) *float64 { return &c.mos[k] }); err != nil {
				return CostResult{}, err
			}
		}
	}
	if err := errors.Join(
		wrapped("baseline", t.empty, func(c *costRound) *float64 { return &c.b }),
		wrapped("resizing baseline", resize, func(c *costRound) *float64 { return &c.r }),
		wrapped("anchor through the wrapper", t.anchor, func(c *costRound) *float64 { return &c.aw }),
	); err != nil {
		return CostResult{}, err
	}
	if oldResize != nil {
		if err := wrapped("compared program's resizer", oldResize, func(c *costRound) *float64 { return &c.ro }); err != nil {
			return CostResult{}, err
		}
	}
	steps = append(steps, timed{"anchor", func() (float64, error) { return directRuns(t.anchor, pkt, runs) },
		func(c *costRound) *float64 { return &c.a }})
	measured := make([]costRound, rounds)
	for i := range measured {
		c := &measured[i]
		c.ms = make([]float64, len(t.progs))
		if len(t.olds) > 0 {
			c.mos = make([]float64, len(t.olds))
		}
		for j := range steps {
			if err := ctx.Err(); err != nil {
				return CostResult{}, err
			}
			k := (i + j) % len(steps)
			if i%2 == 1 {
				k = len(steps) - 1 - k
			}
			s := steps[k]
			v, err := s.run()
			if err != nil {
				return CostResult{}, fmt.Errorf("%s: %w", s.name, err)
			}
			*s.dst(c) = v
		}
	}
	res := summarize(measured)
	res.Runs = runs
	return res, nil
}

// summarize turns the rounds' figures into the report's: differences
// and ratios per round first (both sides felt the same neighbours), then
// the median over rounds. This tree over the compared object is taken
// per pair of copies timed side by side, with the wrapper's and the
// resize's medians subtracted from both: those are the same for both
// objects, and a round's own figures for them would only add noise.
func summarize(rounds []costRound) CostResult {
	var measured, baseline, unresize, cost, anchor, wrapper, perPacket, ratio []float64
	var oMeasured, oUnresize, oCost, oPerPacket, oRatio []float64
	for _, c := range rounds {
		m := mean(c.ms)
		u := max(0, (c.r-c.b)/2)
		w := c.aw - c.a
		pp := m - u - w
		measured, baseline, unresize = append(measured, m), append(baseline, c.b), append(unresize, u)
		cost, anchor, wrapper = append(cost, m-c.b-u), append(anchor, c.a), append(wrapper, w)
		perPacket, ratio = append(perPacket, pp), append(ratio, pp/c.a)
		if len(c.mos) > 0 {
			mo := mean(c.mos)
			uo := max(0, (c.ro-c.b)/2)
			ppo := mo - uo - w
			oMeasured, oUnresize, oCost = append(oMeasured, mo), append(oUnresize, uo), append(oCost, mo-c.b-uo)
			oPerPacket, oRatio = append(oPerPacket, ppo), append(oRatio, ppo/c.a)
		}
	}
	res := CostResult{Rounds: len(rounds), Measured: median(measured), Baseline: median(baseline),
		Unresize: median(unresize), Cost: median(cost), Min: slices.Min(cost),
		Anchor: median(anchor), Wrapper: median(wrapper), PerPacket: median(perPacket), Ratio: spread(ratio)}
	if len(oMeasured) > 0 {
		u, uo, w := res.Unresize, median(oUnresize), res.Wrapper
		var thisOverIt []float64
		for _, c := range rounds {
			for k := range c.ms {
				thisOverIt = append(thisOverIt, (c.ms[k]-u-w)/(c.mos[k]-uo-w))
			}
		}
		res.Compare = &CostCompare{Measured: median(oMeasured), Cost: median(oCost), PerPacket: median(oPerPacket),
			Ratio: spread(oRatio), ThisOverIt: spread(thisOverIt)}
	}
	return res
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// spread is v's median and quartiles (nearest rank).
func spread(v []float64) Spread {
	s := slices.Clone(v)
	slices.Sort(s)
	return Spread{Median: s[len(s)/2], Q1: s[len(s)/4], Q3: s[len(s)*3/4]}
}

// directRuns times target on pkt over runs repetitions without the
// wrapper: for a target that leaves the frame as it would find it again
// (the anchor's swap, undone by the next run's).
func directRuns(target *ebpf.Program, pkt []byte, runs int) (float64, error) {
	ret, d, err := target.Benchmark(pkt, runs, nil)
	if err != nil {
		return 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
	}
	if ret != 3 {
		return 0, fmt.Errorf("verdict %d, want XDP_TX", ret)
	}
	return float64(d.Nanoseconds()), nil
}

// resizer returns a program that only grows or shrinks pkt to the length
// of prog's answer to it, for the wrapper's correction.
func resizer(prog *ebpf.Program, pkt []byte) (*ebpf.Program, error) {
	reply := make([]byte, len(pkt)+4096)
	opts := ebpf.RunOptions{Data: pkt, DataOut: reply}
	ret, err := prog.Run(&opts)
	if err != nil {
		return nil, fmt.Errorf("one BPF_PROG_TEST_RUN: %w", err)
	}
	if ret != 3 {
		return nil, fmt.Errorf("verdict %d, want XDP_TX", ret)
	}
	delta := int32(len(opts.DataOut)) - int32(len(pkt))
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R2, delta),
		asm.FnXdpAdjustTail.Call(),
		asm.Mov.Imm(asm.R0, 3),
		asm.Return(),
	}})
	if err != nil {
		return nil, fmt.Errorf("loading the resizing baseline: %w", err)
	}
	return p, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// restorer times a target on a request over many repetitions inside one
// BPF_PROG_TEST_RUN. Repeat reruns a program on the buffer it rewrote,
// and a renewal becomes a reply; so a small wrapper first puts the
// original request back (bpf_xdp_adjust_tail, bpf_xdp_store_bytes from a
// map) and then tail-calls the target. The wrapper's own cost is measured
// the same way with a target that only returns XDP_TX, and subtracted by
// the caller. It is built once per target, so that the rounds time runs
// and not loads.
type restorer struct {
	orig, progs *ebpf.Map
	wrapper     *ebpf.Program
}

func newRestorer(target *ebpf.Program, pkt []byte) (_ *restorer, err error) {
	r := &restorer{}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.orig, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: uint32(len(pkt)), MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("request map: %w", err)
	}
	if err := r.orig.Put(uint32(0), pkt); err != nil {
		return nil, fmt.Errorf("request map: %w", err)
	}
	r.progs, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("program array: %w", err)
	}
	if err := r.progs.Put(uint32(0), target); err != nil {
		return nil, fmt.Errorf("program array: %w", err)
	}
	n := int32(len(pkt))
	r.wrapper, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnXdpGetBuffLen.Call(),
		asm.Mov.Imm(asm.R2, n),
		asm.Sub.Reg(asm.R2, asm.R0), // delta = len(request) - current length
		asm.JEq.Imm(asm.R2, 0, "store"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpAdjustTail.Call(),
		asm.JNE.Imm(asm.R0, 0, "fail"),
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("store"),
		asm.Mov.Imm(asm.R2, 0),
		asm.LoadMapValue(asm.R3, r.orig.FD(), 0),
		asm.Mov.Imm(asm.R4, n),
		asm.FnXdpStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "fail"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, r.progs.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("fail"),
		asm.Return(),
	}})
	if err != nil {
		return nil, fmt.Errorf("loading the restoring wrapper: %+v", err)
	}
	return r, nil
}

// runs times the target on pkt over runs repetitions: mean ns per run.
func (r *restorer) runs(pkt []byte, runs int) (float64, error) {
	ret, d, err := r.wrapper.Benchmark(pkt, runs, nil)
	if err != nil {
		return 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
	}
	if ret != 3 {
		return 0, fmt.Errorf("verdict %d, want XDP_TX", ret)
	}
	return float64(d.Nanoseconds()), nil
}

// Close releases the wrapper and its maps (the target stays).
func (r *restorer) Close() {
	if r.wrapper != nil {
		r.wrapper.Close()
	}
	if r.progs != nil {
		r.progs.Close()
	}
	if r.orig != nil {
		r.orig.Close()
	}
}

// costSection renders the cost figures: the program against the empty
// wrapper as before, then against the anchor, the verifier's counts and
// the compared object, each where measured.
func (rep *Report) costSection(b *strings.Builder) {
	if len(rep.Cost) == 0 {
		return
	}
	b.WriteString("\n## XDP program cost per renewal (BPF_PROG_TEST_RUN, warm, request restored before each run)\n\nEach case is measured in rounds, program and baselines interleaved; ns/packet is the median round's program minus the restoring wrapper's own cost (an empty target) and minus the wrapper's shrinking of the reply back to the request's length (half the extra cost of a target that only resizes as the program does); the least disturbed round is beside it.\n\n| case | runs × rounds | measured ns | wrapper baseline ns | wrapper's resize ns | program ns/packet (median) | least disturbed round |\n|---|---|---|---|---|---|---|\n")
	for _, c := range rep.Cost {
		fmt.Fprintf(b, "| %s | %d × %d | %.0f | %.0f | %.0f | %.0f | %.0f |\n", c.Case, c.Runs, c.Rounds, c.Measured, c.Baseline, c.Unresize, c.Cost, c.Min)
	}
	if rep.Cost[0].Anchor > 0 {
		b.WriteString("\n### Against the anchor\n\nThe anchor (bpf/anchor.c) swaps the Ethernet addresses and returns XDP_TX; it is timed alone on the same request in the same rounds. The program is timed as the anchor is: measured minus the wrapper (the anchor through the wrapper minus the anchor alone) and minus the wrapper's resize, so both keep BPF_PROG_TEST_RUN's own work per run. The ratio is taken in each round, then the median and quartiles over rounds; neighbours' load moves both sides of it. Neither side pays a driver's work per packet, which the XDP paper's 62 ns anchor (a NIC at line rate) includes, so this ratio is higher than one on the wire would be. The kernel reports whole ns per run.\n\n| case | anchor ns | wrapper ns | program ns per packet | program ÷ anchor (median) | quartiles |\n|---|---|---|---|---|---|\n")
		for _, c := range rep.Cost {
			fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f | %.2f× | %.2f–%.2f |\n", c.Case, c.Anchor, c.Wrapper, c.PerPacket, c.Ratio.Median, c.Ratio.Q1, c.Ratio.Q3)
		}
	}
	if len(rep.CostPrograms) > 0 {
		b.WriteString("\n### The programs as loaded\n\nProcessed insns is the verifier's statistics line (every path it walked; the kernel's verified_insns); translated is the program after the verifier's rewrites.\n\n| object | verifier: processed insns | translated insns | JIT bytes |\n|---|---|---|---|\n")
		for _, p := range rep.CostPrograms {
			fmt.Fprintf(b, "| %s | %d | %d | %d |\n", p.Object, p.Verified, p.Xlated, p.JITBytes)
		}
		for _, p := range rep.CostPrograms {
			if len(p.OwnMaps) > 0 {
				fmt.Fprintf(b, "\nMaps of %s: %s.\n", p.Object, strings.Join(p.OwnMaps, "; "))
			}
		}
	}
	if rep.Cost[0].Compare != nil {
		b.WriteString("\n### Against the compared object (--compare, same maps, same rounds)\n\nEach figure as above for the other object; this ÷ compared is taken in each round (below 1: this tree is cheaper).\n\n| case | this tree ns per packet | compared ns per packet | this ÷ compared (median) | quartiles | compared ns/packet (wrapper's way) | compared ÷ anchor |\n|---|---|---|---|---|---|---|\n")
		for _, c := range rep.Cost {
			if o := c.Compare; o != nil {
				fmt.Fprintf(b, "| %s | %.0f | %.0f | %.3f | %.3f–%.3f | %.0f | %.2f× |\n", c.Case, c.PerPacket, o.PerPacket, o.ThisOverIt.Median, o.ThisOverIt.Q1, o.ThisOverIt.Q3, o.Cost, o.Ratio.Median)
			}
		}
	}
}
