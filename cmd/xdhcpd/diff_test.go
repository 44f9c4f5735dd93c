package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/config"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/loader"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// capture is a slowpath.Sender that keeps what it is given.
type capture struct {
	mu  sync.Mutex
	out []slowpath.Outgoing
	ch  chan struct{}
}

func (c *capture) Send(out []slowpath.Outgoing) {
	c.mu.Lock()
	c.out = append(c.out, out...)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// next waits for the next reply.
func (c *capture) next(t *testing.T) slowpath.Outgoing {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if len(c.out) > 0 {
			o := c.out[0]
			c.out = c.out[1:]
			c.mu.Unlock()
			return o
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatal("no reply from the slow path")
		}
	}
}

const diffConfig = `server:
  interfaces: [lo]
  state-dir: /unused
fastpath:
  enabled: true
  min-grant: 60s
subnets:
  - subnet: 10.77.0.0/24
    pools: [10.77.0.100-10.77.0.199]
    lease-time: 1h
    options:
      routers: [10.77.0.1]
      dns-servers: [10.77.0.53, 10.77.0.54]
      domain-name: example.net
      domain-search: [example.net, example.org]
      ntp-servers: [10.77.0.123]
      mtu: 1500
  - subnet: 10.78.0.0/16
    pools: [10.78.1.0-10.78.1.255]
    lease-time: 30m
    options:
      routers: [10.78.0.1]
      classless-static-routes: [{destination: 10.0.0.0/8, router: 10.78.0.1}]
`

// TestDifferentialFastAndSlowReplies holds the two paths to ARCHITECTURE.md
// invariant 3: for the same lease and the same renewal, the XDP reply and
// the slow path's reply carry the same IP, UDP and BOOTP headers and the
// same options in the same order; only the time fields (51, 58, 59) and
// the IP ID may differ.
func TestDifferentialFastAndSlowReplies(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "loading XDP programs needs root")
	}
	cfg, err := config.Parse("diff.yaml", []byte(diffConfig))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(filepath.Join(t.TempDir(), "l.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	storeDone := make(chan error, 1)
	go func() { storeDone <- st.Run(ctx) }()
	defer func() { cancel(); <-storeDone }()

	objs, err := loader.LoadUnpinned(1024)
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	maps, err := fastpath.New(&objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	if err := maps.SetSettings(fastSettings(cfg)); err != nil {
		t.Fatal(err)
	}
	serverMAC := net.HardwareAddr{2, 0x53, 0, 0, 0, 1}
	maps.SetInterface(1, serverMAC)

	out := &capture{ch: make(chan struct{}, 1)}
	// FORCERENEW keys on, as xdhcpd has them: the clients below send 145
	// (as dhcpcd does), so their SELECTING ACK carries a key, and their
	// renewal ACKs, which never do, must still agree byte for byte.
	ctr, err := auth.NewCounter(st.ReplayFloor(), auth.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := slowpath.New(slowpath.Config{
		Store: st, Sender: out, FastPath: fastAdapter{maps}, Counter: ctr,
		Settings: settingsFrom(cfg, cfg), Subnets: subnetsFrom(cfg),
		Ifaces: []slowpath.Interface{{Index: 1, Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sid := netip.MustParseAddr("10.77.0.1")
	relay := netip.MustParseAddr("10.78.0.1")
	bcast := netip.MustParseAddr("255.255.255.255")

	for _, tc := range []struct {
		name    string
		mac     net.HardwareAddr
		relayed bool
	}{
		{"direct", net.HardwareAddr{2, 0, 0, 0, 0xd1, 1}, false},
		{"relayed with option 82", net.HardwareAddr{2, 0, 0, 0, 0xd1, 2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cid := append([]byte{1}, tc.mac...)
			mods := func(ms ...dhcpv4.Modifier) []dhcpv4.Modifier {
				base := []dhcpv4.Modifier{
					dhcpv4.WithHwAddr(tc.mac),
					dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid)),
					dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(145), []byte{1}),
					dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
						dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionNTPServers, dhcpv4.OptionClasslessStaticRoute),
				}
				if tc.relayed {
					base = append(base, dhcpv4.WithGatewayIP(relay.AsSlice()),
						dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 3, 'a', 'b', 'c', 2, 2, 0x12, 0x34}))
				}
				return append(base, ms...)
			}
			in := func(m *dhcpv4.DHCPv4, src netip.AddrPort, dst netip.Addr) slowpath.Incoming {
				return slowpath.Incoming{Data: m.ToBytes(), Src: src, Dst: dst, IfIndex: 1}
			}
			from := netip.AddrPortFrom(netip.IPv4Unspecified(), 68)
			to := bcast
			if tc.relayed {
				from, to = netip.AddrPortFrom(relay, 67), sid
			}

			// DORA through the slow path.
			disc, _ := dhcpv4.New(mods(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))...)
			srv.Handle(in(disc, from, to))
			offer, err := dhcpv4.FromBytes(out.next(t).Payload)
			if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("offer: %v %v", err, offer)
			}
			req, _ := dhcpv4.New(mods(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
			req.TransactionID = disc.TransactionID
			srv.Handle(in(req, from, to))
			ack, err := dhcpv4.FromBytes(out.next(t).Payload)
			if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("ack: %v %v", err, ack)
			}
			if len(ack.Options.Get(dhcpv4.GenericOptionCode(90))) != auth.NonceDataLen {
				t.Fatalf("the SELECTING ACK to a client that sent 145 carries no FORCERENEW key: %v", ack.Summary())
			}
			ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
			if _, ok := maps.Granted(ip); !ok {
				t.Fatalf("the ACKed lease %s was not published", ip)
			}

			// The same renewal to both paths.
			renew, _ := dhcpv4.New(mods(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip.AsSlice()))...)
			payload := renew.ToBytes()
			src, sport := ip, uint16(68)
			if tc.relayed {
				src, sport = relay, 67
			}
			frame := append(append(append([]byte{}, serverMAC...), tc.mac...), 8, 0)
			frame = append(frame, pktio.BuildIPv4UDP(src, sid, sport, 67, payload)...)
			opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, 4096),
				Context: bpf.XdpXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: 1}}
			verdict, err := objs.XdpDhcp.Run(opts)
			if err != nil || verdict != 3 {
				t.Fatalf("XDP: verdict %d, %v", verdict, err)
			}
			fastL34 := opts.DataOut[14 : 14+28]
			fast := opts.DataOut[14+28:]

			srv.Handle(slowpath.Incoming{Data: payload, Src: netip.AddrPortFrom(src, sport), Dst: sid, IfIndex: 1})
			o := out.next(t)
			slow := o.Payload

			// The IP and UDP headers, as pktio sends the slow path's reply
			// (its AF_PACKET path builds them so, and its UDP socket is set
			// to the same DF and TTL: TestReplyIPHeaderOnTheWire). Compared
			// field by field but for the ID, which varies per datagram on
			// both paths, and the checksums, which cover the ID and the
			// time options.
			slowL34 := pktio.BuildIPv4UDP(sid, o.Dst.Addr(), 67, o.Dst.Port(), slow)
			for _, f := range []struct {
				name   string
				lo, hi int
			}{{"version/IHL, TOS, total length", 0, 4}, {"flags/fragment offset, TTL, protocol", 6, 10},
				{"addresses", 12, 20}, {"UDP ports and length", 20, 26}} {
				if !bytes.Equal(fastL34[f.lo:f.hi], slowL34[f.lo:f.hi]) {
					t.Errorf("%s differ: fast % x, slow % x", f.name, fastL34[f.lo:f.hi], slowL34[f.lo:f.hi])
				}
			}

			if !bytes.Equal(fast[:236], slow[:236]) {
				t.Errorf("BOOTP headers differ:\nfast % x\nslow % x", fast[:236], slow[:236])
			}
			fo, so := options(t, fast), options(t, slow)
			if !slices.EqualFunc(fo, so, func(a, b opt) bool {
				return a.code == b.code && (a.code == 51 || a.code == 58 || a.code == 59 || bytes.Equal(a.val, b.val))
			}) {
				t.Errorf("options differ:\nfast %v\nslow %v", fo, so)
			}
			t.Logf("both paths: options %v", codes(fo))
		})
	}
}

type opt struct {
	code uint8
	val  []byte
}

func options(t *testing.T, d []byte) []opt {
	t.Helper()
	if len(d) < 240 || binary.BigEndian.Uint32(d[236:]) != 0x63825363 {
		t.Fatalf("not a DHCP message: % x", d)
	}
	var os []opt
	for i := 240; i < len(d); {
		switch c := d[i]; c {
		case 0:
			i++
		case 255:
			return append(os, opt{code: 255})
		default:
			os = append(os, opt{c, d[i+2 : i+2+int(d[i+1])]})
			i += 2 + int(d[i+1])
		}
	}
	t.Fatal("no END")
	return nil
}

func codes(os []opt) []uint8 {
	var c []uint8
	for _, o := range os {
		c = append(c, o.code)
	}
	return c
}
