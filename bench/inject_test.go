package bench

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath/pktio"
)

var (
	injServer = netip.MustParseAddr("10.77.0.1")
	injRelay  = netip.MustParseAddr("10.78.0.1")
	injMAC    = net.HardwareAddr{2, 0, 0, 0, 0, 9}
)

// injTestClients are two relayed clients with their renewals.
func injTestClients() []injected {
	var cs []injected
	for i, ip := range []string{"10.78.1.10", "10.78.1.11"} {
		r := Renewal{CIAddr: netip.MustParseAddr(ip), MAC: loadgen.Population{}.MAC(i), Server: injServer, GIAddr: injRelay,
			XID: injectMark<<24 | uint32(i)}
		cs = append(cs, injected{frame: r.Frame(injMAC, injMAC), ip: r.CIAddr, xid: r.XID, server: injServer})
	}
	return cs
}

func loadInjectForTest(t *testing.T, reflected bool) *bpf.InjectObjects {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	objs, err := loadInject(injTestClients(), time.Hour, reflected)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

// TestLiveFramesProbe: where the kernel refuses live frames, the probe
// says why on one line, an injector asked for live frames fails before it
// touches the rig with that line, and one asked for nothing sends by test
// runs.
func TestLiveFramesProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to load BPF programs")
	}
	if _, err := injection("sideways"); err == nil {
		t.Error("injection accepted an unknown way of sending")
	}
	if how, err := injection(InjectTestRuns); how != InjectTestRuns || err != nil {
		t.Errorf("asked for test runs: %q, %v", how, err)
	}
	err := liveFrames()
	how, herr := injection("")
	if herr != nil {
		t.Fatalf("injection(\"\"): %v", herr)
	}
	if err == nil {
		if how != InjectLive {
			t.Errorf("the kernel runs live frames, yet the injector would send by %q", how)
		}
		return
	}
	t.Log(err)
	if how != InjectTestRuns {
		t.Errorf("live frames refused, yet the injector would send by %q", how)
	}
	if !errors.Is(err, errNoLiveFrames) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("probe: %q; want errNoLiveFrames on one line", err)
	}
	var r *Rig // startInjector must return before using it
	if _, serr := r.startInjector(1, injTestClients(), time.Hour, false, InjectLive); !errors.Is(serr, errNoLiveFrames) || serr.Error() != err.Error() {
		t.Fatalf("startInjector: %v; want the probe's error", serr)
	}
}

func monoNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestInjectSendsEachClientInTurn runs xdhcp_inject as an ordinary
// BPF_PROG_TEST_RUN: each run's frame becomes the next client's renewal,
// and it sends nothing before a renewal is due or after the phase ends.
func TestInjectSendsEachClientInTurn(t *testing.T) {
	objs := loadInjectForTest(t, false)
	cs := injTestClients()
	now := monoNow(t)
	run := func() (uint32, []byte) {
		t.Helper()
		opts := ebpf.RunOptions{Data: make([]byte, 64), DataOut: make([]byte, 1024)}
		ret, err := objs.XdhcpInject.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		return ret, opts.DataOut
	}
	put := func(st bpf.InjectInjectState) {
		t.Helper()
		if err := objs.InjectProgress.Put(uint32(0), st); err != nil {
			t.Fatal(err)
		}
	}
	put(bpf.InjectInjectState{StopNs: now + uint64(time.Hour)})
	for i := range 3 {
		ret, out := run()
		if want := cs[i%2].frame; ret != xdpTX || !bytes.Equal(out, want) {
			t.Fatalf("run %d: verdict %d, frame %x; want XDP_TX and %x", i, ret, out, want)
		}
	}
	var st bpf.InjectInjectState
	if err := objs.InjectProgress.Lookup(uint32(0), &st); err != nil || st.Sent != 3 {
		t.Fatalf("sent %d (%v), want 3", st.Sent, err)
	}
	for _, c := range []struct {
		name string
		st   bpf.InjectInjectState
	}{
		{"phase over", bpf.InjectInjectState{StopNs: now}},
		{"not due yet", bpf.InjectInjectState{StopNs: now + uint64(time.Hour), DueNs: now + uint64(time.Hour), GapNs: 1000, Burst: 1}},
	} {
		put(c.st)
		if ret, _ := run(); ret != xdpDrop {
			t.Errorf("%s: verdict %d, want XDP_DROP", c.name, ret)
		}
	}
	// Due now, in bursts of two: two runs send, the third waits. No
	// burst has been sent yet (LastNs 0), which must not read as a time:
	// CLOCK_MONOTONIC starts at boot, and this once failed on a machine
	// up for less than half the gap. The gap is four times the time since
	// boot, so that such a reading would fail here on any machine.
	put(bpf.InjectInjectState{StopNs: now + uint64(time.Hour), DueNs: now, GapNs: 4 * now, Burst: 2})
	for i, want := range []uint32{xdpTX, xdpTX, xdpDrop} {
		if ret, _ := run(); ret != want {
			t.Errorf("burst run %d: verdict %d, want %d", i, ret, want)
		}
	}
	// Due, but a burst began less than half a gap ago: catching up runs
	// at twice the rate at most, so this run waits...
	put(bpf.InjectInjectState{StopNs: now + uint64(time.Hour), DueNs: now, LastNs: monoNow(t), GapNs: uint64(time.Hour), Burst: 2})
	if ret, _ := run(); ret != xdpDrop {
		t.Errorf("half a gap after the last burst: verdict %d, want XDP_DROP", ret)
	}
	// ...and one begun more than half a gap ago does not hold it back.
	put(bpf.InjectInjectState{StopNs: now + uint64(time.Hour), DueNs: now, LastNs: monoNow(t) - uint64(time.Second), GapNs: uint64(time.Second), Burst: 2})
	if ret, _ := run(); ret != xdpTX {
		t.Errorf("a gap after the last burst: verdict %d, want XDP_TX", ret)
	}
}

// reply renders a server's answer to injected client c, changed by edit.
func reply(c injected, vlans []uint16, edit func(h *dhcpwire.Header, opts *[]byte)) []byte {
	h := dhcpwire.Header{Op: dhcpwire.BootReply, HType: 1, HLen: 6, XID: c.xid, YIAddr: c.ip, GIAddr: injRelay}
	// Offsets the cases edit: 2 message type, 5-8 server id, 11-14 lease time.
	opts := []byte{dhcpwire.OptMessageType, 1, dhcpwire.Ack}
	opts = dhcpwire.AppendAddrOption(opts, dhcpwire.OptServerID, c.server)
	opts = dhcpwire.AppendUint32Option(opts, dhcpwire.OptLeaseTime, 3600)
	if edit != nil {
		edit(&h, &opts)
	}
	p := append(dhcpwire.AppendHeader(nil, h), opts...)
	p = append(p, dhcpwire.OptEnd)
	b := loadgen.AppendEthernet(nil, injMAC, injMAC, vlans, 0x0800)
	return pktio.AppendIPv4UDP(b, c.server, injRelay, 67, 67, p)
}

// TestTallyChecksAnswers feeds xdhcp_tally answers good and bad: it drops
// and counts what answers an injected renewal, and passes the rest.
func TestTallyChecksAnswers(t *testing.T) {
	objs := loadInjectForTest(t, false)
	c := injTestClients()[1]
	other := c
	other.ip = netip.MustParseAddr("10.78.9.9")
	const pass, drop = uint32(bpf.XdpXdpActionXDP_PASS), xdpDrop
	for _, tc := range []struct {
		name    string
		frame   []byte
		verdict uint32
		counted bpf.InjectTally // TALLY_MAX: nothing counted
	}{
		{"ACK", reply(c, nil, nil), drop, bpf.InjectTallyTALLY_ACK},
		{"ACK, two VLAN tags", reply(c, []uint16{10, 20}, nil), drop, bpf.InjectTallyTALLY_ACK},
		{"ACK, options padded", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { *o = append([]byte{0, 0, 0}, *o...) }), drop, bpf.InjectTallyTALLY_ACK},
		{"ACK, shortened grant", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { (*o)[13], (*o)[14] = 0x07, 0xd0 }), drop, bpf.InjectTallyTALLY_ACK},
		{"wrong xid", reply(c, nil, func(h *dhcpwire.Header, _ *[]byte) { h.XID++ }), drop, bpf.InjectTallyTALLY_WRONG},
		{"wrong server id", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { (*o)[8]++ }), drop, bpf.InjectTallyTALLY_WRONG},
		{"lease time too long", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { (*o)[12] = 0x10 }), drop, bpf.InjectTallyTALLY_WRONG},
		{"lease time too short", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { (*o)[13], (*o)[14] = 0, 60 }), drop, bpf.InjectTallyTALLY_WRONG},
		{"no lease time", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { *o = (*o)[:9] }), drop, bpf.InjectTallyTALLY_WRONG},
		{"OFFER", reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { (*o)[2] = dhcpwire.Offer }), drop, bpf.InjectTallyTALLY_WRONG},
		{"NAK to us", reply(c, nil, func(h *dhcpwire.Header, o *[]byte) { h.YIAddr = netip.IPv4Unspecified(); (*o)[2] = dhcpwire.Nak }), drop, bpf.InjectTallyTALLY_NAK},
		{"NAK to someone else", reply(c, nil, func(h *dhcpwire.Header, o *[]byte) {
			h.XID, h.YIAddr, (*o)[2] = 7, netip.IPv4Unspecified(), dhcpwire.Nak
		}), pass, bpf.InjectTallyTALLY_OTHER},
		{"ACK for an address not ours", reply(other, nil, nil), pass, bpf.InjectTallyTALLY_OTHER},
		{"truncated", reply(c, nil, nil)[:14+28+200], pass, bpf.InjectTallyTALLY_MAX},
		{"request, not reply", reply(c, nil, func(h *dhcpwire.Header, _ *[]byte) { h.Op = dhcpwire.BootRequest }), pass, bpf.InjectTallyTALLY_MAX},
		{"ARP", append(loadgen.AppendEthernet(nil, injMAC, injMAC, nil, 0x0806), make([]byte, 28)...), pass, bpf.InjectTallyTALLY_MAX},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tallies(t, objs)
			ret, err := objs.XdhcpTally.Run(&ebpf.RunOptions{Data: tc.frame})
			if err != nil {
				t.Fatal(err)
			}
			if ret != tc.verdict {
				t.Errorf("verdict %d, want %d", ret, tc.verdict)
			}
			after := tallies(t, objs)
			for k := range bpf.InjectTallyTALLY_MAX {
				want := before[k]
				if k == tc.counted {
					want++
				}
				if after[k] != want {
					t.Errorf("tally %d: %d, want %d", k, after[k], want)
				}
			}
		})
	}
}

// TestTallyReflected: in the selftest the reflector echoes the request,
// options and all, and the xid is what identifies the answer.
func TestTallyReflected(t *testing.T) {
	objs := loadInjectForTest(t, true)
	c := injTestClients()[0]
	echo := reply(c, nil, func(_ *dhcpwire.Header, o *[]byte) { *o = []byte{dhcpwire.OptMessageType, 1, dhcpwire.Request} })
	before := tallies(t, objs)
	if ret, err := objs.XdhcpTally.Run(&ebpf.RunOptions{Data: echo}); err != nil || ret != xdpDrop {
		t.Fatalf("verdict %d (%v), want XDP_DROP", ret, err)
	}
	if after := tallies(t, objs); after[bpf.InjectTallyTALLY_ACK] != before[bpf.InjectTallyTALLY_ACK]+1 {
		t.Fatalf("tally %v after %v: the echo was not counted as an answer", after, before)
	}
}

func tallies(t *testing.T, objs *bpf.InjectObjects) [bpf.InjectTallyTALLY_MAX]int64 {
	t.Helper()
	in := Injector{objs: *objs}
	v, err := in.tallies()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
