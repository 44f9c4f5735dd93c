package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/internal/netns"
)

// Senders of renewals: the generator's sockets (sendmmsg or a raw socket)
// or the kernel-side injector (bpf/inject.c).
const (
	SenderSockets = "sockets"
	SenderXDP     = "xdp"
)

// How the kernel-side injector sends (ScenarioResult.Injection). It
// prefers live frames; where the kernel refuses them (liveFrames), or on
// request, it sends by test runs.
const (
	// InjectLive runs xdhcp_inject in BPF_PROG_TEST_RUN's live-frame mode:
	// the kernel sends each frame with XDP_TX, millions of runs a call.
	InjectLive = "live-frames"
	// InjectTestRuns runs the same program as ordinary test runs, one
	// system call per renewal, each returning the frame it would have
	// sent, and sends those frames out of the client veth through a
	// packet socket, one sendmmsg per batch. The program still chooses
	// and paces the renewals, so what is offered is the same; the
	// ceiling is lower (the selftest measures it).
	InjectTestRuns = "test-runs"
)

// injectMark is the first byte of every injected renewal's xid: the
// socket generator's xids start with a sequence number, so an answer
// to one of its late requests is never counted here.
const injectMark = 0xfe

// injectFrameMax is FRAME_MAX in bpf/inject.c.
const injectFrameMax = 512

// Injector offers renewals from the kernel: xdhcp_inject runs in
// BPF_PROG_TEST_RUN's live-frame mode on the client veth and sends each
// bound client's prebuilt renewal with XDP_TX, and xdhcp_tally checks and
// counts every answer that comes back. No socket, skb or copy from user
// space is spent per renewal, so the generator stays far above what any
// server here answers (see Selftest).
type Injector struct {
	rig     *Rig
	objs    bpf.InjectObjects
	tally   link.Link
	ifindex int
	first   []byte // the frame BPF_PROG_TEST_RUN starts each run from
	clients int
	groOff  bool // the server veth's GRO was off and is turned back off
	// how is InjectLive or InjectTestRuns.
	how string
	// scattered: the renewals go in the generator's random order
	// (loadgen.Config.Scattered, Gen.RenewalOrder).
	scattered bool
}

// injected is one client's renewal as the injector sends it.
type injected struct {
	frame  []byte
	ip     netip.Addr // the client's address: the answer's yiaddr
	xid    uint32
	server netip.Addr // the answer's server identifier
}

// loadInject loads bpf/inject.c's programs with one renewal per client,
// answers expected to carry a lease time in [leaseTime/2, leaseTime] (any
// when 0), or, reflected, to echo the xid only.
func loadInject(clients []injected, leaseTime time.Duration, reflected bool) (*bpf.InjectObjects, error) {
	if len(clients) == 0 {
		return nil, errors.New("no client holds a lease")
	}
	spec, err := bpf.LoadInject()
	if err != nil {
		return nil, err
	}
	spec.Maps["inject_frames"].MaxEntries = uint32(len(clients))
	spec.Maps["inject_expected"].MaxEntries = uint32(len(clients))
	var objs bpf.InjectObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	keys := make([]uint32, len(clients))
	frames := make([]bpf.InjectInjectFrame, len(clients))
	ips := make([]uint32, len(clients))
	expect := make([]bpf.InjectInjectExpect, len(clients))
	for k, c := range clients {
		if len(c.frame) > injectFrameMax {
			objs.Close()
			return nil, fmt.Errorf("a renewal of %d bytes, more than %d", len(c.frame), injectFrameMax)
		}
		keys[k], frames[k].Len = uint32(k), uint32(len(c.frame))
		copy(frames[k].Data[:], c.frame)
		ips[k] = addr4(c.ip)
		expect[k] = bpf.InjectInjectExpect{Xid: binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, c.xid)), ServerId: addr4(c.server)}
	}
	lt := uint32(leaseTime / time.Second)
	cfg := bpf.InjectInjectConfig{Clients: uint32(len(clients)), MinLease: lt / 2, MaxLease: lt, Mark: injectMark}
	if lt == 0 {
		cfg.MinLease, cfg.MaxLease = 1, ^uint32(0)
	}
	if reflected {
		cfg.Reflected = 1
	}
	if _, err := objs.InjectFrames.BatchUpdate(keys, frames, nil); err != nil {
		objs.Close()
		return nil, fmt.Errorf("frames: %w", err)
	}
	if _, err := objs.InjectExpected.BatchUpdate(ips, expect, nil); err != nil {
		objs.Close()
		return nil, fmt.Errorf("expected answers: %w", err)
	}
	if err := objs.InjectCfg.Put(uint32(0), cfg); err != nil {
		objs.Close()
		return nil, fmt.Errorf("settings: %w", err)
	}
	return &objs, nil
}

// newInjector prepares renewals for every client g holds a lease for and
// puts the tally on the client veth in place of the rig's XDP_PASS.
func (r *Rig) newInjector(g *loadgen.Gen, cfg loadgen.Config, reflected bool, how string) (*Injector, error) {
	ifindex, cliMAC, srvMAC, err := r.vethMACs()
	if err != nil {
		return nil, fmt.Errorf("injector: %w", err)
	}
	leases := g.RenewalOrder()
	clients := make([]injected, len(leases))
	for k, l := range leases {
		id := cfg.Pop.Identity(l.Index)
		rn := Renewal{CIAddr: l.IP, MAC: id.MAC, ClientID: id.ClientID, GIAddr: cfg.GIAddr, Server: cfg.Server,
			XID: injectMark<<24 | uint32(l.Index)}
		src := id.MAC
		if cfg.GIAddr.IsValid() {
			rn.Opt82, src = id.Opt82, cliMAC
		} else {
			rn.VLANs = id.VLANs
		}
		clients[k] = injected{frame: rn.Frame(src, srvMAC), ip: l.IP, xid: rn.XID, server: cfg.Server}
	}
	in, err := r.startInjector(ifindex, clients, cfg.LeaseTime, reflected, how)
	if in != nil {
		in.scattered = cfg.Scattered
	}
	return in, err
}

// vethMACs is the client veth's index and MAC address and the server
// veth's MAC address: an injected frame's source and destination.
func (r *Rig) vethMACs() (ifindex int, cliMAC, srvMAC net.HardwareAddr, err error) {
	if err := r.Cli.Do(func() error {
		ifi, err := net.InterfaceByName(ClientIf)
		if err == nil {
			ifindex, cliMAC = ifi.Index, ifi.HardwareAddr
		}
		return err
	}); err != nil {
		return 0, nil, nil, fmt.Errorf("client interface: %w", err)
	}
	if err := r.Srv.Do(func() error {
		ifi, err := net.InterfaceByName(ServerIf)
		if err == nil {
			srvMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		return 0, nil, nil, fmt.Errorf("server interface: %w", err)
	}
	return ifindex, cliMAC, srvMAC, nil
}

// startInjector loads clients' frames into the kernel sender and puts the
// tally on the client veth (ifindex) in place of the rig's XDP_PASS. how
// is InjectLive, InjectTestRuns, or "" for live frames where the kernel
// runs them and test runs elsewhere.
func (r *Rig) startInjector(ifindex int, clients []injected, leaseTime time.Duration, reflected bool, how string) (*Injector, error) {
	// Asked before anything on the rig changes: a kernel that refuses
	// live frames would fail the first send, and a rate search would log
	// every step of it.
	how, err := injection(how)
	if err != nil {
		return nil, err
	}
	in := &Injector{rig: r, ifindex: ifindex, how: how}
	objs, err := loadInject(clients, leaseTime, reflected)
	if err != nil {
		return nil, fmt.Errorf("injector: %w", err)
	}
	in.objs, in.clients, in.first = *objs, len(clients), clients[0].frame
	ok := false
	defer func() {
		if !ok {
			in.Close()
		}
	}()
	// Frames sent with XDP_TX reach a veth peer only when it has NAPI
	// running: an XDP program (xdhcpd native) or GRO (everyone else).
	gro, err := r.Srv.Exec(context.Background(), "ethtool", "-k", ServerIf)
	if err != nil {
		return nil, fmt.Errorf("injector: reading %s's offloads: %w", ServerIf, err)
	}
	in.groOff = strings.Contains(string(gro), "generic-receive-offload: off")
	if in.groOff {
		if _, err := r.Srv.Exec(context.Background(), "ethtool", "-K", ServerIf, "gro", "on"); err != nil {
			return nil, fmt.Errorf("injector: GRO on %s: %w", ServerIf, err)
		}
	}
	if err := r.swapClientXDP(func() error {
		var err error
		in.tally, err = link.AttachXDP(link.XDPOptions{Program: in.objs.XdhcpTally, Interface: in.ifindex, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		return nil, fmt.Errorf("injector: attaching the tally: %w", err)
	}
	ok = true
	return in, nil
}

// injection is how the injector sends when asked for how: InjectLive,
// InjectTestRuns, or "" for live frames where the kernel runs them and
// test runs elsewhere.
func injection(how string) (string, error) {
	switch how {
	case "":
		if liveFrames() != nil {
			return InjectTestRuns, nil
		}
		return InjectLive, nil
	case InjectLive:
		return how, liveFrames()
	case InjectTestRuns:
		return how, nil
	}
	return "", fmt.Errorf("injector: sending by %q: want %s or %s", how, InjectLive, InjectTestRuns)
}

// swapClientXDP replaces the rig's XDP_PASS on the client veth with what
// attach puts there (in the client namespace).
func (r *Rig) swapClientXDP(attach func() error) error {
	if r.pass != nil {
		r.pass.Close()
		r.pass = nil
	}
	return r.Cli.Do(attach)
}

// Close takes the tally off and puts the rig's XDP_PASS back.
func (in *Injector) Close() {
	if in.tally != nil {
		in.tally.Close()
		in.tally = nil
		if p, err := netns.AttachXDPPass(in.rig.Cli, ClientIf); err == nil {
			in.rig.pass = p
		}
	}
	if in.groOff {
		in.rig.Srv.Exec(context.Background(), "ethtool", "-K", ServerIf, "gro", "off")
	}
	in.objs.Close()
}

// tallies sums the per-CPU answer counts.
func (in *Injector) tallies() ([bpf.InjectTallyTALLY_MAX]int64, error) {
	var out [bpf.InjectTallyTALLY_MAX]int64
	var per []uint64
	for k := range bpf.InjectTallyTALLY_MAX {
		if err := in.objs.TallyCounts.Lookup(uint32(k), &per); err != nil {
			return out, fmt.Errorf("reading the tally: %w", err)
		}
		for _, v := range per {
			out[k] += int64(v)
		}
	}
	return out, nil
}

func (in *Injector) resetTallies() error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	zero := make([]uint64, ncpu)
	for k := range bpf.InjectTallyTALLY_MAX {
		if err := in.objs.TallyCounts.Put(uint32(k), zero); err != nil {
			return fmt.Errorf("resetting the tally: %w", err)
		}
	}
	return nil
}

// Run offers renewals at rate a second (0: as fast as the kernel sends
// them) for d, then waits for late answers and reports. One thread
// sends: the program paces itself (bpf/inject.c), so more threads would
// only spin. Latency is not measured: answers are counted in the kernel.
func (in *Injector) Run(ctx context.Context, mode string, rate int, d time.Duration, serverPID int) (loadgen.Result, error) {
	if err := in.resetTallies(); err != nil {
		return loadgen.Result{}, err
	}
	meter := loadgen.StartCPU(serverPID)
	start := time.Now()
	err := in.rig.Cli.Do(func() error { return in.send(ctx, rate, d) })
	elapsed := time.Since(start).Seconds()
	// Answers the slow path still holds in its queues.
	select {
	case <-ctx.Done():
	case <-time.After(500 * time.Millisecond):
	}
	t, terr := in.tallies()
	var st bpf.InjectInjectState
	if serr := in.objs.InjectProgress.Lookup(uint32(0), &st); serr != nil {
		terr = errors.Join(terr, fmt.Errorf("reading the sender's progress: %w", serr))
	}
	n := int64(st.Sent)
	r := loadgen.Result{Scenario: loadgen.Renew, Mode: mode, Clients: in.clients, TargetRate: rate, Seconds: min(elapsed, d.Seconds()), Scattered: in.scattered,
		PacketsSent: n, Started: n, Answered: t[bpf.InjectTallyTALLY_ACK], Wrong: t[bpf.InjectTallyTALLY_WRONG],
		NAKs: t[bpf.InjectTallyTALLY_NAK]}
	r.Dropped = max(0, n-r.Answered-r.Wrong-r.NAKs)
	r.Rate = float64(r.Answered) / r.Seconds
	if r.Answered+r.Dropped > 0 {
		r.Loss = float64(r.Dropped) / float64(r.Answered+r.Dropped)
	}
	meter.Fill(&r)
	return r, errors.Join(err, terr, ctx.Err())
}

// callTime is how long one live-frame call should run: each call costs a
// fixed ~20 ms on this kernel (measured here, whether it sends 100 frames
// or 4096; the thread sleeps meanwhile), so calls must be long; the
// program sends nothing after the phase's end.
const callTime = 500 * time.Millisecond

// send runs on a thread in the client namespace: it sets the phase's
// pace and end in the program's state and calls it until the end.
func (in *Injector) send(ctx context.Context, rate int, d time.Duration) error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	unpin, err := pinToOneCPU()
	if err != nil {
		return err
	}
	defer unpin()
	now := uint64(ts.Nano())
	st := bpf.InjectInjectState{DueNs: now, StopNs: now + uint64(d)}
	if rate > 0 {
		// A burst every 50 µs or so, of at most 32.
		st.Burst = uint32(min(32, max(1, rate/20000)))
		st.GapNs = uint64(time.Second) * uint64(st.Burst) / uint64(rate)
	}
	var old bpf.InjectInjectState
	if err := in.objs.InjectProgress.Lookup(uint32(0), &old); err == nil {
		st.Next = old.Next // clients take turns across phases too
	}
	if err := in.objs.InjectProgress.Put(uint32(0), st); err != nil {
		return fmt.Errorf("setting the sender's pace: %w", err)
	}
	end := time.Now().Add(d)
	if in.how == InjectTestRuns {
		return in.sendByTestRuns(ctx, end, time.Duration(st.GapNs))
	}
	opts := ebpf.RunOptions{Data: in.first, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 256,
		Context: bpf.XdpXdpMd{DataEnd: uint32(len(in.first)), IngressIfindex: uint32(in.ifindex)}}
	runs := uint32(1 << 20) // runs per call, adjusted to last about callTime
	for ctx.Err() == nil {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		opts.Repeat = runs
		if left < callTime {
			opts.Repeat = max(1024, uint32(float64(runs)*left.Seconds()/callTime.Seconds()))
		}
		t0 := time.Now()
		if _, err := in.objs.XdhcpInject.Run(&opts); err != nil {
			return fmt.Errorf("BPF_PROG_TEST_RUN in live-frame mode: %w", err)
		}
		if took := time.Since(t0); took > 0 && opts.Repeat == runs {
			runs = uint32(min(1<<28, max(1<<14, float64(runs)*callTime.Seconds()/took.Seconds())))
		}
	}
	return ctx.Err()
}

// pinToOneCPU keeps the calling goroutine's thread on the first CPU it may
// use, until the returned function undoes it. The kernel sender runs so:
// the frames it sends are processed in softirq on the sending CPU (veth
// schedules the peer's NAPI locally), and a sender the scheduler moves
// drags that work between CPUs (measured: 442k relayed renewals/s moving,
// 503k pinned, against XDP). The thread goes back to Go's pool afterwards,
// and whatever it starts inherits its CPUs, a server among them: if the
// pin cannot be undone, the thread stays locked and ends with its
// goroutine.
func pinToOneCPU() (unpin func(), err error) {
	runtime.LockOSThread()
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		return nil, fmt.Errorf("reading the sender's CPUs: %w", err)
	}
	unpin = func() {
		if unix.SchedSetaffinity(0, &cpus) == nil {
			runtime.UnlockOSThread()
		}
	}
	for c := range 1024 {
		if cpus.IsSet(c) {
			var one unix.CPUSet
			one.Set(c)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				unpin()
				return nil, fmt.Errorf("pinning the sender to CPU %d: %w", c, err)
			}
			break
		}
	}
	return unpin, nil
}

// addr4 is a in the byte order of the packet, as the programs compare it.
func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}
