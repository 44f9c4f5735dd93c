package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/net/ipv4"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// The interop tests run the real dhcpcd against a minimal DHCP responder
// written here (test scaffolding, not the product: it leases one address
// and delivers a key as RFC 6704 says) and send it FORCERENEWs built and
// signed with this package.

var (
	labServer = netip.MustParseAddr("10.88.0.1")
	labClient = netip.MustParseAddr("10.88.0.50")
	labMask   = []byte{255, 255, 255, 0}
)

const (
	labLease = 3600 // seconds: no renewal of dhcpcd's own during a test
	// quiet is how long a FORCERENEW dhcpcd should ignore gets to prove it
	// was ignored. dhcpcd answers an accepted one at once (well within a
	// second here), so 3 s without a REQUEST is a clear no.
	quiet = 3 * time.Second
)

// seen is one client message the responder received.
type seen struct {
	typ    uint8
	xid    uint32
	ciaddr netip.Addr
	dst    netip.Addr // the IP destination: unicast or broadcast
	opt145 []byte     // option 145's data, nil when absent
	// requested is option 50 (invalid when absent); serverID tells
	// whether option 54 was sent: INIT-REBOOT has 50 and no 54.
	requested netip.Addr
	serverID  bool
	opt90     []byte // option 90's data, nil when absent
}

// responder answers one dhcpcd: OFFER and ACK with labClient, 145 in the
// OFFER and a fresh key in a SELECTING or INIT-REBOOT ACK when the client
// sent 145, a plain ACK to a renewal. It remembers the xid of the last
// REQUEST it ACKed, as the server must for FORCERENEW.
type responder struct {
	t      *testing.T
	pc     *ipv4.PacketConn
	ctr    *Counter
	events chan seen
	done   chan struct{}

	mu       sync.Mutex
	chaddr   [16]byte
	ackedXID uint32
	key      Key
	keyed    bool // a key went out in an ACK
}

// newResponder listens on port 67 of ifname inside ns. Its goroutine ends
// when the test does (the socket is closed in a cleanup, and the cleanup
// waits for it).
func newResponder(t *testing.T, ns *netns.NS, ifname string, ctr *Counter) *responder {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: 67})
		return err
	}); err != nil {
		t.Fatalf("responder socket: %v", err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		conn.Close()
		t.Fatalf("responder: IP_PKTINFO: %v", err)
	}
	r := &responder{t: t, pc: pc, ctr: ctr, events: make(chan seen, 64), done: make(chan struct{})}
	go r.serve()
	t.Cleanup(func() {
		pc.Close()
		<-r.done
	})
	return r
}

func (r *responder) serve() {
	defer close(r.done)
	buf := make([]byte, 1500)
	for {
		n, cm, _, err := r.pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.t.Errorf("responder read: %v", err)
			}
			return
		}
		p, err := dhcpwire.Parse(bytes.Clone(buf[:n]))
		if err != nil || p.Op != dhcpwire.BootRequest {
			r.t.Logf("responder: ignoring %d bytes: %v", n, err)
			continue
		}
		s := seen{typ: p.MessageType(), xid: p.XID, ciaddr: p.CIAddr}
		if cm != nil {
			s.dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
		if v, ok := p.Option(dhcpwire.OptForceRenewNonce); ok {
			s.opt145 = bytes.Clone(v)
		}
		if v, ok := p.Option(dhcpwire.OptAuthentication); ok {
			s.opt90 = bytes.Clone(v)
		}
		s.requested, _ = p.AddrOption(dhcpwire.OptRequestedIP)
		s.serverID = p.Has(dhcpwire.OptServerID)
		if err := r.answer(p, s); err != nil {
			r.t.Errorf("responder: answering %s: %v", dhcpwire.MessageName(s.typ), err)
		}
		select {
		case r.events <- s:
		default:
			r.t.Errorf("responder: event queue full, dropped a %s", dhcpwire.MessageName(s.typ))
		}
	}
}

// answer sends the OFFER or ACK for p.
func (r *responder) answer(p *dhcpwire.Packet, s seen) error {
	var typ uint8
	switch s.typ {
	case dhcpwire.Discover:
		typ = dhcpwire.Offer
	case dhcpwire.Request:
		typ = dhcpwire.Ack
	default:
		return nil // RELEASE, DECLINE, INFORM: nothing to say here
	}
	h := dhcpwire.ReplyHeader(p)
	h.YIAddr = labClient
	b := dhcpwire.AppendHeader(nil, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, labServer)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptLeaseTime, labLease)
	b = dhcpwire.AppendOption(b, dhcpwire.OptSubnetMask, labMask)
	capable := false
	if s.opt145 != nil {
		algs, err := ParseNonceCapable(s.opt145)
		if err != nil {
			return fmt.Errorf("client's option 145: %w", err)
		}
		capable = algs.Has(AlgorithmHMACMD5)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case typ == dhcpwire.Offer && capable:
		b = AppendNonceCapable(b)
	case typ == dhcpwire.Ack && capable && !s.ciaddr.IsUnspecified():
		// A renewal (ciaddr set): the key is not sent again.
	case typ == dhcpwire.Ack && capable:
		// SELECTING or INIT-REBOOT: a fresh key for the binding.
		k, err := NewKey()
		if err != nil {
			return err
		}
		replay, err := r.ctr.Next()
		if err != nil {
			return err
		}
		b = AppendKeyOption(b, replay, k)
		r.key, r.keyed = k, true
	}
	b = append(b, dhcpwire.OptEnd)
	for len(b) < 300 {
		b = append(b, dhcpwire.OptPad)
	}
	// Broadcast to a client without an address, unicast to a renewing
	// one (RFC 2131 §4.1).
	dst := netip.AddrPortFrom(s.ciaddr, 68)
	if s.ciaddr.IsUnspecified() {
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68)
	}
	if _, err := r.pc.WriteTo(b, nil, net.UDPAddrFromAddrPort(dst)); err != nil {
		return fmt.Errorf("sending to %s: %w", dst, err)
	}
	if typ == dhcpwire.Ack {
		r.ackedXID, r.chaddr = p.XID, p.CHAddrRaw
	}
	return nil
}

// state returns what a FORCERENEW needs: the key, the client's chaddr
// and the xid of the last REQUEST ACKed.
func (r *responder) state() (Key, bool, [16]byte, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.key, r.keyed, r.chaddr, r.ackedXID
}

// buildForceRenew is a FORCERENEW as RFC 3203 and the protocol digest
// (C.1) have it: op BOOTREPLY, 53 = 9, 54, then option 90 with a digest,
// padded to 300 bytes, signed with Sign.
func buildForceRenew(t *testing.T, xid uint32, chaddr [16]byte, replay uint64, key Key) []byte {
	t.Helper()
	b := dhcpwire.AppendHeader(nil, dhcpwire.Header{Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: xid, CHAddr: chaddr})
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.ForceRenew)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, labServer)
	b = AppendDigestOption(b, replay)
	b = append(b, dhcpwire.OptEnd)
	for len(b) < 300 {
		b = append(b, dhcpwire.OptPad)
	}
	if err := Sign(b, key); err != nil {
		t.Fatal(err)
	}
	return b
}

// sendForceRenew sends msg unicast from the server's address, port 67,
// to the client's address, port 68.
func (r *responder) sendForceRenew(t *testing.T, msg []byte) {
	t.Helper()
	dst := &net.UDPAddr{IP: labClient.AsSlice(), Port: 68}
	if _, err := r.pc.WriteTo(msg, nil, dst); err != nil {
		t.Fatalf("sending FORCERENEW: %v", err)
	}
}

// drain forgets the messages received so far.
func (r *responder) drain() {
	for {
		select {
		case <-r.events:
		default:
			return
		}
	}
}

// next waits up to d for a message of type typ; others are skipped.
func (r *responder) next(typ uint8, d time.Duration) (seen, bool) {
	deadline := time.After(d)
	for {
		select {
		case s := <-r.events:
			if s.typ == typ {
				return s, true
			}
		case <-deadline:
			return seen{}, false
		}
	}
}

// dhcpcdLab is a server namespace with the responder and a client
// namespace with dhcpcd, joined by a veth pair.
type dhcpcdLab struct {
	srv, cli *netns.NS
	ifname   string
	conf     string // dhcpcd's configuration file
	resp     *responder
	dhcpcd   *netns.Proc // the running dhcpcd (the latest started)
}

// startDhcpcdLab builds the lab and starts dhcpcd with the given
// configuration lines. The client interface is named per test process:
// dhcpcd keeps its lease, pid file and control socket in the host's
// /var/lib/dhcpcd and /run/dhcpcd by interface name.
func startDhcpcdLab(t *testing.T, prefix string, conf string, ctr *Counter) *dhcpcdLab {
	t.Helper()
	testenv.RequireRoot(t, "creates network namespaces and runs dhcpcd")
	testenv.RequireCommands(t, "ip", "dhcpcd")
	l := &dhcpcdLab{
		srv:    netns.ForTest(t, prefix+"s"),
		cli:    netns.ForTest(t, prefix+"c"),
		ifname: fmt.Sprintf("%s%d", prefix, os.Getpid()),
		conf:   filepath.Join(t.TempDir(), "dhcpcd.conf"),
	}
	if err := netns.Veth(l.srv, "s0", netip.PrefixFrom(labServer, 24), l.cli, l.ifname, netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	l.resp = newResponder(t, l.srv, "s0", ctr)
	if err := os.WriteFile(l.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered before any dhcpcd's own cleanup, so it runs after them
	// (and before the namespaces' cleanups, registered earlier still):
	// remove what dhcpcd left in the host's directories.
	t.Cleanup(func() {
		// A dhcpcd killed with -9 leaves its control sockets too.
		os.Remove(filepath.Join("/var/lib/dhcpcd", l.ifname+".lease"))
		for _, f := range []string{".pid", ".sock", ".unpriv.sock"} {
			os.Remove(filepath.Join("/run/dhcpcd", l.ifname+f))
			os.Remove(filepath.Join("/run/dhcpcd", l.ifname+"-4"+f))
		}
	})
	l.startDhcpcd(t)
	return l
}

// startDhcpcd starts dhcpcd in the foreground with debug logging (-B -d:
// its log is the process output), stopped when the test ends.
func (l *dhcpcdLab) startDhcpcd(t *testing.T) {
	t.Helper()
	p, err := l.cli.Start(context.Background(), "dhcpcd", "-4", "-B", "-d", "-f", l.conf, l.ifname)
	if err != nil {
		t.Fatal(err)
	}
	l.dhcpcd = p
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("dhcpcd's log (pid %d):\n%s", p.Pid(), p.Output())
		}
	})
}

// waitLog waits up to d for the n-th line of dhcpcd's log containing s.
func (l *dhcpcdLab) waitLog(t *testing.T, s string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for strings.Count(l.dhcpcd.Output(), s) < n {
		if l.dhcpcd.Exited() {
			t.Fatalf("dhcpcd exited waiting for %q", s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q (#%d) in dhcpcd's log within %v", s, n, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// defaultConf is dhcpcd's default behaviour for FORCERENEW (it sends 145
// and requires authentication by default), IPv4 only, with the ARP probe
// off so that it binds at once.
const defaultConf = "ipv4only\nnoipv4ll\nnoarp\n"

// TestDhcpcdForceRenew is the proof that the key delivery, the digest and
// the replay counter are what dhcpcd 9.4 accepts: a signed FORCERENEW
// makes it renew, and the same FORCERENEW with one thing wrong (a digest
// bit, an already used replay value, the xid) does not.
func TestDhcpcdForceRenew(t *testing.T) {
	ctr, err := NewCounter(&memFloor{}, CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := startDhcpcdLab(t, "fr", defaultConf, ctr)
	leased := "leased " + labClient.String()
	l.waitLog(t, leased, 1, 30*time.Second)
	disc, ok := l.resp.next(dhcpwire.Discover, time.Second)
	if !ok {
		t.Fatal("the responder saw no DISCOVER before the lease")
	}
	if disc.opt145 == nil || !bytes.Equal(disc.opt145, dhcpcdNonceCapable[2:]) {
		t.Fatalf("dhcpcd's DISCOVER carried option 145 % x, want % x", disc.opt145, dhcpcdNonceCapable[2:])
	}
	key, keyed, chaddr, xid := l.resp.state()
	if !keyed {
		t.Fatal("no key went out in the ACK")
	}
	l.waitLog(t, "accepted reconfigure key", 1, 5*time.Second)
	// Bound, dhcpcd (built with privilege separation) starts the process
	// that listens on its address, port 68: only then can a unicast
	// FORCERENEW reach it.
	listener := "spawned listener " + labClient.String()
	l.waitLog(t, listener, 1, 5*time.Second)
	// dhcpcd 9.4.1 logs "IF: Force Renew from from 10.88.0.1" (sic).
	frLine := "Force Renew from"
	failedLine := "authentication failed"

	// 1. The right xid, the right key, a fresh replay value, one digest bit
	// flipped: dhcpcd rejects it, saying so.
	l.resp.drain()
	r1, _ := ctr.Next()
	bad := buildForceRenew(t, xid, chaddr, r1, key)
	bad[dhcpwire.MinLen+3+6+NonceOptionLen-1] ^= 0x01 // last digest byte
	l.resp.sendForceRenew(t, bad)
	l.waitLog(t, failedLine, 1, quiet)
	if s, ok := l.resp.next(dhcpwire.Request, quiet); ok {
		t.Fatalf("dhcpcd renewed (xid %#x) after a FORCERENEW with a flipped digest bit", s.xid)
	}

	// 2. Correct in every way but the xid: ignored (dhcpcd logs nothing
	// for a wrong xid while bound).
	r2, _ := ctr.Next()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid+1, chaddr, r2, key))
	if s, ok := l.resp.next(dhcpwire.Request, quiet); ok {
		t.Fatalf("dhcpcd renewed (xid %#x) after a FORCERENEW with the wrong xid", s.xid)
	}
	if strings.Contains(l.dhcpcd.Output(), frLine) {
		t.Fatal("dhcpcd acted on a FORCERENEW with the wrong xid")
	}

	// 3. The real thing: dhcpcd renews, unicast to the server from its
	// address.
	r3, _ := ctr.Next()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid, chaddr, r3, key))
	req, ok := l.resp.next(dhcpwire.Request, 5*time.Second)
	if !ok {
		t.Fatal("no REQUEST after a signed FORCERENEW")
	}
	if req.dst != labServer || req.ciaddr != labClient {
		t.Fatalf("the renewal went to %s with ciaddr %s, want unicast to %s from %s", req.dst, req.ciaddr, labServer, labClient)
	}
	l.waitLog(t, frLine, 1, 2*time.Second)
	l.waitLog(t, leased, 2, 5*time.Second) // bound again after our ACK
	_, _, _, xid2 := l.resp.state()
	if xid2 != req.xid || xid2 == xid {
		t.Fatalf("ACKed xid %#x, renewal's %#x, first %#x", xid2, req.xid, xid)
	}

	// 4. Replayed: the accepted FORCERENEW's replay value again, otherwise
	// right (the renewal's xid, freshly signed): rejected.
	l.resp.drain()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid2, chaddr, r3, key))
	l.waitLog(t, failedLine, 2, quiet)
	if s, ok := l.resp.next(dhcpwire.Request, quiet); ok {
		t.Fatalf("dhcpcd renewed (xid %#x) after a replayed FORCERENEW", s.xid)
	}

	// 5. The same with the next counter value: accepted, so 4 failed on
	// the counter alone.
	r5, _ := ctr.Next()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid2, chaddr, r5, key))
	if _, ok := l.resp.next(dhcpwire.Request, 5*time.Second); !ok {
		t.Fatal("no REQUEST after a signed FORCERENEW with a fresh replay value")
	}
	l.waitLog(t, frLine, 2, 2*time.Second)
	if n := strings.Count(l.dhcpcd.Output(), failedLine); n != 2 {
		t.Fatalf("dhcpcd logged %d authentication failures, want 2 (the flipped bit, the replay)", n)
	}
	for _, line := range strings.Split(l.dhcpcd.Output(), "\n") {
		if strings.Contains(line, "Force Renew") || strings.Contains(line, "authentication") ||
			strings.Contains(line, "reconfigure key") || strings.Contains(line, "validated") {
			t.Log("dhcpcd: " + line)
		}
	}
}

// TestDhcpcdAuthOptionParses runs dhcpcd with RFC 3118 delayed
// authentication configured, so that it sends option 90 itself, and
// checks that ParseAuth reads what it sends (these bytes, logged, seed
// FuzzParseAuth). With authentication both sent and required dhcpcd does
// not offer the RFC 6704 nonce, so it sends no option 145.
func TestDhcpcdAuthOptionParses(t *testing.T) {
	ctr, err := NewCounter(&memFloor{}, CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conf := defaultConf + "authprotocol delayed hmac-md5 monotonic\n" +
		"authtoken 0x1 \"\" forever \"xdhcp-test-secret\"\n"
	l := startDhcpcdLab(t, "fa", conf, ctr)
	disc, ok := l.resp.next(dhcpwire.Discover, 20*time.Second)
	if !ok {
		t.Fatal("no DISCOVER from dhcpcd")
	}
	t.Logf("dhcpcd's DISCOVER: option 90 % x, option 145 % x", disc.opt90, disc.opt145)
	if disc.opt90 == nil {
		t.Fatal("dhcpcd configured for delayed authentication sent no option 90")
	}
	a, err := ParseAuth(disc.opt90)
	if err != nil {
		t.Fatalf("ParseAuth(dhcpcd's option 90 % x): %v", disc.opt90, err)
	}
	const protocolDelayed = 1 // RFC 3118 §5
	if a.Protocol != protocolDelayed || a.Algorithm != AlgorithmHMACMD5 || a.RDM != RDMCounter {
		t.Fatalf("dhcpcd's option 90 read as %+v", a)
	}
	if _, err := a.Nonce(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("delayed authentication taken for the forcerenew nonce: %v", err)
	}
	if disc.opt145 != nil {
		t.Fatalf("dhcpcd sent option 145 % x while sending and requiring delayed authentication", disc.opt145)
	}
}

// TestDhcpcdForceRenewAfterRestart: dhcpcd forgets its key when it
// restarts. After a crash (kill -9, so its lease file stays) it comes back
// with an INIT-REBOOT REQUEST; the ACK to that carries a new key, which
// dhcpcd accepts, and from then on a FORCERENEW must be signed with the
// new key: one signed with the old key is refused.
func TestDhcpcdForceRenewAfterRestart(t *testing.T) {
	ctr, err := NewCounter(&memFloor{}, CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := startDhcpcdLab(t, "fk", defaultConf, ctr)
	listener := "spawned listener " + labClient.String()
	l.waitLog(t, listener, 1, 30*time.Second)
	oldKey, keyed, _, _ := l.resp.state()
	if !keyed {
		t.Fatal("no key went out in the first ACK")
	}
	if err := l.dhcpcd.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	l.dhcpcd.Wait()
	if _, err := os.Stat(filepath.Join("/var/lib/dhcpcd", l.ifname+".lease")); err != nil {
		t.Fatalf("dhcpcd's lease file after kill -9: %v", err)
	}
	l.resp.drain()
	l.startDhcpcd(t)
	req, ok := l.resp.next(dhcpwire.Request, 20*time.Second)
	if !ok {
		t.Fatal("no REQUEST from the restarted dhcpcd")
	}
	if !req.ciaddr.IsUnspecified() || req.requested != labClient || req.serverID || req.opt145 == nil {
		t.Fatalf("restarted dhcpcd's first REQUEST: %+v; want INIT-REBOOT (ciaddr 0, 50 = %s, no 54) with 145", req, labClient)
	}
	l.waitLog(t, "accepted reconfigure key", 1, 5*time.Second)
	l.waitLog(t, listener, 1, 10*time.Second)
	newKey, _, chaddr, xid := l.resp.state()
	if newKey == oldKey || xid != req.xid {
		t.Fatalf("after INIT-REBOOT: key changed %v, ACKed xid %#x, INIT-REBOOT's %#x", newKey != oldKey, xid, req.xid)
	}

	l.resp.drain()
	r1, _ := ctr.Next()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid, chaddr, r1, oldKey))
	l.waitLog(t, "authentication failed", 1, quiet)
	if s, ok := l.resp.next(dhcpwire.Request, quiet); ok {
		t.Fatalf("dhcpcd renewed (xid %#x) on a FORCERENEW signed with its previous key", s.xid)
	}
	r2, _ := ctr.Next()
	l.resp.sendForceRenew(t, buildForceRenew(t, xid, chaddr, r2, newKey))
	if s, ok := l.resp.next(dhcpwire.Request, 5*time.Second); !ok || s.ciaddr != labClient || s.dst != labServer {
		t.Fatalf("after a FORCERENEW signed with the re-delivered key: REQUEST %v %+v, want a unicast renewal", ok, s)
	}
	l.waitLog(t, "Force Renew from", 1, 2*time.Second)
}
