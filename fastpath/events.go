package fastpath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// eventSize is sizeof(struct xdhcp_event).
const eventSize = 8 + 8 + 4*4 + 2*2 + 1 + 3 + 16

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

func decodeEvent(b []byte) (Renewal, bool) {
	if len(b) < eventSize {
		return Renewal{}, false
	}
	ne := binary.NativeEndian
	hlen := min(int(b[36]), 16)
	return Renewal{
		At:      time.Unix(int64(ne.Uint64(b[0:])), 0),
		Expiry:  time.Unix(int64(ne.Uint64(b[8:])), 0),
		IP:      wordAddr(ne.Uint32(b[16:])),
		XID:     binary.BigEndian.Uint32(b[20:]),
		IfIndex: ne.Uint32(b[24:]),
		GIAddr:  giaddr(ne.Uint32(b[28:])),
		VLANs:   [2]uint16{ne.Uint16(b[32:]), ne.Uint16(b[34:])},
		HWAddr:  append([]byte(nil), b[40:40+hlen]...),
	}, true
}

func giaddr(w uint32) netip.Addr {
	if w == 0 {
		return netip.Addr{}
	}
	return wordAddr(w)
}
