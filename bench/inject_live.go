package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/bpf"
)

// errNoLiveFrames is why the injector cannot send in live frames: the
// kernel refuses BPF_PROG_TEST_RUN's live-frame mode
// (BPF_F_TEST_XDP_LIVE_FRAMES). Kernels before 5.18 lack the mode
// (EINVAL); some builds refuse it to root too (EPERM, with no capability
// check failing), while ordinary test runs and XDP attachment still work,
// so the injector sends by test runs there (InjectTestRuns).
var errNoLiveFrames = errors.New("the kernel refuses BPF_PROG_TEST_RUN in live-frame mode")

// liveFrames is nil when the kernel runs XDP programs in live-frame mode,
// else an error (errNoLiveFrames, or a failure to load the probe) that
// fits on one line. It runs a program that drops its frame once in
// live-frame mode: it sends nothing, and fails as the injector's first
// call would (a load and a run: cheap enough to ask each time).
func liveFrames() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "live_probe", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()}})
	if err != nil {
		return fmt.Errorf("loading the live-frame probe: %w", err)
	}
	defer prog.Close()
	_, err = prog.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES})
	if err == nil {
		return nil
	}
	// The errno alone ("operation not permitted"): ebpf's wrapping adds
	// nothing here.
	var errno unix.Errno
	if errors.As(err, &errno) {
		err = errno
	}
	return fmt.Errorf("%w (%w)", errNoLiveFrames, err)
}

// testRunBatch is how many frames sendByTestRuns gathers per sendmmsg.
const testRunBatch = 64

// XDP verdicts, as xdhcp_inject returns them.
const (
	xdpDrop = uint32(bpf.XdpXdpActionXDP_DROP)
	xdpTX   = uint32(bpf.XdpXdpActionXDP_TX)
)

// sendByTestRuns is send for InjectTestRuns: it runs xdhcp_inject as an
// ordinary test run per renewal until the program holds back (its pace)
// or a batch is full, sends the frames the runs returned, and when the
// program held back, waits for the next burst (gap 0: the program holds
// back only once the phase is over).
func (in *Injector) sendByTestRuns(ctx context.Context, end time.Time, gap time.Duration) error {
	fd, err := packetSender(in.ifindex)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	bufs := make([][]byte, testRunBatch)
	for i := range bufs {
		// Room beyond the largest frame: the kernel refuses a test run
		// whose output does not fit.
		bufs[i] = make([]byte, 2*injectFrameMax)
	}
	frames := make([][]byte, 0, testRunBatch)
	opts := ebpf.RunOptions{Data: in.first}
	// Between bursts the runs spin, as the live-frame sender's do, unless
	// the gap is long enough for a sleep (which takes a millisecond or so
	// here, however short asked) to be caught up on: the program allows a
	// late burst half a gap after the last one.
	var pause time.Duration
	if gap >= 2*time.Millisecond {
		pause = gap / 4
	}
	for {
		frames = frames[:0]
		held := false
		for len(frames) < testRunBatch && !held {
			opts.DataOut = bufs[len(frames)]
			verdict, err := in.objs.XdhcpInject.Run(&opts)
			if err != nil {
				return fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
			}
			switch verdict {
			case xdpTX:
				frames = append(frames, opts.DataOut)
			case xdpDrop:
				held = true
			default:
				return fmt.Errorf("the sender's program returned verdict %d: its maps are not set up", verdict)
			}
		}
		if err := sendAll(ctx, fd, frames); err != nil {
			return err
		}
		if !held {
			continue
		}
		if ctx.Err() != nil || !time.Now().Before(end) {
			return ctx.Err()
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// sendAll sends frames on fd. A full veth ring (ENOBUFS) sent nothing
// of the frame it refused: it is sent again after a moment, as a NIC's
// queue would hold it, rather than counted as offered and lost.
func sendAll(ctx context.Context, fd int, frames [][]byte) error {
	for len(frames) > 0 {
		n, err := loadgen.SendFrames(fd, frames)
		frames = frames[n:]
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(10 * time.Microsecond)
		default:
			return fmt.Errorf("sending renewals through the packet socket: %w", err)
		}
	}
	return nil
}

// packetSender opens a packet socket that sends whole frames out of
// interface ifindex (in the calling thread's namespace) and receives
// nothing (protocol 0), past the qdisc.
func packetSender(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket for the injector: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket for the injector: bind to interface %d: %w", ifindex, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket for the injector: qdisc bypass: %w", err)
	}
	// Best effort: room for a few batches in flight.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	return fd, nil
}
