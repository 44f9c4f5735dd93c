package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

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
}

// costRounds is how many times each case is measured: on a shared
// virtual machine single rounds vary by a third, so the report gives the
// median and the least disturbed round.
const costRounds = 31

// XDPCost measures the program per renewal with BPF_PROG_TEST_RUN, warm,
// as it runs at line rate (see restoredRuns), runs times per round.
func XDPCost(ctx context.Context, runs int) ([]CostResult, error) {
	objs, err := loader.LoadUnpinned(1 << 16)
	if err != nil {
		return nil, err
	}
	defer objs.Close()
	maps, err := fastpath.New(&objs.XdpMaps)
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	if err := maps.SetSettings(fastpath.Settings{Answer: true, MinGrant: time.Minute}); err != nil {
		return nil, err
	}
	// The event rings are not read: the program's cost does not depend
	// on it (a ring the reader falls behind on is simply lapped), and a
	// reader would only add work on the other core.

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
		return nil, err
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
		return nil, fmt.Errorf("loading the empty program: %w", err)
	}
	defer tx.Close()
	var out []CostResult
	for _, c := range cases {
		r, err := measureCost(ctx, objs.XdpDhcp, tx, c.r.Frame(mac, srvMAC), runs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		r.Case = c.name
		out = append(out, r)
	}
	return out, nil
}

// measureCost measures prog on pkt in costRounds interleaved rounds against
// the empty target tx and a target that only resizes as prog does.
func measureCost(ctx context.Context, prog, tx *ebpf.Program, pkt []byte, runs int) (CostResult, error) {
	resize, err := resizer(prog, pkt)
	if err != nil {
		return CostResult{}, err
	}
	defer resize.Close()
	var measured, baseline, unresize, cost []float64
	for range costRounds {
		if err := ctx.Err(); err != nil {
			return CostResult{}, err
		}
		m, err := restoredRuns(prog, pkt, runs)
		if err != nil {
			return CostResult{}, err
		}
		b, err := restoredRuns(tx, pkt, runs)
		if err != nil {
			return CostResult{}, fmt.Errorf("baseline: %w", err)
		}
		r, err := restoredRuns(resize, pkt, runs)
		if err != nil {
			return CostResult{}, fmt.Errorf("resizing baseline: %w", err)
		}
		u := max(0, (r-b)/2)
		measured, baseline, unresize, cost = append(measured, m), append(baseline, b), append(unresize, u), append(cost, m-b-u)
	}
	return CostResult{Runs: runs, Rounds: costRounds, Measured: median(measured), Baseline: median(baseline),
		Unresize: median(unresize), Cost: median(cost), Min: slices.Min(cost)}, nil
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

// restoredRuns times target on pkt over runs repetitions inside one
// BPF_PROG_TEST_RUN. Repeat reruns a program on the buffer it rewrote, and
// a renewal becomes a reply; so a small wrapper first puts the original
// request back (bpf_xdp_adjust_tail, bpf_xdp_store_bytes from a map) and
// then tail-calls target. The wrapper's own cost is measured the same way
// with a target that only returns XDP_TX, and subtracted by the caller.
func restoredRuns(target *ebpf.Program, pkt []byte, runs int) (float64, error) {
	orig, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: uint32(len(pkt)), MaxEntries: 1})
	if err != nil {
		return 0, fmt.Errorf("request map: %w", err)
	}
	defer orig.Close()
	if err := orig.Put(uint32(0), pkt); err != nil {
		return 0, fmt.Errorf("request map: %w", err)
	}
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return 0, fmt.Errorf("program array: %w", err)
	}
	defer progs.Close()
	if err := progs.Put(uint32(0), target); err != nil {
		return 0, fmt.Errorf("program array: %w", err)
	}
	n := int32(len(pkt))
	wrapper, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "GPL", Instructions: asm.Instructions{
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
		asm.LoadMapValue(asm.R3, orig.FD(), 0),
		asm.Mov.Imm(asm.R4, n),
		asm.FnXdpStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "fail"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, progs.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("fail"),
		asm.Return(),
	}})
	if err != nil {
		return 0, fmt.Errorf("loading the restoring wrapper: %+v", err)
	}
	defer wrapper.Close()
	ret, d, err := wrapper.Benchmark(pkt, runs, nil)
	if err != nil {
		return 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
	}
	if ret != 3 {
		return 0, fmt.Errorf("verdict %d, want XDP_TX", ret)
	}
	return float64(d.Nanoseconds()), nil
}
