package loadgen

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/xdhcp/xdhcp/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestRelayArrivalStamp: the relay socket reports the kernel's arrival
// time of each datagram, between its send and its read. The kernel turns
// arrival stamps on for everyone through deferred work when the first
// socket asks (net_enable_timestamp), and until then stamps a datagram as
// it is read: late, never early. So the test sends until a datagram read
// 20 ms after it was sent carries a time from before the sleep.
func TestRelayArrivalStamp(t *testing.T) {
	testenv.RequireRoot(t, "the relay socket binds port 67")
	giaddr := netip.MustParseAddr("127.0.0.67")
	r, err := NewRelay(giaddr, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(giaddr, 67)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := []Received{{Buf: make([]byte, 64)}}
	for range 100 {
		before := time.Now()
		if _, err := c.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		n, err := r.Recv(msgs, time.Second)
		read := time.Now()
		if err != nil || n != 1 {
			t.Fatalf("read %d: %v", n, err)
		}
		if got := string(msgs[0].Buf[:msgs[0].N]); got != "answer" {
			t.Fatalf("read %q", got)
		}
		at := msgs[0].Arrived
		if at.IsZero() || at.Before(before) || at.After(read) {
			t.Fatalf("arrival %v: sent after %v, read at %v", at, before, read)
		}
		if read.Sub(at) >= 15*time.Millisecond {
			return
		}
	}
	t.Fatal("no datagram in 100 was stamped at its arrival, 20 ms before it was read")
}

// cmsg is one control message of the given level, type and data.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestKernelStamp(t *testing.T) {
	ts := make([]byte, 16)
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
		if got := kernelStamp(c.oob); !got.Equal(c.want) {
			t.Errorf("%s: kernelStamp = %v, want %v", c.name, got, c.want)
		}
	}
}
