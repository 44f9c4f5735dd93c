package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// Topology of a comparison: the server's namespace holds ServerIf with
// ServerAddr in LinkNet; the load generator's namespace holds the peer
// with ClientAddr, the relay address Giaddr and the layer 2 clients; the
// server routes RelayNet through ClientAddr.
const (
	ServerIf   = "bsrv0"
	ClientIf   = "bcli0"
	ServerAddr = "10.77.0.1"
	ClientAddr = "10.77.0.2"
	LinkNet    = "10.76.0.0/15"
	// Layer 2 clients take addresses from two ranges of LinkNet that
	// leave out ServerAddr and ClientAddr: 131k in all, like the relay
	// pool.
	linkPool1 = "10.76.0.10-10.76.255.254"
	linkPool2 = "10.77.1.0-10.77.255.254"
	// The small-pool ranges (dhcpd) hold 16k each.
	linkSmallPool1 = "10.76.0.10-10.76.63.254"
	Giaddr         = "10.80.0.1"
	RelayNet       = "10.80.0.0/14"
	poolStart      = "10.80.1.0"
	// 131k addresses: room for the default 100k clients without making
	// servers that build per-address state at start-up (dhcpd) pay for
	// addresses nobody asks for.
	poolEnd = "10.81.255.254"
)

// Server is a DHCP server under test.
type Server interface {
	Name() string
	// Start launches the server in ns with fresh state under dir.
	Start(ctx context.Context, ns *netns.NS, dir string) (*netns.Proc, error)
	Version() string
}

// Xdhcpd is our daemon. Fast selects the XDP fast path: "" (off),
// "native" or "generic". Unbounded turns off the slow path's bounds on how
// long a request may wait (server.max-wait, queue-target), as before
// issue 19: the overload comparison's other side. Metrics, when set, is
// where the daemon serves /metrics in the server's namespace.
type Xdhcpd struct {
	Bin, Ctl, Fast string
	Unbounded      bool
	Metrics        string
	// Holdoffs keeps server.request-holdoff and discover-holdoff at the
	// daemon's defaults (XdhcpdConfig turns them off): the flood measures
	// them.
	Holdoffs bool
	// QueueTarget, when set, is server.queue-target (a duration, e.g.
	// "10ms"), to compare settings; empty: the daemon's default.
	QueueTarget string
}

// Name implements Server.
func (x Xdhcpd) Name() string {
	n := "xdhcpd"
	if x.Fast != "" {
		n += "-xdp-" + x.Fast
	}
	if x.Unbounded {
		n += "-unbounded-queue"
	}
	return n
}

// Version implements Server.
func (x Xdhcpd) Version() string { return "xdhcpd (this tree)" }

// RigRequestHoldoff and RigDiscoverHoldoff are the server.request-holdoff
// and discover-holdoff of the rig's daemons (XdhcpdConfig).
const (
	RigRequestHoldoff  = "0s"
	RigDiscoverHoldoff = "0s"
)

// XdhcpdConfig renders the daemon's configuration for the rig; fast is
// the fast path mode, "" for off.
//
// The holdoffs are off (RigRequestHoldoff, RigDiscoverHoldoff). The rig
// offers a rate with a population that renews over and over, each client
// every 0.1 to 1.25 s at the rates it measures, where real clients renew
// once per T1; its DORA clients start again as often, with the same MAC.
// Whenever the server fell behind, the holdoffs would take each client's
// next renewal or DISCOVER for a flood's repeat and drop it (and double
// the client's holdoff for it), and the rig would measure its own
// population, not the server: with the DISCOVER holdoff on, 1,700 to
// 3,000 DORAs a second answered in the open loop, where 4,500 to 6,200
// were before its doubling (2026-12-07). The flood measurement, whose renewing
// clients renew every 5 s and whose new clients retransmit as RFC 2131
// has it, turns them on (Holdoffs).
func XdhcpdConfig(dir, fast string) string {
	return fastpathYAML(fast, "xdhcp-bench") + fmt.Sprintf(`server:
  interfaces: [%s]
  state-dir: %s/state
  control-socket: %s/ctl.sock
  metrics-listen: ""
  log-level: warn
  request-holdoff: `+RigRequestHoldoff+`
  discover-holdoff: `+RigDiscoverHoldoff+`
subnets:
  - subnet: %s
    pools: [%s, %s]
    lease-time: 1h
    options:
      routers: [%s]
      dns-servers: [%s]
  - subnet: %s
    pools: [%s-%s]
    lease-time: 1h
    options:
      routers: [%s]
      dns-servers: [10.77.0.1]
`, ServerIf, dir, dir, LinkNet, linkPool1, linkPool2, ServerAddr, ServerAddr, RelayNet, poolStart, poolEnd, Giaddr)
}

// Start implements Server.
func (x Xdhcpd) Start(ctx context.Context, ns *netns.NS, dir string) (*netns.Proc, error) {
	cfg := filepath.Join(dir, "xdhcpd.yaml")
	if err := os.WriteFile(cfg, []byte(x.config(dir)), 0o600); err != nil {
		return nil, err
	}
	// Host mounts: `ip netns exec` would hide the bpffs the daemon pins in.
	p, err := ns.StartHostMounts(ctx, x.Bin, "--config", cfg)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, func() bool { return socketAnswers(filepath.Join(dir, "ctl.sock")) })
}

// config is the daemon's configuration with state under dir.
func (x Xdhcpd) config(dir string) string {
	yaml := XdhcpdConfig(dir, x.Fast)
	if x.Unbounded {
		yaml = strings.Replace(yaml, "  log-level: warn\n", "  log-level: warn\n  max-wait: 0s\n  queue-target: 0s\n", 1)
	}
	if x.QueueTarget != "" && !x.Unbounded {
		yaml = strings.Replace(yaml, "  log-level: warn\n", "  log-level: warn\n  queue-target: "+x.QueueTarget+"\n", 1)
	}
	if x.Metrics != "" {
		yaml = strings.Replace(yaml, `  metrics-listen: ""`, "  metrics-listen: "+x.Metrics, 1)
	}
	if x.Holdoffs {
		yaml = strings.Replace(yaml, "  request-holdoff: "+RigRequestHoldoff+"\n", "", 1)
		yaml = strings.Replace(yaml, "  discover-holdoff: "+RigDiscoverHoldoff+"\n", "", 1)
	}
	return yaml
}

// Kea is kea-dhcp4 with the memfile lease database, persistence on.
// Raw selects raw sockets (for layer 2 clients) over UDP sockets. MT turns
// multi-threading on (off by default in Kea 2.2, on from 2.4): a thread per
// CPU and a packet queue, Kea at its best on this machine.
type Kea struct{ Raw, MT bool }

// Name implements Server.
func (k Kea) Name() string {
	if k.MT {
		return "kea-mt"
	}
	return "kea"
}

// Version implements Server.
func (Kea) Version() string { return "kea-dhcp4 " + firstLine("kea-dhcp4", "-V") }

// KeaConfig renders kea-dhcp4's configuration for the rig.
func KeaConfig(dir string, raw, mt bool) string {
	sock := "udp"
	if raw {
		sock = "raw"
	}
	threads := ""
	if mt {
		// thread-pool-size 0 means one per CPU; the queue holds what
		// the threads have not taken yet.
		threads = `
  "multi-threading": {"enable-multi-threading": true, "thread-pool-size": 0, "packet-queue-size": 64},`
	}
	dash := func(r string) string { return strings.Replace(r, "-", " - ", 1) }
	return fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": ["%s"], "dhcp-socket-type": "%s"},
  "lease-database": {"type": "memfile", "persist": true, "name": "%s/kea-leases4.csv", "lfc-interval": 3600},
  "valid-lifetime": 3600,%s
  "control-socket": {"socket-type": "unix", "socket-name": "%s/kea.sock"},
  "subnet4": [
    {"id": 1, "subnet": "%s", "pools": [{"pool": "%s"}, {"pool": "%s"}],
     "option-data": [{"name": "routers", "data": "%s"}, {"name": "domain-name-servers", "data": "%s"}]},
    {"id": 2, "subnet": "%s", "pools": [{"pool": "%s - %s"}],
     "option-data": [{"name": "routers", "data": "%s"}, {"name": "domain-name-servers", "data": "10.77.0.1"}]}
  ],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stderr"}], "severity": "WARN"}]
}}
`, ServerIf, sock, dir, threads, dir, LinkNet, dash(linkPool1), dash(linkPool2), ServerAddr, ServerAddr, RelayNet, poolStart, poolEnd, Giaddr)
}

// Start implements Server.
func (k Kea) Start(ctx context.Context, ns *netns.NS, dir string) (*netns.Proc, error) {
	cfg := filepath.Join(dir, "kea.json")
	if err := os.WriteFile(cfg, []byte(KeaConfig(dir, k.Raw, k.MT)), 0o600); err != nil {
		return nil, err
	}
	// Kea keeps its pid file in a fixed directory unless told otherwise.
	p, err := ns.Start(ctx, "env", "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir, "kea-dhcp4", "-c", cfg)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, func() bool { return socketExists(filepath.Join(dir, "kea.sock")) })
}

// Dhcpd is ISC dhcpd 4.4 (ping-check off). SmallPool gives it a 16k
// address pool instead of the rig's 131k: its cost per lease grows with
// the pool's size (62 DORA/s with 131k addresses against 1500/s with 16k
// here), so the small-pool run shows what it does when that is not the
// limit, with perfdhcp's clients capped to fit.
type Dhcpd struct{ SmallPool bool }

// smallPoolEnd bounds the 16k-address pool.
const smallPoolEnd = "10.80.63.254"

// Name implements Server.
func (d Dhcpd) Name() string {
	if d.SmallPool {
		return "dhcpd-16k-pool"
	}
	return "dhcpd"
}

// MaxClients is how many clients the server's pool holds, 0 for no cap.
func (d Dhcpd) MaxClients() int {
	if d.SmallPool {
		return 16000
	}
	return 0
}

// Version implements Server.
func (d Dhcpd) Version() string { return firstLine("dhcpd", "--version") }

// DhcpdConfig renders dhcpd.conf for the rig.
func DhcpdConfig(small bool) string {
	end := poolEnd
	link := "range " + strings.Replace(linkPool1, "-", " ", 1) + "; range " + strings.Replace(linkPool2, "-", " ", 1) + ";"
	if small {
		end = smallPoolEnd
		link = "range " + strings.Replace(linkSmallPool1, "-", " ", 1) + ";"
	}
	_, n, _ := net.ParseCIDR(RelayNet)
	_, l, _ := net.ParseCIDR(LinkNet)
	return fmt.Sprintf(`ping-check false;
authoritative;
default-lease-time 3600;
max-lease-time 3600;
subnet %s netmask %s {
  %s
  option routers %s;
  option domain-name-servers %s;
}
subnet %s netmask %s {
  range %s %s;
  option routers %s;
  option domain-name-servers 10.77.0.1;
}
`, l.IP, net.IP(l.Mask), link, ServerAddr, ServerAddr, n.IP, net.IP(n.Mask), poolStart, end, Giaddr)
}

// Start implements Server.
func (d Dhcpd) Start(ctx context.Context, ns *netns.NS, dir string) (*netns.Proc, error) {
	cfg, lf, pf := filepath.Join(dir, "dhcpd.conf"), filepath.Join(dir, "dhcpd.leases"), filepath.Join(dir, "dhcpd.pid")
	if err := os.WriteFile(cfg, []byte(DhcpdConfig(d.SmallPool)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(lf, nil, 0o600); err != nil {
		return nil, err
	}
	p, err := ns.Start(ctx, "dhcpd", "-4", "-f", "-q", "-cf", cfg, "-lf", lf, "-pf", pf, ServerIf)
	if err != nil {
		return nil, err
	}
	// dhcpd has no readiness signal; it writes its pid file once serving.
	return p, waitFor(ctx, p, func() bool { return socketExists(pf) })
}

func waitFor(ctx context.Context, p *netns.Proc, ready func() bool) error {
	return waitWithin(ctx, p, 20*time.Second, ready)
}

// waitWithin is waitFor with its own bound.
func waitWithin(ctx context.Context, p *netns.Proc, within time.Duration, ready func() bool) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if p.Exited() {
			return fmt.Errorf("server exited: %s", tail([]byte(p.Output()), 10))
		}
		if ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("server not ready after %s: %s", within, tail([]byte(p.Output()), 10))
}

func socketExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	defer c.Close()
	if _, err := c.Write([]byte(`{"cmd":"stats"}` + "\n")); err != nil {
		return false
	}
	b := make([]byte, 64)
	n, _ := c.Read(b)
	return strings.Contains(string(b[:n]), `"ok":true`)
}

// stopServer stops a server and, for xdhcpd with the fast path, removes
// what it pinned (which otherwise outlives it by design).
func stopServer(s Server, p *netns.Proc, ns *netns.NS, dir string) {
	pair, isPair := s.(*XdhcpdPair)
	if isPair {
		pair.stop()
	}
	p.Stop()
	if k, ok := s.(*KeaHA); ok {
		k.stop()
	}
	fast := ""
	switch x := s.(type) {
	case Xdhcpd:
		fast = x.Fast
	case *XdhcpdPair:
		fast = x.Fast
	}
	if fast != "" {
		ns.ExecHostMounts(context.Background(), cmpBin(s), "detach", "--config", filepath.Join(dir, "xdhcpd.yaml"))
	}
}

// cmpBin is the xdhcpd binary of an xdhcpd server.
func cmpBin(s Server) string {
	switch x := s.(type) {
	case Xdhcpd:
		return x.Bin
	case *XdhcpdPair:
		return x.Bin
	}
	return ""
}

// fastpathYAML is the daemon's fastpath section for mode fast ("" for off),
// pinning under a directory named for the run (prefix and this process).
func fastpathYAML(fast, prefix string) string {
	if fast == "" {
		return "fastpath:\n  enabled: false\n"
	}
	return fmt.Sprintf("fastpath:\n  enabled: true\n  mode: %s\n  pin-dir: /sys/fs/bpf/%s-%d\n", fast, prefix, os.Getpid())
}
