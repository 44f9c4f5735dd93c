// Package netns builds throw-away network namespaces and veth pairs and
// runs processes in them, for tests, the demo and the benchmark rig. Every
// namespace and process it creates is removed by Close.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/xdhcp/xdhcp/internal/testenv"
)

// NS is a named network namespace (ip netns).
type NS struct {
	Name   string
	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

var seq atomic.Uint64 // names must be unique within a process; the pid makes them unique across

// etcDir is where `ip netns exec NAME` finds files it bind-mounts over
// /etc for that namespace only.
const etcDir = "/etc/netns"

// New creates the namespace with loopback up and a resolv.conf of its own.
// The DHCP clients run inside it (their hook scripts rewrite /etc/resolv.conf
// on every lease and empty it on release) would otherwise write the host's
// file, since a network namespace shares the host's mounts.
func New(name string) (*NS, error) {
	n := &NS{Name: name}
	if err := n.create(); err != nil {
		if cerr := n.Close(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return nil, err
	}
	return n, nil
}

// create makes the namespace and its private /etc; Close undoes whatever
// part of it was done.
func (n *NS) create() error {
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	if err := os.MkdirAll(filepath.Join(etcDir, n.Name), 0o755); err != nil {
		return fmt.Errorf("netns %s: private /etc: %w", n.Name, err)
	}
	if err := os.WriteFile(filepath.Join(etcDir, n.Name, "resolv.conf"), []byte(marker(n.Name)), 0o644); err != nil {
		return fmt.Errorf("netns %s: private resolv.conf: %w", n.Name, err)
	}
	if _, err := n.Exec(context.Background(), "ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	return nil
}

// marker is the private resolv.conf's content; RemoveStale takes it as
// the sign that a namespace is this package's.
func marker(name string) string { return "# netns " + name + "\n" }

// uniqueName is prefix-PID-N: unique within this process by N, across
// processes by the pid, which also names the owner for RemoveStale.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// NewUnique creates a namespace named prefix-PID-N.
func NewUnique(prefix string) (*NS, error) {
	return New(uniqueName(prefix))
}

// ForTest creates a namespace removed when the test ends, whether it
// passes, fails or panics: the cleanup is registered before the namespace
// is made, so a half-made one goes too. It first removes namespaces that
// earlier test processes left behind (RemoveStale), since a test binary
// killed by -timeout or SIGKILL runs no cleanup. It skips the test when
// not root or when iproute2 is missing (fails it under CI=true; see
// testenv).
func ForTest(t testing.TB, prefix string) *NS {
	t.Helper()
	testenv.RequireRoot(t, "creates network namespaces")
	testenv.RequireCommands(t, "ip")
	if err := RemoveStale(); err != nil {
		t.Logf("removing namespaces left by earlier tests: %v", err)
	}
	n := &NS{Name: uniqueName(prefix)}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := n.create(); err != nil {
		t.Fatal(err)
	}
	return n
}

var staleName = regexp.MustCompile(`^[A-Za-z0-9_.-]+-([0-9]+)-[0-9]+$`)

// RemoveStale deletes the namespaces this package made (named
// prefix-PID-N, with the private resolv.conf New writes) whose owner, the
// process PID, is gone, with any process still inside. Namespaces of
// live processes (tests running in parallel) and anyone else's are left
// alone; a reused pid only delays the cleanup.
func RemoveStale() error {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("listing /run/netns: %w", err)
	}
	var errs []error
	for _, e := range ents {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(etcDir, e.Name(), "resolv.conf"))
		if err != nil || string(b) != marker(e.Name()) {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid <= 0 || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := (&NS{Name: e.Name()}).Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops every process started in the namespace (and any other
// process still inside it) and deletes it with its private /etc. Closing
// twice, or a namespace whose creation failed part way, is harmless. It
// carries on past a failed step and reports every failure.
func (n *NS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	var errs []error
	if _, err := os.Stat(filepath.Join("/run/netns", n.Name)); err == nil {
		if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
			for _, f := range bytes.Fields(out) {
				pid, _ := strconv.Atoi(string(f))
				// Never ourselves: a thread of ours may still be inside.
				if pid > 0 && pid != os.Getpid() {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, bytes.TrimSpace(out)))
		}
	}
	if err := os.RemoveAll(filepath.Join(etcDir, n.Name)); err != nil {
		errs = append(errs, fmt.Errorf("netns %s: remove private /etc: %w", n.Name, err))
	}
	return errors.Join(errs...)
}

func (n *NS) command(ctx context.Context, argv []string) *exec.Cmd {
	return n.commandIn(ctx, false, argv)
}

// commandIn enters only the network namespace when hostMounts is set.
// `ip netns exec` also remounts /sys for the namespace, which hides the
// host's bpffs: a daemon that pins BPF objects must see the real one.
func (n *NS) commandIn(ctx context.Context, hostMounts bool, argv []string) *exec.Cmd {
	var cmd *exec.Cmd
	if hostMounts {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + n.Name, "--"}, argv...)...)
	} else {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Exec runs a command in the namespace to completion and returns its
// combined output; a failure's error includes the output.
func (n *NS) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	return n.run(ctx, false, argv)
}

// ExecHostMounts is Exec with the host's mounts (bpffs, /sys) kept.
func (n *NS) ExecHostMounts(ctx context.Context, argv ...string) ([]byte, error) {
	return n.run(ctx, true, argv)
}

func (n *NS) run(ctx context.Context, hostMounts bool, argv []string) ([]byte, error) {
	out, err := n.commandIn(ctx, hostMounts, argv).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", argv, n.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Proc is a background process in a namespace.
type Proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start runs a command in the background; its output is kept (Output).
func (n *NS) Start(ctx context.Context, argv ...string) (*Proc, error) {
	return n.start(ctx, false, argv)
}

// StartHostMounts is Start with the host's mounts (bpffs, /sys) kept.
func (n *NS) StartHostMounts(ctx context.Context, argv ...string) (*Proc, error) {
	return n.start(ctx, true, argv)
}

func (n *NS) start(ctx context.Context, hostMounts bool, argv []string) (*Proc, error) {
	cmd := n.commandIn(context.WithoutCancel(ctx), hostMounts, argv)
	p := &Proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", argv, n.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(-p.cmd.Process.Pid, sig) }

// Wait waits for the process to exit.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, then SIGKILL after five seconds, and waits.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Output is what the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Do runs fn on a thread switched into the namespace, so sockets fn opens
// live there. The thread is switched back afterwards; if that fails it
// stays locked, so the runtime discards it instead of reusing it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("reading current namespace: %w", err)
			return
		}
		defer orig.Close()
		h, err := vnetns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("opening namespace %s: %w", n.Name, err)
			return
		}
		defer h.Close()
		if err := vnetns.Set(h); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Veth joins two namespaces with a veth pair and brings both ends up.
// Zero prefixes mean "no address".
func Veth(a *NS, aName string, aAddr netip.Prefix, b *NS, bName string, bAddr netip.Prefix) error {
	hb, err := vnetns.GetFromName(b.Name)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", b.Name, err)
	}
	defer hb.Close()
	// Made in a with its peer in b: each end is named in its own
	// namespace, so the names may exist elsewhere (on the host too).
	if err := a.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(int(hb))})
	}); err != nil {
		return fmt.Errorf("veth %s (%s) - %s (%s): %w", aName, a.Name, bName, b.Name, err)
	}
	for _, e := range []struct {
		ns   *NS
		name string
		addr netip.Prefix
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if err := e.ns.Do(func() error {
			l, err := netlink.LinkByName(e.name)
			if err != nil {
				return err
			}
			if e.addr.IsValid() {
				if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(e.addr)}); err != nil {
					return fmt.Errorf("adding %s: %w", e.addr, err)
				}
			}
			return netlink.LinkSetUp(l)
		}); err != nil {
			return fmt.Errorf("%s in %s: %w", e.name, e.ns.Name, err)
		}
	}
	return nil
}

// DisableTxOffload turns TX checksum offload off (XDP_TX on veth needs it).
func DisableTxOffload(n *NS, ifname string) error {
	_, err := n.Exec(context.Background(), "ethtool", "-K", ifname, "tx", "off")
	return err
}

// link runs fn on ifname's link inside the namespace, through netlink.
func (n *NS) link(ifname string, fn func(netlink.Link) error) error {
	return n.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", ifname, n.Name, err)
		}
		if err := fn(l); err != nil {
			return fmt.Errorf("%s in %s: %w", ifname, n.Name, err)
		}
		return nil
	})
}

// SetMAC gives ifname the hardware address mac, taking the link down for
// the change and up again.
func (n *NS) SetMAC(ifname, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	return n.whileDown(ifname, func(l netlink.Link) error { return netlink.LinkSetHardwareAddr(l, hw) })
}

// whileDown runs fn on ifname's link taken down, then brings it up.
func (n *NS) whileDown(ifname string, fn func(netlink.Link) error) error {
	return n.link(ifname, func(l netlink.Link) error {
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
}

// Rename renames ifname to name (down for the change, up again).
func (n *NS) Rename(ifname, name string) error {
	return n.whileDown(ifname, func(l netlink.Link) error { return netlink.LinkSetName(l, name) })
}

// AddAddr adds the address p to ifname.
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	return n.link(ifname, func(l netlink.Link) error {
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)})
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// DeleteLink deletes ifname (a veth takes its peer with it).
func (n *NS) DeleteLink(ifname string) error {
	return n.link(ifname, netlink.LinkDel)
}

// Enslave puts ifname on the bridge and brings it up.
func (n *NS) Enslave(ifname, bridge string) error {
	return n.link(ifname, func(l netlink.Link) error {
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
}
