package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// TestDiskStallAnswersNothingLate: the disk under the state directory
// stalls (fsfreeze on an ext4 of its own) while relayed clients renew.
// The first renewal is ACKed at once, on its promise horizon, and its
// commit waits for the disk; once that transaction has run longer than
// queue-interval past what one takes, the server stops reading, so the renewals after it wait in the socket, where those older
// than max-wait (1 s) are dropped and counted "stale" once the disk is
// back, none answered late (before, each went into the lease store's
// queue and was ACKed when the disk came back, seconds after its client
// had given up on it). After the stall every client renews at once, and
// a kill -9 loses none of the acknowledged leases.
func TestDiskStallAnswersNothingLate(t *testing.T) {
	needTools(t, "mkfs.ext4", "fsfreeze")
	var state string
	l, r := relayLabWith(t, func(l *lab) { state = mountExt4(l) })

	rc := newRelayConn(t, r)
	const clients = 20
	hws := make([]net.HardwareAddr, clients)
	ips := make([]net.IP, clients)
	for i := range hws {
		hws[i] = net.HardwareAddr{2, 0, 0, 0, 0x0d, byte(i + 1)}
		ips[i] = rc.dora(t, hws[i])
	}

	stale := func() float64 { return l.metricOrZero(`xdhcp_slowpath_dropped_total{reason="stale"}`) }
	staleBefore, behindBefore := stale(), l.metric("xdhcp_slowpath_store_behind_seconds_total")

	thaw := freeze(l, state)
	// The first renewal's commit waits for the disk; the others come
	// after it has waited well past queue-interval (100 ms).
	first := rc.renew(t, hws[0], ips[0])
	time.Sleep(500 * time.Millisecond)
	var later []dhcpv4.TransactionID
	for i := 1; i < clients; i++ {
		later = append(later, rc.renew(t, hws[i], ips[i]))
		time.Sleep(20 * time.Millisecond)
	}
	// Every later renewal is past max-wait (1 s) when the disk is back.
	time.Sleep(2500 * time.Millisecond)
	thawed := time.Now()
	thaw()

	if _, ok := rc.reply(first, 5*time.Second); !ok {
		t.Fatal("the renewal whose commit waited for the disk was not answered")
	}
	// Its horizon was on disk: its ACK left without waiting for its
	// record (server.renewal-ack horizon).
	if at, ok := rc.arrivedAt(first); !ok || !at.Before(thawed) {
		t.Errorf("the first renewal was answered %v after the disk came back, want during the stall (on its horizon)", at.Sub(thawed).Round(time.Millisecond))
	}
	time.Sleep(time.Second) // time to answer the others, were they answered
	for i, xid := range later {
		if at, ok := rc.arrivedAt(xid); ok {
			t.Errorf("renewal %d, 2.5 s old or more when the disk came back, answered %v after", i+1, at.Sub(thawed).Round(time.Millisecond))
		}
	}
	if got := stale() - staleBefore; got < float64(len(later)) {
		t.Errorf("%v renewals dropped as stale, want %d", got, len(later))
	}
	if behind := l.metric("xdhcp_slowpath_store_behind_seconds_total") - behindBefore; behind < 2 {
		t.Errorf("the reader waited %.2f s for the lease store, want the stall's 2.5 s or more", behind)
	}

	// The disk is back: every client renews at once, and its lease is on
	// disk (kill -9, start again).
	renewed := time.Now()
	for i := range hws {
		xid := rc.renew(t, hws[i], ips[i])
		if m, ok := rc.reply(xid, 3*time.Second); !ok || m.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("after the stall, client %d's renewal: %v, answered %v", i, m, ok)
		}
	}
	l.daemon.Signal(sigKILL)
	l.daemon.Wait()
	l.start()
	for i, hw := range hws {
		li, ok := l.leaseFor(hw.String())
		if !ok || li.IP != ips[i].String() || li.State != "active" {
			t.Fatalf("after kill -9, client %d: %+v, want active %s", i, li, ips[i])
		}
		exp, err := time.Parse(time.RFC3339, li.Expires)
		if err != nil || exp.Before(renewed.Add(time.Hour-time.Minute)) {
			t.Fatalf("after kill -9, client %d expires %q (%v), want an hour from its renewal at %v", i, li.Expires, err, renewed)
		}
	}
}

// mountExt4 mounts a 64 MiB ext4 of its own (a loop device on a file in
// the lab's directory) on l.dir/state, unmounted when the test ends, and
// returns l.dir/state. The commands run with the host's mounts
// (netns.NS.ExecHostMounts), where the daemon sees them.
func mountExt4(l *lab) string {
	t := l.t
	t.Helper()
	img, mnt := filepath.Join(l.dir, "state.ext4"), filepath.Join(l.dir, "state")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	l.hostRun("mkfs.ext4", "-q", "-F", img)
	if _, err := l.srv.ExecHostMounts(context.Background(), "mount", "-o", "loop", img, mnt); err != nil {
		testenv.Skipf(t, "mounting an ext4 image on a loop device: %v", err)
	}
	t.Cleanup(func() {
		if _, err := l.srv.ExecHostMounts(context.Background(), "umount", mnt); err != nil {
			// Detached instead, so the loop device is released once
			// nothing uses it.
			t.Errorf("umount: %v", err)
			l.srv.ExecHostMounts(context.Background(), "umount", "-l", mnt)
		}
	})
	return mnt
}

// freeze stalls every write to the file system at mnt (fsfreeze) until
// the returned thaw is called, or the test ends: a daemon stopped while
// its disk is frozen would wait for it in the kernel, unkillable, so the
// cleanup, registered after the daemon's, thaws first. Should the test
// binary die first (go test's -timeout ends it without cleanups), a
// watchdog in a session of its own thaws it after a minute (not a
// netns.Proc: those die with the test binary).
func freeze(l *lab, mnt string) (thaw func()) {
	t := l.t
	t.Helper()
	l.hostRun("fsfreeze", "-f", mnt)
	watchdog := exec.Command("sh", "-c", `sleep 60; fsfreeze -u "$1"`, "sh", mnt)
	watchdog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := watchdog.Start(); err != nil {
		l.srv.ExecHostMounts(context.Background(), "fsfreeze", "-u", mnt)
		t.Fatalf("starting the thaw watchdog: %v", err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			// The watchdog's session: sh and its sleep.
			syscall.Kill(-watchdog.Process.Pid, syscall.SIGKILL)
			watchdog.Wait()
			if _, err := l.srv.ExecHostMounts(context.Background(), "fsfreeze", "-u", mnt); err != nil {
				t.Errorf("thawing: %v", err)
			}
		})
	}
	t.Cleanup(thaw)
	return thaw
}

// hostRun runs a command with the host's mounts, failing the test if it
// fails.
func (l *lab) hostRun(argv ...string) {
	l.t.Helper()
	if _, err := l.srv.ExecHostMounts(context.Background(), argv...); err != nil {
		l.t.Fatal(err)
	}
}

// relayConn is a relay agent's socket (10.78.0.1:67 in the relay
// namespace of relayLab): it sends relayed requests and records when each
// reply came, by transaction ID.
type relayConn struct {
	c       net.PacketConn
	mu      sync.Mutex
	replies map[dhcpv4.TransactionID]relayReply
	arrived chan struct{}
}

type relayReply struct {
	m  *dhcpv4.DHCPv4
	at time.Time
}

// newRelayConn opens the socket in r; closing it when the test ends stops
// its reader.
func newRelayConn(t *testing.T, r *netns.NS) *relayConn {
	t.Helper()
	rc := &relayConn{replies: map[dhcpv4.TransactionID]relayReply{}, arrived: make(chan struct{}, 1)}
	if err := r.Do(func() (err error) {
		rc.c, err = net.ListenPacket("udp4", "10.78.0.1:67")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := rc.c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			rc.mu.Lock()
			if _, seen := rc.replies[m.TransactionID]; !seen {
				rc.replies[m.TransactionID] = relayReply{m, time.Now()}
			}
			rc.mu.Unlock()
			select {
			case rc.arrived <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { rc.c.Close(); <-done })
	return rc
}

// send relays m (giaddr 10.78.0.1) to the server and returns its
// transaction ID.
func (rc *relayConn) send(t *testing.T, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, dhcpv4.TransactionID) {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IPv4(10, 78, 0, 1))}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67}); err != nil {
		t.Fatalf("relaying %s: %v", m.MessageType(), err)
	}
	return m, m.TransactionID
}

// reply is the reply to xid, waiting up to wait for it.
func (rc *relayConn) reply(xid dhcpv4.TransactionID, wait time.Duration) (*dhcpv4.DHCPv4, bool) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		r, ok := rc.replies[xid]
		rc.mu.Unlock()
		if ok {
			return r.m, true
		}
		select {
		case <-rc.arrived:
		case <-deadline.C:
			return nil, false
		}
	}
}

// arrivedAt is when the reply to xid came, if it did.
func (rc *relayConn) arrivedAt(xid dhcpv4.TransactionID) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r, ok := rc.replies[xid]
	return r.at, ok
}

// dora binds hw through the relay and returns its address.
func (rc *relayConn) dora(t *testing.T, hw net.HardwareAddr) net.IP {
	t.Helper()
	_, xid := rc.send(t, dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	offer, ok := rc.reply(xid, 3*time.Second)
	if !ok || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER from %s: %v", hw, offer)
	}
	_, xid = rc.send(t, dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))
	ack, ok := rc.reply(xid, 3*time.Second)
	if !ok || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST from %s: %v", hw, ack)
	}
	if ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4()); !ok || !netip.MustParsePrefix("10.78.0.0/16").Contains(ip) {
		t.Fatalf("ACK to %s: %s", hw, ack.Summary())
	}
	return ack.YourIPAddr
}

// renew relays a rebinding client's REQUEST (ciaddr set, no server ID)
// and returns its transaction ID.
func (rc *relayConn) renew(t *testing.T, hw net.HardwareAddr, ip net.IP) dhcpv4.TransactionID {
	t.Helper()
	_, xid := rc.send(t, dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip))
	return xid
}
