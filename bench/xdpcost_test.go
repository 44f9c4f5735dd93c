package bench

import (
	"bytes"
	"context"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/loader"
)

// The cost harness itself: both cases must be answered with XDP_TX through
// the restoring wrapper (XDPCost fails otherwise), and the figures must be
// consistent (the program costs something over the empty target and over
// the anchor). Speed is not asserted; make bench reports it. The compared
// object is this tree's own, so both programs answer and the verifier's
// counts (the kernel's and the log's, checked inside XDPCost) match.
func TestXDPCostHarness(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	// The committed object of this tree (the tests run in bench/).
	run, err := XDPCost(context.Background(), CostOptions{Runs: 2000, Rounds: 5, Compare: "../bpf/xdp_bpfel.o"})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Cases) != 2 {
		t.Fatalf("%d cases, want direct and relayed", len(run.Cases))
	}
	for _, c := range run.Cases {
		if c.Rounds != 5 || c.Runs != 2000 || c.Baseline <= 0 || c.Measured <= c.Baseline || c.Unresize < 0 ||
			c.Anchor <= 0 || c.Ratio.Median <= 0 || c.Compare == nil || c.Compare.Measured <= c.Baseline {
			t.Errorf("%+v", c)
		}
	}
	if len(run.Programs) != 2 {
		t.Fatalf("programs %+v, want this tree and the compared object", run.Programs)
	}
	for _, p := range run.Programs {
		if p.Verified == 0 || p.Xlated == 0 || p.Verified != run.Programs[0].Verified || p.Xlated != run.Programs[0].Xlated {
			t.Errorf("programs %+v: want the same nonzero counts for the same object", run.Programs)
		}
	}
}

// An object without the server's program is refused as --compare,
// naming what is missing, rather than timing something else.
func TestXDPCostCompareRefusesOtherObjects(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	_, err := XDPCost(context.Background(), CostOptions{Runs: 10, Compare: "../bpf/anchor_bpfel.o"})
	if err == nil || !strings.Contains(err.Error(), "no program xdp_dhcp") {
		t.Errorf("anchor object as --compare: %v", err)
	}
}

// An older object's lease entry of another layout gets this tree's
// entries copied field by field, by name (here two fields swapped and one
// more); a map that is not a struct of another layout is refused, naming
// it.
func TestLoadOnMapsTranslatesAnotherLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	objs, err := loader.LoadUnpinned(1 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	maps, err := fastpath.New(&objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	spec, err := bpf.LoadXdp()
	if err != nil {
		t.Fatal(err)
	}
	same, ts, err := loadOnMaps(spec.Copy(), &objs.XdpMaps)
	if err != nil || len(ts) != 0 {
		t.Fatalf("this tree's own object: %v, %d translations", err, len(ts))
	}
	same.Close()

	older := spec.Copy()
	ms := older.Maps[bpf.XdpMapXdhcpLeases]
	st, ok := btf.Copy(btf.UnderlyingType(ms.Value)).(*btf.Struct)
	if !ok || st.Members[0].Name != "expiry" || st.Members[1].Name != "horizon" {
		t.Fatalf("lease entry %v: want a struct starting expiry, horizon", ms.Value)
	}
	st.Members[0].Name, st.Members[1].Name = st.Members[1].Name, st.Members[0].Name
	st.Members = append(st.Members, btf.Member{Name: "older_field", Type: &btf.Int{Name: "__u64", Size: 8}, Offset: btf.Bits(st.Size * 8)})
	st.Size += 8
	ms.Value, ms.ValueSize = st, ms.ValueSize+8
	coll, ts, err := loadOnMaps(older, &objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	if len(ts) != 1 || ts[0].name != bpf.XdpMapXdhcpLeases || ts[0].from == nil {
		t.Fatalf("translations %v, want the lease map's", ts)
	}
	now := time.Now()
	ip := netip.MustParseAddr("10.77.0.9")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	if err := maps.Publish([]fastpath.Lease{{IP: ip, Expiry: now.Add(time.Hour), Horizon: now.Add(2 * time.Hour), HWType: 1, HWAddr: mac,
		ServerID: netip.MustParseAddr("10.77.0.1"), LeaseTime: 3600, T1: 1800, T2: 3150, Serve: true}}); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].run(); err != nil {
		t.Fatal(err)
	}
	key := ip.As4()
	var ours, theirs []byte
	if err := objs.XdhcpLeases.Lookup(key[:], &ours); err != nil {
		t.Fatal(err)
	}
	if err := coll.Maps[bpf.XdpMapXdhcpLeases].Lookup(key[:], &theirs); err != nil {
		t.Fatalf("the translated entry: %v", err)
	}
	if len(theirs) != len(ours)+8 || !bytes.Equal(theirs[8:16], ours[0:8]) || !bytes.Equal(theirs[0:8], ours[8:16]) ||
		!bytes.Equal(theirs[16:len(ours)], ours[16:]) || !bytes.Equal(theirs[len(ours):], make([]byte, 8)) {
		t.Errorf("translated entry\n%x\nfrom\n%x", theirs, ours)
	}

	other := spec.Copy()
	other.Maps[bpf.XdpMapXdhcpCounters].ValueSize *= 2
	if coll, _, err := loadOnMaps(other, &objs.XdpMaps); err == nil {
		coll.Close()
		t.Error("counters of twice the size were loaded")
	} else if !strings.Contains(err.Error(), bpf.XdpMapXdhcpCounters) {
		t.Errorf("error does not name the map: %v", err)
	}
}

// summarize's arithmetic on rounds made up so that every figure is
// known: differences and ratios per round, then medians and quartiles.
func TestCostSummary(t *testing.T) {
	// Per round i (0..4): empty target b=60+i, resizer r=b+20 (so the
	// wrapper's resize u=10), program m=b+u+100+10i, anchor a=10+i, the
	// anchor through the wrapper aw=a+50 (wrapper w=50), compared
	// program mo=m+20 with the same resize.
	var rounds []costRound
	for i := range 5 {
		f := float64(i)
		b := 60 + f
		rounds = append(rounds, costRound{ms: []float64{b + 10 + 100 + 10*f}, b: b, r: b + 20, a: 10 + f, aw: 60 + f,
			mos: []float64{b + 10 + 120 + 10*f}, ro: b + 20})
	}
	got := summarize(rounds)
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Round 2 is every median: m=192, b=62, cost=120, a=12, w=50,
	// per packet = 192-10-50 = 132 (110+11i in round i).
	near("Measured", got.Measured, 192)
	near("Baseline", got.Baseline, 62)
	near("Unresize", got.Unresize, 10)
	near("Cost", got.Cost, 120)
	near("Min", got.Min, 100)
	near("Anchor", got.Anchor, 12)
	near("Wrapper", got.Wrapper, 50)
	near("PerPacket", got.PerPacket, 132)
	// Ratios per round: (110+11i)/(10+i) = 11 whatever i: the anchor's
	// drift and the program's cancel, which is what the anchor is for.
	near("Ratio.Median", got.Ratio.Median, 11)
	near("Ratio.Q1", got.Ratio.Q1, 11)
	if got.Compare == nil {
		t.Fatal("no comparison")
	}
	// Compared: cost 140; per packet (130+11i), median 152; its ratio
	// to the anchor per round (130+11i)/(10+i) falls with i (13 down to
	// 12.43); this over it, (110+11i)/(130+11i), rises with i.
	near("Compare.Cost", got.Compare.Cost, 140)
	near("Compare.PerPacket", got.Compare.PerPacket, 152)
	near("Compare.Ratio.Median", got.Compare.Ratio.Median, 152.0/12)
	near("Compare.Ratio.Q1", got.Compare.Ratio.Q1, 163.0/13)
	near("Compare.Ratio.Q3", got.Compare.Ratio.Q3, 141.0/11)
	near("ThisOverIt.Median", got.Compare.ThisOverIt.Median, 132.0/152)
	near("ThisOverIt.Q1", got.Compare.ThisOverIt.Q1, 121.0/141)
	near("ThisOverIt.Q3", got.Compare.ThisOverIt.Q3, 143.0/163)
	// A resizer no slower than the empty target is no resize, not a
	// negative one.
	if r := summarize([]costRound{{ms: []float64{100}, b: 60, r: 55, a: 10, aw: 50}}); r.Unresize != 0 || r.Cost != 40 || r.PerPacket != 60 || r.Ratio.Median != 6 || r.Compare != nil {
		t.Errorf("%+v", r)
	}
	// Copies: a program's figure is their mean; this over the compared
	// object is taken per pair (50/60 and 70/80 here: u 0, w 50).
	r := summarize([]costRound{{ms: []float64{100, 120}, mos: []float64{110, 130}, b: 60, r: 60, a: 10, aw: 60, ro: 60}})
	near("copies: Measured", r.Measured, 110)
	near("copies: PerPacket", r.PerPacket, 60)
	near("copies: Compare.PerPacket", r.Compare.PerPacket, 70)
	near("copies: ThisOverIt.Q1", r.Compare.ThisOverIt.Q1, 50.0/60)
	near("copies: ThisOverIt.Median", r.Compare.ThisOverIt.Median, 70.0/80)
}

// The report shows each figure where it was measured: the anchor table,
// the programs and the comparison, with the numbers from the results.
func TestCostSection(t *testing.T) {
	var b strings.Builder
	(&Report{}).costSection(&b)
	if b.Len() != 0 {
		t.Errorf("nothing measured, section %q", b.String())
	}
	rep := &Report{
		Cost: []CostResult{{Case: "direct renewal", Runs: 1000, Rounds: 31, Measured: 250, Baseline: 70, Unresize: 12, Cost: 168, Min: 150,
			Anchor: 14, Wrapper: 60, PerPacket: 178, Ratio: Spread{12.714, 12.1, 13.25},
			Compare: &CostCompare{Measured: 260, Cost: 178, PerPacket: 188, Ratio: Spread{13.4, 13, 14}, ThisOverIt: Spread{0.9468, 0.93, 0.97}}}},
		CostPrograms: []CostProgram{{Object: "this tree", Verified: 4321, Xlated: 1234, JITBytes: 5678}, {Object: "/tmp/old.o", Verified: 4400, Xlated: 1240, JITBytes: 5700}},
	}
	rep.costSection(&b)
	md := b.String()
	mustContain(t, "section", md,
		"| direct renewal | 1000 × 31 | 250 | 70 | 12 | 168 | 150 |",
		"| direct renewal | 14 | 60 | 178 | 12.71× | 12.10–13.25 |",
		"| this tree | 4321 | 1234 | 5678 |",
		"| /tmp/old.o | 4400 | 1240 | 5700 |",
		"| direct renewal | 178 | 188 | 0.947 | 0.930–0.970 | 178 | 13.40× |")
	// An old report's figures (before the anchor) keep the first table only.
	b.Reset()
	(&Report{Cost: []CostResult{{Case: "direct renewal", Runs: 1, Rounds: 9, Measured: 506, Baseline: 65, Cost: 446, Min: 327}}}).costSection(&b)
	if md := b.String(); strings.Contains(md, "anchor ns") || strings.Contains(md, "compared") || !strings.Contains(md, "| 506 | 65 |") {
		t.Errorf("old report:\n%s", md)
	}
}

// The verifier's statistics line as 6.x kernels print it.
func TestProcessedInsns(t *testing.T) {
	log := "func#0 @0\nsome state\nprocessed 12345 insns (limit 1000000) max_states_per_insn 4 total_states 321 peak_states 210 mark_read 12\n"
	if n, err := processedInsns(log); err != nil || n != 12345 {
		t.Errorf("processedInsns = %d, %v; want 12345", n, err)
	}
	if _, err := processedInsns("verification time 12 usec\n"); err == nil {
		t.Error("no statistics line: no error")
	}
}
