package slowpath

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// TestAheadSenderSendsFromRun: while Run runs, an ACK on the horizon
// leaves from Run's sender (Handle returns before it is sent), counted
// as a reply; after Run, Handle sends it itself.
func TestAheadSenderSendsFromRun(t *testing.T) {
	f := horizonFixture(t, true)
	ip := f.dora(mac(1)).YourIPAddr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.srv.Run(ctx) }()
	// Run's sender starts with Run: until it does, Handle sends itself.
	for deadline := time.Now().Add(5 * time.Second); ; {
		f.srv.ahead.mu.Lock()
		running := f.srv.ahead.running
		f.srv.ahead.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run's sender did not start")
		}
		time.Sleep(time.Millisecond)
	}
	acks := testutil.ToFloat64(f.srv.m.reply(dhcpwire.Ack))
	renew := msg(t, dhcpv4.MessageTypeRequest, mac(1), dhcpv4.WithClientIP(ip))
	f.srv.Handle(Incoming{Data: renew.ToBytes(), Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: srvAddr, IfIndex: 7})
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
