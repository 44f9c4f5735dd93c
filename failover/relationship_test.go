package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestFreshPairReachesNormal: two servers with no history go RECOVER,
// exchange UPDREQALL/UPDDONE, skip RECOVER-WAIT (they never operated) and
// reach NORMAL in seconds; the secondary's POOLREQ gets it half the pool.
func TestFreshPairReachesNormal(t *testing.T) {
	p := newPair(t)
	p.start(Primary, nil)
	p.start(Secondary, nil)
	waitState(t, p.prim, "normal", 10*time.Second)
	waitState(t, p.sec, "normal", 10*time.Second)
	// The primary's STATE saying so may still be on its way.
	waitFor(t, "the secondary to hear the primary is normal", 5*time.Second, func() bool { return p.sec.Status().PartnerState == "normal" })
	if s := p.sec.Status(); !s.Connected || s.MCLT != time.Minute {
		t.Fatalf("secondary status %+v", s)
	}
	waitFor(t, "the POOLREQ's addresses", 5*time.Second, func() bool { _, b := p.pDB.PoolCounts(); return b == 50 })
	// Both persisted their state.
	var st persisted
	if err := json.Unmarshal(p.sDB.meta["failover/test-pair"], &st); err != nil || st.MyState != "normal" || st.MCLT != 60 {
		t.Fatalf("secondary's stored state %s (%v)", p.sDB.meta["failover/test-pair"], err)
	}
}

// TestUpdatesFlowAndAreAcked: a binding granted on either side reaches the
// other (with option 82 between xdhcpd partners), and the ack comes back
// with the potential expiry sent.
func TestUpdatesFlowAndAreAcked(t *testing.T) {
	p := newPair(t)
	p.start(Primary, nil)
	p.start(Secondary, nil)
	waitState(t, p.prim, "normal", 10*time.Second)
	waitState(t, p.sec, "normal", 10*time.Second)
	now := time.Now()
	var sent []*lease.Lease
	for i := 0; i < 30; i++ { // more than max-unacked: flow control
		sent = append(sent, p.pDB.grant(p.prim, netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), byte(i), now))
	}
	got := p.sDB.grant(p.sec, netip.MustParseAddr("10.0.1.1"), 200, now)
	waitFor(t, "updates applied on both sides", 5*time.Second, func() bool {
		return p.sDB.get(sent[29].IP) != nil && p.pDB.get(got.IP) != nil
	})
	l := p.sDB.get(sent[0].IP)
	if l.State != lease.Active || !bytes.Equal(l.HWAddr, sent[0].HWAddr) || l.Expiry.Unix() != sent[0].Expiry.Unix() ||
		l.PotExp.Unix() != sent[0].PotExp.Unix() || !bytes.Equal(l.RelayInfo, sent[0].RelayInfo) {
		t.Fatalf("secondary holds %+v, primary sent %+v", l, sent[0])
	}
	waitFor(t, "acks", 5*time.Second, func() bool {
		l := p.pDB.get(sent[29].IP)
		return !l.PartnerPending && l.AckedExp.Unix() == sent[29].PotExp.Unix()
	})
	if s := p.prim.Status(); s.UpdatesSent < 30 || s.UpdatesAcked < 30 || s.UpdatesRejected != 0 {
		t.Fatalf("primary status %+v", s)
	}
}

// TestPartnerLossAndRecovery: the secondary dies; the primary goes
// COMMUNICATIONS-INTERRUPTED, refuses partner-down while... then takes it
// by command; the secondary restarts with its database, catches up
// (RECOVER, UPDREQ) and the pair is NORMAL again, the primary's grants
// from PARTNER-DOWN on the secondary.
func TestPartnerLossAndRecovery(t *testing.T) {
	p := newPair(t)
	p.start(Primary, nil)
	p.start(Secondary, nil)
	waitState(t, p.prim, "normal", 10*time.Second)
	waitState(t, p.sec, "normal", 10*time.Second)
	if err := p.prim.PartnerDown(context.Background()); err == nil || !strings.Contains(err.Error(), "connected") {
		t.Fatalf("partner-down with the partner talking: %v", err)
	}
	p.stopSec()
	s := waitState(t, p.prim, "communications-interrupted", 5*time.Second)
	if !strings.Contains(s.Waiting, "partner-down only by command") {
		t.Fatalf("waiting: %q", s.Waiting)
	}
	if err := p.prim.PartnerDown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.prim, "partner-down", time.Second)
	if _, ok := p.prim.Cap(&lease.Lease{}, time.Now()); ok {
		t.Fatal("a cap in partner-down")
	}
	late := p.pDB.grant(p.prim, netip.MustParseAddr("10.0.2.2"), 7, time.Now())
	p.start(Secondary, nil)
	waitState(t, p.sec, "normal", 15*time.Second)
	waitState(t, p.prim, "normal", 15*time.Second)
	if l := p.sDB.get(late.IP); l == nil || l.State != lease.Active {
		t.Fatalf("the grant made in partner-down did not reach the secondary: %+v", l)
	}
}

// TestSkewIsRefused: clocks further apart than MaxSkew: the secondary
// refuses the CONNECT (reason 4) and they stay apart; within it, the skew
// is measured and applied to the times received.
func TestSkewIsRefused(t *testing.T) {
	p := newPair(t)
	p.clockS = 5 * time.Minute
	p.start(Primary, nil)
	p.start(Secondary, nil)
	time.Sleep(2 * time.Second)
	if s := p.sec.Status(); s.Connected || s.State == "normal" {
		t.Fatalf("connected with clocks 5 minutes apart: %+v", s)
	}
	if n := testCounter(p.sec.m.Disconnects.WithLabelValues("reject-4")); n == 0 {
		t.Fatal("no reject reason 4 counted")
	}
}

func TestSkewIsCorrected(t *testing.T) {
	p := newPair(t)
	p.clockS = 30 * time.Second
	p.start(Primary, nil)
	p.start(Secondary, nil)
	waitState(t, p.sec, "normal", 10*time.Second)
	waitState(t, p.prim, "normal", 10*time.Second)
	if s := p.prim.Status(); s.Skew < 29*time.Second || s.Skew > 31*time.Second {
		t.Fatalf("primary measured skew %s, want 30s", s.Skew)
	}
	now := time.Now() // the primary's clock
	sent := p.pDB.grant(p.prim, netip.MustParseAddr("10.0.0.5"), 1, now)
	waitFor(t, "update", 5*time.Second, func() bool { return p.sDB.get(sent.IP) != nil })
	if got := p.sDB.get(sent.IP); got.Expiry.Sub(sent.Expiry.Add(30*time.Second)).Abs() > 1500*time.Millisecond {
		t.Fatalf("expiry on the secondary %v, want the primary's %v on its clock (+30s)", got.Expiry, sent.Expiry)
	}
	// The connection's keepalive timers run on each side's own clock: the
	// pair stays connected past max-response-delay.
	time.Sleep(3 * time.Second)
	for _, r := range []*Relationship{p.prim, p.sec} {
		if n := testCounter(r.m.Disconnects.WithLabelValues("no-traffic")); n != 0 || !r.Status().Connected {
			t.Fatalf("%s: %v no-traffic disconnects (connected %v) with a skewed clock", r.cfg.Role, n, r.Status().Connected)
		}
	}
}

// TestGarbageFromThePartner: a "partner" that sends nonsense after a good
// CONNECT is disconnected with a reason and nothing it sent is applied.
func TestGarbageFromThePartner(t *testing.T) {
	p := newPair(t)
	sec := p.start(Secondary, nil)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP{127, 0, 0, 1}}}
	var c net.Conn
	waitFor(t, "the secondary's listener", 2*time.Second, func() bool {
		var err error
		c, err = d.Dial("tcp", p.sAddr.String())
		return err == nil
	})
	defer c.Close()
	connect, _ := (&wire.Message{Type: wire.Connect, Time: uint32(time.Now().Unix()), XID: 1, Name: "test-pair", MaxUnacked: 10,
		ReceiveTimer: 5, VendorClass: "evil", ProtoVersion: 1, MCLT: 60, HBA: make([]byte, 32)}).Marshal()
	upd, _ := (&wire.Message{Type: wire.BndUpd, Time: uint32(time.Now().Unix()), XID: 2, Bindings: []wire.Binding{{IP: netip.MustParseAddr("10.9.9.9"), Status: wire.StatusActive, HWType: 1, HWAddr: []byte{1, 2, 3, 4, 5, 6}, Expiry: 1}}}).Marshal()
	upd[len(upd)-5] = 0xff // the expiry option's length: past the end
	c.Write(connect)
	c.Write(upd)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var gotDisconnect *wire.Message
	buf := make([]byte, wire.MaxLen)
	for gotDisconnect == nil {
		b, err := wire.ReadMessage(c, buf)
		if err != nil {
			t.Fatalf("reading from the secondary: %v", err)
		}
		m, err := wire.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == wire.Disconnect {
			gotDisconnect = m
		}
	}
	if gotDisconnect.RejectReason == 0 || gotDisconnect.Text == "" {
		t.Fatalf("DISCONNECT %+v, want a reason and a message", gotDisconnect)
	}
	if p.sDB.applied != 0 {
		t.Fatal("something of the bad message was applied")
	}
	_ = sec
}

// TestOnlyThePartnerMayConnect: a connection from another address is
// refused and counted.
func TestOnlyThePartnerMayConnect(t *testing.T) {
	p := newPair(t)
	sec := p.start(Secondary, nil)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP{127, 0, 0, 3}}}
	waitFor(t, "listener", 2*time.Second, func() bool {
		c, err := d.Dial("tcp", p.sAddr.String())
		if err != nil {
			return false
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		return err != nil
	})
	waitFor(t, "the refusal counted", 2*time.Second, func() bool {
		return testCounter(sec.m.Disconnects.WithLabelValues("not-the-partner")) > 0
	})
}

// TestPolicy: what each state lets the slow path do.
func TestPolicy(t *testing.T) {
	now := time.Now()
	key := []byte{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		role                 Role
		state                wire.ServerState
		newOK, renewOK       bool
		free, backup, capped bool
	}{
		{Primary, wire.StateNormal, true, true, true, false, true},
		{Secondary, wire.StateNormal, false, true, false, true, true},
		{Primary, wire.StateCommInterrupted, true, true, true, false, true},
		{Secondary, wire.StateCommInterrupted, true, true, false, true, true},
		{Primary, wire.StatePartnerDown, true, true, true, false, false},
		{Primary, wire.StateRecover, false, false, false, false, true},
		{Primary, wire.StateRecoverWait, false, false, false, false, true},
		{Primary, wire.StateRecoverDone, false, true, false, false, true},
		{Primary, wire.StateStartup, false, false, false, false, true},
		{Primary, wire.StatePotentialConflict, false, false, false, false, true},
	} {
		v := &view{role: c.role, state: c.state, stos: now, mclt: time.Hour, lbMaxSecs: 3}
		for i := range v.hba {
			v.hba[i] = 0xff // every bucket the primary's
		}
		name := c.role.String() + "/" + stateName(c.state)
		if got := v.answer(slowpath.RequestNew, key, 0); got != c.newOK {
			t.Errorf("%s: answer new %v", name, got)
		}
		if got := v.answer(slowpath.RequestRenew, key, 0); got != c.renewOK {
			t.Errorf("%s: answer renew %v", name, got)
		}
		if f, b := v.allocate(now); f != c.free || b != c.backup {
			t.Errorf("%s: allocate %v %v", name, f, b)
		}
		if _, ok := v.cap(&lease.Lease{}, now); ok != c.capped {
			t.Errorf("%s: capped %v", name, ok)
		}
	}
	// The partner's bucket in NORMAL: answered once secs passes the limit.
	v := &view{role: Secondary, state: wire.StateNormal, lbMaxSecs: 3}
	for i := range v.hba {
		v.hba[i] = 0xff
	}
	if v.answer(slowpath.RequestNew, key, 3) || !v.answer(slowpath.RequestNew, key, 4) {
		t.Error("secs past load-balance-max-seconds does not take over the partner's bucket")
	}
	if v.serve(&lease.Lease{HWAddr: key}) {
		t.Error("the fast path serves the partner's bucket in NORMAL")
	}
	// PARTNER-DOWN: the partner's addresses after MCLT.
	pd := &view{role: Secondary, state: wire.StatePartnerDown, stos: now.Add(-2 * time.Hour), mclt: time.Hour}
	if f, b := pd.allocate(now); !f || !b {
		t.Error("partner-down past MCLT does not use both pools")
	}
	// Reuse of an unacknowledged EXPIRED binding: only in PARTNER-DOWN,
	// MCLT after the latest promise on it and after entering the state.
	exp := &lease.Lease{State: lease.Expired, Expiry: now.Add(-3 * time.Hour), PotExp: now.Add(-2 * time.Hour), AckedExp: now.Add(-90 * time.Minute)}
	if (&view{state: wire.StateNormal, mclt: time.Hour}).mayReuse(exp, now) {
		t.Error("reuse without the partner's ack outside partner-down")
	}
	if !(&view{state: wire.StatePartnerDown, stos: now.Add(-2 * time.Hour), mclt: time.Hour}).mayReuse(exp, now) {
		t.Error("no reuse 1h30 after the acked potential expiry with MCLT 1h")
	}
	if (&view{state: wire.StatePartnerDown, stos: now.Add(-2 * time.Hour), mclt: 2 * time.Hour}).mayReuse(exp, now) {
		t.Error("reuse within MCLT of the acked potential expiry")
	}
	if (&view{state: wire.StatePartnerDown, stos: now.Add(-time.Minute), mclt: time.Hour}).mayReuse(exp, now) {
		t.Error("reuse within MCLT of entering partner-down")
	}
	// The cap: MCLT past the acked potential expiry, or past now.
	n := &view{state: wire.StateNormal, mclt: time.Hour}
	if c, _ := n.cap(&lease.Lease{AckedExp: now.Add(3 * time.Hour)}, now); !c.Equal(now.Add(4 * time.Hour)) {
		t.Errorf("cap %v", c)
	}
	if c, _ := n.cap(&lease.Lease{}, now); !c.Equal(now.Add(time.Hour)) {
		t.Errorf("cap without ack %v", c)
	}
	if pe := n.potentialExpiry(now, now.Add(time.Hour), now.Add(24*time.Hour)); !pe.Equal(now.Add(24*time.Hour + 30*time.Minute)) {
		t.Errorf("potential expiry %v", pe)
	}
}

func TestRebalance(t *testing.T) {
	for _, c := range []struct{ free, backup, pct, want int }{
		{100, 0, 15, 50}, {0, 100, 15, -50}, {55, 45, 15, 0}, {60, 40, 15, 0}, {80, 20, 15, 30}, {0, 0, 15, 0},
	} {
		if got := rebalance(c.free, c.backup, c.pct); got != c.want {
			t.Errorf("rebalance(%d, %d, %d) = %d, want %d", c.free, c.backup, c.pct, got, c.want)
		}
	}
	if poolRequestAnswer(10, 90) != 0 || poolRequestAnswer(90, 10) != 40 {
		t.Error("poolRequestAnswer")
	}
}

// TestAutoPartnerDown: with auto-partner-down set, a server whose partner
// stays silent goes PARTNER-DOWN by itself once that long has passed in
// COMMUNICATIONS-INTERRUPTED, and says when in its status meanwhile.
func TestAutoPartnerDown(t *testing.T) {
	p := newPair(t)
	p.start(Primary, func(c *Config) { c.AutoPartnerDown = 2 * time.Second })
	p.start(Secondary, nil)
	waitState(t, p.prim, "normal", 10*time.Second)
	p.stopSec()
	s := waitState(t, p.prim, "communications-interrupted", 5*time.Second)
	if !strings.Contains(s.Waiting, "partner-down automatically") || s.WaitingUntil.IsZero() {
		t.Fatalf("waiting %q until %v", s.Waiting, s.WaitingUntil)
	}
	s = waitState(t, p.prim, "partner-down", 5*time.Second)
	if !strings.Contains(s.StateReason, "auto-partner-down") {
		t.Fatalf("reason %q", s.StateReason)
	}
}

// TestRefusedPartnerIsNotRetriedEveryDial: a secondary with another
// relationship name refuses the primary; both then wait RetryAfterReject
// before connecting again, rather than refusing every 2 s.
func TestRefusedPartnerIsNotRetriedEveryDial(t *testing.T) {
	p := newPair(t)
	p.retry = time.Minute
	prim := p.start(Primary, nil)
	sec := p.start(Secondary, func(c *Config) { c.Name = "other-pair" })
	// Both connect at once at start (each may be refused once); after
	// that, nothing for RetryAfterReject.
	time.Sleep(1500 * time.Millisecond)
	n0 := testCounter(sec.m.Disconnects.WithLabelValues("reject-8"))
	time.Sleep(4 * time.Second)
	if n := testCounter(sec.m.Disconnects.WithLabelValues("reject-8")); n0 < 1 || n != n0 {
		t.Fatalf("the secondary refused %v times in the first 1.5 s and %v in the 4 s after, want at least once, then never", n0, n-n0)
	}
	if s := prim.Status(); s.Connected || s.State == "normal" {
		t.Fatalf("connected to a partner of another relationship: %+v", s)
	}
}

// TestKilledInFirstStartup: a fresh server stopped while still in its
// first STARTUP (its partner absent) starts again, without history; it
// once stored an empty state there and then refused to start at all.
// A stored state without one of this server's (as that version wrote)
// is read as no history too.
func TestKilledInFirstStartup(t *testing.T) {
	p := newPair(t)
	p.startupWait = time.Hour // the partner never comes
	r := p.start(Primary, nil)
	time.Sleep(600 * time.Millisecond) // the loop ticks (and once saved) meanwhile
	if s := r.Status(); s.State != "startup" {
		t.Fatalf("state %s, want startup", s.State)
	}
	p.stopPrim()
	if b := p.pDB.meta["failover/test-pair"]; len(b) > 0 {
		t.Fatalf("stored %s before having a state of its own", b)
	}
	p.pDB.meta["failover/test-pair"] = []byte(`{"my_state":"","my_since":"0001-01-01T00:00:00Z","mclt_s":60,"last_operating":"0001-01-01T00:00:00Z"}`)
	r, err := New(p.config(Primary, p.pDB))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.load(); err != nil {
		t.Fatalf("a server killed in its first STARTUP cannot start again: %v", err)
	}
	if r.hist {
		t.Fatal("an empty stored state read as history")
	}
}

// TestRestartInEveryState: a server that crashed in any state, with its
// partner left in COMMUNICATIONS-INTERRUPTED or PARTNER-DOWN, comes back to
// NORMAL with it by themselves, in both roles: no stored state leaves the
// pair stuck (dhcpd's pairs stuck in POTENTIAL-CONFLICT or RECOVER-WAIT
// after a restart).
func TestRestartInEveryState(t *testing.T) {
	for _, c := range []struct {
		role    Role
		partner string
	}{{Primary, "communications-interrupted"}, {Secondary, "communications-interrupted"}, {Primary, "partner-down"}, {Secondary, "partner-down"}} {
		role := c.role
		for _, state := range []string{"startup", "normal", "communications-interrupted", "partner-down", "recover", "recover-wait",
			"recover-done", "potential-conflict", "resolution-interrupted", "conflict-done", "paused", "shutdown"} {
			t.Run(role.String()+"/"+state+"/partner-"+c.partner, func(t *testing.T) {
				t.Parallel()
				p := newPair(t)
				since := time.Now().Add(-time.Minute)
				stored := func(s string) []byte {
					b, _ := json.Marshal(persisted{MyState: s, MySince: since, PartnerState: "normal", PartnerSince: since, MCLT: 60, LastOp: since})
					return b
				}
				crashed, partner := p.pDB, p.sDB
				if role == Secondary {
					crashed, partner = p.sDB, p.pDB
				}
				crashed.meta["failover/test-pair"] = stored(state)
				partner.meta["failover/test-pair"] = stored(c.partner)
				p.start(Primary, nil)
				p.start(Secondary, nil)
				for _, r := range []*Relationship{p.prim, p.sec} {
					waitState(t, r, "normal", 15*time.Second)
				}
			})
		}
	}
}

// TestUpdReqAllSendsEveryRecordAWindowAtATime: a secondary with no
// history asks for everything; the primary's records, several windows of
// them, all arrive, UPDDONE follows the last acknowledgement, and the
// queue never holds much more than a window (the records are read as the
// partner takes them, not copied all at once).
func TestUpdReqAllSendsEveryRecordAWindowAtATime(t *testing.T) {
	p := newPair(t)
	now := time.Now()
	const n = 2*sweepWindow + 1000
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		p.pDB.leases[ip] = &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 9, byte(i >> 8), byte(i)},
			CLTT: now, StateAt: now, Expiry: now.Add(time.Hour), PotExp: now.Add(time.Hour)}
	}
	// Free addresses that were never bound are not sent.
	p.pDB.leases[netip.MustParseAddr("10.8.0.1")] = &lease.Lease{IP: netip.MustParseAddr("10.8.0.1"), State: lease.Free}
	// The primary has history; the secondary was wiped.
	since := now.Add(-time.Minute)
	b, _ := json.Marshal(persisted{MyState: "communications-interrupted", MySince: since, PartnerState: "normal", PartnerSince: since, MCLT: 60, LastOp: since})
	p.pDB.meta["failover/test-pair"] = b
	prim := p.start(Primary, nil)
	p.start(Secondary, nil)
	most := 0
	waitFor(t, "every record on the secondary", 60*time.Second, func() bool {
		q, f := prim.q.depth()
		most = max(most, q+f)
		p.sDB.mu.Lock()
		defer p.sDB.mu.Unlock()
		return len(p.sDB.leases) == n
	})
	waitState(t, p.sec, "normal", 10*time.Second)
	waitState(t, prim, "normal", 10*time.Second)
	if _, ok := p.sDB.leases[netip.MustParseAddr("10.8.0.1")]; ok {
		t.Error("a free address never bound was sent")
	}
	if most > sweepWindow+2*prim.partner.maxUnacked*batchBindings {
		t.Errorf("the queue held %d records at once: more than a window (%d) and what is in flight", most, sweepWindow)
	}
	t.Logf("%d records caught up; at most %d queued or in flight", n, most)
}

// TestUpdReqAllEndsWhenTheLastRecordsAreNotSent: records that UPDREQALL
// leaves out (free addresses never bound) at the end of the sweep still
// let UPDDONE go: the pair reaches NORMAL.
func TestUpdReqAllEndsWhenTheLastRecordsAreNotSent(t *testing.T) {
	p := newPair(t)
	now := time.Now()
	for i := range 3 * sweepWindow {
		ip := netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)})
		p.pDB.leases[ip] = &lease.Lease{IP: ip, State: lease.Free}
	}
	bound := netip.MustParseAddr("10.6.0.1")
	p.pDB.leases[bound] = &lease.Lease{IP: bound, State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 6, 0, 1},
		CLTT: now, StateAt: now, Expiry: now.Add(time.Hour), PotExp: now.Add(time.Hour)}
	since := now.Add(-time.Minute)
	b, _ := json.Marshal(persisted{MyState: "communications-interrupted", MySince: since, PartnerState: "normal", PartnerSince: since, MCLT: 60, LastOp: since})
	p.pDB.meta["failover/test-pair"] = b
	prim := p.start(Primary, nil)
	p.start(Secondary, nil)
	waitState(t, p.sec, "normal", 15*time.Second)
	waitState(t, prim, "normal", 10*time.Second)
	if p.sDB.get(bound) == nil {
		t.Fatal("the bound address did not reach the secondary")
	}
}

// TestRecoverSendsWhatWasPendingAtTheCrash: a server killed under load
// (a binding it granted that its partner never acknowledged) restarts
// while the partner, up all along, is in PARTNER-DOWN. The partner says
// its state once, while the restarted server is still in STARTUP; the
// restarted one goes to RECOVER, then RECOVER-WAIT, which waits for that
// binding's acknowledgement: it must be sent without any other event (a
// server that only sent its queue on a later message sat in RECOVER-WAIT
// with the partner in PARTNER-DOWN until some binding changed).
func TestRecoverSendsWhatWasPendingAtTheCrash(t *testing.T) {
	for _, crashedRole := range []Role{Primary, Secondary} {
		t.Run(crashedRole.String(), func(t *testing.T) {
			p := newPair(t)
			since := time.Now().Add(-time.Minute)
			stored := func(s string) []byte {
				b, _ := json.Marshal(persisted{MyState: s, MySince: since, PartnerState: "normal", PartnerSince: since, MCLT: 60, LastOp: since})
				return b
			}
			crashed, partner, partnerRole := p.pDB, p.sDB, Secondary
			if crashedRole == Secondary {
				crashed, partner, partnerRole = p.sDB, p.pDB, Primary
			}
			crashed.meta["failover/test-pair"] = stored("normal")
			partner.meta["failover/test-pair"] = stored("partner-down")
			ip := netip.MustParseAddr("10.0.9.9")
			crashed.leases[ip] = &lease.Lease{IP: ip, State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 9, 9},
				CLTT: since, StateAt: since, Expiry: since.Add(time.Hour), PotExp: since.Add(90 * time.Minute), PartnerPending: true}

			up := p.start(partnerRole, nil)
			waitState(t, up, "partner-down", 5*time.Second)
			back := p.start(crashedRole, nil)
			for _, r := range []*Relationship{up, back} {
				waitState(t, r, "normal", 15*time.Second)
			}
			if l := partner.get(ip); l == nil || l.State != lease.Active {
				t.Fatalf("the binding pending at the crash did not reach the partner: %+v", l)
			}
		})
	}
}
