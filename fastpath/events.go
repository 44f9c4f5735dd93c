package fastpath

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/bpf"
)

// maxBatch bounds how many renewals are handed over at once.
const maxBatch = 4096

// pollEvery is how often the event rings are looked at. The program never
// wakes the reader (that would cost more than the rest of the program);
// at this period a CPU's ring holds a hundred times the fastest rate seen
// on one CPU before it laps an unread event.
const pollEvery = 10 * time.Millisecond

// eventRings is the reader's view of the program's per-CPU event rings
// (xdhcp_evring, xdhcp_evheads), mapped read-only into this process.
type eventRings struct {
	ring, heads []byte
	slots       uint64   // per CPU
	tail        []uint64 // per CPU: events read so far
	lost        atomic.Uint64
}

const (
	eventSize = uint64(unsafe.Sizeof(bpf.XdpXdhcpEvent{}))
	headSize  = uint64(unsafe.Sizeof(bpf.XdpXdhcpEvhead{}))
)

// openEventRings maps the rings and starts reading at their current heads:
// what was written before is the map scan's to recover (reconciliation at
// start), so nothing is folded twice.
func openEventRings(ring, heads *ebpf.Map) (*eventRings, error) {
	cpus := uint64(heads.MaxEntries())
	if cpus == 0 || uint64(ring.ValueSize()) != eventSize || uint64(heads.ValueSize()) != headSize ||
		uint64(ring.MaxEntries())%cpus != 0 {
		return nil, fmt.Errorf("event rings: %d slots of %d bytes for %d heads of %d bytes do not match this build",
			ring.MaxEntries(), ring.ValueSize(), cpus, heads.ValueSize())
	}
	e := &eventRings{slots: uint64(ring.MaxEntries()) / cpus, tail: make([]uint64, cpus)}
	if e.slots&(e.slots-1) != 0 {
		return nil, fmt.Errorf("event rings: %d slots per CPU is not a power of two", e.slots)
	}
	var err error
	if e.ring, err = mapMemory(ring, eventSize*e.slots*cpus); err != nil {
		return nil, err
	}
	if e.heads, err = mapMemory(heads, headSize*cpus); err != nil {
		unix.Munmap(e.ring)
		return nil, err
	}
	for c := range e.tail {
		e.tail[c] = e.head(c)
	}
	return e, nil
}

// mapMemory maps an mmapable array read-only; the kernel rounds the
// length to pages.
func mapMemory(m *ebpf.Map, size uint64) ([]byte, error) {
	page := uint64(unix.Getpagesize())
	b, err := unix.Mmap(m.FD(), 0, int((size+page-1)/page*page), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the event rings: %w", err)
	}
	return b, nil
}

func (e *eventRings) close() {
	unix.Munmap(e.ring)
	unix.Munmap(e.heads)
}

// head is CPU c's count of events written. The atomic load pairs with
// the program's exchange: the events below it are complete.
func (e *eventRings) head(c int) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&e.heads[uint64(c)*headSize])))
}

// drain appends every event written since the last drain to batch. A
// ring the program lapped loses its oldest events, counted in lost; the
// map scan recovers what they said.
func (e *eventRings) drain(batch []Renewal) []Renewal {
	for c := range e.tail {
		h := e.head(c)
		from := e.tail[c]
		if h == from {
			continue
		}
		if h-from > e.slots {
			e.lost.Add(h - from - e.slots)
			from = h - e.slots
		}
		start := len(batch)
		for i := from; i < h; i++ {
			off := (uint64(c)*e.slots + i&(e.slots-1)) * eventSize
			batch = append(batch, decodeEvent((*bpf.XdpXdhcpEvent)(unsafe.Pointer(&e.ring[off]))))
		}
		// Slots the program reused while they were copied are torn:
		// drop them (the oldest ones) rather than fold garbage.
		if h2 := e.head(c); h2 > e.slots && h2-e.slots > from {
			torn := min(h2-e.slots-from, h-from)
			e.lost.Add(torn)
			batch = append(batch[:start], batch[start+int(torn):]...)
		}
		e.tail[c] = h
	}
	return batch
}

// ReadEvents hands renewals answered by the program to fold until ctx
// ends, in batches of at most maxBatch, every pollEvery: under load one
// bbolt transaction carries thousands of renewals, and when idle a
// renewal is folded within pollEvery. Only one ReadEvents may run.
func (m *Maps) ReadEvents(ctx context.Context, fold func([]Renewal)) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		// A new batch each time: fold may keep what it is given.
		batch := m.events.drain(nil)
		for len(batch) > 0 {
			n := min(len(batch), maxBatch)
			fold(batch[:n:n])
			batch = batch[n:]
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// decodeEvent reads one struct xdhcp_event through the type bpf2go
// generated for it, from the program's own memory image.
func decodeEvent(ev *bpf.XdpXdhcpEvent) Renewal {
	hlen := min(int(ev.Hlen), len(ev.Chaddr))
	return Renewal{
		At:      time.Unix(0, int64(ev.AtNs)),
		Expiry:  time.Unix(int64(ev.Expiry), 0),
		IP:      wordAddr(ev.Ip),
		XID:     netWord(ev.Xid),
		IfIndex: ev.Ifindex,
		GIAddr:  giaddr(ev.Giaddr),
		VLANs:   ev.Vlan,
		HWAddr:  append([]byte(nil), ev.Chaddr[:hlen]...),
	}
}

func giaddr(w uint32) netip.Addr {
	if w == 0 {
		return netip.Addr{}
	}
	return wordAddr(w)
}
