// Package linkwatch follows network interfaces by name through netlink:
// their index, hardware address, state and IPv4 addresses, as the kernel
// changes them. An interface an operator deletes and re-creates (a VLAN
// sub-interface rebuilt, a driver reset) comes back with a new index; one
// renamed away is gone from its name; addresses come and go. The daemon
// re-attaches XDP and re-reads addresses from what Watch delivers,
// without a restart.
package linkwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"time"

	"github.com/vishvananda/netlink"
)

// Link is one interface as the kernel has it.
type Link struct {
	Name   string
	Index  int
	HWAddr net.HardwareAddr
	// Up is the administrative state (IFF_UP).
	Up bool
	// Addrs are its IPv4 addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// Options tune Watch.
type Options struct {
	// Settle is how long Watch waits after a change for the ones that
	// come with it (a link re-created brings a burst of messages), so
	// that fn sees the result once. Default 20 ms.
	Settle time.Duration
	// Resync re-reads the interfaces this often even without a message:
	// netlink drops messages when its socket buffer overflows, and a
	// lost message must not leave a stale view forever. Default 30 s.
	Resync time.Duration
	Logger *slog.Logger
}

// Read returns the named interfaces that exist now, by name.
func Read(names []string) (map[string]Link, error) {
	out := make(map[string]Link, len(names))
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				continue
			}
			return nil, fmt.Errorf("reading interface %s: %w", name, err)
		}
		a := l.Attrs()
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("reading the addresses of %s: %w", name, err)
		}
		lk := Link{Name: name, Index: a.Index, HWAddr: a.HardwareAddr, Up: a.Flags&net.FlagUp != 0}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP.To4())
			if !ok {
				continue
			}
			ones, _ := ad.Mask.Size()
			lk.Addrs = append(lk.Addrs, netip.PrefixFrom(ip, ones))
		}
		out[name] = lk
	}
	return out, nil
}

// Watch calls fn with the interfaces named by names() that exist (Read),
// first at once and then after every change the kernel reports, until ctx
// ends; it returns nil then. names is asked again at every read, so the
// set followed may change. fn runs on Watch's goroutine, one call at a
// time, and is called only when the view changed.
func Watch(ctx context.Context, names func() []string, o Options, fn func(map[string]Link)) error {
	if o.Settle <= 0 {
		o.Settle = 20 * time.Millisecond
	}
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var last map[string]Link
	var lastNames []string
	first := true
	refresh := func() {
		ns := names()
		cur, err := Read(ns)
		if err != nil {
			log.Warn("reading the served interfaces", "err", err)
			return
		}
		if !first && reflect.DeepEqual(cur, last) && reflect.DeepEqual(ns, lastNames) {
			return
		}
		first = false
		last, lastNames = cur, ns
		fn(cur)
	}
	resync := time.NewTicker(o.Resync)
	defer resync.Stop()
	for ctx.Err() == nil {
		// One subscription per round: netlink closes its channels when
		// the socket fails (a buffer overrun), and the next round starts
		// afresh with a read.
		done := make(chan struct{})
		links := make(chan netlink.LinkUpdate, 64)
		addrs := make(chan netlink.AddrUpdate, 64)
		lost := func(err error) {
			select {
			case <-done: // the socket closed because this round ended
			default:
				log.Warn("netlink: interface messages lost; re-reading", "err", err)
			}
		}
		if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: lost}); err != nil {
			close(done)
			return fmt.Errorf("subscribing to link changes: %w", err)
		}
		if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: lost}); err != nil {
			close(done)
			return fmt.Errorf("subscribing to address changes: %w", err)
		}
		refresh()
		watch(ctx, links, addrs, resync.C, o.Settle, refresh)
		close(done)
		// Drain until netlink's goroutines close the channels, so none
		// is left blocked on a send.
		for range links {
		}
		for range addrs {
		}
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// watch reads one subscription's messages until either channel closes or
// ctx ends, calling refresh once the messages settle and at each resync.
func watch(ctx context.Context, links <-chan netlink.LinkUpdate, addrs <-chan netlink.AddrUpdate, resync <-chan time.Time, settle time.Duration, refresh func()) {
	timer := time.NewTimer(settle)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-links:
			if !ok {
				return
			}
			timer.Reset(settle)
		case _, ok := <-addrs:
			if !ok {
				return
			}
			timer.Reset(settle)
		case <-timer.C:
			refresh()
		case <-resync:
			refresh()
		}
	}
}
