package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// StartupResult is how long xdhcpd took to serve with a full database:
// the startup section of reports before the scale section (ScaleRow)
// replaced it, kept to read them.
type StartupResult struct {
	Leases   int           `json:"leases"`
	Ready    time.Duration `json:"ready-ns"`
	RSSBytes int64         `json:"rss-bytes"`
}

// benchLease is the address and hardware address of the i-th lease
// WriteLeases writes.
func benchLease(i int) (netip.Addr, net.HardwareAddr) {
	v := uint32(0x0a000001 + i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}),
		net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// benchRelayInfo is the option 82 every lease WriteLeases writes came
// with: the relay-id (82.12) alone, which a bulk leasequery asks for.
func benchRelayInfo() []byte {
	return dhcpwire.AppendOption(nil, dhcpwire.SubOptRelayID, benchRelayID)
}

// WriteLeases fills a lease database with n active leases from 10.0.0.1 up.
func WriteLeases(ctx context.Context, path string, n int) error {
	return writeLeases(ctx, path, n, 0)
}

// writeLeases is WriteLeases; a non-zero horizon gives every lease the
// promise horizon that far ahead, as a daemon with the fast path on
// writes it with each ACK (without one the fast path punts every renewal
// until the daemon has moved each lease's horizon, a write per lease).
func writeLeases(ctx context.Context, path string, n int, horizon time.Duration) error {
	s, err := store.Open(path, store.Options{MaxBatch: 100000})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	now := time.Now()
	var h time.Time
	if horizon > 0 {
		h = now.Add(horizon)
	}
	// Every lease came through one relay: its relay-id (82.12) is what a
	// bulk leasequery asks for.
	relayInfo := benchRelayInfo()
	batch := make([]*lease.Lease, 0, 50000)
	for i := range n {
		ip, mac := benchLease(i)
		batch = append(batch, &lease.Lease{
			IP: ip, State: lease.Active, HWType: 1, HWAddr: mac,
			Start: now, Expiry: now.Add(24 * time.Hour), CLTT: now, StateAt: now, Horizon: h,
			GIAddr: netip.MustParseAddr(Giaddr), ServerID: netip.MustParseAddr(ServerAddr),
			RelayInfo: relayInfo,
		})
		if len(batch) == cap(batch) || i == n-1 {
			// In address order into an empty database: straight into the
			// lease tree, as a start that stores every lease does.
			done := make(chan error, 1)
			s.SubmitBulk(batch, func(err error) { done <- err })
			select {
			case err := <-done:
				if err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]*lease.Lease, 0, cap(batch)) // the store's now
		}
	}
	return nil
}

// scaleMetrics is where the scale section's daemon serves /metrics, in the
// server's namespace.
const scaleMetrics = "127.0.0.1:9582"

// scaleConfig is the scale section's daemon configuration: the fast path
// on (mode fast) with a lease map of maxLeases entries, leasequery for the
// relay and the generator's address (bulk queries come over TCP from
// ClientAddr), metrics on scaleMetrics, and one /8 holding every lease
// WriteLeases writes. Logging at info gives the "ready" line, whose stages
// the report shows.
func scaleConfig(dir, fast string, maxLeases int) string {
	return fastpathYAML(fast, "xdhcp-bench-scale") + fmt.Sprintf(`  max-leases: %d
server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: %s
  log-level: info
leasequery:
  enabled: true
  requesters: [%s/32, %s/32]
subnets:
  - subnet: 10.0.0.0/8
    pools: [10.0.0.1-10.255.255.254]
    lease-time: 1d
`, maxLeases, ServerIf, dir, dir, scaleMetrics, Giaddr, ClientAddr)
}

// scaleHorizon is the promise horizon the scale section's leases are
// written with: the daemon's default, four lease times (1d).
const scaleHorizon = 4 * 24 * time.Hour

// Scale measures xdhcpd with the fast path on at each database size of
// o.Sizes, one row per size (ScaleRow). A size that cannot be measured
// (too little memory or disk, over its time budget, the daemon failing)
// has its row's Err set, with what was measured before; the next sizes
// are still tried, unless ctx ends.
func (r *Rig) Scale(ctx context.Context, o ScaleOptions) []ScaleRow {
	var rows []ScaleRow
	for _, n := range o.Sizes {
		if ctx.Err() != nil {
			break
		}
		o.logf("scale: %d leases...\n", n)
		row := r.scaleRow(ctx, o, n, rows)
		if row.Err != "" {
			o.logf("  %d leases: %s\n", n, row.Err)
		} else {
			o.logf("  ready after %s, RSS %.0f MiB, BPF maps %.0f MiB, XDP renewal %s, bulk %d leases at %.0f/s\n",
				row.Ready.Round(time.Millisecond), mib(row.RSSBytes), mib(row.MapBytes), row.Renewal.cell(), row.BulkStreamed, row.BulkRate)
		}
		rows = append(rows, row)
	}
	return rows
}

// scaleRow measures one size; done are the rows measured before it, whose
// figures say what this one will need.
func (r *Rig) scaleRow(ctx context.Context, o ScaleOptions, n int, done []ScaleRow) (row ScaleRow) {
	row = ScaleRow{Leases: n, MaxLeases: MaxLeasesFor(n), FastPath: o.Fast}
	budget := rowBudget(n)
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	phase := "checking resources"
	defer func() {
		if row.Err != "" && ctx.Err() == nil && rctx.Err() != nil {
			row.Err = fmt.Sprintf("over the row's time budget of %s (%s, the CPUs shared with everything else): %s", budget, phase, row.Err)
		}
	}()
	fail := func(err error) ScaleRow { row.Err = err.Error(); return row }
	tmp := os.TempDir()
	if err := enoughResources(n, done, memAvailable(), diskFree(tmp), tmp); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "xdhcp-scale")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return fail(err)
	}
	phase = "writing the database"
	db := filepath.Join(dir, "state", "leases.db")
	t0 := time.Now()
	if err := writeLeases(rctx, db, n, scaleHorizon); err != nil {
		return fail(fmt.Errorf("writing %d leases: %w", n, err))
	}
	row.WriteSeconds = time.Since(t0).Seconds()
	if st, err := os.Stat(db); err == nil {
		row.DBBytes = st.Size()
	}
	cfg := filepath.Join(dir, "xdhcpd.yaml")
	if err := os.WriteFile(cfg, []byte(scaleConfig(dir, o.Fast, row.MaxLeases)), 0o600); err != nil {
		return fail(err)
	}
	phase = "starting xdhcpd"
	x := Xdhcpd{Bin: o.Bin, Fast: o.Fast}
	t0 = time.Now()
	// Host mounts: `ip netns exec` would hide the bpffs the daemon pins in.
	p, err := r.Srv.StartHostMounts(rctx, x.Bin, "--config", cfg)
	if err != nil {
		return fail(err)
	}
	// Stopped, and its pins removed (stopServer runs xdhcpd detach with
	// dir/xdhcpd.yaml), before the next size's daemon creates its own.
	defer stopServer(x, p, r.Srv, dir)
	within := readyBound(n)
	if err := waitWithin(rctx, p, within, func() bool { return socketAnswers(filepath.Join(dir, "ctl.sock")) }); err != nil {
		return fail(exited(p.Exited(), p.Wait, fmt.Errorf("xdhcpd with %d leases: %w", n, err)))
	}
	row.Ready = time.Since(t0)
	row.RSSBytes = rss(p.Pid())
	// waitFor waits for a gauge of the daemon's to be 1.
	waitFor := func(what, metric string) error {
		err := waitWithin(rctx, p, within, func() bool {
			v, err := scrapeMetric(r.Srv, scaleMetrics, metric)
			return err == nil && v == 1
		})
		if err != nil {
			return exited(p.Exited(), p.Wait, fmt.Errorf("xdhcpd with %d leases: %s: %w", n, what, err))
		}
		return nil
	}
	phase = "waiting for the XDP map to be full"
	if err := waitFor("the XDP map", "xdhcp_fastpath_published"); err != nil {
		return fail(err)
	}
	row.Published = time.Since(t0)
	row.PublishedRSSBytes = rss(p.Pid())
	phase = "waiting for start-up to settle"
	if err := waitFor("settling", "xdhcp_startup_settled"); err != nil {
		return fail(err)
	}
	row.Settled = time.Since(t0)
	row.Stages, row.StartupCPU = readyStages(p.Output())
	row.SettledRSSBytes, row.SettledFileBytes = rss(p.Pid()), procStatusBytes(p.Pid(), "RssFile:")
	row.PeakRSSBytes = peakRSS(p.Pid())

	phase = "reading the BPF maps"
	if row.Maps, err = bpfMaps(p.Pid()); err != nil {
		return fail(err)
	}
	for _, m := range row.Maps {
		row.MapBytes += int64(m.Bytes)
	}

	phase = "renewing the last lease"
	row.Renewal, err = r.renewLast(rctx, n)
	if err != nil {
		return fail(err)
	}

	phase = "the bulk leasequery"
	streamed, secs, err := r.bulkLeasequery(rctx)
	row.BulkStreamed, row.BulkSeconds = streamed, secs
	if secs > 0 {
		row.BulkRate = float64(streamed) / secs
	}
	if err != nil {
		return fail(exited(p.Exited(), p.Wait, fmt.Errorf("bulk leasequery: %w", err)))
	}
	row.BulkPeakRSSBytes = peakRSS(p.Pid())
	if streamed != n {
		return fail(fmt.Errorf("the bulk leasequery streamed %d leases of %d", streamed, n))
	}
	if p.Exited() {
		return fail(exited(true, p.Wait, errors.New("xdhcpd exited during the measurement")))
	}
	return row
}

// exited adds how the daemon ended to err when it is gone (killed with
// SIGKILL it was most likely the kernel's out-of-memory killer).
func exited(gone bool, wait func() error, err error) error {
	if !gone {
		return err
	}
	how := wait()
	if how != nil && strings.Contains(how.Error(), "killed") {
		return fmt.Errorf("%w (xdhcpd %v: out of memory? MemAvailable now %.1f GiB)", err, how, gib(memAvailable()))
	}
	return fmt.Errorf("%w (xdhcpd: %v)", err, how)
}

// renewLast sends one relayed renewal (RENEWING: ciaddr set, no options 50
// and 54) for the last lease WriteLeases wrote, from the relay with its
// option 82, and says whether XDP answered it: an ACK came back and
// xdhcp_fastpath_replies_total rose.
func (r *Rig) renewLast(ctx context.Context, n int) (*RenewalCheck, error) {
	ip, mac := benchLease(n - 1)
	c := &RenewalCheck{IP: ip.String()}
	before, err := scrapeMetric(r.Srv, scaleMetrics, "xdhcp_fastpath_replies_total")
	if err != nil {
		return nil, err
	}
	tr, err := r.transport("relay")
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	const xid = 0x5ca1e001
	m := loadgen.Message{Type: dhcpwire.Request, XID: xid, ID: loadgen.Identity{MAC: mac, Opt82: benchRelayInfo()},
		CIAddr: ip, GIAddr: netip.MustParseAddr(Giaddr)}
	if _, err := tr.Send([]loadgen.Packet{{Payload: m.Append(nil)}}); err != nil {
		return nil, err
	}
	msgs := []loadgen.Received{{Buf: make([]byte, 1500)}}
	deadline := time.Now().Add(3 * time.Second)
	for c.Reply == "" && time.Now().Before(deadline) && ctx.Err() == nil {
		k, err := tr.Recv(msgs, 200*time.Millisecond)
		if err != nil {
			return nil, err
		}
		for _, got := range msgs[:k] {
			var p dhcpwire.Packet
			if p.Parse(got.Buf[:got.N]) != nil || p.XID != xid {
				continue
			}
			c.Reply = dhcpwire.MessageName(p.MessageType())
			if p.MessageType() == dhcpwire.Ack && p.YIAddr != ip {
				c.Reply += " for " + p.YIAddr.String()
			}
		}
	}
	after, err := scrapeMetric(r.Srv, scaleMetrics, "xdhcp_fastpath_replies_total")
	if err != nil {
		return nil, err
	}
	c.FastRepliesBefore, c.FastRepliesAfter = before, after
	c.ByXDP = c.Reply == "ack" && after > before
	return c, ctx.Err()
}

func rss(pid int) int64 { return procStatusBytes(pid, "VmRSS:") }

// peakRSS is a process's peak resident set (VmHWM), 0 when it cannot be
// read.
func peakRSS(pid int) int64 { return procStatusBytes(pid, "VmHWM:") }

// procStatusBytes reads a kB field of /proc/PID/status, in bytes.
func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return kBField(string(b), field)
}

// kBField is the value of a "Field: N kB" line of a /proc file, in bytes,
// 0 when absent.
func kBField(text, field string) int64 {
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
