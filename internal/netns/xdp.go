package netns

import (
	"fmt"
	"io"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// AttachXDPPass puts an XDP program that passes everything on ifname in
// n, in driver mode. A veth only delivers frames its peer sends with
// XDP_TX when it has an XDP program itself. Close detaches it.
func AttachXDPPass(n *NS, ifname string) (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("loading XDP_PASS program: %w", err)
	}
	var l link.Link
	err = n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	prog.Close() // the link holds it
	if err != nil {
		return nil, fmt.Errorf("XDP_PASS on %s in %s: %w", ifname, n.Name, err)
	}
	return l, nil
}
