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
	CPU      float64 `json:"server-cpu-seconds-per-million"`
	Err      string  `json:"error,omitempty"`
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
	giaddr := netip.MustParseAddr(Giaddr)
	server := netip.MustParseAddr(ServerAddr)
	// Prebuild one request per lease; the xid carries the lease index.
	msgs := make([][]byte, len(leases))
	for i, l := range leases {
		msgs[i] = Renewal{CIAddr: l.ip, MAC: l.mac, GIAddr: giaddr, Server: server, XID: uint32(i)}.Payload()
	}
	return rc.blast(ctx, msgs, d, func(p []byte) bool { return validRenewalAck(p, leases, 3600) })
}

// blast sends msgs round-robin to the server, open loop and as fast as the
// socket takes batches of them, for d, while a receiver reads answers in
// batches and sorts them with valid. Answers arriving within half a second
// after the end still count.
func (rc *relayConn) blast(ctx context.Context, msgs [][]byte, d time.Duration, valid func([]byte) bool) (sent, answered, wrong int64) {
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
	end := time.Now().Add(d)
	next := 0
	for time.Now().Before(end) && ctx.Err() == nil {
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
