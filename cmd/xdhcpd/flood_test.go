package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/netns"
	"github.com/xdhcp/xdhcp/internal/testenv"
)

// A layer-2 flood of DISCOVERs from random MACs took every free address of
// a small pool as pending offers, and a new client waited 18 s (issue 14
// §4). With the offer bounds (server.offer-pool-share, default 0.5) a real
// udhcpc on the same link gets bound while the flood runs. The assertion
// is that it gets bound, not how fast: udhcpc retries on its own schedule.
const floodConfig = `server:
  interfaces: [br0]
  state-dir: {{DIR}}/state
  control-socket: {{DIR}}/ctl.sock
  metrics-listen: 127.0.0.1:9467
  offer-hold: 30s
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
    lease-time: 1h
    options:
      routers: [10.77.0.1]
  - subnet: 10.79.0.0/24
    pools: [10.79.0.100-10.79.0.199]
    lease-time: 1h
    options:
      routers: [10.79.0.1]
`

func TestFloodOfDiscoversDoesNotStarveARealClient(t *testing.T) {
	l := floodLab(t, "udhcpc")

	flooder := l.client("eth1", "02:00:00:00:0f:01")
	stop := startFlood(t, flooder, "eth1")
	defer stop()

	// The flood is on before the client starts: wait until the server has
	// withdrawn offers for it, i.e. the pool's bound is being hit.
	deadline := time.Now().Add(15 * time.Second)
	for l.metricOrZero(`xdhcp_slowpath_offers_withdrawn_total{bound="pool"}`) < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("the flood never hit the pool's bound; DISCOVERs seen: %v\nserver log:\n%s",
				l.metric(`xdhcp_slowpath_messages_total{type="discover"}`), l.daemon.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}

	const mac = "02:00:00:00:01:77"
	c := l.client("eth1", mac)
	script := udhcpcScript(t, l.dir, "", "")
	t0 := time.Now()
	p, err := c.Start(context.Background(), "udhcpc", "-f", "-i", "eth1", "-s", script, "-t", "20", "-T", udhcpcTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	li := l.waitLease(mac, "active", t0, 60*time.Second)
	if !strings.HasPrefix(li.IP, "10.77.0.") {
		t.Fatalf("lease %+v", li)
	}
	// Still flooding when the client got bound: the flood was not over
	// before the client asked.
	before := l.metric(`xdhcp_slowpath_messages_total{type="discover"}`)
	time.Sleep(200 * time.Millisecond)
	if after := l.metric(`xdhcp_slowpath_messages_total{type="discover"}`); after <= before {
		t.Fatalf("the flood had stopped (DISCOVERs %v -> %v)", before, after)
	}
	t.Logf("udhcpc bound %s after %v during the flood; offers withdrawn %v", li.IP, time.Since(t0).Round(time.Millisecond),
		l.metric(`xdhcp_slowpath_offers_withdrawn_total{bound="pool"}`))
}

// floodLab starts the daemon with floodConfig on a bridge, br0
// (10.77.0.1/24), in a namespace of its own, for clients to join
// (lab.client), or a relay's clients from 10.79.0.0/24 (its second
// subnet); tools are the clients the test runs.
func floodLab(t *testing.T, tools ...string) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root for network namespaces")
	}
	needTools(t, append(tools, "curl")...)
	xdhcpd, xdhcpctl := binaries(t)
	l := &lab{t: t, srv: netns.ForTest(t, "xs"), dir: t.TempDir(), xdhcpd: xdhcpd, ctl: xdhcpctl}
	l.sh(l.srv, "ip link add br0 type bridge && ip addr add 10.77.0.1/24 dev br0 && ip link set br0 up")
	l.cfgPath = filepath.Join(l.dir, "xdhcpd.yaml")
	l.sock = filepath.Join(l.dir, "ctl.sock")
	if err := os.WriteFile(l.cfgPath, []byte(strings.ReplaceAll(floodConfig, "{{DIR}}", l.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start()
	return l
}

// startFlood sends broadcast DISCOVERs from random MACs out of ifname in
// ns, about 5000 a second, until the returned stop is called (also on
// cleanup). The socket is opened inside the namespace; the goroutine that
// sends is owned by stop.
func startFlood(t *testing.T, ns *netns.NS, ifname string) (stop func()) {
	t.Helper()
	var fd, ifindex int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("flood socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer unix.Close(fd)
		rng := rand.New(rand.NewPCG(1, 2))
		to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for range 50 {
				mac := net.HardwareAddr{0x02, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
				if err := unix.Sendto(fd, discoverFrame(mac), 0, to); err != nil && ctx.Err() == nil {
					t.Errorf("flood send: %v", err)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// discoverFrame is an Ethernet frame carrying a broadcast DHCPDISCOVER
// from mac, as a client without an address sends it.
func discoverFrame(mac net.HardwareAddr) []byte {
	d, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		panic(fmt.Sprintf("building a DISCOVER: %v", err)) // fixed, valid input
	}
	payload := d.ToBytes()
	udpLen := 8 + len(payload)
	f := make([]byte, 14+20+udpLen)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
	copy(ip[12:16], []byte{0, 0, 0, 0})
	copy(ip[16:20], []byte{255, 255, 255, 255})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 68)
	binary.BigEndian.PutUint16(udp[2:], 67)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen)) // checksum 0: none (RFC 768)
	copy(udp[8:], payload)
	return f
}
