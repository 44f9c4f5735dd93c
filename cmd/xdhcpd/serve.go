package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdhcp/xdhcp/failover"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/control"
	"github.com/xdhcp/xdhcp/internal/linkwatch"
	"github.com/xdhcp/xdhcp/internal/status"
	"github.com/xdhcp/xdhcp/loader"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// dhcpPort is the server port; tests never change it because real clients
// only talk to 67.
const dhcpPort = 67

// daemon holds what serve wires together, for the control handlers.
type daemon struct {
	path    string
	log     *slog.Logger
	level   *slog.LevelVar
	srv     *slowpath.Server
	store   *store.Store
	started time.Time
	fast    *fastPath // nil while the fast path is off
	// failover is the relationship with the partner, nil without one.
	failover *failover.Relationship
	// running is the configuration the daemon started with: settings a
	// reload cannot apply stay as it says until a restart, so a reload
	// is compared with it, not with the file loaded last (a change
	// reverted by a later reload is then no longer pending, and one
	// reloaded twice is still pending the second time).
	running *config.Config
	// links follows the served interfaces (followLinks).
	links *linkFollower

	mu  sync.Mutex
	cfg *config.Config
}

func serve(ctx context.Context, path string, stderr io.Writer) error {
	t0 := time.Now()
	// How long each stage of start-up took, for the "ready" line: what
	// an operator sizing a box, or chasing a slow restart, looks at.
	var took []any
	lap := startupLaps(t0)
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg))
	// The status page lists the last warnings and errors.
	recent := status.NewRecent(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), 20)
	log := slog.New(recent)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	clock, err := daemonClock(log)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(cfg.Server.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	took = lap(took, "config")
	// The fast path, once started (below), is closed last: after the
	// store has drained, so that the last commits' entries reach the map.
	// The pins stay: renewals keep being answered.
	var fl *fastLoad
	defer func() {
		if fl == nil {
			return
		}
		if fp, err := fl.wait(); err == nil {
			fp.close()
		}
	}()
	metrics := slowpath.NewMetrics()
	// A transaction's callbacks: their effects on the lease table and the
	// fast path are applied together (Server.Committed) and the ACKs they
	// send leave in one sendmmsg (pktio.Conn.Hold), once the server and
	// the packet socket exist (they are made after the store).
	var replies atomic.Pointer[pktio.Conn]
	var committed atomic.Pointer[slowpath.Server]
	st, err := store.Open(filepath.Join(cfg.Server.StateDir, "leases.db"), store.Options{
		MaxBatch: cfg.Server.CommitMaxBatch, MaxDelay: cfg.Server.CommitMaxDelay, Logger: log, Observe: metrics.ObserveCommit,
		FoldEvery: cfg.Server.FoldEvery, JournalMax: cfg.Server.JournalMax, ObserveFold: metrics.ObserveFold,
		Callbacks: func(runAll func()) {
			if srv := committed.Load(); srv != nil {
				each := runAll
				runAll = func() { srv.Committed(each) }
			}
			if c := replies.Load(); c != nil {
				c.Hold(runAll)
			} else {
				runAll()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("opening lease store: %w", err)
	}
	defer st.Close()
	took = lap(took, "open-database")
	// How the last run stopped decides whether the load holds leases to
	// their horizons (holdReason); until it has, and has stored them,
	// this run's stop is not clean either.
	last := st.LastStop()
	heldAtStart := &heldLeases{}
	heldAtStart.pending.Store(!last.Clean || last.FastPath)
	// staleFast: the fast path is off, but an earlier run's program may
	// still answer renewals from its own map (slowpath.Config.StaleFastPath;
	// set below).
	var staleFast bool
	// The store outlives everything that submits to it, so that in-flight
	// commits finish on shutdown.
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	storeDone := make(chan error, 1)
	go func() { storeDone <- st.Run(storeCtx) }()
	// The packet socket closes only after the last commit: the ACKs of
	// commits still in flight at SIGTERM go out through it.
	var conn *pktio.Conn
	defer func() {
		stopStore()
		if err := <-storeDone; err != nil {
			log.Error("lease store", "err", err)
		}
		// A program left attached answers on after this run too.
		markStopped(log, st, cfg.Fastpath.Enabled || staleFast, heldAtStart)
		if conn != nil {
			conn.Close()
		}
	}()

	links, err := linkwatch.Read(cfg.Server.Interfaces)
	if err != nil {
		return err
	}
	lw := &linkFollower{log: log}
	ifaces := lw.interfaces(cfg.Server.Interfaces, links)
	if conn, err = pktio.Listen(ctx, dhcpPort, log); err != nil {
		return err
	}
	conn.SetSent(metrics.ObserveSent)
	replies.Store(conn)
	took = lap(took, "sockets")

	// The XDP program loads while the leases load. It starts only now,
	// once the store and the sockets are open: loading may retire pinned
	// maps and replace the program pin, which a start failing for a busy
	// port should not have done. The slow path's calls to it
	// (loadingFast) come after serve has joined the load (fl.wait,
	// below), and serve does not return before it either (the deferred
	// close above).
	var fastIface slowpath.FastPath
	if cfg.Fastpath.Enabled {
		if fl, err = startFastPath(cfg, log, clock); err != nil {
			return err
		}
		fastIface = loadingFast{fl}
		took = lap(took, "prepare-xdp")
	}

	var fp *fastPath
	if !cfg.Fastpath.Enabled {
		if at, ok := loader.Pinned(cfg.Fastpath.PinDir); ok {
			staleFast = true
			log.Warn("the fast path is off but a previous run left it pinned and possibly attached; run `xdhcpd detach` to remove it", "pin-dir", cfg.Fastpath.PinDir, "found-at", at)
		}
	}

	// One replay counter for every option 90 the server sends (FORCERENEW
	// keys and digests), over a floor in the lease database so that a
	// restart never repeats a value.
	ctr, err := auth.NewCounter(st.ReplayFloor(), auth.CounterOptions{})
	if err != nil {
		return err
	}
	var rel *failover.Relationship
	var relMetrics *failover.Metrics
	fb := &failoverBindings{}
	if cfg.Failover.Enabled() {
		if rel, relMetrics, err = newFailover(cfg, st, fb, log, clock); err != nil {
			return err
		}
	}
	srv, err := slowpath.New(slowpath.Config{
		Logger: log, Store: st, Sender: conn, Gate: conn, Metrics: metrics, FastPath: fastIface, Partner: partnerOf(rel),
		Settings: settingsFrom(cfg, cfg), Subnets: subnetsFrom(cfg), Ifaces: ifaces,
		Counter: ctr, Campaigns: st, Informed: st, Now: clock, StaleFastPath: staleFast,
	})
	if err != nil {
		return err
	}
	fb.srv = srv
	committed.Store(srv)
	took = lap(took, "pools")
	why := holdReason(last, fl != nil, fl != nil && !fl.reused, staleFast)
	nheld, holdCommit, err := loadLeases(ctx, srv, why != "")
	took = lap(took, "load-leases")
	if err != nil {
		return err
	}
	heldAtStart.pending.Store(nheld > 0)
	if nheld > 0 {
		log.Warn("active leases are held until their promise horizon", "leases", nheld, "why", why)
	}
	if fl != nil {
		if fp, err = fl.wait(); err != nil {
			return err
		}
		took = lap(took, "wait-xdp") // what the program's load took beyond the leases'
		if pins := fp.prog.Pins; pins.Persistent {
			log.Info("fast path pinned; renewals go on being answered while the daemon is down", "pin-dir", pins.Dir, "via", pins.Via, "why", pins.Why)
		} else {
			log.Warn("WARNING: the fast path's pins die with this daemon: renewals stop being answered as soon as it exits (crash, kill, restart); pin in the host's bpffs (fastpath.pin-dir on a bpffs the host keeps, or start it with nsenter --net instead of ip netns exec)",
				"pin-dir", pins.Dir, "why", pins.Why)
		}
		fp.held = heldAtStart
		fp.loaded(nheld, holdCommit)
		if err := fp.reconcile(srv); err != nil {
			return err
		}
		took = lap(took, "reconcile")
	}
	// The collector's setting (server.gc-percent; GOGC in the
	// environment is the operator's word over the file's) from here on:
	// the load makes little garbage, and at Go's 100 it collects half as
	// often while the table grows (ten million leases: 17 s to serve, 23 s
	// at 50).
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.Server.GCPercent)
	}
	// Loading the lease table left garbage about its
	// own size: it goes back to the system now, in one collection,
	// instead of over minutes, so that the daemon serves at the size its
	// leases need (issue 19: a million in under 350 MiB).
	debug.FreeOSMemory()
	took = lap(took, "collect")
	if fp != nil {
		// The same once the map is full and the assumed grants are
		// stored: both read every record, so they left garbage and
		// the database's pages behind (10 M leases: 8.4 GiB RSS
		// when the map was full, 2.6 GiB before).
		fp.settled = func() {
			if err := st.ReleaseMapped(); err != nil {
				log.Warn("giving back the lease database's mapped pages", "err", err)
			}
			debug.FreeOSMemory()
		}
		if err := fp.attach(cfg, links); err != nil {
			return err
		}
		took = lap(took, "attach-xdp")
	}
	d := &daemon{path: path, log: log, level: level, srv: srv, store: st, cfg: cfg, running: cfg, started: t0, fast: fp, failover: rel, links: lw}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := metrics.Register(reg, srv); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xdhcp_store_journal_unfolded",
		Help: "Lease journal entries not yet folded into the lease tree; at server.journal-max, commits wait for the fold.",
	}, func() float64 { return float64(st.Stats().Unfolded) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xdhcp_store_fold_errors_total",
		Help: "Folds of the lease journal into the lease tree that failed (each is tried again; the journal keeps the changes).",
	}, func() float64 { return float64(st.Stats().FoldErrors) }))
	kernelCount := func(count func() (uint64, error)) func() float64 {
		return func() float64 {
			n, err := count()
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		}
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xdhcp_slowpath_discovers_held_total",
		Help: "DHCPDISCOVERs dropped in the kernel, before the server's socket, as repeats of a client's within its holdoff (server.discover-holdoff, doubled for a client that repeats within it) while the server was behind with DISCOVERs, or lingered after.",
	}, kernelCount(conn.HeldDiscovers)))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xdhcp_slowpath_requests_held_total",
		Help: "DHCPREQUESTs dropped in the kernel, before the server's socket, as repeats of a client's within its holdoff (server.request-holdoff, doubled for a client that repeats within it) while the server was behind with REQUESTs, or lingered after.",
	}, kernelCount(conn.HeldRequests)))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xdhcp_slowpath_discover_retries_ahead_total",
		Help: fmt.Sprintf("Unicast (relayed) DHCPDISCOVERs with secs above 0, their clients' retransmissions, that the kernel sent to the REQUEST socket, ahead of the DISCOVER socket's backlog; at most %d a second.", pktio.RetriesFirstPerSecond),
	}, kernelCount(conn.RetriesAhead)))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xdhcp_slowpath_discover_retries_over_total",
		Help: "Unicast DHCPDISCOVERs with secs above 0 that went to the DISCOVER socket as any other: the second's allowance for the REQUEST socket was spent (many: more clients retransmit than the allowance, or a flood sets secs), or a copy with the same client, xid, secs and relay was on its way there.",
	}, kernelCount(conn.RetriesOver)))
	if fp != nil {
		reg.MustRegister(fp.maps.Collector(), attachedCollector{fp})
		if fp.txerr != nil {
			reg.MustRegister(txErrorsCollector{fp})
		}
		persistent := 0.0
		if fp.prog.Pins.Persistent {
			persistent = 1
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "xdhcp_fastpath_published",
			Help: "1 once every lease loaded at start is in the fast path's map; until then the slow path answers the renewals of those not yet in it.",
		}, func() float64 {
			if fp.published.Load() {
				return 1
			}
			return 0
		}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "xdhcp_startup_settled",
			Help: "1 once start-up's bulk work has ended: every lease is in the fast path's map and, if the map was lost, the leases held to their horizons are stored. Memory it used is given back then: the resident set to size a box by.",
		}, func() float64 {
			if fp.bulkLeft.Load() == 0 {
				return 1
			}
			return 0
		}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "xdhcp_fastpath_pins_persistent",
			Help: "1 when the fast path's pins outlive the daemon (renewals are answered while it is down), 0 when they die with it.",
		}, func() float64 { return persistent }))
	}
	ctl, err := control.NewServer(cfg.Server.ControlSocket, d.handlers(), log)
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// The first failure stops the daemon and is returned; later ones
	// (often consequences of the first) are logged, never blocked on.
	errc := make(chan error, 1)
	goOwned := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				select {
				case errc <- err:
				default:
					log.Error("while stopping", "err", err)
				}
				cancel()
			}
		}()
	}
	goOwned("packet reader", func(ctx context.Context) error { return conn.Serve(ctx, srv.Handle, srv.Ready) })
	goOwned("sweeper", srv.Run)
	goOwned("control socket", ctl.Serve)
	goOwned("interface watcher", d.followLinks)
	// SIGHUP is caught from here on, before the ready line: Go's default
	// for it is to exit, and a HUP sent as soon as the daemon said it was
	// ready could come before the reloader's goroutine ran (a test saw
	// it on a loaded machine).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	goOwned("reloader", func(ctx context.Context) error { return d.reloadOn(ctx, hup) })
	if fp != nil {
		fp.run(runCtx, srv, goOwned)
	} else {
		if nheld > 0 {
			goOwned("storing leases held to their horizons", func(ctx context.Context) error {
				heldAtStart.store(ctx, log, holdCommit)
				return nil
			})
		}
	}
	if rel != nil {
		reg.MustRegister(relMetrics.Collectors()...)
		goOwned("failover", rel.Run)
	}
	if lq := cfg.Leasequery; lq.Enabled && lq.TCPListen != "" {
		ln, err := net.Listen("tcp4", lq.TCPListen)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("bulk leasequery listener: %w", err)
		}
		opts := slowpath.BulkOptions{MaxConnsPerRequester: lq.MaxConnsPerRequester, IdleTimeout: lq.IdleTimeout}
		goOwned("bulk leasequery", func(ctx context.Context) error { return srv.ServeBulk(ctx, ln, opts) })
	}
	if addr := cfg.Server.MetricsListen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		page := status.New(reg, recent, status.Options{Logger: log})
		mux.Handle("/", page)
		goOwned("status page", page.Run)
		if cfg.Server.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		// Idle keep-alive connections and a client that never reads
		// its answer are bounded, each holding a goroutine and a
		// socket. A CPU profile or trace runs as long as it is asked
		// to, within the write timeout (net/http/pprof refuses
		// longer).
		writeTimeout := time.Minute
		if cfg.Server.Pprof {
			writeTimeout = 10 * time.Minute
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, WriteTimeout: writeTimeout}
		goOwned("metrics", func(ctx context.Context) error {
			stop := context.AfterFunc(ctx, func() { hs.Close() })
			defer stop()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	took = lap(took, "listeners")
	log.Info("ready", "interfaces", cfg.Server.Interfaces, "subnets", len(cfg.Subnets),
		"leases", srv.LeaseCount(), "startup", time.Since(t0).Round(time.Millisecond), "startup-cpu", cpuTime().Round(time.Millisecond), slog.Group("took", took...))
	<-runCtx.Done()
	wg.Wait()
	close(errc)
	log.Info("stopping: waiting for in-flight commits")
	var first error
	for err := range errc {
		if first == nil {
			first = err
		}
	}
	return first
}

// linkFollower turns the kernel's view of the served interfaces into the
// slow path's, and says when one goes missing or comes back.
type linkFollower struct {
	log     *slog.Logger
	mu      sync.Mutex // missing: interfaces and reload may run at once
	missing map[string]bool
}

// interfaces returns the served interfaces present in links, in the
// configured order, and logs each one that went missing or came back.
func (f *linkFollower) interfaces(names []string, links map[string]linkwatch.Link) []slowpath.Interface {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing == nil {
		f.missing = map[string]bool{}
	}
	var out []slowpath.Interface
	for _, n := range names {
		l, ok := links[n]
		if !ok {
			if !f.missing[n] {
				f.log.Warn("served interface missing: waiting for it; nothing is served on it until it appears", "interface", n)
				f.missing[n] = true
			}
			continue
		}
		if f.missing[n] {
			f.log.Info("served interface appeared", "interface", n, "index", l.Index, "addresses", l.Addrs)
			delete(f.missing, n)
		}
		out = append(out, slowpath.Interface{Index: l.Index, Name: n, Addrs: l.Addrs})
	}
	return out
}

// followLinks keeps the slow path's interfaces (indexes and the addresses
// subnet selection and server-id come from) and the fast path's
// attachments in step with the kernel's links, from netlink messages,
// until ctx ends.
func (d *daemon) followLinks(ctx context.Context) error {
	names := func() []string {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.cfg.Server.Interfaces
	}
	return linkwatch.Watch(ctx, names, linkwatch.Options{Logger: d.log}, func(links map[string]linkwatch.Link) {
		ns := names()
		d.srv.SetInterfaces(d.links.interfaces(ns, links))
		if d.fast != nil {
			// The attachment is set up for the interfaces served at
			// start (server.interfaces is restart-only).
			d.fast.follow(d.running.Server.Interfaces, links, d.srv)
		}
	})
}

// reloadOn re-reads the configuration on each SIGHUP from ch. A bad file is refused
// with its errors and the running configuration keeps serving.
func (d *daemon) reloadOn(ctx context.Context, ch <-chan os.Signal) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			if err := d.reload(); err != nil {
				d.log.Error("reload refused; keeping the running configuration", "err", err)
			}
		}
	}
}

func (d *daemon) reload() error {
	cfg, err := config.Load(d.path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		d.log.Warn("configuration: " + w)
	}
	links, err := linkwatch.Read(cfg.Server.Interfaces)
	if err != nil {
		return err
	}
	if err := d.srv.Reconfigure(settingsFrom(cfg, d.running), subnetsFrom(cfg), d.links.interfaces(cfg.Server.Interfaces, links)); err != nil {
		return err
	}
	if d.fast != nil {
		if err := d.fast.maps.SetSettings(fastSettings(cfg)); err != nil {
			d.log.Error("fast path settings", "err", err)
		}
		d.srv.PublishAll() // templates and lease times may have changed
		if err := d.fast.maps.PruneTemplates(); err != nil {
			d.log.Error("fast path templates", "err", err)
		}
	}
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	d.level.Set(logLevel(cfg))
	// Warned before the reloaded line, so that whoever waits for that
	// line has seen the warning too.
	// Which settings a reload cannot apply (sockets, files, listeners and
	// the XDP attachment are set up once at start) is declared on
	// config.Config's fields, so a new field cannot be left out here.
	if fields := config.RestartOnly(d.running, cfg); len(fields) > 0 {
		d.log.Warn("these settings changed but take effect only after a restart", "fields", fields)
	}
	d.log.Info("configuration reloaded", "subnets", len(cfg.Subnets))
	return nil
}

// clockOffsetEnv names the offset of the daemon's clock from the system's,
// a duration ("3m", "-90s"). It exists for the failover skew tests: two
// daemons on one machine share its clock, and a time namespace offsets
// only the monotonic and boot clocks, not the wall clock leases are kept
// in. Never set it in production.
const clockOffsetEnv = "XDHCPD_TEST_CLOCK_OFFSET"

// startupLaps returns a function that appends the time since its last
// call (or t0) to took, as a key and a duration for a log line.
func startupLaps(t0 time.Time) func(took []any, stage string) []any {
	last := t0
	return func(took []any, stage string) []any {
		now := time.Now()
		took = append(took, stage, now.Sub(last).Round(time.Millisecond))
		last = now
		return took
	}
}

// cpuTime is the CPU time the process has used (user and system): beside
// the start-up's wall time, it says whether start-up waited or worked.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// daemonClock is the clock the slow path, the failover relationship and
// the fast path's unix time follow: the system's, or offset by
// clockOffsetEnv (with a warning).
func daemonClock(log *slog.Logger) (func() time.Time, error) {
	v := os.Getenv(clockOffsetEnv)
	if v == "" {
		return time.Now, nil
	}
	off, err := time.ParseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", clockOffsetEnv, v, err)
	}
	log.Warn("TEST ONLY: this daemon's clock is offset from the system's", "env", clockOffsetEnv, "offset", off)
	return func() time.Time { return time.Now().Add(off) }, nil
}
