package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xdhcp/xdhcp/internal/netns"
)

const fastLabConfig = `server:
  interfaces: [vs0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
fastpath:
  enabled: true
  mode: {{MODE}}
  min-grant: 10s
  pin-dir: {{PIN}}
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.149]
    lease-time: {{LEASE}}
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.53]
      domain-name: example.net
  - subnet: 10.78.0.0/16
    pools: [10.78.1.0-10.78.255.254]
    lease-time: 1h
    options:
      routers: [10.78.0.1]
`

// fastLab is a server namespace joined to one client namespace by a veth
// pair (vs0 - eth0), with xdhcpd attaching XDP to vs0 in mode. In native
// mode the client end gets an XDP_PASS program, without which veth does
// not deliver frames sent with XDP_TX.
func fastLab(t *testing.T, mode, leaseTime, mac string) (*lab, *netns.NS) {
	t.Helper()
	xdhcpd, xdhcpctl := binaries(t)
	srv := netns.ForTest(t, "xs")
	c := netns.ForTest(t, "xc")
	l := &lab{t: t, srv: srv, dir: t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	if err := netns.Veth(srv, "vs0", netip.MustParsePrefix("10.77.0.1/24"), c, "eth0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	l.sh(c, fmt.Sprintf("ip link set eth0 down && ip link set eth0 address %s && ip link set eth0 up", mac))
	for _, e := range []struct {
		ns *netns.NS
		If string
	}{{srv, "vs0"}, {c, "eth0"}} {
		if err := netns.DisableTxOffload(e.ns, e.If); err != nil {
			t.Fatal(err)
		}
	}
	if mode == "native" {
		attachPass(t, c, "eth0")
	}
	pin := fmt.Sprintf("/sys/fs/bpf/xdhcp-test-%d-%s", os.Getpid(), filepath.Base(l.dir))
	t.Cleanup(func() { os.RemoveAll(pin) })
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	cfg := strings.NewReplacer("{{DIR}}", l.dir, "{{LEASE}}", leaseTime, "{{MODE}}", mode, "{{PIN}}", pin).Replace(fastLabConfig)
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start()
	t.Cleanup(func() {
		l.daemon.Stop()
		out, err := srv.ExecHostMounts(context.Background(), l.xdhcpd, "detach", "--config", l.cfgPath)
		if err != nil {
			t.Errorf("detach: %v\n%s", err, out)
		}
	})
	return l, c
}

// attachPass puts a program that returns XDP_PASS on ifname in ns.
func attachPass(t *testing.T, ns *netns.NS, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	err = ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatalf("XDP_PASS on %s: %v", ifname, err)
	}
}

func (l *lab) requests() float64 {
	return l.metric(`xdhcp_slowpath_messages_total{type="request"}`)
}

func (l *lab) fastReplies() float64 { return l.metric("xdhcp_fastpath_replies_total") }

// waitFast waits until the fast path has answered more than n renewals.
func (l *lab) waitFast(n float64, timeout time.Duration) float64 {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if v := l.fastReplies(); v > n {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("the fast path answered no renewal within %v (replies %v)\nserver log:\n%s", timeout, n, l.daemon.Output())
	return 0
}

func TestFastPathUdhcpc(t *testing.T) {
	needTools(t, "udhcpc", "curl", "ethtool")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			const mac = "02:00:00:00:0f:01"
			l, c := fastLab(t, mode, "2m", mac)
			envFile := filepath.Join(l.dir, "udhcpc.env")
			script := filepath.Join(l.dir, "udhcpc.sh")
			os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 ip=$ip lease=$lease serverid=$serverid\" >> "+envFile+"\ncase $1 in bound|renew) ip addr flush dev $interface; ip addr add $ip/$mask dev $interface;; deconfig) ip addr flush dev $interface;; esac\n"), 0o755)
			t0 := time.Now()
			p, err := c.Start(context.Background(), "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", "1")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			li := l.waitLease(mac, "active", t0, 15*time.Second)
			waitFileContains(t, envFile, "bound ip="+li.IP, 10*time.Second)

			reqs, fast := l.requests(), l.fastReplies()
			t1 := time.Now()
			p.Signal(sigUSR1)
			l.waitFast(fast, 10*time.Second)
			env := waitFileContains(t, envFile, "renew ip="+li.IP+" lease=120 serverid=10.77.0.1", 10*time.Second)
			if got := l.requests(); got != reqs {
				t.Fatalf("the slow path saw the renewal: requests %v -> %v\n%s", reqs, got, env)
			}
			// The event reaches bbolt: CLTT moves.
			l.waitLease(mac, "active", t1, 5*time.Second)
		})
	}
}
