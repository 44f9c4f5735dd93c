package slowpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"golang.org/x/sys/unix"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
	"github.com/xdhcp/xdhcp/internal/testenv"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// bulkRig is a server on a real bbolt store with n relayed leases, and a
// bulk leasequery listener on loopback.
type bulkRig struct {
	srv  *Server
	st   *store.Store
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
			GIAddr: netip.MustParseAddr("10.78.0.1"), RelayInfo: ri, ServerID: srvAddr, VendorClass: []byte("docsis3.1"),
		})
		if len(batch) == 20000 || i == n-1 {
			if err := st.Put(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	// The journal's fold of these records would run beside the streaming
	// and count in its memory: it is done first.
	if err := st.Folded(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, out: &capture{}, now: now}
	srv := newOneSubnet(t, Config{Store: st, Sender: f.out, Settings: Settings{Leasequery: Leasequery{Enabled: true, Requesters: requesters}}},
		"10.64.0.0/10", "10.64.1.0", "10.127.255.254")
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
	return &bulkRig{srv: srv, st: st, addr: ln.Addr().(*net.TCPAddr).AddrPort()}
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
	// The database's pages the scan maps in count in the RSS (RssFile)
	// until it gives them back at its end.
	fileBase := testenv.RSSFile(t)
	var fileMid int64
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
				fileMid = max(fileMid, testenv.RSSFile(t))
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
	// The release follows the last message: wait for it a little.
	fileEnd := testenv.RSSFile(t)
	for i := 0; i < 50 && fileEnd-fileBase > 4<<20; i++ {
		time.Sleep(20 * time.Millisecond)
		fileEnd = testenv.RSSFile(t)
	}
	t.Logf("file pages: %d MiB before the scan, %d MiB at most during, %d MiB after", fileBase>>20, fileMid>>20, fileEnd>>20)
	if fileMid-fileBase < 8<<20 {
		t.Fatalf("the scan mapped in only %d KiB of a database of %d leases: the RSS reading does not show it", (fileMid-fileBase)>>10, n)
	}
	if fileEnd-fileBase > 4<<20 {
		t.Fatalf("the scan left %d MiB of the database's pages in the RSS", (fileEnd-fileBase)>>20)
	}
}

// A relay-id scan to a reader that stops reading must not hold a store
// transaction: bbolt's remap, when a write grows the lease tree, waits for
// every open read transaction, so one stalled requester would hold up the
// fold of the journal into the tree, and once the journal is full, every
// ACK. The stalled connection goes after the idle timeout.
func TestBulkLeasequeryStalledReaderDoesNotHoldUpCommits(t *testing.T) {
	// Long enough that the commit and its fold finish well within it on
	// a loaded machine (about 4 s each under -race alone on 2 vCPUs; a
	// commit took 12 s with a CI run beside it); they are judged by order
	// (done while the reader still stalls), not by how long they took.
	const idle = 40 * time.Second
	r := newBulkRig(t, 60_000, loopback, BulkOptions{IdleTimeout: idle, MaxConnsPerRequester: 1})
	c, err := net.Dial("tcp4", r.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096) // so the server fills the path soon
	m, _ := lqclient.Query{RelayID: relayID, XID: 3}.Message(true)
	c.Write(lqclient.Frame(m))
	if _, err := lqclient.ReadFrame(c); err != nil {
		t.Fatal(err)
	}
	// Wait until the server is blocked in a write, mid-scan: the bytes
	// queued unread on our socket stop growing.
	stalled := waitStalled(t, c.(*net.TCPConn), 10*time.Second)

	// Enough new data that bbolt must grow its mapping.
	var big []*lease.Lease
	for i := range 1000 {
		big = append(big, &lease.Lease{IP: netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), State: lease.Free,
			VendorClass: bytes.Repeat([]byte{'v'}, 32<<10)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*idle)
	defer cancel()
	t0 := time.Now()
	if err := r.st.Put(ctx, big...); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	// The commit writes the journal; the fold writes (and grows) the
	// tree, which the scan reads.
	if err := r.st.Folded(ctx); err != nil {
		t.Fatal(err)
	}
	folded := time.Since(t0) - took
	if q := unreadBytes(t, c.(*net.TCPConn)); q != stalled {
		t.Fatalf("the reader's queue moved during the commit and fold (%d -> %d bytes): it was not stalled throughout", stalled, q)
	}
	t.Logf("commit of %d MiB took %v, its fold %v, with a bulk reader stalled", len(big)*32>>10, took, folded)

	// The stalled connection is let go once its write has waited the idle
	// timeout: with one connection allowed, a new query is refused while
	// it stalls and answered after.
	ask := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return lqclient.Bulk(ctx, lqclient.Query{Server: r.addr, MAC: net.HardwareAddr{2, 0xb, 0, 0, 1, 7}}, func(*lqclient.Reply) error { return nil })
	}
	// Refused here also shows the commit did not wait for the stalled
	// scan to be given up: that frees the slot.
	if err := ask(); err == nil {
		t.Fatal("a second connection was served right after the commit: the commit waited for the stalled reader to be let go")
	}
	deadline := time.Now().Add(3 * idle)
	for {
		err := ask()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled connection still holds its slot %v after the commit, past the idle timeout of %v: %v", time.Since(t0), idle, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unreadBytes is how many bytes wait unread in c's receive queue.
func unreadBytes(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("SIOCINQ: %v", ierr)
	}
	return n
}

// waitStalled waits until bytes are queued unread on c and their count
// has not changed for a second (the sender is blocked on a full
// path), and returns that count.
func waitStalled(t *testing.T, c *net.TCPConn, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for {
		n := unreadBytes(t, c)
		if n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) >= time.Second {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's writes never stalled: %d bytes queued", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	if a[0].VendorClass != "docsis3.1" || a[0].RelayInfo == "" {
		t.Fatalf("by MAC: vendor class %q, relay info %q: want the stored ones, as over UDP", a[0].VendorClass, a[0].RelayInfo)
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
	// On a listener whose idle timeout is a minute, so a close within
	// seconds is the refusal, not the timeout, however loaded the machine.
	// Dial returns after the handshake, so the first two are ahead of the
	// third in the accept queue and counted before it is judged.
	lim := newBulkRig(t, 10, loopback, BulkOptions{IdleTimeout: time.Minute, MaxConnsPerRequester: 2})
	dialLim := func() net.Conn {
		c, err := net.Dial("tcp4", lim.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	h1, h2 := dialLim(), dialLim()
	closedWithin("third connection", dialLim(), 10*time.Second)
	h1.Close()
	h2.Close()

	// Both services still answer afterwards; the limited one once the
	// server has seen the two held connections go (polled, not slept).
	for _, rig := range []*bulkRig{r, lim} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			n := 0
			err := lqclient.Bulk(ctx, lqclient.Query{Server: rig.addr, RelayID: relayID}, func(rep *lqclient.Reply) error { n++; return nil })
			cancel()
			if err == nil && n == 11 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the abuse: %d replies, %v", n, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
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

// FuzzBulkQuery drives arbitrary bytes through a bulk leasequery session
// on a server holding bindings of every kind: nothing changes, and every
// query is answered completely and correctly from the table (checkBulk).
func FuzzBulkQuery(f *testing.F) {
	m, _ := lqclient.Query{MAC: net.HardwareAddr{2, 0xb, 0, 0, 0, 1}, XID: 1}.Message(true)
	f.Add(lqclient.Frame(m))
	m, _ = lqclient.Query{RelayID: relayID, XID: 2}.Message(true)
	f.Add(lqclient.Frame(m))
	f.Add([]byte{0, 3, 1, 2, 3})
	// One session asking for each kind of binding richFixture holds.
	var session []byte
	for i, q := range []lqclient.Query{{MAC: mac(1)}, {MAC: mac(3)}, {ClientID: []byte{1, 2, 0, 0, 0, 1, 4}},
		{RelayID: []byte("olt")}, {RemoteID: []byte("cpe")}} {
		q.XID = uint32(10 + i)
		m, _ := q.Message(true)
		session = append(session, lqclient.Frame(m)...)
	}
	f.Add(session)
	f.Fuzz(func(t *testing.T, in []byte) { checkBulk(t, in) })
}

// bulkAsk runs queries through one in-memory bulk session on f's server
// and returns every reply, in order.
func (f *fixture) bulkAsk(qs ...lqclient.Query) []*lqclient.Reply {
	f.t.Helper()
	var in bytes.Buffer
	for _, q := range qs {
		m, err := q.Message(true)
		if err != nil {
			f.t.Fatal(err)
		}
		in.Write(lqclient.Frame(m))
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := f.srv.bulk().session(context.Background(), bufio.NewReader(&in), w, srvAddr, func() bool { return true }, func() {}); err != io.EOF {
		f.t.Fatalf("bulk session ended with %v", err)
	}
	w.Flush()
	var reps []*lqclient.Reply
	for out.Len() > 0 {
		b, err := lqclient.ReadFrame(&out)
		if err != nil {
			f.t.Fatal(err)
		}
		rep, err := lqclient.Decode(b)
		if err != nil {
			f.t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	return reps
}

// relayedBy returns modifiers for a request relayed by an OLT whose
// relay-id (82.12) is id.
func relayedBy(id string) []dhcpv4.Modifier {
	return viaRelay(dhcpwire.AppendOption(nil, dhcpwire.SubOptRelayID, []byte(id)))
}

func val(p *uint32) int64 {
	if p == nil {
		return -1
	}
	return int64(*p)
}

func TestBulkLeasequeryUnassignedStatesAndChangeWindow(t *testing.T) {
	f := lqFixture(t)
	t0 := f.now
	exp := f.dora(mac(2), relayedBy("olt-1")...)
	f.now = t0.Add(30 * time.Minute)
	rel := f.dora(mac(1), relayedBy("olt-1")...)
	f.now = t0.Add(61 * time.Minute) // the 1h lease of mac(2) ran out a minute ago
	f.srv.Sweep()
	f.now = t0.Add(62 * time.Minute)
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(rel.YourIPAddr)), srvAddr)
	f.now = t0.Add(63 * time.Minute)
	act := f.dora(mac(3), relayedBy("olt-1")...)
	f.now = t0.Add(64 * time.Minute)

	byIP := func(reps []*lqclient.Reply) map[string]*lqclient.Reply {
		m := map[string]*lqclient.Reply{}
		for _, r := range reps {
			if r.IP != "" {
				m[r.IP] = r
			}
		}
		return m
	}
	q := lqclient.Query{RelayID: []byte("olt-1"), XID: 1, Start: t0.Add(5 * time.Minute)}
	got := byIP(f.bulkAsk(q))
	for _, w := range []struct {
		ip       net.IP
		typ      string
		state    string
		inState  int64
		lease    bool
		sinceCLT int64
	}{
		{rel.YourIPAddr, "leaseunassigned", "released", 2 * 60, false, 2 * 60},
		{exp.YourIPAddr, "leaseunassigned", "expired", 3 * 60, false, 64 * 60},
		{act.YourIPAddr, "leaseactive", "active", 60, true, 60},
	} {
		r := got[w.ip.String()]
		if r == nil || r.Type != w.typ || r.State != w.state || val(r.StateFor) != w.inState || (r.LeaseTime != nil) != w.lease || val(r.SinceLast) != w.sinceCLT {
			t.Errorf("%s: want %s %s for %ds, since last transaction %ds, lease time %v; got %+v", w.ip, w.typ, w.state, w.inState, w.sinceCLT, w.lease, r)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d bindings, want 3", len(got))
	}
	// A window that starts after the release and the expiry leaves them out.
	q.Start = t0.Add(62*time.Minute + 30*time.Second)
	got = byIP(f.bulkAsk(q))
	if len(got) != 1 || got[act.YourIPAddr.String()] == nil {
		t.Errorf("window from 62m30s: %v, want only the active %s", got, act.YourIPAddr)
	}
	// One that ends between the expiry and the release has the expiry only.
	q.Start, q.End = t0, t0.Add(61*time.Minute+30*time.Second)
	got = byIP(f.bulkAsk(q))
	if len(got) != 1 || got[exp.YourIPAddr.String()] == nil {
		t.Errorf("window up to 61m30s: %v, want only the expired %s", got, exp.YourIPAddr)
	}
	// Once the sweeper frees them, a binding that keeps its client's
	// identity is AVAILABLE.
	f.srv.Sweep()
	if reps := f.bulkAsk(lqclient.Query{MAC: mac(1)}); len(reps) != 2 || reps[0].Type != "leaseunassigned" || reps[0].State != "available" {
		t.Errorf("by MAC of a freed lease: %+v", reps)
	}
}

func TestBulkLeasequeryExpiryPassedBeforeTheSweep(t *testing.T) {
	f := lqFixture(t)
	ack := f.dora(mac(1), relayedBy("olt-1")...)
	f.now = f.now.Add(time.Hour + 5*time.Second) // past the expiry; Sweep not run
	reps := f.bulkAsk(lqclient.Query{MAC: mac(1)})
	if len(reps) != 2 || reps[0].Type != "leaseunassigned" || reps[0].State != "expired" || val(reps[0].StateFor) != 5 || reps[0].LeaseTime != nil {
		t.Fatalf("bulk: %+v", reps[0])
	}
	if r := f.query(requester, dhcpv4.WithClientIP(ack.YourIPAddr)); r == nil || r.MessageType() != mtLeaseUnassigned {
		t.Fatalf("UDP by IP: %v", r)
	}
	if r := f.query(requester, byMACMod(mac(1))); r == nil || r.MessageType() != mtLeaseUnknown {
		t.Fatalf("UDP by MAC: %v", r)
	}
}

func TestBulkLeasequeryDoneAndServerID(t *testing.T) {
	f := lqFixture(t)
	f.dora(mac(1), relayedBy("olt-1")...)
	f.dora(mac(2), relayedBy("olt-1")...)
	reps := f.bulkAsk(
		lqclient.Query{RelayID: []byte("olt-1"), XID: 1},
		lqclient.Query{MAC: mac(9), XID: 2}, // nothing: DONE alone
		lqclient.Query{MAC: mac(2), XID: 3},
	)
	var types []string
	for _, r := range reps {
		types = append(types, fmt.Sprintf("%d:%s", r.XID, r.Type))
	}
	if want := "[1:leaseactive 1:leaseactive 1:leasequerydone 2:leasequerydone 3:leaseactive 3:leasequerydone]"; fmt.Sprint(types) != want {
		t.Fatalf("replies %v, want %s", types, want)
	}
	for i, r := range reps {
		first := i == 0 || reps[i-1].XID != r.XID
		if (r.ServerID != "") != first {
			t.Errorf("reply %d (%d:%s): server id %q; want it in each query's first message only", i, r.XID, r.Type, r.ServerID)
		}
		if r.ServerID != "" && r.ServerID != srvAddr.String() {
			t.Errorf("reply %d: server id %s", i, r.ServerID)
		}
		if val(r.BaseTime) != f.now.Unix() {
			t.Errorf("reply %d (%d:%s): base-time %d, want %d", i, r.XID, r.Type, val(r.BaseTime), f.now.Unix())
		}
		if r.Type == "leasequerydone" && (r.HWAddr != "" || r.Raw[1] != 0 || r.Raw[2] != 0 || r.Status != nil) {
			t.Errorf("DONE for %d: htype %d hlen %d chaddr %q status %v", r.XID, r.Raw[1], r.Raw[2], r.HWAddr, r.Status)
		}
	}
}

func TestBulkLeasequeryStoreFailureMidStream(t *testing.T) {
	f := lqFixture(t)
	const n = bulkPage + 100
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 78, byte(1 + i/256), byte(i)})
		f.store.leases[ip] = &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: []byte{2, 1, 0, 0, byte(i >> 8), byte(i)},
			Start: f.now, CLTT: f.now, StateAt: f.now, Expiry: f.now.Add(time.Hour), RelayInfo: []byte{12, 3, 'o', 'l', 't'}}
	}
	f.srv = f.build()
	f.srv.set.Leasequery = Leasequery{Enabled: true, Requesters: []netip.Prefix{netip.PrefixFrom(requester, 32)}}
	f.store.pageErr = func(after netip.Addr) error {
		if after.IsValid() {
			return errors.New("disk on fire")
		}
		return nil
	}
	reps := f.bulkAsk(lqclient.Query{RelayID: []byte("olt"), XID: 4}, lqclient.Query{MAC: net.HardwareAddr{2, 1, 0, 0, 0, 5}, XID: 5})
	if len(reps) != bulkPage+3 {
		t.Fatalf("%d replies, want the first page, DONE, and the next query's two", len(reps))
	}
	done := reps[bulkPage]
	if done.Type != "leasequerydone" || done.Status == nil || *done.Status != statusUnspecFail || done.XID != 4 {
		t.Fatalf("after a store failure: %+v", done)
	}
	if r := reps[bulkPage+1]; r.XID != 5 || r.Type != "leaseactive" || r.IP != "10.78.1.5" {
		t.Fatalf("the connection did not stay usable: %+v", r)
	}
}

// TestBulkRequesterRevokedByReload: leasequery.requesters is a live
// setting; a requester a reload removes gets no further answer on a
// connection it opened before, which is closed at its next query.
func TestBulkRequesterRevokedByReload(t *testing.T) {
	r := newBulkRig(t, 10, loopback, BulkOptions{IdleTimeout: 10 * time.Second})
	c, err := net.Dial("tcp4", r.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ask := func(xid uint32) (frames int, err error) {
		m, _ := lqclient.Query{RelayID: relayID, XID: xid}.Message(true)
		if _, err := c.Write(lqclient.Frame(m)); err != nil {
			return 0, err
		}
		for {
			b, err := lqclient.ReadFrame(c)
			if err != nil {
				return frames, err
			}
			frames++
			if rep, err := lqclient.Decode(b); err != nil || rep.Type == "leasequerydone" {
				return frames, err
			}
		}
	}
	if n, err := ask(1); err != nil || n != 11 {
		t.Fatalf("allowed: %d frames, %v; want 10 leases and done", n, err)
	}
	r.srv.mu.Lock()
	r.srv.set.Leasequery.Requesters = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	r.srv.mu.Unlock()
	denied := testutil.ToFloat64(r.srv.m.Dropped.WithLabelValues("bulk_denied"))
	if n, err := ask(2); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("revoked: %d frames, %v; want the connection closed unanswered", n, err)
	}
	if d := testutil.ToFloat64(r.srv.m.Dropped.WithLabelValues("bulk_denied")) - denied; d != 1 {
		t.Fatalf("bulk_denied counted %v, want 1", d)
	}
}

// TestBulkFramingCountsOnlyBadFrames: a requester idling past the
// timeout between queries (RFC 6926 lets it keep its connection) drops
// nothing; a frame of an impossible length is a framing drop.
func TestBulkFramingCountsOnlyBadFrames(t *testing.T) {
	r := newBulkRig(t, 1, loopback, BulkOptions{IdleTimeout: 200 * time.Millisecond})
	framing := func() float64 { return testutil.ToFloat64(r.srv.m.Dropped.WithLabelValues("bulk_framing")) }
	closed := func(c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("read %v, want the server's close", err)
		}
	}
	before := framing()
	idle, err := net.Dial("tcp4", r.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	closed(idle)
	if d := framing() - before; d != 0 {
		t.Fatalf("an idle connection closed at its timeout counted %v framing drops", d)
	}
	bad, err := net.Dial("tcp4", r.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte{0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	closed(bad)
	if d := framing() - before; d != 1 {
		t.Fatalf("a 10-byte frame counted %v framing drops, want 1", d)
	}
}
