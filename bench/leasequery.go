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
		return fail(err)
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
	rc, err := openRelay(r.Cli)
	if err != nil {
		return fail(err)
	}
	defer rc.c.Close()
	res.UDPSent, res.UDPAnswered, res.UDPWrong = rc.leasequeries(ctx, n, d)
	res.UDPRate = float64(res.UDPAnswered) / d.Seconds()

	err = r.Cli.Do(func() error {
		t0 := time.Now()
		q := lqclient.Query{Server: netip.MustParseAddrPort(ServerAddr + ":67"), GIAddr: netip.MustParseAddr(ClientAddr), RelayID: benchRelayID, XID: 1}
		err := lqclient.Bulk(ctx, q, func(rep *lqclient.Reply) error {
			if rep.Type == "leaseactive" {
				res.BulkStreamed++
			}
			if rep.Status != nil {
				return fmt.Errorf("bulk query failed: status %d %s", *rep.Status, rep.StatusMessage)
			}
			return nil
		})
		res.BulkRate = float64(res.BulkStreamed) / time.Since(t0).Seconds()
		return err
	})
	if err != nil {
		return fail(err)
	}
	return res
}

// leasequeries sends DHCPLEASEQUERY by IP for random leases of the n that
// WriteLeases made, open loop for d, and counts LEASEACTIVE answers that
// name the address asked about.
func (rc *relayConn) leasequeries(ctx context.Context, n int, d time.Duration) (sent, answered, wrong int64) {
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
	return rc.blast(ctx, msgs, d, func(p []byte) bool {
		var pk dhcpwire.Packet
		return pk.Parse(p) == nil && pk.MessageType() == dhcpwire.LeaseActive && pk.XID < distinct &&
			binary.BigEndian.Uint32(p[12:16]) == asked[pk.XID]
	})
}
