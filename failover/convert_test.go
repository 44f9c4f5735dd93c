package failover

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// TestReservedFlag: a reserved address in this server's free state goes as
// the partner's free state with the R flag (dhcpd's rule); other states
// keep theirs; the flag comes back as Reserved.
func TestReservedFlag(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.9")
	for _, c := range []struct {
		name     string
		state    lease.State
		reserved bool
		primary  bool
		want     lease.State
		flag     bool
	}{
		{"primary's free reserved", lease.Free, true, true, lease.Backup, true},
		{"secondary's backup reserved", lease.Backup, true, false, lease.Free, true},
		{"active reserved", lease.Active, true, true, lease.Active, true},
		{"cancelled reservation", lease.Free, false, true, lease.Free, false},
	} {
		l := &lease.Lease{IP: ip, State: c.state, Reserved: c.reserved, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9},
			Expiry: time.Unix(2_000_000_000, 0)}
		b := toBinding(l, sendOpts{primary: c.primary})
		if lease.State(b.Status) != c.want || (b.Flags&wire.FlagReserved != 0) != c.flag {
			t.Errorf("%s: status %v flags %#x, want %v and R %v", c.name, lease.State(b.Status), b.Flags, c.want, c.flag)
			continue
		}
		back, err := fromBinding(&b, 0)
		if err != nil || back.Reserved != c.flag {
			t.Errorf("%s: read back %+v %v", c.name, back, err)
		}
	}
}

// TestForceRenewKeyTravels: the key goes as option 90 in
// client-reply-options only when keys are allowed (an xdhcpd partner over
// TLS), and is read back; a malformed option 90 refuses the update.
func TestForceRenewKeyTravels(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, auth.KeyLen)
	l := &lease.Lease{IP: netip.MustParseAddr("10.0.0.9"), State: lease.Active, HWType: 1, HWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9},
		Expiry: time.Unix(2_000_000_000, 0), ForceRenewKey: key}
	if b := toBinding(l, sendOpts{rich: true}); len(b.ReplyOptions) != 0 {
		t.Fatalf("a key was sent without TLS: % x", b.ReplyOptions)
	}
	l.LastXID = 0xdeadbeef // a FORCERENEW must carry it (dhcpcd checks it first)
	b := toBinding(l, sendOpts{rich: true, keys: true})
	back, err := fromBinding(&b, 0)
	if err != nil || !bytes.Equal(back.ForceRenewKey, key) || back.LastXID != l.LastXID {
		t.Fatalf("key read back % x and xid %#x (%v), want % x and %#x", back.ForceRenewKey, back.LastXID, err, key, l.LastXID)
	}
	// Option 90 of another protocol, a truncated option, an xid of 3 bytes.
	for _, bad := range [][]byte{{90, 3, 1, 2, 3}, {90, 30, 1}, {optLastXID, 3, 1, 2, 3}} {
		b.ReplyOptions = bad
		if _, err := fromBinding(&b, 0); !errors.Is(err, errMissing) {
			t.Errorf("client-reply-options % x: %v, want errMissing", bad, err)
		}
	}
}
