package bench

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/config"
)

func TestParseLeaseCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		err  string
	}{
		{in: "1000000", want: []int{1_000_000}},
		{in: DefaultScaleSizes, want: []int{1_000_000, 10_000_000}},
		{in: "100000,300000", want: []int{100_000, 300_000}},
		{in: " 300000 , 100000,100000", want: []int{100_000, 300_000}}, // sorted, each once
		{in: "1M,10M,500k", want: []int{500_000, 1_000_000, 10_000_000}},
		{in: "1_000_000", want: []int{1_000_000}},
		{in: "16777214", want: []int{maxScaleLeases}},
		{in: "", err: `lease count ""`},
		{in: "100000,", err: `lease count ""`},
		{in: "abc", err: `lease count "abc"`},
		{in: "1.5M", err: `lease count "1.5M"`},
		{in: "+5", err: `lease count "+5"`},
		{in: "0", err: "want 1 to"},
		{in: "-5", err: "want 1 to"},
		{in: "16777215", err: "want 1 to 16777214"},
		{in: "17M", err: "lease count 17000000: want 1 to"},
	} {
		got, err := ParseLeaseCounts(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseLeaseCounts(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseLeaseCounts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// MaxLeasesFor leaves an eighth spare, in 64Ki steps, and stays within
// fastpath.max-leases' bound (1<<26) for every size ParseLeaseCounts takes.
func TestMaxLeasesFor(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{1, 1 << 16},
		{100_000, 131_072},
		{1_000_000, 1_179_648},
		{10_000_000, 11_272_192},
		{maxScaleLeases, 18_874_368},
	} {
		got := MaxLeasesFor(c.n)
		if got != c.want || got < c.n+c.n/8 || got%(1<<16) != 0 || got > 1<<26 {
			t.Errorf("MaxLeasesFor(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestMemNeeded(t *testing.T) {
	const mb = 1 << 20
	row := func(n int, rss, maps int64) ScaleRow { return ScaleRow{Leases: n, RSSBytes: rss, MapBytes: maps} }
	for _, c := range []struct {
		name  string
		n     int
		done  []ScaleRow
		want  int64
		basis string
	}{
		{"nothing measured", 1_000_000, nil, 1_000_000 * defaultBytesPerLease, "README"},
		{"a failed row does not count", 1_000_000, []ScaleRow{{Leases: 100, Err: "x"}}, 1_000_000 * defaultBytesPerLease, "README"},
		{"one row: its bytes per lease", 10_000_000, []ScaleRow{row(1_000_000, 900*mb, 100*mb)}, 10_000 * mb, "at 1000000 leases"},
		// 100k: 100 MiB, 300k: 200 MiB: 50 MiB of base, 500 B a lease.
		{"two rows: the line through them", 1_000_000, []ScaleRow{row(300_000, 150*mb, 50*mb), row(100_000, 80*mb, 20*mb)}, 550 * mb,
			"rows at 100000 and 300000"},
		{"a falling line: bytes per lease of the largest", 600_000, []ScaleRow{row(100_000, 300*mb, 0), row(100_000, 300*mb, 1), row(300_000, 200*mb, 100*mb)}, 600 * mb, "rows at"},
	} {
		got, basis := memNeeded(c.n, c.done)
		if d := got - c.want; d < -mb/100 || d > mb/100 || !strings.Contains(basis, c.basis) {
			t.Errorf("%s: memNeeded(%d) = %d MiB (%s), want %d MiB (%s)", c.name, c.n, got/mb, basis, c.want/mb, c.basis)
		}
	}
}

// A size that does not fit is refused with what it needs and what there
// is, before anything is written.
func TestEnoughResources(t *testing.T) {
	const gb = 1 << 30
	m1 := []ScaleRow{{Leases: 1_000_000, RSSBytes: gb, MapBytes: gb / 4, DBBytes: 300 << 20}}
	for _, c := range []struct {
		name        string
		n           int
		done        []ScaleRow
		avail, free int64
		err         []string
	}{
		{"fits", 10_000_000, m1, 20 * gb, 70 * gb, nil},
		{"unknown memory and disk", 10_000_000, m1, 0, 0, nil},
		{"memory", 10_000_000, m1, 12 * gb, 70 * gb, []string{"not run: 10000000 leases need about 12.5 GiB of memory", "12.0 GiB available (MemAvailable)", "at 1000000 leases"}},
		{"disk", 10_000_000, m1, 20 * gb, 3 * gb, []string{"not run: the database of 10000000 leases needs about 3.5 GiB of disk under /tmp, 3.0 GiB free"}},
		{"disk without a row", 10_000_000, nil, 30 * gb, 4 * gb, []string{"needs about 4.5 GiB of disk"}},
	} {
		err := enoughResources(c.n, c.done, c.avail, c.free, "/tmp")
		if c.err == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		for _, w := range c.err {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want %q in it", c.name, err, w)
			}
		}
	}
}

func TestMetricValue(t *testing.T) {
	const text = `# HELP xdhcp_fastpath_replies_total Renewals the XDP program answered.
# TYPE xdhcp_fastpath_replies_total counter
xdhcp_fastpath_replies_total 42
xdhcp_fastpath_replies_total_extra 7
xdhcp_fastpath_punts_total{reason="no_lease"} 3
xdhcp_fastpath_punts_total{reason="horizon",x="a}b"} 4.5
xdhcp_slowpath_replies_total{type="ack"} 1e+06
`
	for _, c := range []struct {
		name string
		want float64
		ok   bool
	}{
		{"xdhcp_fastpath_replies_total", 42, true},
		{"xdhcp_fastpath_punts_total", 7.5, true},
		{"xdhcp_slowpath_replies_total", 1e6, true},
		{"xdhcp_fastpath", 0, false},
		{"xdhcp_absent_total", 0, false},
	} {
		if got, ok := metricValue(text, c.name); got != c.want || ok != c.ok {
			t.Errorf("metricValue(%s) = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestFdinfoID(t *testing.T) {
	const mapInfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t120\nmax_entries:\t1179648\nmap_flags:\t0x1\nmap_extra:\t0x0\nmemlock:\t200778112\nmap_id:\t321\nfrozen:\t0\n"
	const progInfo = "pos:\t0\nflags:\t02000002\nprog_type:\t6\nprog_jited:\t1\nprog_tag:\tabc\nmemlock:\t8192\nprog_id:\t77\n"
	for _, c := range []struct {
		text, key string
		want      uint32
		ok        bool
	}{
		{mapInfo, "map_id", 321, true},
		{mapInfo, "prog_id", 0, false},
		{progInfo, "prog_id", 77, true},
		{progInfo, "map_id", 0, false},
		{"map_id:\tx\n", "map_id", 0, false},
	} {
		if got, ok := fdinfoID(c.text, c.key); got != c.want || ok != c.ok {
			t.Errorf("fdinfoID(%s) = %d, %v; want %d, %v", c.key, got, ok, c.want, c.ok)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1_179_648: "1,179,648", -12345: "-12,345", 10_000_000: "10,000,000"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%d) = %q, want %q", in, got, want)
		}
	}
}

// scaleFixture is a scale section: a measured row, one whose renewal was
// answered by the slow path and whose bulk query fell short, and one that
// could not run.
func scaleFixture() []ScaleRow {
	const mb = 1 << 20
	return []ScaleRow{
		{Leases: 1_000_000, MaxLeases: 1_179_648, FastPath: "native", WriteSeconds: 12.3, DBBytes: 334 * mb,
			Ready: 4321 * time.Millisecond, RSSBytes: 1396 * mb, Published: 6 * time.Second, PublishedRSSBytes: 1400 * mb, MapBytes: 230 * mb,
			Settled: 7500 * time.Millisecond, SettledRSSBytes: 300 * mb, SettledFileBytes: 40 * mb, PeakRSSBytes: 1500 * mb, BulkPeakRSSBytes: 1600 * mb,
			Maps: []MapMemory{{Name: "xdhcp_leases", Type: "Hash", MaxEntries: 1_179_648, Bytes: 190 * mb}, {Name: "xdhcp_grants", Type: "Array", MaxEntries: 1_474_561, Bytes: 36 * mb},
				{Name: "xdhcp_punts", Type: "LRUHash", MaxEntries: 65536, Bytes: 3 * mb}, {Name: "a", Bytes: mb / 2}, {Name: "b", Bytes: mb / 2}},
			Renewal:      &RenewalCheck{IP: "10.15.66.64", Reply: "ack", FastRepliesBefore: 0, FastRepliesAfter: 1, ByXDP: true},
			BulkStreamed: 1_000_000, BulkSeconds: 2.5, BulkRate: 400_000},
		{Leases: 3_000_000, MaxLeases: 3_407_872, FastPath: "native", Ready: 15 * time.Second, RSSBytes: 3500 * mb, MapBytes: 650 * mb,
			Renewal: &RenewalCheck{IP: "10.45.198.192", Reply: "ack"}, BulkStreamed: 2_999_000, BulkSeconds: 10, BulkRate: 299_900,
			Err: "the bulk leasequery streamed 2999000 leases of 3000000"},
		{Leases: 10_000_000, MaxLeases: 11_272_192, FastPath: "native",
			Err: "not run: 10000000 leases need about 15.9 GiB of memory for xdhcpd's RSS and BPF maps, 12.0 GiB available (MemAvailable)"},
	}
}

func TestScaleTable(t *testing.T) {
	md := (&Report{Scale: scaleFixture()}).Markdown()
	mustContain(t, "report", md,
		"## Scale: xdhcpd with the fast path on (XDP native)",
		"| leases | max-leases | serving after | RSS then | XDP map full after | RSS then | settled after | RSS then | peak RSS until settled | peak RSS until the bulk query's end | BPF map memory | bulk leases/s | streamed | XDP renewal answered |",
		"| 1,000,000 | 1,179,648 | 4.321s | 1,396 MiB (1,463 B/lease) | 6s | 1,400 MiB (1,468 B/lease) | 7.5s | 300 MiB (314 B/lease; file pages 40 MiB) | 1,500 MiB (1,572 B/lease) | 1,600 MiB (1,677 B/lease) | 230 MiB (241 B/lease) | 400,000 | 1,000,000 | yes |",
		"| 3,000,000 | 3,407,872 | 15s | 3,500 MiB (1,223 B/lease) | - | - | - | - | - | - | 650 MiB (227 B/lease) | 299,900 | 2,999,000 | no (ack from the slow path) |",
		"| 10,000,000 | 11,272,192 | - | - | - | - | - | - | - | - | - | - | - | - |",
		"**3,000,000 leases: the bulk leasequery streamed 2999000 leases of 3000000**",
		"**10,000,000 leases: not run: 10000000 leases need about 15.9 GiB",
		"BPF maps at 1,000,000 leases: xdhcp_leases (Hash, 1,179,648 entries) 190.0 MiB, xdhcp_grants (Array, 1,474,561 entries) 36.0 MiB, xdhcp_punts (LRUHash, 65,536 entries) 3.0 MiB, 2 others 1.0 MiB. Database 334 MiB, written by the rig in 12.3 s.")
	if strings.Contains(md, "BPF maps at 10,000,000") {
		t.Errorf("a breakdown for the row that did not run:\n%s", md)
	}
	if md := (&Report{}).Markdown(); strings.Contains(md, "Scale") {
		t.Errorf("a scale section without rows:\n%s", md)
	}
	for _, c := range []struct {
		c    *RenewalCheck
		want string
	}{
		{nil, "-"}, {&RenewalCheck{Reply: "ack", ByXDP: true}, "yes"}, {&RenewalCheck{}, "no (no answer)"}, {&RenewalCheck{FastRepliesAfter: 1}, "no (XDP counted a reply; none arrived)"}, {&RenewalCheck{Reply: "nak"}, "no (nak from the slow path)"},
	} {
		if got := c.c.cell(); got != c.want {
			t.Errorf("cell(%+v) = %q, want %q", c.c, got, c.want)
		}
	}
}

// The scale chart is drawn from the rows that were measured (MiB below a
// GiB), embedded in the report, and drawn again from the report's JSON;
// without a measured row there is none.
func TestScaleChart(t *testing.T) {
	dir := t.TempDir()
	rep := &Report{Date: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), Host: "test", Scale: scaleFixture()}
	md, err := rep.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := rep.base() + "-scale.png"
	if !slices.Contains(rep.Charts, name) {
		t.Fatalf("no scale chart among %v", rep.Charts)
	}
	if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() < 1000 {
		t.Fatalf("chart file: %v", err)
	}
	if text, _ := os.ReadFile(md); !strings.Contains(string(text), "]("+name+")") {
		t.Errorf("the report does not embed %s", name)
	}
	again := t.TempDir()
	names, err := RenderCharts(rep, again, "again")
	if err != nil || !slices.Contains(names, "again-scale.png") {
		t.Fatalf("RenderCharts: %v, %v", names, err)
	}
	small := []ScaleRow{{Leases: 100_000, RSSBytes: 80 << 20, MapBytes: 36 << 20}}
	if n, err := scaleChart(again, "small", small); err != nil || n != "small-scale.png" {
		t.Fatalf("a chart below a GiB: %q, %v", n, err)
	}
	if n, err := scaleChart(again, "none", []ScaleRow{{Leases: 10, Err: "not run"}}); n != "" || err != nil {
		t.Fatalf("a chart without a measured row: %q, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(again, "none-scale.png")); !os.IsNotExist(err) {
		t.Fatalf("none-scale.png written (%v)", err)
	}
}

// The scale section's configuration parses, with the fast path on in the
// mode asked for, the lease map sized for the largest size, leasequery
// open to the relay and the generator, the metrics scrapeMetric reads,
// and the last lease of a 10M database inside the pool.
func TestScaleConfig(t *testing.T) {
	for _, c := range []struct {
		fast string
		n    int
	}{{"native", 1_000_000}, {"generic", 10_000_000}, {"native", maxScaleLeases}} {
		cfg, err := config.Parse("x.yaml", []byte(scaleConfig("/tmp/x", c.fast, MaxLeasesFor(c.n))))
		if err != nil {
			t.Fatalf("%s %d: %v", c.fast, c.n, err)
		}
		f := cfg.Fastpath
		if !f.Enabled || f.Mode != c.fast || int(f.MaxLeases) != MaxLeasesFor(c.n) || cfg.Server.MetricsListen != scaleMetrics {
			t.Errorf("%s %d: fast path %+v, metrics on %q", c.fast, c.n, f, cfg.Server.MetricsListen)
		}
		lq := cfg.Leasequery
		if !lq.Enabled || !slices.ContainsFunc(lq.Requesters, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(ClientAddr)) }) {
			t.Errorf("leasequery %+v: the bulk query comes from %s", lq, ClientAddr)
		}
		last, _ := benchLease(c.n - 1)
		if p := cfg.Subnets[0].Pools[0]; last.Compare(p.End) > 0 {
			t.Errorf("lease %s beyond the pool's end %s", last, p.End)
		}
	}
}

// TestReadyStages reads the stages from the daemon's ready line as slog's
// text handler writes it, and nothing from other lines.
func TestReadyStages(t *testing.T) {
	log := `time=2026-12-06T04:30:00.000Z level=INFO msg="fast path pinned" took.x=1s
time=2026-12-06T04:30:01.000Z level=INFO msg=ready interfaces=[eth0] subnets=1 leases=1000000 startup=1.5s startup-cpu=2.25s took.open-database=3ms took.prepare-xdp=12ms took.load-leases=901ms took.wait-xdp=0s
`
	want := []StartupStage{{"open-database", 3 * time.Millisecond}, {"prepare-xdp", 12 * time.Millisecond}, {"load-leases", 901 * time.Millisecond}, {"wait-xdp", 0}}
	got, cpu := readyStages(log)
	if !slices.Equal(got, want) || cpu != 2250*time.Millisecond {
		t.Fatalf("got %v and CPU %v, want %v and 2.25s", got, cpu, want)
	}
	if got, cpu := readyStages("level=WARN msg=something took.a=1s startup-cpu=1s\n"); got != nil || cpu != 0 {
		t.Fatalf("no ready line: got %v, %v", got, cpu)
	}
}
