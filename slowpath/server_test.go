package slowpath

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// memStore is a synchronous stand-in for the bbolt store: handler tests
// are about decisions, the store has its own tests.
type memStore struct {
	mu      sync.Mutex
	leases  map[netip.Addr]*lease.Lease
	fail    error
	commits int
	// pageErr, when set, may fail a LoadPage (given where it starts).
	pageErr func(after netip.Addr) error
	// history is what Moved recorded, most recent first (as the bbolt
	// store keeps it, without its cap).
	history map[string][]netip.Addr
	// released counts ReleaseMapped calls.
	released int
	// holding keeps each submission, its callback with it, in held
	// until release: a commit in flight.
	holding bool
	held    []func()
}

// release ends holding and completes the submissions it kept, in order.
func (m *memStore) release() {
	m.mu.Lock()
	held := m.held
	m.holding, m.held = false, nil
	m.mu.Unlock()
	for _, fn := range held {
		fn()
	}
}

// land completes the first n submissions kept, in order, and goes on
// holding: commits landing one by one.
func (m *memStore) land(n int) {
	m.mu.Lock()
	held := m.held[:n]
	m.held = m.held[n:]
	m.holding = false
	m.mu.Unlock()
	for _, fn := range held {
		fn()
	}
	m.mu.Lock()
	m.holding = true
	m.mu.Unlock()
}

// ReleaseMapped counts the calls: memStore maps nothing.
func (m *memStore) ReleaseMapped() error {
	m.mu.Lock()
	m.released++
	m.mu.Unlock()
	return nil
}

func (m *memStore) Submit(ls []*lease.Lease, done func(error)) {
	m.mu.Lock()
	if m.holding {
		m.held = append(m.held, func() { m.Submit(ls, done) })
		m.mu.Unlock()
		return
	}
	err := m.fail
	if err == nil {
		for _, l := range ls {
			m.leases[l.IP] = l.Clone()
		}
		m.commits++
	}
	m.mu.Unlock()
	if done != nil {
		done(err)
	}
}

func (m *memStore) Load(_ context.Context, fn func(*lease.Lease) error) error {
	for _, l := range m.leases {
		if err := fn(l.Clone()); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) LoadPage(after netip.Addr, limit int, fn func(*lease.Lease) error) (netip.Addr, error) {
	m.mu.Lock()
	if m.pageErr != nil {
		if err := m.pageErr(after); err != nil {
			m.mu.Unlock()
			return netip.Addr{}, err
		}
	}
	var ips []netip.Addr
	for ip := range m.leases {
		if !after.IsValid() || after.Less(ip) {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	more := len(ips) > limit
	var page []*lease.Lease
	for _, ip := range ips[:min(limit, len(ips))] {
		page = append(page, m.leases[ip].Clone())
	}
	m.mu.Unlock()
	for _, l := range page {
		if err := fn(l); err != nil {
			return netip.Addr{}, err
		}
	}
	if !more {
		return netip.Addr{}, nil
	}
	return page[len(page)-1].IP, nil
}

func (m *memStore) History(key string) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.history[key]), nil
}

func (m *memStore) Moved(key string, to, from netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.history == nil {
		m.history = map[string][]netip.Addr{}
	}
	h := slices.DeleteFunc(m.history[key], func(a netip.Addr) bool { return a == to || a == from })
	m.history[key] = append([]netip.Addr{to, from}, h...)
}

type capture struct {
	mu  sync.Mutex
	out []Outgoing
}

func (c *capture) Send(o []Outgoing) {
	c.mu.Lock()
	c.out = append(c.out, o...)
	c.mu.Unlock()
}

func (c *capture) take() []Outgoing {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.out
	c.out = nil
	return o
}

var (
	srvAddr   = netip.MustParseAddr("10.77.0.1")
	relayAddr = netip.MustParseAddr("10.78.0.1")
	resMAC    = net.HardwareAddr{2, 0, 0, 0, 0, 0x42}
)

type fixture struct {
	t       *testing.T
	srv     *Server
	store   *memStore
	out     *capture
	now     time.Time
	lastOut Outgoing
	// config, when set, adjusts the Config build gives New.
	config func(*Config)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, store: &memStore{leases: map[netip.Addr]*lease.Lease{}}, out: &capture{}, now: time.Unix(1_800_000_000, 0)}
	f.srv = f.build()
	return f
}

func (f *fixture) build() *Server {
	f.t.Helper()
	srv := f.unloaded()
	if err := srv.Load(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	return srv
}

// unloaded is build without the load, for a test that loads it itself.
func (f *fixture) unloaded() *Server {
	lan := &Subnet{
		Prefix: netip.MustParsePrefix("10.77.0.0/24"), LeaseTime: time.Hour,
		Options: []byte{1, 4, 255, 255, 255, 0, 3, 4, 10, 77, 0, 1, 6, 4, 10, 77, 0, 1},
		Pools:   [][2]netip.Addr{{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.109")}},
		Reserved: map[string]Reservation{
			lease.ClientKey(nil, 1, resMAC): {IP: netip.MustParseAddr("10.77.0.42")},
		},
		ReservedIP: map[netip.Addr]Reservation{
			netip.MustParseAddr("10.77.0.42"): {IP: netip.MustParseAddr("10.77.0.42"), ClientKey: lease.ClientKey(nil, 1, resMAC)},
		},
	}
	relayed := &Subnet{
		Prefix: netip.MustParsePrefix("10.78.0.0/16"), LeaseTime: time.Hour,
		Options: []byte{1, 4, 255, 255, 0, 0},
		Pools:   [][2]netip.Addr{{netip.MustParseAddr("10.78.1.0"), netip.MustParseAddr("10.78.255.254")}},
	}
	c := Config{
		Store: f.store, Sender: f.out, Now: func() time.Time { return f.now },
		Settings: Settings{Authoritative: true, OfferHold: 10 * time.Second, DeclineHold: time.Hour},
		Subnets:  []*Subnet{lan, relayed},
		Ifaces:   []Interface{{Index: 7, Name: "veth-srv", Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}},
	}
	if f.config != nil {
		f.config(&c)
	}
	srv, err := New(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return srv
}

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 1, i} }

func msg(t *testing.T, typ dhcpv4.MessageType, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(typ), dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// send delivers m as if it arrived on the served interface and returns the
// replies sent.
func (f *fixture) send(m *dhcpv4.DHCPv4, dst netip.Addr) []*dhcpv4.DHCPv4 {
	f.t.Helper()
	f.srv.Handle(Incoming{Data: m.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: dst, IfIndex: 7})
	var res []*dhcpv4.DHCPv4
	for _, o := range f.out.take() {
		r, err := dhcpv4.FromBytes(o.Payload)
		if err != nil {
			f.t.Fatalf("server sent an unparseable reply: %v", err)
		}
		f.lastOut = o
		res = append(res, r)
	}
	return res
}

var bcast = netip.MustParseAddr("255.255.255.255")

func (f *fixture) dora(hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	f.t.Helper()
	offers := f.send(msg(f.t, dhcpv4.MessageTypeDiscover, hw, mods...), bcast)
	if len(offers) != 1 || offers[0].MessageType() != dhcpv4.MessageTypeOffer {
		f.t.Fatalf("DISCOVER from %s: want one OFFER, got %v", hw, offers)
	}
	req := msg(f.t, dhcpv4.MessageTypeRequest, hw, append(mods,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier())))...)
	acks := f.send(req, bcast)
	if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
		f.t.Fatalf("REQUEST from %s: want one ACK, got %v", hw, acks)
	}
	if !acks[0].YourIPAddr.Equal(offers[0].YourIPAddr) {
		f.t.Fatalf("ACK for %s, offered %s", acks[0].YourIPAddr, offers[0].YourIPAddr)
	}
	return acks[0]
}

func TestDORAGivesPoolAddressWithOptionsInContractOrder(t *testing.T) {
	f := newFixture(t)
	ack := f.dora(mac(1))
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if ip != netip.MustParseAddr("10.77.0.100") {
		t.Fatalf("got %s, want the first pool address", ip)
	}
	if got := ack.IPAddressLeaseTime(0); got != time.Hour {
		t.Fatalf("lease time %v", got)
	}
	if ack.IPAddressRenewalTime(0) != 30*time.Minute || ack.IPAddressRebindingTime(0) != 52*time.Minute+30*time.Second {
		t.Fatalf("T1/T2 %v %v", ack.IPAddressRenewalTime(0), ack.IPAddressRebindingTime(0))
	}
	var p dhcpwire.Packet
	if err := p.Parse(f.lastOut.Payload); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Codes(), []uint8{53, 54, 51, 58, 59, 1, 3, 6}; !bytes.Equal(got, want) {
		t.Fatalf("option order %v, want %v", got, want)
	}
	if f.lastOut.HWDst.String() != mac(1).String() || f.lastOut.Dst.Addr() != ip {
		t.Fatalf("B flag clear, no ciaddr: want link-layer unicast to chaddr/yiaddr, got %+v", f.lastOut)
	}
	l := f.store.leases[ip]
	if l == nil || l.State != lease.Active || !bytes.Equal(l.HWAddr, mac(1)) || l.IfIndex != 7 {
		t.Fatalf("stored lease %+v", l)
	}
}

func TestAckIsSentOnlyAfterCommit(t *testing.T) {
	f := newFixture(t)
	offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)
	f.store.fail = errors.New("disk on fire")
	acks := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offers[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offers[0].ServerIdentifier()))), bcast)
	if len(acks) != 0 {
		t.Fatalf("ACK sent although the commit failed: %v", acks)
	}
	if testutil.ToFloat64(f.srv.m.CommitErrors) != 1 {
		t.Fatal("commit error not counted")
	}
	// The store's share of an ACK's time is observed for ACKs sent only.
	if n := sampleCount(t, f.srv.m.StoreWait); n != 0 {
		t.Fatalf("store wait observed %d times with no ACK", n)
	}
	f.store.fail = nil
	f.dora(mac(2))
	if n := sampleCount(t, f.srv.m.StoreWait); n != 1 {
		t.Fatalf("store wait observed %d times for one ACK", n)
	}
}

// histogramOf is what histogram h holds.
func histogramOf(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

// sampleCount is how many observations histogram h holds.
func sampleCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	return histogramOf(t, h).GetSampleCount()
}

func TestReservationWinsAndReturningClientGetsItsAddress(t *testing.T) {
	f := newFixture(t)
	if ack := f.dora(resMAC); !ack.YourIPAddr.Equal(net.ParseIP("10.77.0.42")) {
		t.Fatalf("reserved MAC got %s", ack.YourIPAddr)
	}
	first := f.dora(mac(1)).YourIPAddr
	f.dora(mac(2))
	rel := msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(first))
	f.send(rel, srvAddr)
	f.dora(mac(3))
	if again := f.dora(mac(1)).YourIPAddr; !again.Equal(first) {
		t.Fatalf("returning client got %s, had %s", again, first)
	}
}

func TestClientIDIdentifiesTheClientAndIsEchoed(t *testing.T) {
	f := newFixture(t)
	cid := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 1, 1}))
	a := f.dora(mac(1), cid)
	if !bytes.Equal(a.Options.Get(dhcpv4.OptionClientIdentifier), []byte{255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 1, 1}) {
		t.Fatal("client-id not echoed (RFC 6842)")
	}
	// Same client-id from another NIC is the same client.
	b := f.dora(mac(9), cid)
	if !a.YourIPAddr.Equal(b.YourIPAddr) {
		t.Fatalf("same client-id got %s then %s", a.YourIPAddr, b.YourIPAddr)
	}
}

func TestRequestStates(t *testing.T) {
	f := newFixture(t)
	ack := f.dora(mac(1))
	ip := ack.YourIPAddr
	cases := []struct {
		name    string
		m       *dhcpv4.DHCPv4
		dst     netip.Addr
		want    dhcpv4.MessageType // 0: no reply
		wantDst string
	}{
		{"renewing", msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr, dhcpv4.MessageTypeAck, ip.String() + ":68"},
		{"rebinding", msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip), dhcpv4.WithBroadcast(true)), bcast, dhcpv4.MessageTypeAck, ip.String() + ":68"},
		{"init-reboot own address", msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), bcast, dhcpv4.MessageTypeAck, ""},
		{"init-reboot other subnet", msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.78.1.5")))), bcast, dhcpv4.MessageTypeNak, "255.255.255.255:68"},
		{"init-reboot someone else's", msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))), bcast, dhcpv4.MessageTypeNak, "255.255.255.255:68"},
		{"renewing someone else's", msg(t, dhcpv4.MessageTypeRequest, mac(2), dhcpv4.WithClientIP(ip)), srvAddr, dhcpv4.MessageTypeNak, "255.255.255.255:68"},
		{"selecting another server", msg(t, dhcpv4.MessageTypeRequest, mac(3), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.105"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.2")))), bcast, 0, ""},
		{"request with nothing", msg(t, dhcpv4.MessageTypeRequest, mac(3)), bcast, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := f.send(tc.m, tc.dst)
			if tc.want == 0 {
				if len(got) != 0 {
					t.Fatalf("want silence, got %v", got[0].MessageType())
				}
				return
			}
			if len(got) != 1 || got[0].MessageType() != tc.want {
				t.Fatalf("want %v, got %v", tc.want, got)
			}
			if tc.wantDst != "" && f.lastOut.Dst.String() != tc.wantDst {
				t.Fatalf("sent to %s, want %s", f.lastOut.Dst, tc.wantDst)
			}
			if tc.want == dhcpv4.MessageTypeNak && (got[0].YourIPAddr.To4()[0] != 0 || !got[0].IsBroadcast() || got[0].Options.Has(dhcpv4.OptionIPAddressLeaseTime)) {
				t.Fatalf("NAK fields wrong: %v", got[0].Summary())
			}
		})
	}
}

func TestRelayedDORAAndUnicastRenewalPastTheRelay(t *testing.T) {
	f := newFixture(t)
	opt82 := []byte{1, 4, 'p', 'o', 'r', 't', 2, 3, 'c', 'p', 'e'}
	relay := []dhcpv4.Modifier{dhcpv4.WithGatewayIP(relayAddr.AsSlice()), dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}})}
	ack := f.dora(mac(1), relay...)
	if ack.YourIPAddr.To4()[1] != 78 {
		t.Fatalf("relayed client got %s, want 10.78.x.x", ack.YourIPAddr)
	}
	if f.lastOut.Dst.String() != "10.78.0.1:67" || f.lastOut.HWDst != nil {
		t.Fatalf("relayed reply sent to %+v", f.lastOut)
	}
	var p dhcpwire.Packet
	p.Parse(f.lastOut.Payload)
	codes := p.Codes()
	if codes[len(codes)-1] != 82 {
		t.Fatalf("option 82 not last: %v", codes)
	}
	if v, _ := p.Option(82); !bytes.Equal(v, opt82) {
		t.Fatalf("option 82 not echoed byte for byte: %x", v)
	}
	// The client then renews by unicast straight to us, past the relay.
	ip := ack.YourIPAddr
	got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || got[0].Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Fatalf("unicast renewal: %v", got)
	}
	a, _ := netip.AddrFromSlice(ip.To4())
	if l := f.store.leases[a]; l.GIAddr != relayAddr || !bytes.Equal(l.RelayInfo, opt82) {
		t.Fatalf("unicast renewal lost where the lease was granted: giaddr %s relay %x", l.GIAddr, l.RelayInfo)
	}
}

func TestLinkSelectionChoosesSubnet(t *testing.T) {
	f := newFixture(t)
	// Relay in 10.78 asks for a 10.77 address with RFC 3527 link selection.
	opt82 := []byte{5, 4, 10, 77, 0, 0}
	offers := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(5), dhcpv4.WithGatewayIP(relayAddr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: opt82}})), bcast)
	if len(offers) != 1 || offers[0].YourIPAddr.To4()[1] != 77 || f.lastOut.Dst.String() != "10.78.0.1:67" {
		t.Fatalf("link selection: %v to %v", offers, f.lastOut.Dst)
	}
}

func TestDeclineQuarantines(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	f.send(msg(t, dhcpv4.MessageTypeDecline, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice()))), bcast)
	a, _ := netip.AddrFromSlice(ip.To4())
	if l := f.store.leases[a]; l.State != lease.Abandoned || l.HWAddr != nil {
		t.Fatalf("declined lease: %+v", l)
	}
	for i := range byte(9) {
		if got := f.dora(mac(10 + i)).YourIPAddr; got.Equal(ip) {
			t.Fatalf("declined address %s handed out again", ip)
		}
	}
	f.now = f.now.Add(2 * time.Hour)
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Free {
		t.Fatalf("after quarantine: %v", l.State)
	}
}

func TestExpiryMovesActiveToExpiredToFree(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	a, _ := netip.AddrFromSlice(ip.To4())
	f.now = f.now.Add(time.Hour + time.Second)
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Expired {
		t.Fatalf("after expiry: %v", l.State)
	}
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Free || !bytes.Equal(l.HWAddr, mac(1)) {
		t.Fatalf("then: %v (client kept for a returning client: %v)", l.State, l.HWAddr)
	}
	// Renewing an expired-but-unused address revives it.
	got := f.send(msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal of own freed address: %v", got)
	}
}

// A renewal adds no entry to the expiry heap: the entry at the first
// expiry moves on to the lease's expiry when the sweep comes to it.
func TestRenewalsAddNoExpiryEntries(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	a := addrOf(ip)
	entries := len(f.srv.expiry)
	if entries != 1 {
		t.Fatalf("%d expiry entries after one binding", entries)
	}
	f.renewEveryMinute(mac(1), ip, 100)
	if n := len(f.srv.expiry); n != entries {
		t.Fatalf("%d expiry entries after 100 renewals, want %d", n, entries)
	}
	// 100 minutes on, the first expiry has passed: the lease stays.
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Active {
		t.Fatalf("a lease renewed a minute ago: %v after the sweep", l.State)
	}
	if n := len(f.srv.expiry); n != 1 || f.srv.expiry[0].at != f.store.leases[a].Expiry.Unix() {
		t.Fatalf("expiry entries %v, want one at the lease's expiry %v", f.srv.expiry, f.store.leases[a].Expiry)
	}
	f.now = f.now.Add(time.Hour + time.Second)
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != lease.Expired {
		t.Fatalf("an hour after its last renewal: %v", l.State)
	}
}

// renewEveryMinute has hw renew ip n times, a minute apart.
func (f *fixture) renewEveryMinute(hw net.HardwareAddr, ip net.IP, n int) {
	f.t.Helper()
	for i := range n {
		f.now = f.now.Add(time.Minute)
		if got := f.send(msg(f.t, dhcpv4.MessageTypeRequest, hw, dhcpv4.WithClientIP(ip)), srvAddr); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			f.t.Fatalf("renewal %d: %v", i, got)
		}
	}
}

// An address released and bound again has one expiry entry, its new
// binding's: the first binding's entry, found early, is dropped rather
// than moved on beside it.
func TestAnAddressBoundAgainHasOneExpiryEntry(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	a := addrOf(ip)
	f.now = f.now.Add(time.Minute)
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)
	f.now = f.now.Add(time.Minute)
	if again := f.dora(mac(1)).YourIPAddr; !again.Equal(ip) {
		t.Fatalf("bound again to %s, want %s", again, ip)
	}
	f.renewEveryMinute(mac(1), ip, 90)
	f.srv.Sweep() // both bindings' first expiries have passed
	n := 0
	for _, e := range f.srv.expiry {
		if e.ip == lease.AddrUint32(a) {
			n++
		}
	}
	if l := f.store.leases[a]; n != 1 || l.State != lease.Active {
		t.Fatalf("%d expiry entries for %s (%v), want 1", n, a, l.State)
	}
}

// Entries of leases that ended are made anew by the sweep once they
// outnumber the records by far, and the one lease bound after expires.
func TestExpiryHeapIsMadeAnew(t *testing.T) {
	f := newFixture(t)
	for range expirySlack + 10 {
		ip := f.dora(mac(1)).YourIPAddr
		f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)
	}
	if n := len(f.srv.expiry); n != expirySlack+10 {
		t.Fatalf("%d expiry entries after %d bindings released (one each, until their time or the sweep)", n, expirySlack+10)
	}
	f.srv.Sweep()
	if n := len(f.srv.expiry); n > 2*f.srv.leases.Len() {
		t.Fatalf("%d expiry entries for %d records after the sweep", n, f.srv.leases.Len())
	}
	ip := f.dora(mac(2)).YourIPAddr
	f.now = f.now.Add(time.Hour + time.Second)
	f.srv.Sweep()
	if l := f.store.leases[addrOf(ip)]; l.State != lease.Expired {
		t.Fatalf("a lease bound after the heap was made anew: %v an hour on", l.State)
	}
}

func TestOfferHeldThenReturned(t *testing.T) {
	f := newFixture(t)
	o1 := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)[0].YourIPAddr
	o2 := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(2)), bcast)[0].YourIPAddr
	if o1.Equal(o2) {
		t.Fatal("two clients offered the same address while the offer is held")
	}
	if again := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(1)), bcast)[0].YourIPAddr; !again.Equal(o1) {
		t.Fatalf("retransmitted DISCOVER got %s, first offer %s", again, o1)
	}
	f.now = f.now.Add(11 * time.Second)
	f.srv.Sweep()
	if st := f.srv.PoolStats()[netip.MustParsePrefix("10.77.0.0/24")]; st["offered"] != 0 || st["free"] != 10 {
		t.Fatalf("after offer hold: %v", st)
	}
}

func TestInformGetsOptionsWithoutLease(t *testing.T) {
	f := newFixture(t)
	got := f.send(msg(t, dhcpv4.MessageTypeInform, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.9"))), srvAddr)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || got[0].Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !got[0].YourIPAddr.IsUnspecified() {
		t.Fatalf("INFORM reply: %v", got)
	}
	if f.lastOut.Dst.String() != "10.77.0.9:68" {
		t.Fatalf("INFORM reply to %s", f.lastOut.Dst)
	}
	if len(f.store.leases) != 0 {
		t.Fatal("INFORM changed state")
	}
}

func TestPoolExhaustion(t *testing.T) {
	f := newFixture(t)
	for i := range byte(10) {
		f.dora(mac(i))
	}
	if got := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(99)), bcast); len(got) != 0 {
		t.Fatalf("full pool answered: %v", got)
	}
	if testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("pool_exhausted")) != 1 {
		t.Fatal("exhaustion not counted")
	}
}

func TestMaxMessageSizeTrimsUnrequestedOptionsFirst(t *testing.T) {
	f := newFixture(t)
	sub := f.srv.subs.forAddr(netip.MustParseAddr("10.77.0.1"))
	big := append([]byte{}, sub.Options...)
	for i := range 3 {
		big = append(big, byte(200+i), 120)
		big = append(big, make([]byte, 120)...)
	}
	sub.Options = big
	m := msg(t, dhcpv4.MessageTypeDiscover, mac(1), dhcpv4.WithOption(dhcpv4.OptParameterRequestList(dhcpv4.OptionCode(optCode(202)), dhcpv4.OptionRouter)))
	got := f.send(m, bcast)
	if len(got) != 1 {
		t.Fatal("no offer")
	}
	if n := len(got[0].ToBytes()); n > 576-28 {
		t.Fatalf("reply of %d bytes exceeds 576-byte datagram", n)
	}
	if !got[0].Options.Has(optCode(202)) || !got[0].Options.Has(dhcpv4.OptionRouter) || got[0].Options.Has(optCode(201)) {
		t.Fatalf("wrong options kept: %v", got[0].Options)
	}
}

type optCode uint8

func (o optCode) Code() uint8    { return uint8(o) }
func (o optCode) String() string { return "test" }

func TestMalformedChangesNothing(t *testing.T) {
	f := newFixture(t)
	good := msg(t, dhcpv4.MessageTypeDiscover, mac(1)).ToBytes()
	for _, b := range [][]byte{nil, good[:100], append(append([]byte{}, good[:236]...), 1, 2, 3, 4), append(good[:240:240], 53, 5)} {
		f.srv.Handle(Incoming{Data: b, IfIndex: 7})
	}
	if len(f.out.take()) != 0 || len(f.srv.offers) != 0 || f.store.commits != 0 {
		t.Fatal("malformed input changed state or got a reply")
	}
	if testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("malformed")) != 4 {
		t.Fatalf("malformed count %v", testutil.ToFloat64(f.srv.m.Dropped.WithLabelValues("malformed")))
	}
}

func TestRestartKeepsLeases(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	f.srv = f.build()
	if again := f.dora(mac(1)).YourIPAddr; !again.Equal(ip) {
		t.Fatalf("after reload client got %s, had %s", again, ip)
	}
	if other := f.dora(mac(2)).YourIPAddr; other.Equal(ip) {
		t.Fatal("after reload another client got a bound address")
	}
}

// FuzzHandle drives arbitrary datagrams through a server holding bindings
// of every kind: a malformed one changes nothing and gets no answer, and
// after any the server's invariants hold and each answer agrees with the
// lease table (checkHandle).
func FuzzHandle(f *testing.F) {
	t := &testing.T{}
	for _, m := range []*dhcpv4.DHCPv4{
		msg(t, dhcpv4.MessageTypeDiscover, mac(1)),
		msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.100"))),
		msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.100"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice()))),
		msg(t, dhcpv4.MessageTypeDecline, mac(1), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.100")))),
		msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.100"))),
		msg(t, dhcpv4.MessageTypeInform, mac(1), dhcpv4.WithClientIP(net.ParseIP("10.77.0.9"))),
		msg(t, dhcpv4.MessageTypeDiscover, mac(2), dhcpv4.WithGatewayIP(relayAddr.AsSlice()), dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: []byte{5, 4, 10, 77, 0, 0, 11, 4, 1, 2, 3, 4}}})),
	} {
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkHandle(t, b) })
}

// TestInterfacesFollowTheirAddresses: the interfaces SetInterfaces gives
// (the daemon's link watcher, as addresses change) decide the subnet of a
// directly attached client and the server-id it is given, and an
// interface no longer given is not served.
func TestInterfacesFollowTheirAddresses(t *testing.T) {
	f := newFixture(t)
	offer := func() *dhcpv4.DHCPv4 {
		t.Helper()
		out := f.send(msg(t, dhcpv4.MessageTypeDiscover, mac(40)), bcast)
		if len(out) != 1 {
			return nil
		}
		return out[0]
	}
	if o := offer(); o == nil || !o.ServerIdentifier().Equal(net.IP{10, 77, 0, 1}) || o.YourIPAddr[2] != 0 {
		t.Fatalf("offer on the LAN: %v", o)
	}
	// The interface's address moves to the other subnet.
	f.srv.SetInterfaces([]Interface{{Index: 7, Name: "veth-srv", Addrs: []netip.Prefix{netip.MustParsePrefix("10.78.0.1/16")}}})
	if o := offer(); o == nil || !o.ServerIdentifier().Equal(net.IP{10, 78, 0, 1}) || o.YourIPAddr[1] != 78 {
		t.Fatalf("offer after the address moved to 10.78.0.1/16: %v", o)
	}
	// The interface is gone.
	f.srv.SetInterfaces(nil)
	if o := offer(); o != nil {
		t.Fatalf("an interface no longer served answered: %v", o)
	}
}

// A lease whose subnet a reload (or a restart with a new configuration)
// removed still ends at its expiry: its client cannot renew it (a renewal
// outside every subnet is not answered ACK), and an ACTIVE record kept
// past its time would stand in leasequery's history, the client's
// bindings and the active count for good.
func TestLeaseOutsideEverySubnetExpires(t *testing.T) {
	for _, how := range []string{"reload", "restart"} {
		t.Run(how, func(t *testing.T) {
			f := newFixture(t)
			ip := f.dora(mac(1)).YourIPAddr
			a := addrOf(ip)
			withoutLAN := func(c *Config) {
				c.Subnets = slices.DeleteFunc(c.Subnets, func(sn *Subnet) bool { return sn.Prefix.Contains(a) })
			}
			switch how {
			case "reload":
				var c Config
				f.srv.mu.Lock()
				c.Subnets = slices.Clone(f.srv.subs.list)
				f.srv.mu.Unlock()
				withoutLAN(&c)
				if err := f.srv.Reconfigure(f.srv.settings(), c.Subnets, nil); err != nil {
					t.Fatal(err)
				}
			case "restart":
				f.config = withoutLAN
				f.srv = f.build()
			}
			if f.srv.SubnetOf(a).IsValid() {
				t.Fatalf("%s still in a subnet", a)
			}
			f.now = f.now.Add(time.Minute)
			renew := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip))
			for _, r := range f.send(renew, srvAddr) {
				if r.MessageType() == dhcpv4.MessageTypeAck {
					t.Fatalf("a renewal outside every subnet was answered %v", r.MessageType())
				}
			}
			f.srv.Sweep() // a rebuild of the expiry heap meets it too
			f.srv.mu.Lock()
			f.srv.rebuildExpiryLocked()
			f.srv.mu.Unlock()
			f.now = f.now.Add(time.Hour - time.Minute - time.Second)
			f.sweepWants(a, lease.Active, "before its expiry")
			f.now = f.now.Add(2 * time.Second)
			f.sweepWants(a, lease.Expired, "past its expiry")
			f.sweepWants(a, lease.Free, "a sweep after it expired")
		})
	}
}

// sweepWants runs a sweep and requires a's record to be in state want
// after it.
func (f *fixture) sweepWants(a netip.Addr, want lease.State, when string) {
	f.t.Helper()
	f.srv.Sweep()
	if l := f.store.leases[a]; l.State != want {
		f.t.Fatalf("%s: %v, want %v", when, l.State, want)
	}
}

// A lease that had already ended (released here) when a restart dropped
// its subnet becomes FREE at the first sweep, as it would in one.
func TestEndedLeaseOutsideEverySubnetBecomesFree(t *testing.T) {
	f := newFixture(t)
	ip := f.dora(mac(1)).YourIPAddr
	a := addrOf(ip)
	f.send(msg(t, dhcpv4.MessageTypeRelease, mac(1), dhcpv4.WithClientIP(ip)), srvAddr)
	if l := f.store.leases[a]; l.State != lease.Released {
		t.Fatalf("after the RELEASE: %v", l.State)
	}
	f.config = func(c *Config) {
		c.Subnets = slices.DeleteFunc(c.Subnets, func(sn *Subnet) bool { return sn.Prefix.Contains(a) })
	}
	f.srv = f.build()
	f.sweepWants(a, lease.Free, "a sweep after a restart without its subnet")
}
