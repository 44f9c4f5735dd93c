package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
)

// LeasequeryResult is the leasequery benchmark.
type LeasequeryResult struct {
	Leases       int     `json:"leases"`
	UDPSent      int64   `json:"udp-sent"`
	UDPAnswered  int64   `json:"udp-answered"`
	UDPWrong     int64   `json:"udp-wrong"`
	UDPRate      float64 `json:"udp-answered-per-second"`
	UDPLowLoss   float64 `json:"udp-answered-per-second-at-1pct-loss"`
	UDPLowLossAt int     `json:"udp-offered-rate-at-1pct-loss"`
	BulkStreamed int     `json:"bulk-leases"`
	BulkRate     float64 `json:"bulk-leases-per-second"`
	Err          string  `json:"error,omitempty"`
}

// benchRelayID is the relay-id (82.12) every benchmark lease carries.
var benchRelayID = []byte("bench-relay-1")

// Leasequery starts xdhcpd on n leases, then measures UDP leasequery by IP
// answered per second (open loop, from the relay address, for d) and a
// bulk query by relay-id streaming all n leases over TCP.
func (r *Rig) Leasequery(ctx context.Context, x Xdhcpd, n int, d time.Duration) LeasequeryResult {
	res := LeasequeryResult{Leases: n}
	fail := func(err error) LeasequeryResult { res.Err = err.Error(); return res }
	dir, err := os.MkdirTemp("", "xdhcp-lq")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	if err := WriteLeases(ctx, filepath.Join(dir, "state", "leases.db"), n); err != nil {
		return fail(fmt.Errorf("writing %d leases: %w", n, err))
	}
	cfg := fmt.Sprintf(`server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: ""
  log-level: warn
leasequery:
  enabled: true
  requesters: [%s/32, %s/32]
subnets:
  - subnet: 10.0.0.0/8
    pools: [10.0.0.1-10.255.255.254]
    lease-time: 1d
`, ServerIf, dir, dir, Giaddr, ClientAddr)
	if err := os.WriteFile(filepath.Join(dir, "xdhcpd.yaml"), []byte(cfg), 0o600); err != nil {
		return fail(err)
	}
	p, err := r.Srv.StartHostMounts(ctx, x.Bin, "--config", filepath.Join(dir, "xdhcpd.yaml"))
	if err != nil {
		return fail(err)
	}
	defer p.Stop()
	if err := waitFor(ctx, p, func() bool { return socketAnswers(filepath.Join(dir, "ctl.sock")) }); err != nil {
		return fail(err)
	}
	rc, err := r.transport("relay")
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	msgs, valid := leasequeries(n)
	// Open loop on two shared cores starves the server of CPU; the rate it
	// sustains with at most 1% loss is the fairer figure.
	step := 3 * time.Second
	res.UDPLowLoss, _, res.UDPLowLossAt = findRate(ctx, 10000, 0.01, 3, func(rate int) (float64, float64) {
		time.Sleep(time.Second) // let the previous step's backlog drain
		s, a, _ := paced(ctx, rc, msgs, step, rate, valid)
		loss := 1.0
		if s > 0 {
			loss = 1 - float64(a)/float64(s)
		}
		return float64(a) / step.Seconds(), loss
	})
	time.Sleep(time.Second)
	res.UDPSent, res.UDPAnswered, res.UDPWrong = blast(ctx, rc, msgs, d, valid)
	res.UDPRate = float64(res.UDPAnswered) / d.Seconds()

	streamed, secs, err := r.bulkLeasequery(ctx)
	res.BulkStreamed = streamed
	if secs > 0 {
		res.BulkRate = float64(streamed) / secs
	}
	if err != nil {
		return fail(err)
	}
	return res
}

// bulkLeasequery asks the server for every lease of benchRelayID with one
// RFC 6926 bulk leasequery over TCP, from the generator's namespace, and
// returns how many leases it streamed (LEASEACTIVE) and in how long.
func (r *Rig) bulkLeasequery(ctx context.Context) (streamed int, seconds float64, err error) {
	err = r.Cli.Do(func() error {
		t0 := time.Now()
		defer func() { seconds = time.Since(t0).Seconds() }()
		q := lqclient.Query{Server: netip.MustParseAddrPort(ServerAddr + ":67"), GIAddr: netip.MustParseAddr(ClientAddr), RelayID: benchRelayID, XID: 1}
		// Counted with a zero-copy parse: the rig must not be what limits.
		return lqclient.BulkRaw(ctx, q, func(m []byte) (bool, error) {
			var p dhcpwire.Packet
			if err := p.Parse(m); err != nil {
				return false, fmt.Errorf("bulk reply: %w", err)
			}
			switch p.MessageType() {
			case dhcpwire.LeaseActive:
				streamed++
			case dhcpwire.LeaseQueryDone:
				if st, ok := p.Option(dhcpwire.OptStatusCode); ok && len(st) > 0 && st[0] != 0 {
					return true, fmt.Errorf("bulk query failed: status %d %s", st[0], st[1:])
				}
				return true, nil
			}
			return false, nil
		})
	})
	return streamed, seconds, err
}

// leasequeries builds DHCPLEASEQUERY messages by IP for random leases of
// the n that WriteLeases made, and the check that an answer is the
// LEASEACTIVE for the address asked about.
func leasequeries(n int) ([][]byte, func([]byte) bool) {
	giaddr := netip.MustParseAddr(Giaddr)
	const distinct = 65536
	msgs := make([][]byte, distinct)
	asked := make([]uint32, distinct)
	for i := range msgs {
		v := uint32(0x0a000001 + rand.IntN(n))
		asked[i] = v
		h := dhcpwire.Header{Op: dhcpwire.BootRequest, XID: uint32(i), GIAddr: giaddr,
			CIAddr: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})}
		b := dhcpwire.AppendHeader(nil, h)
		msgs[i] = append(b, dhcpwire.OptMessageType, 1, dhcpwire.LeaseQuery, dhcpwire.OptEnd)
	}
	return msgs, func(p []byte) bool {
		var pk dhcpwire.Packet
		return pk.Parse(p) == nil && pk.MessageType() == dhcpwire.LeaseActive && pk.XID < distinct &&
			binary.BigEndian.Uint32(p[12:16]) == asked[pk.XID]
	}
}
