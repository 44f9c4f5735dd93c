package bench

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// The scale section (issue 19): xdhcpd with the fast path on at growing
// database sizes, one ScaleRow per size: time to ready, RSS when ready,
// the BPF maps' memory, whether XDP answers a renewal of the last lease,
// and a bulk leasequery streaming every lease.

// ScaleRow is xdhcpd at one database size. Err says why the row is
// incomplete (a size that could not be run at all says so there, with
// nothing measured); the figures before it were measured.
type ScaleRow struct {
	Leases int `json:"leases"`
	// MaxLeases is fastpath.max-leases, the XDP lease map's capacity
	// (MaxLeasesFor); FastPath the XDP mode, native or generic.
	MaxLeases int    `json:"max-leases"`
	FastPath  string `json:"fastpath"`
	// WriteSeconds is the rig filling the database (not the daemon's
	// time); DBBytes the database file's size.
	WriteSeconds float64 `json:"write-seconds,omitempty"`
	DBBytes      int64   `json:"db-bytes,omitempty"`
	// Ready is from the daemon's start until its control socket answers:
	// the database loaded, the program attached, the daemon serving (the
	// slow path answers the renewals of leases not yet in the XDP map).
	// RSSBytes is its resident set then. Published is from the start
	// until every lease is in the map (xdhcp_fastpath_published), and
	// PublishedRSSBytes the resident set then.
	Ready             time.Duration `json:"ready-ns"`
	RSSBytes          int64         `json:"rss-bytes"`
	Published         time.Duration `json:"published-ns,omitempty"`
	PublishedRSSBytes int64         `json:"published-rss-bytes,omitempty"`
	// Settled is from the start until start-up's bulk work has ended
	// (xdhcp_startup_settled: the map written, leases held to their
	// horizons stored), SettledRSSBytes the resident set then, of which
	// SettledFileBytes are file pages (the database's mapped pages, which
	// the kernel may reclaim), and PeakRSSBytes the highest resident set
	// until then; BulkPeakRSSBytes is the highest until the bulk
	// leasequery's end.
	Settled          time.Duration `json:"settled-ns,omitempty"`
	SettledRSSBytes  int64         `json:"settled-rss-bytes,omitempty"`
	SettledFileBytes int64         `json:"settled-rss-file-bytes,omitempty"`
	PeakRSSBytes     int64         `json:"peak-rss-bytes,omitempty"`
	BulkPeakRSSBytes int64         `json:"bulk-peak-rss-bytes,omitempty"`
	// MapBytes is the memory (memlock) of every BPF map the daemon holds
	// or its programs use, Maps each of them.
	MapBytes int64       `json:"bpf-map-bytes"`
	Maps     []MapMemory `json:"bpf-maps,omitempty"`
	// Renewal is the renewal of the last lease; nil when not tried.
	Renewal *RenewalCheck `json:"xdp-renewal,omitempty"`
	// The bulk leasequery by relay-id: leases streamed, in how long, and
	// their rate. Streamed must be Leases.
	BulkStreamed int     `json:"bulk-leases"`
	BulkSeconds  float64 `json:"bulk-seconds"`
	BulkRate     float64 `json:"bulk-leases-per-second"`
	// Stages are the daemon's own account of its start-up, from its
	// "ready" log line: what each stage took until then, and the CPU time
	// (user and system) it had used by then.
	Stages     []StartupStage `json:"startup-stages,omitempty"`
	StartupCPU time.Duration  `json:"startup-cpu-ns,omitempty"`
	Err        string         `json:"error,omitempty"`
}

// StartupStage is one stage of xdhcpd's start-up and how long it took.
type StartupStage struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took-ns"`
}

// readyStages reads the stages from a daemon's log: the took.STAGE=D
// fields of its "ready" line (slog's text format), and its startup-cpu.
// Nil and 0 when there is no such line.
func readyStages(log string) (stages []StartupStage, cpu time.Duration) {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, " msg=ready ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			name, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				continue
			}
			if stage, ok := strings.CutPrefix(name, "took."); ok {
				stages = append(stages, StartupStage{Name: stage, Took: d})
			} else if name == "startup-cpu" {
				cpu = d
			}
		}
	}
	return stages, cpu
}

// MapMemory is one BPF map and the memory the kernel charges for it
// (memlock, as bpftool map show prints it).
type MapMemory struct {
	ID         uint32 `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	MaxEntries uint32 `json:"max-entries"`
	Bytes      uint64 `json:"memlock-bytes"`
}

// RenewalCheck is one relayed renewal of the last lease of the database.
type RenewalCheck struct {
	IP string `json:"ip"`
	// Reply is the answer's message type ("ack", "nak"), "" for none
	// within three seconds.
	Reply string `json:"reply"`
	// xdhcp_fastpath_replies_total before the renewal was sent and after
	// its answer.
	FastRepliesBefore float64 `json:"fastpath-replies-before"`
	FastRepliesAfter  float64 `json:"fastpath-replies-after"`
	// ByXDP: an ACK came back and the fast path counted a reply.
	ByXDP bool `json:"answered-by-xdp"`
}

// cell is the check's table cell.
func (c *RenewalCheck) cell() string {
	switch {
	case c == nil:
		return "-"
	case c.ByXDP:
		return "yes"
	case c.Reply == "" && c.FastRepliesAfter > c.FastRepliesBefore:
		return "no (XDP counted a reply; none arrived)"
	case c.Reply == "":
		return "no (no answer)"
	}
	return "no (" + c.Reply + " from the slow path)"
}

// ScaleOptions shape xdhcp-bench startup.
type ScaleOptions struct {
	Bin   string
	Fast  string // "native" or "generic"
	Sizes []int  // leases, one row each
	Log   func(format string, args ...any)
}

func (o ScaleOptions) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// DefaultScaleSizes are the scale section's sizes when none are given.
const DefaultScaleSizes = "1000000,10000000"

// maxScaleLeases is the largest size: the addresses of the /8 pool the
// leases are written in, from 10.0.0.1 (its lease map, MaxLeasesFor, is
// within fastpath.max-leases' bound of 1<<26).
const maxScaleLeases = 1<<24 - 2

// ParseLeaseCounts reads a comma-separated list of lease counts ("1000000",
// "100000,300000"; k and M multiply by a thousand and a million, _ may
// separate digits) and returns them in increasing order, each once.
func ParseLeaseCounts(s string) ([]int, error) {
	var out []int
	for _, item := range strings.Split(s, ",") {
		f := strings.TrimSpace(item)
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			f, mult = strings.TrimSuffix(f, "k"), 1000
		case strings.HasSuffix(f, "M"):
			f, mult = strings.TrimSuffix(f, "M"), 1_000_000
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || strings.HasPrefix(f, "_") || strings.HasPrefix(f, "+") {
			return nil, fmt.Errorf("lease count %q: want a whole number (e.g. 1000000, 1M)", strings.TrimSpace(item))
		}
		if n < 1 || n > maxScaleLeases/mult {
			return nil, fmt.Errorf("lease count %d: want 1 to %d (the addresses of the /8 the leases are written in)", n*mult, maxScaleLeases)
		}
		out = append(out, n*mult)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// MaxLeasesFor is the lease map capacity the scale section configures for
// n leases: an eighth more (new clients while the old are still there),
// rounded up to a multiple of 64Ki.
func MaxLeasesFor(n int) int {
	const unit = 1 << 16
	return (n + n/8 + unit - 1) / unit * unit
}

// rowBudget bounds one size's whole row: writing the database, starting,
// the checks and the bulk query. On the two shared CPUs of the bench VM a
// million leases took 21 s in all (2026-12-05).
func rowBudget(n int) time.Duration {
	return 5*time.Minute + time.Duration(float64(3*time.Minute)*float64(n)/1e6)
}

// readyBound is how long the daemon may take to answer on its control
// socket with n leases (12.7 s a million with the fast path on, on the
// bench VM, 2026-12-05).
func readyBound(n int) time.Duration {
	return 30*time.Second + time.Duration(float64(30*time.Second)*float64(n)/1e6)
}

// defaultBytesPerLease is what a lease cost the daemon before any row of
// this run was measured: 1.38 GiB of RSS and 0.23 GiB of BPF maps a
// million (README, 2026-12-05).
const defaultBytesPerLease = 1800

// memNeeded estimates the memory (RSS and BPF maps) xdhcpd takes with n
// leases from the rows measured before: the line through the two largest,
// or the largest one's bytes per lease, or defaultBytesPerLease; basis
// says which.
func memNeeded(n int, done []ScaleRow) (need int64, basis string) {
	var ok []ScaleRow
	for _, r := range done {
		if r.RSSBytes > 0 && r.MapBytes > 0 {
			ok = append(ok, r)
		}
	}
	slices.SortFunc(ok, func(a, b ScaleRow) int { return cmp.Compare(a.Leases, b.Leases) })
	cost := func(r ScaleRow) float64 { return float64(r.RSSBytes + r.MapBytes) }
	switch len(ok) {
	case 0:
		return int64(n) * defaultBytesPerLease, fmt.Sprintf("%d bytes a lease, the README's figure at a million", defaultBytesPerLease)
	case 1:
		a := ok[0]
		return int64(cost(a) / float64(a.Leases) * float64(n)), fmt.Sprintf("bytes a lease at %d leases", a.Leases)
	}
	a, b := ok[len(ok)-2], ok[len(ok)-1]
	slope := (cost(b) - cost(a)) / float64(b.Leases-a.Leases)
	need = int64(cost(b) + slope*float64(n-b.Leases))
	if slope <= 0 || need < int64(cost(b)) {
		need = int64(cost(b) / float64(b.Leases) * float64(n))
	}
	return need, fmt.Sprintf("extrapolated from the rows at %d and %d leases", a.Leases, b.Leases)
}

// defaultDBBytesPerLease is the database's size a lease (334 MiB a
// million, README).
const defaultDBBytesPerLease = 400

// enoughResources says why n leases cannot be run with avail bytes of
// memory (MemAvailable) and free bytes of disk under tmp, nil when they
// can: the estimate (memNeeded) plus a tenth and 512 MiB for the rest of
// the machine, and the database's size plus a fifth.
func enoughResources(n int, done []ScaleRow, avail, free int64, tmp string) error {
	need, basis := memNeeded(n, done)
	if want := need + need/10 + 512<<20; avail > 0 && want > avail {
		return fmt.Errorf("not run: %d leases need about %.1f GiB of memory for xdhcpd's RSS and BPF maps (%s), plus a tenth and 0.5 GiB for the rest; %.1f GiB available (MemAvailable)",
			n, gib(need), basis, gib(avail))
	}
	per := int64(defaultDBBytesPerLease)
	for _, r := range done {
		if r.DBBytes > 0 {
			per = r.DBBytes/int64(r.Leases) + 1
		}
	}
	if want := per * int64(n) * 6 / 5; free > 0 && want > free {
		return fmt.Errorf("not run: the database of %d leases needs about %.1f GiB of disk under %s, %.1f GiB free", n, gib(want), tmp, gib(free))
	}
	return nil
}

// memAvailable is the kernel's estimate of memory available (bytes), 0
// when unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return kBField(string(b), "MemAvailable:")
}

// diskFree is the space free to unprivileged users under dir, 0 when
// unknown.
func diskFree(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// bpfMaps lists every BPF map process pid holds a descriptor of, or that
// a program or link it holds uses, with the memory the kernel charges for
// each (memlock, as bpftool map show prints it).
func bpfMaps(pid int) ([]MapMemory, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, fmt.Errorf("BPF maps of pid %d: %w", pid, err)
	}
	var mapIDs []uint32
	progs := map[uint32]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || !strings.HasPrefix(target, "anon_inode:bpf") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if id, ok := fdinfoID(string(info), "map_id"); ok {
			mapIDs = append(mapIDs, id)
		} else if id, ok := fdinfoID(string(info), "prog_id"); ok {
			progs[id] = true // a program, or a link to one
		}
	}
	for id := range progs {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return nil, fmt.Errorf("BPF program %d: %w", id, err)
		}
		ids, _ := info.MapIDs()
		for _, m := range ids {
			mapIDs = append(mapIDs, uint32(m))
		}
	}
	slices.Sort(mapIDs)
	mapIDs = slices.Compact(mapIDs)
	var out []MapMemory
	for _, id := range mapIDs {
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("BPF map %d: %w", id, err)
		}
		mem, ok := info.Memlock()
		if !ok {
			return nil, fmt.Errorf("BPF map %d (%s): the kernel does not report its memory (memlock)", id, info.Name)
		}
		out = append(out, MapMemory{ID: id, Name: info.Name, Type: info.Type.String(), MaxEntries: info.MaxEntries, Bytes: mem})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pid %d holds no BPF map: is the fast path on?", pid)
	}
	slices.SortFunc(out, func(a, b MapMemory) int { return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// fdinfoID reads a "key:\tN" line of a /proc/PID/fdinfo file.
func fdinfoID(text, key string) (uint32, bool) {
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		return uint32(n), err == nil
	}
	return 0, false
}

// scrapeMetric reads a metric (the sum of its series) from the /metrics
// served at addr inside ns (scrapeText).
func scrapeMetric(ns *netns.NS, addr, name string) (float64, error) {
	text, err := scrapeText(ns, addr)
	if err != nil {
		return 0, err
	}
	v, ok := metricValue(text, name)
	if !ok {
		return 0, fmt.Errorf("metrics at %s: no %s (is the fast path on?)", addr, name)
	}
	return v, nil
}

// metricValue sums the samples of metric name in Prometheus' text format.
func metricValue(text, name string) (float64, bool) {
	sum, found := 0.0, false
	for _, l := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
func gib(b int64) float64 { return float64(b) / (1 << 30) }

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// scaleSection renders the scale table, the maps behind each row's BPF
// memory, why rows are incomplete, and the chart.
func (rep *Report) scaleSection(b *strings.Builder) {
	if len(rep.Scale) == 0 {
		return
	}
	mode := rep.Scale[0].FastPath
	fmt.Fprintf(b, "\n## Scale: xdhcpd with the fast path on (XDP %s)\n\n", mode)
	b.WriteString("Per size: a fresh database of that many active relayed leases (option 82 with a relay-id, horizons written as a daemon with the fast path writes them), " +
		"xdhcpd started on it with `fastpath.max-leases` an eighth above the size (rounded up to 64Ki). " +
		"Serving: the control socket answers (database loaded, program attached; the slow path answers the renewals of leases not yet in the XDP map, which is written meanwhile). " +
		"XDP map full: every lease in it (xdhcp_fastpath_published). " +
		"Settled: start-up's bulk work over (xdhcp_startup_settled: the map full and, the map being new, every lease held to its horizon stored), its memory given back; the RSS then is what to size a box by; its file pages are the database's mapped pages, which the kernel may reclaim. Peak RSS: the highest (VmHWM) until start-up settled, and until the bulk leasequery (below) ended. " +
		"BPF map memory: memlock of every map the daemon holds or its programs use (kernel memory, outside RSS). " +
		"XDP renewal: one relayed renewal of the last lease, answered with an ACK while xdhcp_fastpath_replies_total rose. " +
		"Bulk: one RFC 6926 bulk leasequery by relay-id over TCP, streaming every lease.\n\n")
	b.WriteString("| leases | max-leases | serving after | RSS then | XDP map full after | RSS then | settled after | RSS then | peak RSS until settled | peak RSS until the bulk query's end | BPF map memory | bulk leases/s | streamed | XDP renewal answered |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	perLease := func(v int64, n int) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%s MiB (%s B/lease)", thousands(int64(mib(v)+0.5)), thousands(v/int64(n)))
	}
	for _, r := range rep.Scale {
		ready, published, settled, settledRSS, bulk, streamed := "-", "-", "-", "-", "-", "-"
		if r.Ready > 0 {
			ready = r.Ready.Round(time.Millisecond).String()
		}
		if r.Published > 0 {
			published = r.Published.Round(time.Millisecond).String()
		}
		if r.Settled > 0 {
			settled = r.Settled.Round(time.Millisecond).String()
			settledRSS = fmt.Sprintf("%s MiB (%s B/lease; file pages %s MiB)", thousands(int64(mib(r.SettledRSSBytes)+0.5)),
				thousands(r.SettledRSSBytes/int64(r.Leases)), thousands(int64(mib(r.SettledFileBytes)+0.5)))
		}
		if r.BulkSeconds > 0 {
			bulk, streamed = thousands(int64(r.BulkRate+0.5)), thousands(int64(r.BulkStreamed))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", thousands(int64(r.Leases)), thousands(int64(r.MaxLeases)), ready,
			perLease(r.RSSBytes, r.Leases), published, perLease(r.PublishedRSSBytes, r.Leases), settled, settledRSS, perLease(r.PeakRSSBytes, r.Leases), perLease(r.BulkPeakRSSBytes, r.Leases),
			perLease(r.MapBytes, r.Leases), bulk, streamed, r.Renewal.cell())
	}
	b.WriteString("\n")
	for _, r := range rep.Scale {
		if r.Err != "" {
			fmt.Fprintf(b, "**%s leases: %s**\n\n", thousands(int64(r.Leases)), strings.ReplaceAll(r.Err, "\n", " "))
		}
	}
	for _, r := range rep.Scale {
		if len(r.Maps) == 0 {
			continue
		}
		var parts []string
		var rest uint64
		for i, m := range r.Maps {
			if i < 3 {
				parts = append(parts, fmt.Sprintf("%s (%s, %s entries) %.1f MiB", m.Name, m.Type, thousands(int64(m.MaxEntries)), mib(int64(m.Bytes))))
			} else {
				rest += m.Bytes
			}
		}
		if n := len(r.Maps) - 3; n > 0 {
			parts = append(parts, fmt.Sprintf("%d others %.1f MiB", n, mib(int64(rest))))
		}
		fmt.Fprintf(b, "BPF maps at %s leases: %s.", thousands(int64(r.Leases)), strings.Join(parts, ", "))
		if r.WriteSeconds > 0 {
			fmt.Fprintf(b, " Database %.0f MiB, written by the rig in %.1f s.", mib(r.DBBytes), r.WriteSeconds)
		}
		if len(r.Stages) > 0 {
			stages := make([]string, len(r.Stages))
			for i, st := range r.Stages {
				stages[i] = fmt.Sprintf("%s %s", st.Name, st.Took.Round(time.Millisecond))
			}
			fmt.Fprintf(b, " Start-up by the daemon's ready line: %s", strings.Join(stages, ", "))
			if r.StartupCPU > 0 {
				fmt.Fprintf(b, "; %s of CPU time until then", r.StartupCPU.Round(time.Millisecond))
			}
			b.WriteString(".")
		}
		b.WriteString("\n\n")
	}
	rep.chartLinks(b, "xdhcpd's RSS and BPF map memory against leases", rep.base(), "-scale.png")
}

// scaleChart draws RSS and BPF map memory against leases, in GiB (MiB
// when every value is below a GiB).
func scaleChart(dir, base string, rows []ScaleRow) (string, error) {
	unit, label := float64(1<<30), "GiB"
	if !slices.ContainsFunc(rows, func(r ScaleRow) bool { return max(r.RSSBytes, r.MapBytes) >= 1<<30 }) {
		unit, label = 1<<20, "MiB"
	}
	rssS, maps := series{name: "RSS when ready"}, series{name: "BPF map memory (memlock)"}
	for _, r := range rows {
		if r.RSSBytes > 0 {
			rssS.points = append(rssS.points, point{offered: float64(r.Leases), answered: float64(r.RSSBytes) / unit, within: true})
		}
		if r.MapBytes > 0 {
			maps.points = append(maps.points, point{offered: float64(r.Leases), answered: float64(r.MapBytes) / unit, within: true})
		}
	}
	if len(rssS.points) == 0 {
		return "", nil
	}
	p, err := latencyPlot("xdhcpd's memory against leases (fast path on)", "leases", []series{rssS, maps})
	if err != nil {
		return "", err
	}
	p.Y.Label.Text = label
	name := base + "-scale.png"
	return name, save(p, dir, name)
}
