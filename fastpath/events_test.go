package fastpath_test

import (
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/bpf"
	"github.com/xdhcp/xdhcp/fastpath"
)

// writeEvents plays the program's part on CPU cpu: events numbered from
// first to last-1 (the number is the event's time, in seconds) go to the
// CPU's ring in turn, then the head moves past them.
func writeEvents(t *testing.T, r *rig, cpu, first, last uint64) {
	t.Helper()
	slots := uint64(r.objs.XdhcpEvring.MaxEntries() / r.objs.XdhcpEvheads.MaxEntries())
	for i := first; i < last; i++ {
		ev := bpf.XdpXdhcpEvent{AtNs: i * 1e9, Expiry: i + 3600, Ip: 0x0100000a, Hlen: 6}
		if err := r.objs.XdhcpEvring.Update(uint32(cpu*slots+i%slots), &ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.objs.XdhcpEvheads.Update(uint32(cpu), &bpf.XdpXdhcpEvhead{Head: last}, 0); err != nil {
		t.Fatal(err)
	}
}

// readEvents reads until want events arrived or a second passed.
func readEvents(t *testing.T, m *fastpath.Maps, want int) []fastpath.Renewal {
	t.Helper()
	var got []fastpath.Renewal
	ctx, cancel := contextWithTimeout(time.Second)
	defer cancel()
	m.ReadEvents(ctx, func(rs []fastpath.Renewal) {
		got = append(got, rs...)
		if len(got) >= want {
			cancel()
		}
	})
	return got
}

// TestEventRings: the reader starts at the heads it finds, reads every
// CPU's ring in order, and when the program lapped a ring it delivers the
// newest ring-full and counts the overwritten ones as lost.
func TestEventRings(t *testing.T) {
	r := loadRig(t)
	cpus := uint64(r.objs.XdhcpEvheads.MaxEntries())
	slots := uint64(r.objs.XdhcpEvring.MaxEntries()) / cpus
	if slots < 2 || slots&(slots-1) != 0 {
		t.Fatalf("%d slots per CPU", slots)
	}
	// Written before this reader opened: the map scan's, not ours.
	writeEvents(t, r, 0, 0, 5)
	m, err := fastpath.New(&r.objs.XdpMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const lapped = 7
	writeEvents(t, r, 0, 5, 5+slots+lapped)
	var want []uint64
	for i := uint64(5 + lapped); i < 5+slots+lapped; i++ {
		want = append(want, i)
	}
	if cpus > 1 { // another CPU's ring, with its own count
		writeEvents(t, r, cpus-1, 0, 3)
		want = append(want, 0, 1, 2)
	}

	got := readEvents(t, m, len(want))
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, r := range got {
		if uint64(r.At.Unix()) != want[i] || r.Expiry.Sub(r.At) != time.Hour || len(r.HWAddr) != 6 {
			t.Fatalf("event %d: %+v, want time %d", i, r, want[i])
		}
	}
	cs, err := m.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cs["events_lost"] != lapped {
		t.Fatalf("events_lost %d, want %d", cs["events_lost"], lapped)
	}
	// Nothing new: nothing delivered twice.
	if again := readEvents(t, m, 1); len(again) != 0 {
		t.Fatalf("%d events delivered again", len(again))
	}
}
