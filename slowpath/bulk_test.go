package slowpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// bulkRig is a server on a real bbolt store with n relayed leases, and a
// bulk leasequery listener on loopback.
type bulkRig struct {
	srv  *Server
	addr netip.AddrPort
}

var relayID = []byte("olt-7/shelf-1")

func newBulkRig(t *testing.T, n int, requesters []netip.Prefix, o BulkOptions) *bulkRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(filepath.Join(t.TempDir(), "l.db"), store.Options{MaxBatch: 20000})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	now := time.Now()
	var batch []*lease.Lease
	for i := range n {
		v := uint32(10<<24|64<<16) + 256 + uint32(i)
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		ri := dhcpwire.AppendOption(nil, dhcpwire.SubOptRemoteID, []byte{byte(i >> 16), byte(i >> 8), byte(i)})
		ri = dhcpwire.AppendOption(ri, dhcpwire.SubOptRelayID, relayID)
		batch = append(batch, &lease.Lease{
			IP: ip, State: lease.Active, HWType: 1, HWAddr: []byte{2, 0xb, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			ClientID: []byte{1, 2, 0xb, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			Start:    now.Add(-time.Minute), CLTT: now.Add(-time.Minute), Expiry: now.Add(time.Hour), StateAt: now,
			GIAddr: netip.MustParseAddr("10.78.0.1"), RelayInfo: ri, ServerID: srvAddr,
		})
		if len(batch) == 20000 || i == n-1 {
			if err := st.Put(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	f := &fixture{t: t, out: &capture{}, now: now}
	srv, err := New(Config{
		Store: st, Sender: f.out,
		Settings: Settings{Leasequery: Leasequery{Enabled: true, Requesters: requesters}},
		Subnets: []*Subnet{{
			Prefix: netip.MustParsePrefix("10.64.0.0/10"), LeaseTime: time.Hour,
			Pools: [][2]netip.Addr{{netip.MustParseAddr("10.64.1.0"), netip.MustParseAddr("10.127.255.254")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeBulk(ctx, ln, o) }()
	t.Cleanup(func() { cancel(); <-served })
	return &bulkRig{srv: srv, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestBulkLeasequeryStreams100kWithBoundedMemory(t *testing.T) {
	const n = 100_000
	r := newBulkRig(t, n, loopback, BulkOptions{IdleTimeout: 10 * time.Second})
	// Live heap, measured while the reader pauses: the server then sits
	// blocked on a full socket and allocates nothing, so a collection sees
	// exactly what it holds.
	live := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := live()
	var samples []uint64
	active, done := 0, 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := lqclient.Bulk(ctx, lqclient.Query{Server: r.addr, RelayID: relayID, XID: 77}, func(rep *lqclient.Reply) error {
		if rep.XID != 77 {
			t.Fatalf("reply xid %d", rep.XID)
		}
		switch rep.Type {
		case "leaseactive":
			active++
			if active%20000 == 0 {
				time.Sleep(100 * time.Millisecond) // a slow reader, now and then
				samples = append(samples, live())
			}
		case "leasequerydone":
			done++
			if rep.Status != nil {
				t.Fatalf("done with status %d %s", *rep.Status, rep.StatusMessage)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if active != n || done != 1 {
		t.Fatalf("%d LEASEACTIVE and %d DONE, want %d and 1", active, done, n)
	}
	// 100k replies are about 30 MiB; streaming holds a record at a time.
	grew := int64(slices.Max(samples)) - int64(base)
	if grew > 4<<20 {
		t.Fatalf("live heap grew by %d MiB while streaming (samples %v, base %d)", grew>>20, samples, base)
	}
	t.Logf("live heap growth while streaming %d leases: at most %.1f MiB", n, float64(grew)/(1<<20))
}

func TestBulkLeasequeryKeysAndErrors(t *testing.T) {
	r := newBulkRig(t, 300, loopback, BulkOptions{IdleTimeout: 5 * time.Second})
	ask := func(q lqclient.Query) (actives []*lqclient.Reply, done *lqclient.Reply) {
		t.Helper()
		q.Server = r.addr
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := lqclient.Bulk(ctx, q, func(rep *lqclient.Reply) error {
			if rep.Type == "leaseactive" {
				actives = append(actives, rep)
			} else {
				done = rep
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return actives, done
	}
	a, d := ask(lqclient.Query{MAC: net.HardwareAddr{2, 0xb, 0, 0, 1, 7}})
	if len(a) != 1 || a[0].IP != "10.64.2.7" || d.Status != nil || a[0].LeaseTime == nil || !a[0].Options[152] {
		t.Fatalf("by MAC: %+v done %+v", a, d)
	}
	a, _ = ask(lqclient.Query{ClientID: []byte{1, 2, 0xb, 0, 0, 0, 9}})
	if len(a) != 1 || a[0].IP != "10.64.1.9" || a[0].ClientID != "01:02:0b:00:00:00:09" {
		t.Fatalf("by client-id: %+v", a)
	}
	a, _ = ask(lqclient.Query{RemoteID: []byte{0, 1, 0x2b}})
	if len(a) != 1 || a[0].IP != "10.64.2.43" {
		t.Fatalf("by remote-id: %+v", a)
	}

	// Errors come back as DONE with a status code, on a connection that
	// stays usable.
	raw := func(mut func(b []byte) []byte) *lqclient.Reply {
		t.Helper()
		m, _ := lqclient.Query{MAC: net.HardwareAddr{2, 0xb, 0, 0, 1, 7}, XID: 5}.Message(true)
		c, err := net.Dial("tcp4", r.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(lqclient.Frame(mut(m)))
		for {
			b, err := lqclient.ReadFrame(c)
			if err != nil {
				t.Fatalf("no DONE: %v", err)
			}
			rep, _ := lqclient.Decode(b)
			if rep.Type == "leasequerydone" {
				return rep
			}
		}
	}
	status := func(rep *lqclient.Reply) int {
		if rep.Status == nil {
			return 0
		}
		return int(*rep.Status)
	}
	optEnd := func(b []byte) int { return len(b) - 1 }
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		want int
	}{
		{"ciaddr set", func(b []byte) []byte { b[12] = 10; return b }, statusMalformedQuery},
		{"two keys", func(b []byte) []byte {
			return append(dhcpwire.AppendOption(b[:optEnd(b)], dhcpwire.OptClientID, []byte{1, 2}), 255)
		}, statusMalformedQuery},
		{"no key", func(b []byte) []byte { b[2] = 0; clear(b[28:44]); return b }, statusNotAllowed},
		{"start after end", func(b []byte) []byte {
			b = dhcpwire.AppendUint32Option(b[:optEnd(b)], dhcpwire.OptQueryStartTime, 2000)
			return append(dhcpwire.AppendUint32Option(b, dhcpwire.OptQueryEndTime, 1000), 255)
		}, statusMalformedQuery},
	} {
		if got := status(raw(tc.mut)); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestBulkLeasequeryHostileConnections(t *testing.T) {
	r := newBulkRig(t, 10, loopback, BulkOptions{IdleTimeout: 300 * time.Millisecond, MaxConnsPerRequester: 2})
	closedWithin := func(name string, c net.Conn, d time.Duration) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(d))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("%s: connection not closed by the server within %v: %v", name, d, err)
		}
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp4", r.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Truncated frame: length 500, then 100 bytes, then silence.
	c := dial()
	c.Write(append(binary.BigEndian.AppendUint16(nil, 500), make([]byte, 100)...))
	closedWithin("truncated frame", c, 2*time.Second)
	// Oversized length.
	c = dial()
	c.Write([]byte{0xff, 0xff, 1, 2, 3})
	closedWithin("oversized length", c, 2*time.Second)
	// Not a bulk query at all.
	c = dial()
	junk := make([]byte, 300)
	c.Write(lqclient.Frame(junk))
	closedWithin("garbage message", c, 2*time.Second)
	// Idle.
	c = dial()
	closedWithin("idle connection", c, 2*time.Second)

	// Per-requester connection limit: two held open, the third refused.
	h1, h2 := dial(), dial()
	time.Sleep(50 * time.Millisecond)
	c = dial()
	closedWithin("third connection", c, 150*time.Millisecond)
	h1.Close()
	h2.Close()
	time.Sleep(100 * time.Millisecond) // the server sees them go

	// The service still answers afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	n := 0
	if err := lqclient.Bulk(ctx, lqclient.Query{Server: r.addr, RelayID: relayID}, func(rep *lqclient.Reply) error { n++; return nil }); err != nil || n != 11 {
		t.Fatalf("after the abuse: %d replies, %v", n, err)
	}
}

func TestBulkLeasequeryRefusesOthers(t *testing.T) {
	r := newBulkRig(t, 1, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, BulkOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := lqclient.Bulk(ctx, lqclient.Query{Server: r.addr, RelayID: relayID}, func(*lqclient.Reply) error { return nil })
	if err == nil {
		t.Fatal("a requester outside the list was answered")
	}
}

// FuzzBulkQuery drives arbitrary bytes through a bulk leasequery session:
// the server answers with well-formed frames or stops, and never panics.
func FuzzBulkQuery(f *testing.F) {
	m, _ := lqclient.Query{MAC: net.HardwareAddr{2, 0xb, 0, 0, 0, 1}, XID: 1}.Message(true)
	f.Add(lqclient.Frame(m))
	m, _ = lqclient.Query{RelayID: relayID, XID: 2}.Message(true)
	f.Add(lqclient.Frame(m))
	f.Add([]byte{0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		fx := newFixture(t)
		fx.dora(mac(1))
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		fx.srv.bulkSession(context.Background(), bufio.NewReader(bytes.NewReader(in)), w, func() {})
		w.Flush()
		for out.Len() > 0 {
			frame, err := lqclient.ReadFrame(&out)
			if err != nil {
				t.Fatalf("server wrote a broken frame: %v", err)
			}
			if _, err := lqclient.Decode(frame); err != nil {
				t.Fatalf("server sent an undecodable message: %v", err)
			}
		}
	})
}
