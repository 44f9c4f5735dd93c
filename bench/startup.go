package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// StartupResult is how long xdhcpd took to serve with a full database.
type StartupResult struct {
	Leases   int           `json:"leases"`
	Ready    time.Duration `json:"ready-ns"`
	RSSBytes int64         `json:"rss-bytes"`
}

// WriteLeases fills a lease database with n active leases from 10.0.0.1 up.
func WriteLeases(ctx context.Context, path string, n int) error {
	s, err := store.Open(path, store.Options{MaxBatch: 100000})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	now := time.Now()
	// Every lease came through one relay: its relay-id (82.12) is what a
	// bulk leasequery asks for.
	relayInfo := dhcpwire.AppendOption(nil, dhcpwire.SubOptRelayID, benchRelayID)
	batch := make([]*lease.Lease, 0, 50000)
	for i := range n {
		v := uint32(0x0a000001 + i)
		batch = append(batch, &lease.Lease{
			IP: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), State: lease.Active,
			HWType: 1, HWAddr: net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
			Start: now, Expiry: now.Add(24 * time.Hour), CLTT: now, StateAt: now,
			GIAddr: netip.MustParseAddr(Giaddr), ServerID: netip.MustParseAddr(ServerAddr),
			RelayInfo: relayInfo,
		})
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.Put(ctx, batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// Startup measures xdhcpd's time to ready and its RSS with n leases.
func (r *Rig) Startup(ctx context.Context, x Xdhcpd, n int) (*StartupResult, error) {
	dir, err := os.MkdirTemp("", "xdhcp-startup")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, err
	}
	if err := WriteLeases(ctx, filepath.Join(dir, "state", "leases.db"), n); err != nil {
		return nil, fmt.Errorf("writing %d leases: %w", n, err)
	}
	cfg := fmt.Sprintf(`server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: ""
subnets:
  - subnet: 10.0.0.0/8
    pools: [10.0.0.1-10.255.255.254]
    lease-time: 1d
`, ServerIf, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	t0 := time.Now()
	p, err := r.Srv.Start(ctx, x.Bin, "--config", filepath.Join(dir, "x.yaml"))
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	if err := waitFor(ctx, p, func() bool { return socketAnswers(filepath.Join(dir, "ctl.sock")) }); err != nil {
		return nil, err
	}
	res := &StartupResult{Leases: n, Ready: time.Since(t0), RSSBytes: rss(p.Pid())}
	return res, nil
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
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
