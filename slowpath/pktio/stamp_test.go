package pktio

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/slowpath"
)

// cmsg is one control message of the given level, type and data.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// TestArrivalTime: the SO_TIMESTAMPNS time among control messages, zero
// without one, with a short one, or with bytes too few for a header
// (which x/sys would read past); readControl reads the same.
func TestArrivalTime(t *testing.T) {
	ts := make([]byte, timespecLen)
	binary.NativeEndian.PutUint64(ts, 1_800_000_000)
	binary.NativeEndian.PutUint64(ts[8:], 123)
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)
	other := cmsg(unix.IPPROTO_IP, unix.IP_TTL, []byte{64, 0, 0, 0})
	want := time.Unix(1_800_000_000, 123)
	for _, c := range []struct {
		name string
		oob  []byte
		want time.Time
	}{
		{"none", nil, time.Time{}},
		{"shorter than a header", []byte{1, 2, 3}, time.Time{}},
		{"another message", other, time.Time{}},
		{"a short timespec", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts[:8]), time.Time{}},
		{"the stamp", stamp, want},
		{"the stamp after another", append(slices.Clone(other), stamp...), want},
	} {
		if got := ArrivalTime(c.oob); !got.Equal(c.want) {
			t.Errorf("%s: ArrivalTime = %v, want %v", c.name, got, c.want)
		}
		// The server's reader takes the same time from the same bytes.
		var in slowpath.Incoming
		if readControl(c.oob, &in); !in.Received.Equal(c.want) {
			t.Errorf("%s: readControl's Received = %v, want %v", c.name, in.Received, c.want)
		}
	}
}
