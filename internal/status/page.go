// Package status serves the daemon's status page: one server-rendered HTML
// page on the metrics listener, for boxes without a monitoring stack
// (NIC-attached appliances, lab rigs). It reads the same Prometheus
// metrics /metrics serves, samples the answer counters itself to show the
// rates of the last minutes, and lists the last warnings (Recent).
package status

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Options tune a Page.
type Options struct {
	// Interval is how often Run samples the answer counters (default 5 s);
	// Window how long the samples are kept (default 10 minutes).
	Interval, Window time.Duration
	// Refresh is how often the page reloads itself (default 5 s).
	Refresh time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Page is the status page. Its ServeHTTP may run while Run samples.
type Page struct {
	g      prometheus.Gatherer
	recent *Recent
	o      Options

	mu      sync.Mutex
	samples []sample // oldest first, within o.Window
	warned  time.Time
}

// sample is the answer counters at one moment.
type sample struct {
	at         time.Time
	fast, slow float64
}

// New makes the page for the metrics g gathers and the warnings recent
// keeps (nil: none listed).
func New(g prometheus.Gatherer, recent *Recent, o Options) *Page {
	o.Interval = cmp.Or(o.Interval, 5*time.Second)
	o.Window = cmp.Or(o.Window, 10*time.Minute)
	o.Refresh = cmp.Or(o.Refresh, 5*time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Page{g: g, recent: recent, o: o}
}

// Run samples the answer counters every Interval until ctx ends.
func (p *Page) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	p.Sample()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.Sample()
		}
	}
}

// Sample takes one sample of the answer counters now (Run calls it).
func (p *Page) Sample() {
	fams, err := p.g.Gather()
	p.gatherErr(err)
	m := index(fams)
	s := sample{at: p.o.Now(), fast: m.sum("xdhcp_fastpath_replies_total", nil), slow: m.sum("xdhcp_slowpath_replies_total", nil)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, s)
	cut := 0
	for cut < len(p.samples) && s.at.Sub(p.samples[cut].at) > p.o.Window {
		cut++
	}
	p.samples = slices.Delete(p.samples, 0, cut)
}

// gatherErr logs a failed gathering (the page shows what was gathered) at
// most once a minute: the warning joins the list the page shows, which a
// collector failing at every sample would otherwise fill.
func (p *Page) gatherErr(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	now := p.o.Now()
	quiet := now.Sub(p.warned) < time.Minute
	if !quiet {
		p.warned = now
	}
	p.mu.Unlock()
	if !quiet {
		p.o.Logger.Warn("status page: gathering metrics (said at most once a minute)", "err", err)
	}
}

// metrics are gathered families by name.
type metrics map[string]*dto.MetricFamily

func index(fams []*dto.MetricFamily) metrics {
	m := metrics{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func value(x *dto.Metric) float64 {
	switch {
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	case x.Untyped != nil:
		return x.Untyped.GetValue()
	}
	return 0
}

func label(x *dto.Metric, name string) string {
	for _, l := range x.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sum adds the series of name whose labels keep accepts (nil: all).
func (m metrics) sum(name string, keep func(*dto.Metric) bool) float64 {
	f := m[name]
	if f == nil {
		return 0
	}
	t := 0.0
	for _, x := range f.GetMetric() {
		if keep == nil || keep(x) {
			t += value(x)
		}
	}
	return t
}

// byLabel returns name's non-zero series by the value of one label,
// largest first.
func (m metrics) byLabel(name, l string) []count {
	f := m[name]
	if f == nil {
		return nil
	}
	var out []count
	for _, x := range f.GetMetric() {
		if v := value(x); v != 0 {
			out = append(out, count{Name: label(x, l), Value: v})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Value > out[j].Value })
	return out
}

// count is one labelled value.
type count struct {
	Name  string
	Value float64
}

// bar is one pool state of a subnet, with its share of the subnet.
type bar struct {
	State string
	Count float64
	Pct   float64
}

type subnet struct {
	Name  string
	Total float64
	Bars  []bar
}

// poolStates orders the states the page draws; others follow by name.
var poolStates = []string{"free", "offered", "active", "expired", "released", "abandoned", "reserved", "backup", "draining"}

func (m metrics) subnets() []subnet {
	f := m["xdhcp_pool_addresses"]
	if f == nil {
		return nil
	}
	by := map[string]map[string]float64{}
	for _, x := range f.GetMetric() {
		s := label(x, "subnet")
		if by[s] == nil {
			by[s] = map[string]float64{}
		}
		by[s][label(x, "state")] += value(x)
	}
	var out []subnet
	for name, states := range by {
		// total is the pools' size; without it, the sum of the states
		// (draining is a share of the others, not a state of its own).
		sn := subnet{Name: name, Total: states["total"]}
		var names []string
		for st := range states {
			if _, ok := states["total"]; !ok && st != "draining" {
				sn.Total += states[st]
			}
			if st != "total" {
				names = append(names, st)
			}
		}
		slices.SortFunc(names, func(a, b string) int {
			ia, ib := slices.Index(poolStates, a), slices.Index(poolStates, b)
			if ia < 0 {
				ia = len(poolStates)
			}
			if ib < 0 {
				ib = len(poolStates)
			}
			return cmp.Or(cmp.Compare(ia, ib), strings.Compare(a, b))
		})
		for _, st := range names {
			if i := slices.Index(poolStates, st); states[st] == 0 && (i < 0 || i > 3) {
				continue // only the first four states are shown when empty
			}
			b := bar{State: st, Count: states[st]}
			if sn.Total > 0 {
				// A reservation outside the pools is active in the
				// subnet without being one of its pool addresses.
				b.Pct = min(100, 100*b.Count/sn.Total)
			}
			sn.Bars = append(sn.Bars, b)
		}
		out = append(out, sn)
	}
	slices.SortFunc(out, func(a, b subnet) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// rate is the answers per second between two samples.
type rate struct {
	At         time.Time
	Fast, Slow float64
}

func (p *Page) rates() []rate {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []rate
	for i := 1; i < len(p.samples); i++ {
		a, b := p.samples[i-1], p.samples[i]
		d := b.at.Sub(a.at).Seconds()
		if d <= 0 || b.fast < a.fast || b.slow < a.slow {
			continue // a restarted counter
		}
		out = append(out, rate{At: b.at, Fast: (b.fast - a.fast) / d, Slow: (b.slow - a.slow) / d})
	}
	return out
}

// chart draws the rates as an inline SVG: a polyline per path.
func chart(rs []rate) template.HTML {
	const w, h = 600.0, 120.0
	if len(rs) == 0 {
		return template.HTML(`<p class="note">Rates appear after two samples.</p>`)
	}
	if len(rs) == 1 {
		rs = []rate{rs[0], rs[0]} // a flat line across the chart
	}
	peak := 1.0
	for _, r := range rs {
		peak = max(peak, r.Fast, r.Slow)
	}
	top := 1.15 * peak // headroom for the label
	line := func(get func(rate) float64) string {
		var b strings.Builder
		for i, r := range rs {
			fmt.Fprintf(&b, "%.1f,%.1f ", w*float64(i)/float64(len(rs)-1), h-h*get(r)/top)
		}
		return b.String()
	}
	return template.HTML(fmt.Sprintf(`<svg class="rates" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="answers per second">`+
		`<polyline fill="none" stroke="#2b7a3d" stroke-width="2" points="%s"/>`+
		`<polyline fill="none" stroke="#3b6ea5" stroke-width="2" points="%s"/>`+
		`<text x="4" y="12" font-size="11">%.3g/s</text></svg>`,
		w, h, w, h, line(func(r rate) float64 { return r.Fast }), line(func(r rate) float64 { return r.Slow }), peak))
}

// iface is the fast path's attachment to one interface.
type iface struct {
	Name, Mode string
}

type view struct {
	Now, Since  string
	Refresh     int
	Every       int // seconds between samples
	Subnets     []subnet
	Chart       template.HTML
	Fast, Slow  float64 // the last rates
	Punts       []count
	Drops       []count
	Leasequery  []count
	Ifaces      []iface
	FastOn      bool
	Persistent  string
	Leases, Cap float64
	Failover    []count // state by side
	Warnings    []Entry
}

// ServeHTTP renders the page for "/"; other paths are not found.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	fams, err := p.g.Gather()
	p.gatherErr(err)
	m := index(fams)
	rs := p.rates()
	v := view{
		Now: p.o.Now().UTC().Format(time.RFC3339), Refresh: int(p.o.Refresh.Seconds()), Every: int(p.o.Interval.Seconds()),
		Subnets: m.subnets(), Chart: chart(rs),
		Punts: m.byLabel("xdhcp_fastpath_punts_total", "reason"), Drops: m.byLabel("xdhcp_slowpath_dropped_total", "reason"),
		Leases: m.sum("xdhcp_fastpath_leases", nil), Cap: m.sum("xdhcp_fastpath_lease_capacity", nil),
		FastOn: m["xdhcp_fastpath_replies_total"] != nil,
	}
	if len(rs) > 0 {
		v.Fast, v.Slow = rs[len(rs)-1].Fast, rs[len(rs)-1].Slow
		v.Since = rs[0].At.UTC().Format("15:04:05")
	}
	for _, t := range []string{"leasequery", "bulkleasequery"} {
		if n := m.sum("xdhcp_slowpath_messages_total", func(x *dto.Metric) bool { return label(x, "type") == t }); n > 0 {
			v.Leasequery = append(v.Leasequery, count{Name: t + " received", Value: n})
		}
	}
	for _, t := range []string{"leaseactive", "leaseunassigned", "leaseunknown", "leasequerydone"} {
		if n := m.sum("xdhcp_slowpath_replies_total", func(x *dto.Metric) bool { return label(x, "type") == t }); n > 0 {
			v.Leasequery = append(v.Leasequery, count{Name: t + " sent", Value: n})
		}
	}
	if f := m["xdhcp_fastpath_attached"]; f != nil {
		for _, x := range f.GetMetric() {
			if value(x) == 1 {
				v.Ifaces = append(v.Ifaces, iface{Name: label(x, "interface"), Mode: label(x, "mode")})
			}
		}
		slices.SortFunc(v.Ifaces, func(a, b iface) int { return strings.Compare(a.Name, b.Name) })
	}
	if f := m["xdhcp_fastpath_pins_persistent"]; f != nil && len(f.GetMetric()) > 0 {
		v.Persistent = "no: renewals stop when the daemon stops"
		if value(f.GetMetric()[0]) == 1 {
			v.Persistent = "yes: renewals are answered while the daemon is down"
		}
	}
	if f := m["xdhcp_failover_state"]; f != nil {
		for _, x := range f.GetMetric() {
			if value(x) == 1 {
				v.Failover = append(v.Failover, count{Name: label(x, "side") + ": " + label(x, "state")})
			}
		}
		slices.SortFunc(v.Failover, func(a, b count) int { return strings.Compare(a.Name, b.Name) })
	}
	if p.recent != nil {
		v.Warnings = p.recent.Last()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, v); err != nil {
		p.o.Logger.Warn("status page: rendering", "err", err)
	}
}

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"n": func(v float64) string {
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
		return fmt.Sprintf("%.1f", v)
	},
	"pct":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>xdhcpd status</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:64em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:.15em .8em .15em 0;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.track{background:#eee;width:24em;height:1em;display:inline-block;vertical-align:middle}
.fill{height:1em;display:block}
.free{background:#7fb77e}.offered{background:#e0b050}.active{background:#3b6ea5}.expired{background:#b85c5c}
.released{background:#a0a0a0}.abandoned{background:#7a3b3b}.reserved{background:#8a6fb0}.backup{background:#5aa0a0}.draining{background:#d08040}
.note{color:#666}.warn{color:#8a4b00}.error{color:#a00}
svg.rates{border:1px solid #ccc;background:#fafafa}
table.pool td:first-child{width:6.5em}table.pool td.num:nth-child(2){width:4.5em}
table.log{table-layout:fixed;width:100%}table.log td{overflow-wrap:anywhere}
table.log td:nth-child(1){width:9.5em;white-space:nowrap}table.log td:nth-child(2){width:4.5em;white-space:nowrap}table.log td:nth-child(3){width:30%}
.swatch{display:inline-block;width:1em;height:.6em;margin:0 .3em 0 1em}
</style></head><body>
<h1>xdhcpd status</h1>
<p class="note">{{.Now}} · refreshes every {{.Refresh}} s · the same figures as /metrics</p>

<h2>Pools</h2>
{{range .Subnets}}<p><b>{{.Name}}</b> ({{n .Total}} pool addresses)</p>
<table class="pool">{{range .Bars}}<tr><td>{{.State}}</td><td class="num">{{n .Count}}</td><td><span class="track"><span class="fill {{.State}}" style="width:{{pct .Pct}}%"></span></span></td><td class="num">{{pct .Pct}}%</td></tr>
{{end}}</table>
{{else}}<p class="note">No pools.</p>{{end}}
{{if .Subnets}}<p class="note">free counts what could be given now (expired and released addresses included); active counts the subnet's bindings, reserved addresses outside the pools included.</p>{{end}}

<h2>Answers per second</h2>
<p><span class="swatch" style="background:#2b7a3d"></span>XDP (fast path) {{n .Fast}}/s <span class="swatch" style="background:#3b6ea5"></span>slow path {{n .Slow}}/s{{if .Since}} <span class="note">· from {{.Since}} UTC to now, a point every {{.Every}} s</span>{{end}}</p>
{{.Chart}}

<h2>Fast path</h2>
{{if .FastOn}}<table>
{{range .Ifaces}}<tr><td>{{.Name}}</td><td>XDP {{.Mode}}</td></tr>{{else}}<tr><td class="warn">attached to no interface</td></tr>{{end}}
{{if .Persistent}}<tr><td>outlives the daemon</td><td>{{.Persistent}}</td></tr>{{end}}
<tr><td>lease entries</td><td class="num">{{n .Leases}} of {{n .Cap}}</td></tr>
</table>
<p><b>Punts</b> (passed to the slow path, by reason)</p>
<table>{{range .Punts}}<tr><td>{{.Name}}</td><td class="num">{{n .Value}}</td></tr>{{else}}<tr><td class="note">none</td></tr>{{end}}</table>
{{else}}<p class="note">The fast path is off.</p>{{end}}

<h2>Slow path drops</h2>
<table>{{range .Drops}}<tr><td>{{.Name}}</td><td class="num">{{n .Value}}</td></tr>{{else}}<tr><td class="note">none</td></tr>{{end}}</table>

<h2>Leasequery</h2>
<table>{{range .Leasequery}}<tr><td>{{.Name}}</td><td class="num">{{n .Value}}</td></tr>{{else}}<tr><td class="note">none</td></tr>{{end}}</table>

{{if .Failover}}<h2>Failover</h2>
<table>{{range .Failover}}<tr><td>{{.Name}}</td></tr>{{end}}</table>{{end}}

<h2>Last warnings</h2>
<table class="log">{{range .Warnings}}<tr class="{{if ge .Level 8}}error{{else}}warn{{end}}"><td>{{time .Time}}</td><td>{{.Level}}</td><td>{{.Msg}}</td><td class="note">{{.Attrs}}</td></tr>
{{else}}<tr><td class="note">none since the start</td></tr>{{end}}</table>
</body></html>
`
