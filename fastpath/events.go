package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdhcp/xdhcp/bpf"
)

// maxBatch bounds how many renewals are handed over at once.
const maxBatch = 4096

// ReadEvents consumes the ring buffer of answered renewals until ctx ends,
// handing them to fold in batches: a batch ends when the buffer is drained
// or maxBatch is reached, so that under load one bbolt transaction carries
// thousands of renewals and when idle a renewal is folded at once.
func ReadEvents(ctx context.Context, events *ebpf.Map, fold func([]Renewal)) error {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return fmt.Errorf("opening the renewal ring buffer: %w", err)
	}
	defer rd.Close()
	var batch []Renewal
	flush := func() {
		if len(batch) > 0 {
			fold(batch)
			batch = nil
		}
	}
	var rec ringbuf.Record
	for ctx.Err() == nil {
		rd.SetDeadline(time.Now().Add(100 * time.Millisecond)) // the program wakes us only for batches
		err := rd.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			flush()
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			flush()
			return nil
		case err != nil:
			flush()
			return fmt.Errorf("reading the renewal ring buffer: %w", err)
		}
		if r, ok := decodeEvent(rec.RawSample); ok {
			batch = append(batch, r)
		}
		if len(batch) >= maxBatch || rd.AvailableBytes() == 0 {
			flush()
		}
	}
	flush()
	return nil
}

// decodeEvent reads one struct xdhcp_event through the type bpf2go
// generated for it. The record holds the program's own memory image
// (host order and alignment), so it is copied over that type as it is,
// which also costs nothing per field at millions of events a second.
func decodeEvent(b []byte) (Renewal, bool) {
	var ev bpf.XdpXdhcpEvent
	if copy(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev)), b) < int(unsafe.Sizeof(ev)) {
		return Renewal{}, false
	}
	hlen := min(int(ev.Hlen), len(ev.Chaddr))
	return Renewal{
		At:      time.Unix(int64(ev.At), 0),
		Expiry:  time.Unix(int64(ev.Expiry), 0),
		IP:      wordAddr(ev.Ip),
		XID:     netWord(ev.Xid),
		IfIndex: ev.Ifindex,
		GIAddr:  giaddr(ev.Giaddr),
		VLANs:   ev.Vlan,
		HWAddr:  append([]byte(nil), ev.Chaddr[:hlen]...),
	}, true
}

func giaddr(w uint32) netip.Addr {
	if w == 0 {
		return netip.Addr{}
	}
	return wordAddr(w)
}
