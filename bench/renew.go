package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// RenewResult is one renewal run.
type RenewResult struct {
	Server   string  `json:"server"`
	Leases   int     `json:"leases"`
	Seconds  float64 `json:"seconds"`
	Sent     int64   `json:"sent"`
	Answered int64   `json:"answered"`
	Wrong    int64   `json:"wrong"`
	Rate     float64 `json:"answered-per-second"`
	Loss     float64 `json:"loss"`
	// LowLoss is the answered rate at the highest offered rate (LowLossAt)
	// with at most 0.1% loss.
	LowLoss   float64 `json:"answered-per-second-at-0.1pct-loss"`
	LowLossAt int     `json:"offered-rate-at-0.1pct-loss"`
	CPU       float64 `json:"server-cpu-seconds-per-million"`
	Err       string  `json:"error,omitempty"`
}

// heldLease is one client the generator holds.
type heldLease struct {
	mac net.HardwareAddr
	ip  netip.Addr
}

// relayConn is the generator's socket: it sends as the relay (giaddr:67)
// and receives the server's replies there, in batches.
type relayConn struct {
	c  net.PacketConn
	pc *ipv4.PacketConn
}

func openRelay(ns *netns.NS) (*relayConn, error) {
	var c net.PacketConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp4", Giaddr+":67")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	return &relayConn{c: c, pc: ipv4.NewPacketConn(c)}, nil
}

var serverUDP = &net.UDPAddr{IP: net.ParseIP(ServerAddr), Port: 67}

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// acquire takes n leases through the relay with DORA, a window of
// exchanges in flight at a time.
func (rc *relayConn) acquire(ctx context.Context, n int) ([]heldLease, error) {
	giaddr := net.ParseIP(Giaddr)
	out := make([]heldLease, 0, n)
	const window = 128
	buf := make([]byte, 1500)
	discover := func(i int) dhcpv4.TransactionID {
		m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(mac(i)), dhcpv4.WithGatewayIP(giaddr))
		rc.c.WriteTo(m.ToBytes(), serverUDP)
		return m.TransactionID
	}
	for start := 0; start < n; start += window {
		end := min(n, start+window)
		pending := map[dhcpv4.TransactionID]int{}
		for i := start; i < end; i++ {
			pending[discover(i)] = i
		}
		// Lost exchanges start over, a few times.
		for try := 0; try < 5 && len(pending) > 0; try++ {
			if try > 0 {
				retry := pending
				pending = map[dhcpv4.TransactionID]int{}
				for _, i := range retry {
					pending[discover(i)] = i
				}
			}
			deadline := time.Now().Add(time.Second)
			for len(pending) > 0 && time.Now().Before(deadline) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				rc.c.SetReadDeadline(deadline)
				k, _, err := rc.c.ReadFrom(buf)
				if err != nil {
					break
				}
				r, err := dhcpv4.FromBytes(buf[:k])
				if err != nil {
					continue
				}
				i, ok := pending[r.TransactionID]
				if !ok {
					continue
				}
				switch r.MessageType() {
				case dhcpv4.MessageTypeOffer:
					q, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac(i)), dhcpv4.WithGatewayIP(giaddr),
						dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(r.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(r.ServerIdentifier())))
					q.TransactionID = r.TransactionID
					rc.c.WriteTo(q.ToBytes(), serverUDP)
				case dhcpv4.MessageTypeAck:
					ip, _ := netip.AddrFromSlice(r.YourIPAddr.To4())
					out = append(out, heldLease{mac: mac(i), ip: ip})
					delete(pending, r.TransactionID)
				}
			}
		}
	}
	if len(out) < n*99/100 {
		return out, fmt.Errorf("only %d of %d leases acquired", len(out), n)
	}
	return out, nil
}

// renew sends relayed renewals round-robin over leases, open loop and as
// fast as the socket takes them, for d; a receiver counts and validates
// the ACKs (xid, yiaddr) in batches.
func (rc *relayConn) renew(ctx context.Context, leases []heldLease, d time.Duration) (sent, answered, wrong int64) {
	msgs, valid := renewals(leases)
	return rc.blast(ctx, msgs, d, valid)
}

// renewals builds one relayed renewal per lease (the xid carries the
// lease's index) and the check of their answers.
func renewals(leases []heldLease) ([][]byte, func([]byte) bool) {
	giaddr := netip.MustParseAddr(Giaddr)
	server := netip.MustParseAddr(ServerAddr)
	// Prebuild one request per lease; the xid carries the lease index.
	msgs := make([][]byte, len(leases))
	for i, l := range leases {
		msgs[i] = Renewal{CIAddr: l.ip, MAC: l.mac, GIAddr: giaddr, Server: server, XID: uint32(i)}.Payload()
	}
	return msgs, func(p []byte) bool { return validRenewalAck(p, leases, 3600) }
}

// blast sends msgs round-robin to the server, open loop and as fast as the
// socket takes batches of them, for d, while a receiver reads answers in
// batches and sorts them with valid. Answers arriving within half a second
// after the end still count.
func (rc *relayConn) blast(ctx context.Context, msgs [][]byte, d time.Duration, valid func([]byte) bool) (sent, answered, wrong int64) {
	return rc.paced(ctx, msgs, d, 0, valid)
}

// paced is blast at rate messages per second (0: as fast as possible),
// sent in batches of 64 on a schedule.
func (rc *relayConn) paced(ctx context.Context, msgs [][]byte, d time.Duration, rate int, valid func([]byte) bool) (sent, answered, wrong int64) {
	var ans, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rb := make([]ipv4.Message, 64)
		for i := range rb {
			rb[i].Buffers = [][]byte{make([]byte, 1500)}
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			rc.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := rc.pc.ReadBatch(rb, 0)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue
				}
				return
			}
			for _, m := range rb[:n] {
				if valid(m.Buffers[0][:m.N]) {
					ans.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}
	}()
	wb := make([]ipv4.Message, 64)
	start := time.Now()
	end := start.Add(d)
	next := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		if rate > 0 {
			// Sleep until this batch is due.
			if due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
		}
		for j := range wb {
			wb[j] = ipv4.Message{Buffers: [][]byte{msgs[next]}, Addr: serverUDP}
			next = (next + 1) % len(msgs)
		}
		n, err := rc.pc.WriteBatch(wb, 0)
		if err != nil {
			time.Sleep(50 * time.Microsecond) // socket buffer full
		}
		sent += int64(n)
	}
	time.Sleep(500 * time.Millisecond) // late answers
	close(stop)
	wg.Wait()
	return sent, ans.Load(), bad.Load()
}

// Renewals starts s, takes n leases through the relay, and measures the
// renewals it answers per second when offered as many as the generator can
// send for d.
func (r *Rig) Renewals(ctx context.Context, s Server, n int, d time.Duration) RenewResult {
	res := RenewResult{Server: s.Name(), Leases: n, Seconds: d.Seconds()}
	fail := func(err error) RenewResult { res.Err = err.Error(); return res }
	dir, err := os.MkdirTemp("", "xdhcp-bench-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	p, err := s.Start(ctx, r.Srv, dir)
	if err != nil {
		return fail(err)
	}
	defer stopServer(s, p, r.Srv, dir)
	rc, err := openRelay(r.Cli)
	if err != nil {
		return fail(err)
	}
	defer rc.c.Close()
	leases, err := rc.acquire(ctx, n)
	if err != nil {
		return fail(err)
	}
	// First the rate sustained with at most 0.1% loss, paced (open loop
	// starves the generator's own receiver on two shared cores, and leaves
	// the server a backlog of work), then the open-loop figure.
	msgs, valid := renewals(leases)
	step := 3 * time.Second
	res.LowLoss, _, res.LowLossAt = findRate(ctx, 10000, 0.001, 3, func(rate int) (float64, float64) {
		time.Sleep(time.Second) // let the previous step's backlog drain
		s, a, _ := rc.paced(ctx, msgs, step, rate, valid)
		if s == 0 {
			return 0, 1
		}
		return float64(a) / step.Seconds(), 1 - float64(a)/float64(s)
	})
	time.Sleep(time.Second)
	cpu0 := cpuSeconds(p.Pid())
	sent, answered, wrong := rc.renew(ctx, leases, d)
	cpu := cpuSeconds(p.Pid()) - cpu0
	res.Sent, res.Answered, res.Wrong = sent, answered, wrong
	res.Rate = float64(answered) / d.Seconds()
	if sent > 0 {
		res.Loss = 1 - float64(answered)/float64(sent)
	}
	if answered > 0 {
		res.CPU = cpu / float64(answered) * 1e6
	}
	return res
}

// validRenewalAck checks an answer to a renewal sent by renew: a BOOTREPLY
// DHCPACK whose xid names a lease we hold, for that lease's address, with
// a lease time of at most leaseTime and at least half of it (the fast path
// may cut a grant at the horizon, never to nothing) and a server id.
func validRenewalAck(p []byte, leases []heldLease, leaseTime uint32) bool {
	m, err := dhcpv4.FromBytes(p)
	if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != dhcpv4.MessageTypeAck {
		return false
	}
	i := binary.BigEndian.Uint32(m.TransactionID[:])
	if int(i) >= len(leases) {
		return false
	}
	yi, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
	if !ok || yi != leases[i].ip || m.ServerIdentifier() == nil {
		return false
	}
	lt := uint32(m.IPAddressLeaseTime(0).Seconds())
	return lt <= leaseTime && lt >= leaseTime/2
}

// findRate finds the highest offered rate at which try loses at most
// maxLoss: it doubles from start until a step fails, then bisects. It
// returns the best step's answered rate and loss.
func findRate(ctx context.Context, start int, maxLoss float64, bisect int, try func(rate int) (answered, loss float64)) (best, bestLoss float64, at int) {
	lo, hi := 0, 0
	for rate := start; ctx.Err() == nil; rate *= 2 {
		a, l := try(rate)
		if l > maxLoss {
			hi = rate
			break
		}
		lo, best, bestLoss, at = rate, a, l, rate
		if rate > 4_000_000 {
			return
		}
	}
	for range bisect {
		if hi == 0 || ctx.Err() != nil {
			break
		}
		mid := (lo + hi) / 2
		a, l := try(mid)
		if l > maxLoss {
			hi = mid
		} else {
			lo, best, bestLoss, at = mid, a, l, mid
		}
	}
	return
}
