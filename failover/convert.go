package failover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xdhcp/xdhcp/failover/wire"
	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// DHCP options carried in client-request-options between xdhcpd partners
// (draft-12 §12.8 suggests 12, 60 and 82 among others).
const (
	optHostname    = 12
	optVendorClass = 60
	optRelayInfo   = 82
)

// optLastXID carries, in client-reply-options between xdhcpd partners and
// beside the FORCERENEW key, the xid of the client's last transaction
// (4 bytes): a FORCERENEW must carry it, dhcpcd drops any other (it checks
// the xid before the authentication), so a partner that got the key but
// not the xid could not force the client. A site-specific code (RFC 3942:
// 224 to 254), which only an xdhcpd partner reads; others skip it.
const optLastXID = 224

// sendOpts says what a binding update carries beyond the draft's fields.
type sendOpts struct {
	// rich: the host name, vendor class and option 82 as
	// client-request-options, which ISC dhcpd partners do not get.
	rich bool
	// keys: the FORCERENEW key as client-reply-options (option 90 as the
	// client got it), only to an xdhcpd partner over TLS: a key read on
	// the path lets anyone make the client renew.
	keys bool
	// primary: this server's role, for the R flag's state flip.
	primary bool
}

// toBinding renders l as a binding update. Its times are this server's
// clock: the receiver corrects them by the skew it measures (draft-12
// §8.1), as this server does with fromBinding. A reserved address in
// this server's free state goes as the partner's (FREE as BACKUP from the
// primary, BACKUP as FREE from the secondary) with the R flag, as dhcpd
// sends it: the partner may then give it, to its client only.
func toBinding(l *lease.Lease, o sendOpts) wire.Binding {
	at := wire.Seconds
	b := wire.Binding{IP: l.IP, Status: wire.Status(l.State), StateAt: at(l.StateAt), CLTT: at(l.CLTT)}
	if l.Reserved {
		b.Flags |= wire.FlagReserved
		switch {
		case o.primary && l.State == lease.Free:
			b.Status = wire.Status(lease.Backup)
		case !o.primary && l.State == lease.Backup:
			b.Status = wire.Status(lease.Free)
		}
	}
	if l.State != lease.Abandoned {
		// draft-12 Table 7.1-1: an abandoned binding names no client.
		b.ClientID = l.ClientID
		if len(l.HWAddr) > 0 {
			b.HWType, b.HWAddr = l.HWType, l.HWAddr
		}
	}
	// ISC sends both times in every state (the draft says only for
	// ACTIVE); an ISC receiver reads them, so they go whenever set.
	b.Expiry, b.PotExp = at(l.Expiry), at(l.PotExp)
	if o.keys && len(l.ForceRenewKey) == auth.KeyLen {
		b.ReplyOptions = auth.AppendKeyOption(nil, 0, auth.Key(l.ForceRenewKey))
		if l.LastXID != 0 {
			b.ReplyOptions = binary.BigEndian.AppendUint32(append(b.ReplyOptions, optLastXID, 4), l.LastXID)
		}
	}
	if o.rich {
		var ro []byte
		if l.Hostname != "" && len(l.Hostname) <= 255 {
			ro = append(append(ro, optHostname, byte(len(l.Hostname))), l.Hostname...)
		}
		if n := len(l.VendorClass); n > 0 && n <= 255 {
			ro = append(append(ro, optVendorClass, byte(n)), l.VendorClass...)
		}
		if n := len(l.RelayInfo); n > 0 && n <= 255 {
			ro = append(append(ro, optRelayInfo, byte(n)), l.RelayInfo...)
		}
		b.RequestOptions = ro
	}
	return b
}

// errMissing marks an update without what its status requires (reject
// reason 3).
var errMissing = errors.New("missing binding information")

// fromBinding reads a binding update, its times brought to our clock
// (theirs − skew).
func fromBinding(b *wire.Binding, skew time.Duration) (*lease.Lease, error) {
	st := lease.State(b.Status)
	if !st.Valid() {
		return nil, fmt.Errorf("%s: binding-status %d: %w", b.IP, b.Status, errMissing)
	}
	if st == lease.Active && len(b.HWAddr) == 0 && len(b.ClientID) == 0 {
		return nil, fmt.Errorf("%s: ACTIVE without a client: %w", b.IP, errMissing)
	}
	at := func(s uint32) time.Time {
		if s == 0 {
			return time.Time{}
		}
		return wire.Unix(s).Add(-skew)
	}
	l := &lease.Lease{IP: b.IP, State: st, ClientID: b.ClientID, Expiry: at(b.Expiry), PotExp: at(b.PotExp), StateAt: at(b.StateAt), CLTT: at(b.CLTT)}
	if len(b.HWAddr) > 0 {
		l.HWType, l.HWAddr = b.HWType, net.HardwareAddr(b.HWAddr)
	}
	l.Reserved = b.Flags&wire.FlagReserved != 0
	if err := readReplyOptions(b.ReplyOptions, l); err != nil {
		return nil, fmt.Errorf("%s: %w", b.IP, err)
	}
	if st == lease.Active && l.Expiry.IsZero() {
		return nil, fmt.Errorf("%s: ACTIVE without a lease-expiration-time: %w", b.IP, errMissing)
	}
	for o := b.RequestOptions; len(o) > 0; {
		if o[0] == 0 || o[0] == 255 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return nil, fmt.Errorf("%s: client-request-options truncated: %w", b.IP, errMissing)
		}
		v := o[2 : 2+int(o[1])]
		switch o[0] {
		case optHostname:
			l.Hostname = string(v)
		case optVendorClass:
			l.VendorClass = append([]byte(nil), v...)
		case optRelayInfo:
			l.RelayInfo = append([]byte(nil), v...)
		}
		o = o[2+int(o[1]):]
	}
	return l, nil
}

// readReplyOptions reads client-reply-options into l: a FORCERENEW key
// (option 90, RFC 6704 type 1) and the client's last xid (optLastXID).
// Other options are skipped; a malformed option 90 or xid is an error
// (reject reason 3), not a key silently dropped.
func readReplyOptions(o []byte, l *lease.Lease) error {
	for len(o) > 0 {
		if o[0] == 0 || o[0] == 255 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return fmt.Errorf("client-reply-options truncated: %w", errMissing)
		}
		v := o[2 : 2+int(o[1])]
		switch o[0] {
		case dhcpwire.OptAuthentication:
			n, err := auth.ParseNonce(v)
			if err != nil || n.Type != auth.InfoTypeKey {
				return fmt.Errorf("client-reply-options: option 90 is no FORCERENEW key (%v): %w", err, errMissing)
			}
			l.ForceRenewKey = n.Value[:]
		case optLastXID:
			if len(v) != 4 {
				return fmt.Errorf("client-reply-options: an xid of %d bytes: %w", len(v), errMissing)
			}
			l.LastXID = binary.BigEndian.Uint32(v)
		}
		o = o[2+int(o[1]):]
	}
	return nil
}

// packBindings splits bs into messages of at most max bindings (at least
// one each) that fit wire.MaxLen. ISC dhcpd 4.4 reads one address per
// BNDUPD (dhcp_failover_process_bind_update keeps one assigned address per
// message), so an ISC partner gets max 1.
func packBindings(t wire.MsgType, bs []wire.Binding, max int) [][]wire.Binding {
	var out [][]wire.Binding
	var cur []wire.Binding
	size := wire.HeaderLen
	for _, b := range bs {
		n := b.EncodedLen(t)
		if len(cur) > 0 && (len(cur) >= max || size+n > wire.MaxLen) {
			out = append(out, cur)
			cur, size = nil, wire.HeaderLen
		}
		if cur == nil {
			cur = make([]wire.Binding, 0, min(max, len(bs)))
		}
		cur = append(cur, b)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
