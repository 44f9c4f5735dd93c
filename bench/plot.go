package bench

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The report's charts are PNG files beside it, drawn with gonum/plot: per
// scenario the rate sweep (answered/s against offered/s, each server a
// line, the steps within the loss limit filled, the others hollow, and the
// answered = offered diagonal), latency percentiles where the generator
// times answers, and CPU per 1M answers; the DORA comparison's sweep; the
// overload comparison's goodput and p99 against the offered share of the
// ceiling; and the scale section's RSS and BPF map memory against leases.

// chartSize is every chart's size in the PNG.
const chartW, chartH = 20 * vg.Centimeter, 12 * vg.Centimeter

// point is one step of a sweep: offered and answered per second, and
// whether it stayed within the loss limit.
type point struct {
	offered, answered float64
	within            bool
}

// series is one server's line in a chart.
type series struct {
	name   string
	points []point
}

// sweepPlot draws answered/s against offered/s, one line per server.
func sweepPlot(title, xLabel, yLabel, limit string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	p.Legend.Top, p.Legend.Left = true, true
	peak := 0.0
	for _, s := range ss {
		for _, pt := range s.points {
			peak = max(peak, pt.offered, pt.answered)
		}
	}
	if peak == 0 {
		return nil, fmt.Errorf("%s: no steps to draw", title)
	}
	// answered = offered: how far below it a server falls is its loss.
	diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: peak, Y: peak}})
	if err != nil {
		return nil, err
	}
	diag.Color, diag.Dashes = color.Gray{Y: 160}, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(diag)
	p.Legend.Add("answered = offered", diag)
	for i, s := range ss {
		pts := slices.Clone(s.points)
		slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.offered, b.offered) })
		var all, ok plotter.XYs
		for _, pt := range pts {
			all = append(all, plotter.XY{X: pt.offered, Y: pt.answered})
			if pt.within {
				ok = append(ok, plotter.XY{X: pt.offered, Y: pt.answered})
			}
		}
		c := plotutil.Color(i)
		line, err := plotter.NewLine(all)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = c, vg.Points(1.5)
		hollow, err := plotter.NewScatter(all)
		if err != nil {
			return nil, err
		}
		hollow.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: draw.RingGlyph{}}
		p.Add(line, hollow)
		if len(ok) > 0 {
			filled, err := plotter.NewScatter(ok)
			if err != nil {
				return nil, err
			}
			filled.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: draw.CircleGlyph{}}
			p.Add(filled)
		}
		p.Legend.Add(s.name, line, hollow)
	}
	p.Legend.Add(limit, &legendNote{})
	p.X.Min, p.Y.Min = 0, 0
	p.X.Tick.Marker, p.Y.Tick.Marker = shortTicks{}, shortTicks{}
	p.Add(plotter.NewGrid())
	return p, nil
}

// shortTicks are gonum's default ticks labelled without trailing zeros,
// thousands as k and millions as M ("500k", not "500000.00").
type shortTicks struct{}

// Ticks implements plot.Ticker.
func (shortTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label == "" {
			continue
		}
		// Tick values are sums of steps: 0.1 * 3 is 0.30000000000000004.
		switch v := math.Round(ts[i].Value*1e9) / 1e9; {
		case v >= 1e6 || v <= -1e6:
			ts[i].Label = strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
		case v >= 1e4 || v <= -1e4:
			ts[i].Label = strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
		default:
			ts[i].Label = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return ts
}

// legendNote is a legend entry with no symbol: an explanation line.
type legendNote struct{}

// Thumbnail implements plot.Thumbnailer: it draws nothing.
func (legendNote) Thumbnail(*draw.Canvas) {}

// bars draws one group of bars per server for each named value.
func bars(title, yLabel string, servers []string, values map[string][]float64, order []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Legend.Top, p.Legend.Left = true, true // xdhcpd's bars, short, come first
	w := vg.Points(18)
	for i, name := range order {
		vs := values[name]
		b, err := plotter.NewBarChart(plotter.Values(vs), w)
		if err != nil {
			return nil, err
		}
		b.Color, b.LineStyle.Width = plotutil.Color(i), 0
		b.Offset = w * vg.Length(float64(i)-float64(len(order)-1)/2)
		p.Add(b)
		p.Legend.Add(name, b)
	}
	p.NominalX(servers...)
	p.Y.Tick.Marker = shortTicks{}
	p.Add(plotter.NewGrid())
	return p, nil
}

// save writes p as a PNG named name in dir.
func save(p *plot.Plot, dir, name string) error {
	if err := p.Save(chartW, chartH, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("chart %s: %w", name, err)
	}
	return nil
}

// groupCharts draws a scenario group's charts and returns their names.
func groupCharts(dir, base string, g group) ([]string, error) {
	stem := groupStem(base, g)
	what := fmt.Sprintf("%s, %s mode, %s sender", g.scenario, g.mode, g.sender)
	limit := fmt.Sprintf("filled: within %.1f%% loss", 100*g.results[0].MaxLoss)
	var sweep, p99 []series
	cpu := map[string][]float64{}
	var servers []string
	for _, r := range g.results {
		s, l := series{name: r.Server}, series{name: r.Server}
		for _, st := range append(slices.Clone(r.Steps), r.Best) {
			if st.Seconds <= 0 || st.TargetRate == 0 {
				continue // the open loop has no offered rate of its own
			}
			o := offered(r.Scenario, st)
			s.points = append(s.points, point{offered: o, answered: st.Rate, within: st.Loss <= r.MaxLoss && st.Wrong == 0})
			if st.P99 > 0 {
				l.points = append(l.points, point{offered: o, answered: st.P99 / 1000, within: st.Loss <= r.MaxLoss})
			}
		}
		if len(s.points) > 0 {
			sweep = append(sweep, s)
		}
		if len(l.points) > 0 && r.Sender != SenderXDP {
			p99 = append(p99, l)
		}
		servers = append(servers, r.Server)
		cpu["server CPU"] = append(cpu["server CPU"], r.Best.CPUPerMillion)
		cpu["softirq (whole machine)"] = append(cpu["softirq (whole machine)"], r.Best.SoftirqPerMillion)
	}
	var names []string
	if len(sweep) > 0 {
		p, err := sweepPlot(what+": answered/s against offered/s", "offered/s", "answered/s", limit, sweep)
		if err != nil {
			return nil, err
		}
		if err := save(p, dir, stem+"-sweep.png"); err != nil {
			return nil, err
		}
		names = append(names, stem+"-sweep.png")
	}
	if len(p99) > 0 {
		p, err := latencyPlot(what+": p99 latency", "offered/s", p99)
		if err != nil {
			return nil, err
		}
		if err := save(p, dir, stem+"-p99.png"); err != nil {
			return nil, err
		}
		names = append(names, stem+"-p99.png")
	}
	if slices.ContainsFunc(cpu["server CPU"], func(v float64) bool { return v > 0 }) {
		p, err := bars(what+": CPU seconds per 1M answers (at the best step)", "CPU s per 1M answers", servers, cpu,
			[]string{"server CPU", "softirq (whole machine)"})
		if err != nil {
			return nil, err
		}
		if err := save(p, dir, stem+"-cpu.png"); err != nil {
			return nil, err
		}
		names = append(names, stem+"-cpu.png")
	}
	return names, nil
}

// latencyPlot draws a latency (ms) against x, one line per server.
func latencyPlot(title, xLabel string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xLabel, "ms"
	p.Legend.Top, p.Legend.Left = true, true
	for i, s := range ss {
		pts := slices.Clone(s.points)
		slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.offered, b.offered) })
		xy := make(plotter.XYs, len(pts))
		for j, pt := range pts {
			xy[j] = plotter.XY{X: pt.offered, Y: pt.answered}
		}
		line, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = plotutil.Color(i), vg.Points(1.5)
		sc.Color, sc.Shape = plotutil.Color(i), draw.CircleGlyph{}
		p.Add(line, sc)
		p.Legend.Add(s.name, line, sc)
	}
	p.X.Min, p.Y.Min = 0, 0
	p.X.Tick.Marker, p.Y.Tick.Marker = shortTicks{}, shortTicks{}
	p.Add(plotter.NewGrid())
	return p, nil
}

// doraChart draws the DORA comparison's steps: leases/s against the rate
// perfdhcp offered, per server.
func doraChart(dir, base string, rs []ServerResult) (string, error) {
	var ss []series
	for _, r := range rs {
		s := series{name: r.Server}
		for _, st := range r.Steps {
			if st.Duration <= 0 {
				continue
			}
			s.points = append(s.points, point{offered: float64(st.Rate), answered: st.LeasesPerSecond(), within: st.DropRatio() <= DropLimit})
		}
		if len(s.points) > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return "", nil
	}
	p, err := sweepPlot("DORA (perfdhcp, every ACK durable): leases/s against offered/s", "offered DORA/s", "leases/s",
		fmt.Sprintf("filled: at most %.1f%% drops", 100*DropLimit), ss)
	if err != nil {
		return "", err
	}
	name := base + "-dora.png"
	return name, save(p, dir, name)
}

// overloadCharts draws the overload comparison: goodput and p99 latency
// against the offered share of the ceiling, per server, into files named
// stem-goodput.png and stem-p99.png.
func overloadCharts(dir, stem string, o *OverloadReport) ([]string, error) {
	good, lat := map[string]*series{}, map[string]*series{}
	var order []string
	for _, r := range o.Rows {
		if r.Err != "" {
			continue
		}
		if good[r.Server] == nil {
			good[r.Server], lat[r.Server] = &series{name: r.Server}, &series{name: r.Server}
			order = append(order, r.Server)
		}
		x := 100 * r.Fraction
		good[r.Server].points = append(good[r.Server].points, point{offered: x, answered: r.Result.Rate, within: true})
		lat[r.Server].points = append(lat[r.Server].points, point{offered: x, answered: r.Result.P99 / 1000})
	}
	if len(order) == 0 {
		return nil, nil
	}
	var gs, ls []series
	for _, n := range order {
		gs, ls = append(gs, *good[n]), append(ls, *lat[n])
	}
	name := o.Scenario
	if o.Scattered {
		name += " in a random order"
	}
	p, err := latencyPlot(fmt.Sprintf("overload, %s: answered/s against offered (ceiling %.0f/s)", name, o.Ceiling), "offered, % of the ceiling", gs)
	if err != nil {
		return nil, err
	}
	p.Y.Label.Text = "answered/s"
	ceil, err := plotter.NewLine(plotter.XYs{{X: 0, Y: o.Ceiling}, {X: 160, Y: o.Ceiling}})
	if err != nil {
		return nil, err
	}
	ceil.Color, ceil.Dashes = color.Gray{Y: 160}, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(ceil)
	p.Legend.Add("the ceiling", ceil)
	if err := save(p, dir, stem+"-goodput.png"); err != nil {
		return nil, err
	}
	q, err := latencyPlot(fmt.Sprintf("overload, %s: p99 latency of answered requests", name), "offered, % of the ceiling", ls)
	if err != nil {
		return nil, err
	}
	if err := save(q, dir, stem+"-p99.png"); err != nil {
		return nil, err
	}
	return []string{stem + "-goodput.png", stem + "-p99.png"}, nil
}

// RenderCharts draws every chart of rep into dir (files named after base)
// and returns their names; Write calls it, and a report's JSON can be
// drawn again with it.
func RenderCharts(rep *Report, dir, base string) ([]string, error) {
	var names []string
	if n, err := doraChart(dir, base, rep.Results); err != nil {
		return nil, err
	} else if n != "" {
		names = append(names, n)
	}
	for _, g := range groups(rep.Scenarios) {
		ns, err := groupCharts(dir, base, g)
		if err != nil {
			return nil, err
		}
		names = append(names, ns...)
	}
	for _, o := range rep.overloads() {
		ns, err := overloadCharts(dir, base+o.stem, o.report)
		if err != nil {
			return nil, err
		}
		names = append(names, ns...)
	}
	if n, err := scaleChart(dir, base, rep.Scale); err != nil {
		return nil, err
	} else if n != "" {
		names = append(names, n)
	}
	return names, nil
}
