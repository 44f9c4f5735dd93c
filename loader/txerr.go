package loader

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdhcp/xdhcp/bpf"
)

// TxErrors counts the replies the XDP program answered with XDP_TX that
// the kernel then failed to transmit on the watched interfaces (see
// bpf/txerr.c for where drivers report it). The program counts a reply
// when it returns XDP_TX; only the kernel knows whether it left, so a
// reply counted answered may be among these. The counting programs live
// with the daemon, not in the pins: drops while it is down go uncounted.
type TxErrors struct {
	objs  bpf.TxerrObjects
	links []link.Link
	netns uint32
	mu    sync.Mutex // keys: Follow writes them as interfaces come back
	keys  map[string]bpf.TxerrTxerrKey
}

// WatchTxErrors starts counting XDP_TX failures of this program on
// ifnames, in this process's network namespace. A name with no interface
// now is left for Follow.
func (p *Program) WatchTxErrors(ifnames []string) (*TxErrors, error) {
	info, err := p.Objs.XdpDhcp.Info()
	if err != nil {
		return nil, fmt.Errorf("counting XDP_TX errors: program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return nil, errors.New("counting XDP_TX errors: the kernel reports no program id")
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("counting XDP_TX errors: network namespace: %w", err)
	}
	t := &TxErrors{keys: map[string]bpf.TxerrTxerrKey{}, netns: uint32(st.Ino)}
	if err := bpf.LoadTxerrObjects(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("counting XDP_TX errors: loading the tracing programs: %w", err)
	}
	ok = false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := t.objs.XdhcpTxerrProg.Put(uint32(0), uint32(id)); err != nil {
		return nil, fmt.Errorf("counting XDP_TX errors: %w", err)
	}
	for _, name := range ifnames {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			continue // missing: Follow counts it once it appears
		}
		if err := t.Follow(name, ifc.Index); err != nil {
			return nil, err
		}
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{{"xdp_exception", t.objs.TxerrException}, {"xdp_bulk_tx", t.objs.TxerrBulk}} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return nil, fmt.Errorf("counting XDP_TX errors: attaching to tracepoint %s: %w", tp.name, err)
		}
		t.links = append(t.links, l)
	}
	ok = true
	return t, nil
}

// Follow counts the failures on interface name at ifindex from now on (it
// appeared, or came back with a new index). A count kept under an older
// index of the name goes with it: the interface it counted is gone.
func (t *TxErrors) Follow(name string, ifindex int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := bpf.TxerrTxerrKey{Netns: t.netns, Ifindex: uint32(ifindex)}
	if old, ok := t.keys[name]; ok && old != k {
		_ = t.objs.XdhcpTxerr.Delete(&old)
	}
	if err := t.objs.XdhcpTxerr.Update(&k, uint64(0), ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("counting XDP_TX errors on %s: %w", name, err)
	}
	t.keys[name] = k
	return nil
}

// Counts returns the replies dropped so far, by interface name.
func (t *TxErrors) Counts() (map[string]uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(t.keys))
	for name, k := range t.keys {
		var n uint64
		if err := t.objs.XdhcpTxerr.Lookup(&k, &n); err != nil {
			return nil, fmt.Errorf("reading XDP_TX errors on %s: %w", name, err)
		}
		out[name] = n
	}
	return out, nil
}

// Close stops counting.
func (t *TxErrors) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
