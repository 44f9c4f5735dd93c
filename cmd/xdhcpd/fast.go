package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/linkwatch"
	"github.com/xdhcp/xdhcp/loader"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

func fastSettings(c *config.Config) fastpath.Settings {
	return fastpath.Settings{
		Answer: true, MinGrant: c.Fastpath.MinGrant,
		PuntRate: c.Fastpath.PuntRate, PuntBurst: c.Fastpath.PuntBurst,
	}
}

// fastPath is the running fast path: the loaded program and its maps.
type fastPath struct {
	prog *loader.Program
	maps *fastpath.Maps
	log  *slog.Logger
	// settings are written once the program is attached (an upgrade
	// starts with answering off).
	settings fastpath.Settings
	// txerr counts the replies the kernel failed to transmit after the
	// program returned XDP_TX (nil when it could not be set up: the
	// daemon runs, and said so).
	txerr *loader.TxErrors
	mode  loader.Mode            // as configured
	mu    sync.Mutex             // modes: follow writes it while the warner reads it
	modes map[string]loader.Mode // how XDP runs, by interface
	// at is where the program is attached, by interface name (follow's
	// own: the link watcher's goroutine, after attach at start).
	at map[string]linkwatch.Link
	// assumed stores the leases load extended to their horizons
	// (slowpath.LoadHoldingGrants), in batches, once the daemon serves;
	// nil when there were none.
	assumed func(context.Context) error
	// held is told when they are stored.
	held *heldLeases
	// pinned are the entries the map held at start (reconcile), for
	// publish to withdraw those no record stands for.
	pinned []netip.Addr
	// published is set once publish has written every lease.
	published atomic.Bool
	// settled is called when each of start-up's bulk tasks (publish, the
	// commit of assumed grants) ends, to give back the memory it used.
	settled func()
	// bulkLeft is how many of those tasks have not ended (set by load,
	// before anything reads it): xdhcp_startup_settled.
	bulkLeft atomic.Int32
}

// fastLoad is the fast path being loaded on a goroutine of its own while
// the slow path loads the leases: making the maps is the kernel zeroing
// hundreds of MB (a million leases' map is 260 MB), a sixth of the
// start-up when done first.
type fastLoad struct {
	// reused is the program's Reused, known before it loads: the leases
	// are loaded holding their grants unless the map survives.
	reused bool
	done   chan struct{}
	fp     *fastPath
	err    error
}

// startFastPath decides what becomes of the pinned maps and loads the
// program (reusing pinned maps, whose entries keep serving while the
// daemon restarts) and writes the settings on a goroutine: wait joins it.
func startFastPath(c *config.Config, log *slog.Logger, clock func() time.Time) (*fastLoad, error) {
	pr, err := loader.Prepare(loader.Options{PinDir: c.Fastpath.PinDir, MaxLeases: c.Fastpath.MaxLeases, Logger: log})
	if err != nil {
		return nil, err
	}
	l := &fastLoad{reused: pr.Reused(), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.fp, l.err = loadFastPath(pr, c, log, clock)
	}()
	return l, nil
}

// wait waits for the load to end and returns its fast path.
func (l *fastLoad) wait() (*fastPath, error) {
	<-l.done
	return l.fp, l.err
}

// loadFastPath loads the prepared program and writes the settings.
func loadFastPath(pr *loader.Prepared, c *config.Config, log *slog.Logger, clock func() time.Time) (*fastPath, error) {
	prog, err := pr.Load()
	if err != nil {
		return nil, err
	}
	maps, err := fastpath.New(&prog.Objs.XdpMaps)
	if err != nil {
		prog.Close()
		return nil, err
	}
	maps.SetClock(clock)
	settings := fastSettings(c)
	s := settings
	if prog.Upgraded {
		// Until attach swaps it out, the old program would answer from
		// the shared lease map, whose entries reconcile rewrites for maps
		// it lacks, or from a retired lease map nobody updates.
		log.Info("upgrading the XDP program: renewals go to the slow path until it is swapped in")
		s.Answer = false
	}
	if err := maps.SetSettings(s); err != nil {
		maps.Close()
		prog.Close()
		return nil, err
	}
	return &fastPath{prog: prog, maps: maps, log: log, settings: settings,
		modes: map[string]loader.Mode{}, at: map[string]linkwatch.Link{}}, nil
}

// loadingFast is the slow path's fast path (slowpath.FastPath) while it
// loads: each call waits for the load. None comes before it ends: the
// slow path calls the fast path once it serves, and serve joins the load
// before that.
type loadingFast struct{ l *fastLoad }

func (f loadingFast) adapter() (fastAdapter, error) {
	fp, err := f.l.wait()
	if err != nil {
		return fastAdapter{}, fmt.Errorf("the fast path did not load: %w", err)
	}
	return fastAdapter{fp.maps}, nil
}

func (f loadingFast) Publish(ls []fastpath.Lease) error {
	a, err := f.adapter()
	if err != nil {
		return err
	}
	return a.Publish(ls)
}

func (f loadingFast) Remove(ips []netip.Addr) error {
	a, err := f.adapter()
	if err != nil {
		return err
	}
	return a.Remove(ips)
}

func (f loadingFast) Clock() (time.Time, bool) {
	a, err := f.adapter()
	if err != nil {
		return time.Time{}, false
	}
	return a.Clock()
}

func (f loadingFast) Granted(ip netip.Addr) (time.Time, bool) {
	a, err := f.adapter()
	if err != nil {
		return time.Time{}, false
	}
	return a.Granted(ip)
}

// loadLeases loads srv's leases. With hold (holdReason), each active
// lease is held to its horizon as it is read
// (slowpath.LoadHoldingGrants): what was granted past the records is
// gone, and no grant went past the horizon. It returns how many were
// held and the function that stores them.
func loadLeases(ctx context.Context, srv *slowpath.Server, hold bool) (held int, commit func(context.Context) error, err error) {
	if !hold {
		return 0, nil, srv.Load(ctx)
	}
	return srv.LoadHoldingGrants(ctx)
}

// holdReason says why a start must hold every active lease to its
// promise horizon, or "" when it need not: a fast path whose map did not
// survive (mapLost) lost what XDP granted; a run that did not stop
// cleanly may have ACKed renewals ahead of their records (server.
// renewal-ack); one that ran the fast path, or left its program attached
// (stale, found now with the fast path off), may have had XDP grant past
// them, as it does while no daemon runs, from a map this start does not
// read.
func holdReason(last store.Stop, fastOn, mapLost, stale bool) string {
	switch {
	case fastOn && mapLost:
		return "the fast path's map did not survive"
	case !last.Clean:
		return "the previous run did not stop cleanly (or this database's first start with this version)"
	case !fastOn && (last.FastPath || stale):
		return "an earlier run had the fast path on, and this one does not read its map"
	}
	return ""
}

// loaded takes what loadLeases returned: start-up's bulk tasks are
// publishing the map and, if leases were held, storing them.
func (f *fastPath) loaded(held int, commit func(context.Context) error) {
	f.bulkLeft.Store(1) // publish
	if held > 0 {
		f.assumed = commit
		f.bulkLeft.Add(1)
	}
}

// bulkEnded is the end of one of start-up's bulk tasks.
func (f *fastPath) bulkEnded() {
	if f.settled != nil {
		f.settled()
	}
	f.bulkLeft.Add(-1)
}

// reconcile is the part of making the map agree with bbolt (DESIGN.md
// invariant 1) that must come before serving, after load: renewals the
// map knows and bbolt does not (events lost while the daemon was down)
// are folded. publish then republishes every lease and drops the entries
// bbolt does not know, while the daemon serves.
func (f *fastPath) reconcile(srv *slowpath.Server) error {
	var found []fastpath.Renewal
	ips, err := f.maps.Scan(func(r fastpath.Renewal) { found = append(found, r) })
	if err != nil {
		return err
	}
	srv.FoldRenewals(found)
	f.log.Info("fast path reconciled", "entries", len(ips), "renewals_recovered", len(found))
	f.pinned = ips
	return nil
}

// publish writes every lease into the map and withdraws the entries no
// record stands for. It runs while the daemon serves: until it reaches a
// lease, the program punts that lease's renewals, and the slow path
// answers them (at a million leases the map takes seconds to fill; the
// daemon serves after the load's one). The entries found at start are
// answered from as they were meanwhile.
func (f *fastPath) publish(ctx context.Context, srv *slowpath.Server) error {
	t0 := time.Now()
	if err := srv.PublishAllContext(ctx); err != nil {
		return nil // stopping
	}
	var stale []netip.Addr
	for _, ip := range f.pinned {
		if !srv.Has(ip) {
			stale = append(stale, ip)
		}
	}
	f.pinned = nil
	if err := f.maps.Remove(stale); err != nil {
		return err
	}
	if err := f.maps.PruneTemplates(); err != nil {
		return err
	}
	f.published.Store(true)
	f.bulkEnded()
	f.log.Info("fast path published", "leases", srv.LeaseCount(), "stale_removed", len(stale), "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// attach runs the program on every served interface present in links;
// one that is missing is attached by follow once it appears.
func (f *fastPath) attach(c *config.Config, links map[string]linkwatch.Link) error {
	f.mode = loader.Mode(c.Fastpath.Mode)
	for _, name := range c.Server.Interfaces {
		l, ok := links[name]
		if !ok {
			continue
		}
		if err := f.attachOne(l); err != nil {
			return err
		}
	}
	// Only then may the program answer: on an interface dropped from the
	// configuration an older program would otherwise wake up too.
	gone, err := f.prog.DetachOthers(c.Server.Interfaces)
	if len(gone) > 0 {
		f.log.Warn("XDP detached from interfaces no longer served", "interfaces", gone)
	}
	if err != nil {
		return fmt.Errorf("fast path: %w", err)
	}
	if f.txerr, err = f.prog.WatchTxErrors(c.Server.Interfaces); err != nil {
		f.log.Warn("replies the kernel fails to transmit after XDP_TX will not be counted", "err", err)
	}
	return f.maps.SetSettings(f.settings)
}

// attachOne attaches the program to l and tells it the interface's
// address, and remembers the index it attached at.
func (f *fastPath) attachOne(l linkwatch.Link) error {
	if err := f.maps.SetInterface(l.Index, l.HWAddr); err != nil {
		return err
	}
	m, err := f.prog.Attach(l.Name, f.mode)
	if err != nil {
		return err
	}
	if m == loader.Existing {
		if m, err = loader.AttachedMode(l.Name); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.modes[l.Name] = m
	f.mu.Unlock()
	f.at[l.Name] = l
	return nil
}

// follow re-attaches the program to a served interface that appeared or
// came back (deleted and re-created: a new index, and the kernel took
// the old attachment with the old interface) or changed its hardware
// address, and moves the bindings recorded on an old index to the new
// one. A brought down and up, or renamed and renamed back, interface
// keeps its index and its attachment: nothing to do. Runs on the link
// watcher's goroutine only.
func (f *fastPath) follow(names []string, links map[string]linkwatch.Link, srv *slowpath.Server) {
	for _, name := range names {
		l, ok := links[name]
		if !ok {
			// Gone, and its attachment with it; its bindings keep the
			// old index (at) until it returns.
			f.mu.Lock()
			delete(f.modes, name)
			f.mu.Unlock()
			continue
		}
		was, had := f.at[name]
		if had && was.Index == l.Index && bytes.Equal(was.HWAddr, l.HWAddr) {
			// Renamed away and back: the kernel kept the attachment;
			// only the mode reported for it was dropped while it was gone.
			f.mu.Lock()
			_, known := f.modes[name]
			f.mu.Unlock()
			if !known {
				if m, err := loader.AttachedMode(name); err == nil {
					f.mu.Lock()
					f.modes[name] = m
					f.mu.Unlock()
				}
			}
			continue
		}
		if err := f.attachOne(l); err != nil {
			f.log.Error("XDP: attaching to a served interface that came back; its renewals go to the slow path", "interface", name, "index", l.Index, "err", err)
			delete(f.at, name)
			continue
		}
		if f.txerr != nil {
			if err := f.txerr.Follow(name, l.Index); err != nil {
				f.log.Warn("replies the kernel fails to transmit after XDP_TX will not be counted", "interface", name, "err", err)
			}
		}
		if !had || was.Index == l.Index {
			f.log.Info("XDP attached to a served interface", "interface", name, "index", l.Index)
			continue
		}
		moved := srv.RenumberInterface(was.Index, l.Index)
		if err := f.maps.RemoveInterface(was.Index); err != nil {
			f.log.Warn("fast path: forgetting the old interface index", "index", was.Index, "err", err)
		}
		f.log.Info("XDP re-attached to a re-created interface; its bindings moved to the new index",
			"interface", name, "old_index", was.Index, "index", l.Index, "bindings", moved)
	}
}

// txErrorsCollector exports xdhcp_fastpath_tx_errors_total.
type txErrorsCollector struct{ f *fastPath }

var txErrorsDesc = prometheus.NewDesc("xdhcp_fastpath_tx_errors_total",
	"Replies the XDP program answered (counted in xdhcp_fastpath_replies_total) that the kernel then failed to transmit, by interface (while this daemon runs).",
	[]string{"interface"}, nil)

func (c txErrorsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- txErrorsDesc }

func (c txErrorsCollector) Collect(ch chan<- prometheus.Metric) {
	cs, err := c.f.txerr.Counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(txErrorsDesc, err)
		return
	}
	for name, n := range cs {
		ch <- prometheus.MustNewConstMetric(txErrorsDesc, prometheus.CounterValue, float64(n), name)
	}
}

// txErrorWarner logs, at most once a minute, the replies dropped since
// the last warning: a fast path whose replies do not leave looks healthy
// in every other counter.
type txErrorWarner struct {
	last   map[string]uint64
	warned time.Time
	moved  map[string]uint64 // drops not yet warned about
}

func (w *txErrorWarner) check(f *fastPath) {
	cs, err := f.txerr.Counts()
	if err != nil {
		f.log.Error("fast path tx errors", "err", err)
		return
	}
	if w.last == nil {
		w.last, w.moved = map[string]uint64{}, map[string]uint64{}
	}
	for name, n := range cs {
		if n > w.last[name] {
			w.moved[name] += n - w.last[name]
		}
		w.last[name] = n
	}
	if len(w.moved) == 0 || time.Since(w.warned) < time.Minute {
		return
	}
	for name, n := range w.moved {
		f.log.Warn("WARNING: replies answered by XDP were dropped by the kernel (XDP_TX failed): clients did not get them; on a veth use fastpath.mode generic or auto, or attach an XDP program to the peer",
			"interface", name, "dropped", n, "mode", f.attachedMode(name))
	}
	w.warned = time.Now()
	clear(w.moved)
}

// run keeps the fast path in step until ctx ends: it folds ring-buffer
// events, refreshes the clock offset, and scans the map when events were
// lost (and once a minute regardless) to recover what they said.
func (f *fastPath) run(ctx context.Context, srv *slowpath.Server, goOwned func(string, func(context.Context) error)) {
	goOwned("fast path publish", func(ctx context.Context) error { return f.publish(ctx, srv) })
	if f.assumed != nil {
		goOwned("storing leases held to their horizons", func(ctx context.Context) error {
			f.held.store(ctx, f.log, f.assumed)
			f.bulkEnded()
			return nil
		})
	}
	goOwned("fast path events", func(ctx context.Context) error {
		return f.maps.ReadEvents(ctx, func(rs []fastpath.Renewal) {
			srv.FoldRenewals(rs)
		})
	})
	goOwned("fast path upkeep", func(ctx context.Context) error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lost uint64
		var txw txErrorWarner
		// The scans here look at the renewals granted since the last
		// scan began (reconcile's, at start, read them all), less a
		// minute for the program's coarse clock and its offset's
		// refresh: older ones were found then.
		lastScan, scannedFrom := time.Now(), f.maps.Now()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			if err := f.maps.Tick(); err != nil {
				f.log.Error("fast path clock", "err", err)
			}
			if f.txerr != nil {
				txw.check(f)
			}
			cs, err := f.maps.Counters()
			if err != nil {
				// Without counters, lost events go unnoticed until the
				// minute's scan; say so rather than skip silently.
				f.log.Error("fast path counters", "err", err)
				cs = map[string]uint64{"events_lost": lost}
			}
			if cs["events_lost"] != lost || time.Since(lastScan) > time.Minute {
				since := scannedFrom.Add(-time.Minute)
				lost, lastScan, scannedFrom = cs["events_lost"], time.Now(), f.maps.Now()
				var found []fastpath.Renewal
				if err := f.maps.ScanRenewals(since, func(r fastpath.Renewal) { found = append(found, r) }); err != nil {
					f.log.Error("fast path scan", "err", err)
					continue
				}
				srv.FoldRenewals(found)
			}
		}
	})
	goOwned("horizons", func(ctx context.Context) error { return srv.RunHorizons(ctx, 5*time.Second) })
}

// attachedCollector exports xdhcp_fastpath_attached.
type attachedCollector struct{ f *fastPath }

var attachedDesc = prometheus.NewDesc("xdhcp_fastpath_attached",
	"1 for each served interface the XDP program is attached to, with the mode it runs in (native or generic).",
	[]string{"interface", "mode"}, nil)

// Describe implements prometheus.Collector.
func (c attachedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- attachedDesc }

// Collect implements prometheus.Collector.
func (c attachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	for name, m := range c.f.modes {
		ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, 1, name, string(m))
	}
}

// attachedMode is how XDP runs on the interface.
func (f *fastPath) attachedMode(name string) loader.Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.modes[name]
}

func (f *fastPath) close() error {
	if f.txerr != nil {
		f.txerr.Close()
	}
	f.maps.Close()
	return f.prog.Close()
}
