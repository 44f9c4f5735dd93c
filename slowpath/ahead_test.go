package slowpath

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// gatedSender is capture whose Send, while gated, waits for open.
type gatedSender struct {
	*capture
	mu    sync.Mutex
	gate  chan struct{} // nil: not gated
	began chan struct{} // a Send is waiting at the gate
}

func (g *gatedSender) Send(o []Outgoing) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.began <- struct{}{}
		<-gate
	}
	g.capture.Send(o)
}

// TestAheadSenderSendsFromRun: while Run runs, an ACK on the horizon
// leaves from Run's sender: Handle returns while that send is still
// under way, and the ACK is counted as a reply. After Run, Handle sends
// it itself.
func TestAheadSenderSendsFromRun(t *testing.T) {
	f := horizonFixture(t, true)
	g := &gatedSender{capture: f.out, began: make(chan struct{}, 1)}
	cfg := f.config
	f.config = func(c *Config) { cfg(c); c.Sender = g }
	f.srv = f.build()
	ip := f.dora(mac(1)).YourIPAddr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.srv.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		f.srv.ahead.mu.Lock()
		running := f.srv.ahead.running
		f.srv.ahead.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run's sender did not start")
		}
	}
	acks := testutil.ToFloat64(f.srv.m.reply(dhcpwire.Ack))
	open := make(chan struct{})
	g.mu.Lock()
	g.gate = open
	g.mu.Unlock()
	renew := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip))
	handled := make(chan struct{})
	go func() {
		f.srv.Handle(Incoming{Data: renew.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: srvAddr, IfIndex: 7})
		close(handled)
	}()
	select {
	case <-handled:
	case <-time.After(5 * time.Second):
		t.Fatal("Handle waited for the ACK's send")
	}
	select {
	case <-g.began:
	case <-time.After(5 * time.Second):
		t.Fatal("Run's sender did not send the ACK")
	}
	if got := f.out.take(); len(got) != 0 {
		t.Fatalf("%d replies sent while the send waits", len(got))
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(open)
	var got []Outgoing
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		got = f.out.take()
	}
	if len(got) != 1 {
		t.Fatalf("%d replies from Run's sender, want the ACK", len(got))
	}
	if n := testutil.ToFloat64(f.srv.m.reply(dhcpwire.Ack)) - acks; n != 1 {
		t.Fatalf("%v ACKs counted, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.send(renew, srvAddr); len(got) != 1 {
		t.Fatalf("after Run: %d replies from Handle, want the ACK", len(got))
	}
}
