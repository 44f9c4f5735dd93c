package slowpath

import (
	"testing"

	"github.com/xdhcp/xdhcp/fastpath"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// TestDefaultMaxMessageIsTheProgramsOne: a request without option 57 is
// answered within the same size on both paths (ARCHITECTURE.md invariant
// 3). dhcpwire does not import fastpath, so the one value it keeps itself
// is checked against the program's here.
func TestDefaultMaxMessageIsTheProgramsOne(t *testing.T) {
	b := dhcpwire.AppendHeader(nil, dhcpwire.Header{Op: dhcpwire.BootRequest, HType: 1, HLen: 6})
	b = append(b, dhcpwire.OptEnd)
	var p dhcpwire.Packet
	if err := p.Parse(b); err != nil {
		t.Fatal(err)
	}
	if got, want := p.MaxMessageSize(), fastpath.DefaultMaxMessage; got != want {
		t.Fatalf("dhcpwire's default maximum message size %d, the XDP program's %d", got, want)
	}
}
