package bench

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf/link"

	"github.com/xdhcp/xdhcp/bench/loadgen"
	"github.com/xdhcp/xdhcp/bpf"
)

// Selftest measures the generator's own ceiling in mode: renewals answered
// per second when the server side is the XDP reflector in native mode,
// which echoes each request back at once. Steps are as in Scenario.
func (r *Rig) Selftest(ctx context.Context, o ScenarioOptions) ScenarioResult {
	res := ScenarioResult{Server: "reflector (XDP native)", Version: "bpf/reflector.c", Scenario: "renew", Mode: o.Mode, Clients: o.Clients, MaxLoss: o.MaxLoss,
		Senders: max(1, o.Senders), Sender: cmp.Or(o.Sender, SenderSockets)}
	fail := func(err error) ScenarioResult { res.Err = err.Error(); return res }
	var objs bpf.ReflectorObjects
	if err := bpf.LoadReflectorObjects(&objs, nil); err != nil {
		return fail(fmt.Errorf("loading the reflector: %w", err))
	}
	defer objs.Close()
	var l link.Link
	err := r.Srv.Do(func() error {
		ifi, err := net.InterfaceByName(ServerIf)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: objs.XdhcpReflect, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("attaching the reflector: %w", err))
	}
	defer l.Close()
	tr, err := r.transport(o.Mode)
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	cfg := genConfig(o, 0)
	cfg.Reflected = true
	g, err := loadgen.New(cfg, tr)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	// Clients hold addresses in the pool their mode would get them from.
	base := netip.MustParseAddr(poolStart).As4()
	if res.Mode == "l2" {
		base = netip.MustParseAddr("10.76.1.0").As4()
	}
	g.Assume(o.Clients, func(i int) netip.Addr {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3]) + uint32(i)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	})
	if res.Mode == "l2" {
		// Learn the reflector side's MAC: renewals are unicast to it.
		lt, ok := tr.(*loadgen.L2)
		if !ok {
			return fail(fmt.Errorf("l2 mode without the layer 2 transport"))
		}
		if err := r.Srv.Do(func() error {
			ifi, err := net.InterfaceByName(ServerIf)
			if err != nil {
				return fmt.Errorf("reflector interface %s: %w", ServerIf, err)
			}
			lt.SetServerMAC(ifi.HardwareAddr)
			return nil
		}); err != nil {
			return fail(err)
		}
	}
	if res.Sender == SenderXDP {
		return r.injected(ctx, g, cfg, o, res, true)
	}
	return r.phases(ctx, g, o, res, res.Server)
}
