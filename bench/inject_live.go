package bench

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// errNoLiveFrames is why the xdp sender cannot run: the kernel refuses
// BPF_PROG_TEST_RUN's live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES), which
// the injector sends with. Kernels before 5.18 lack the mode (EINVAL);
// some builds refuse it to root too (EPERM, with no capability check
// failing), while ordinary test runs and XDP attachment still work.
var errNoLiveFrames = errors.New("xdp sender unavailable: the kernel refuses BPF_PROG_TEST_RUN in live-frame mode")

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
	return fmt.Errorf("%w (%w); use the sockets sender", errNoLiveFrames, err)
}
