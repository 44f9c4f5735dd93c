package slowpath

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/internal/lqclient"
)

// Bulk leasequery's times on the wire (issue 14 §3: tshark shows our
// base-time as a date in 2093).
//
// RFC 6926 §6.2.3: "The base-time option is the current time the message
// was created to be sent by the DHCPv4 server to the requestor of the Bulk
// Leasequery. This MUST be an absolute time. All of the other time-based
// options in the reply message are relative to this time". IANA's registry
// of the option, from RFC 6926: "Absolute time (seconds since Jan 1, 1970)
// message was sent". query-start-time (154) and query-end-time (155) are
// registered the same way ("Absolute time (seconds since Jan 1, 1970)"),
// and start-time-of-state (153) as the "Number of seconds in the past when
// client entered current state". Kea's bulk leasequery hook sends time(0)
// as base-time and compares 154/155 with the lease's cltt in Unix seconds.
//
// So the 1970 epoch is right. tshark 4.0 decodes option 152 as an NTP
// timestamp (1900 epoch), in which a value below 2^31 falls in the era
// that starts in 2036: today's Unix seconds read as about 2093. The test
// pins the bytes, so that neither the server nor xdhcpctl can drift to
// another epoch without failing it.
func TestBulkLeasequeryTimesAreUnixSeconds(t *testing.T) {
	f := lqFixture(t)
	t0 := f.now // 2027-01-15 08:00:00 UTC, 1_800_000_000
	ack := f.dora(mac(5))
	f.now = t0.Add(90 * time.Second)

	q := lqclient.Query{MAC: mac(5), XID: 9, Start: t0.Add(-time.Minute), End: t0.Add(time.Minute)}
	m, err := q.Message(true)
	if err != nil {
		t.Fatal(err)
	}
	var qp dhcpwire.Packet
	if err := qp.Parse(m); err != nil {
		t.Fatal(err)
	}
	for code, want := range map[uint8]uint32{dhcpwire.OptQueryStartTime: 1_800_000_000 - 60, dhcpwire.OptQueryEndTime: 1_800_000_000 + 60} {
		if v, _ := qp.Option(code); len(v) != 4 || binary.BigEndian.Uint32(v) != want {
			t.Fatalf("xdhcpctl sends option %d as % x, want Unix seconds %d", code, v, want)
		}
	}

	reps := f.bulkAsk(q)
	if len(reps) != 2 || reps[0].Type != "leaseactive" || reps[0].IP != ack.YourIPAddr.String() {
		t.Fatalf("window around the grant: %+v", reps)
	}
	var p dhcpwire.Packet
	if err := p.Parse(reps[0].Raw); err != nil {
		t.Fatal(err)
	}
	opt32 := func(code uint8) uint32 {
		v, ok := p.Option(code)
		if !ok || len(v) != 4 {
			t.Fatalf("option %d: % x", code, v)
		}
		return binary.BigEndian.Uint32(v)
	}
	if got := opt32(dhcpwire.OptBaseTime); got != 1_800_000_090 {
		t.Fatalf("base-time %d, want the reply's time in seconds since 1970 (1800000090); as 1900-epoch seconds that would be %d",
			got, uint32(1_800_000_090+2_208_988_800))
	}
	if got := time.Unix(int64(opt32(dhcpwire.OptBaseTime)), 0); !got.Equal(f.now) {
		t.Fatalf("base-time reads %v, the server's clock says %v", got, f.now)
	}
	// Relative to base-time: the binding became active 90 s before it.
	if got := opt32(dhcpwire.OptStartTimeOfState); got != 90 {
		t.Fatalf("start-time-of-state %d, want 90 seconds in the past", got)
	}
	if got := opt32(dhcpwire.OptCLTT); got != 90 {
		t.Fatalf("client-last-transaction-time %d, want 90", got)
	}
	if got := opt32(dhcpwire.OptLeaseTime); got != 3600-90 {
		t.Fatalf("lease time %d, want the 3510 seconds left after base-time", got)
	}
	// A window that ends before the grant, in Unix seconds, leaves it out.
	q.Start, q.End = t0.Add(-2*time.Minute), t0.Add(-time.Minute)
	if reps := f.bulkAsk(q); len(reps) != 1 || reps[0].Type != "leasequerydone" {
		t.Fatalf("window before the grant: %+v", reps)
	}
}
