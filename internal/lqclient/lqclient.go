// Package lqclient is a leasequery requestor: RFC 4388 over UDP, sent as a
// relay agent would (from giaddr, port 67), and RFC 6926 bulk leasequery
// over TCP. It speaks to any server, ISC dhcpd and xdhcpd alike.
package lqclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Query says what to ask. Exactly one key is set.
type Query struct {
	Server   netip.AddrPort
	GIAddr   netip.Addr // our address: UDP replies come back to it; TCP connects from it
	IP       netip.Addr
	MAC      net.HardwareAddr
	ClientID []byte
	RelayID  []byte // bulk only (82.12)
	RemoteID []byte // bulk only (82.2)
	XID      uint32
	// Start and End, when set, ask only for bindings that changed in that
	// window (bulk only: options 154 and 155).
	Start, End time.Time
	// Idle, for bulk queries, is how long to wait for each next reply
	// before giving up (default 3 s). A long answer may take much longer
	// in all; the context's deadline, if any, still bounds the whole.
	Idle time.Duration
}

// Reply is one answer, decoded.
type Reply struct {
	Type          string       `json:"type"`
	XID           uint32       `json:"xid"`
	IP            string       `json:"ip,omitempty"`
	HWAddr        string       `json:"hw-address,omitempty"`
	ClientID      string       `json:"client-id,omitempty"`
	ServerID      string       `json:"server-id,omitempty"`
	BaseTime      *uint32      `json:"base-time,omitempty"`
	State         string       `json:"state,omitempty"`
	StateFor      *uint32      `json:"seconds-in-state,omitempty"`
	LeaseTime     *uint32      `json:"lease-time-remaining,omitempty"`
	T1            *uint32      `json:"t1-remaining,omitempty"`
	T2            *uint32      `json:"t2-remaining,omitempty"`
	SinceLast     *uint32      `json:"seconds-since-last-transaction,omitempty"`
	AssociatedIPs []string     `json:"associated-ips,omitempty"`
	RelayInfo     string       `json:"relay-agent-information,omitempty"`
	VendorClass   string       `json:"vendor-class,omitempty"`
	Status        *uint8       `json:"status-code,omitempty"`
	StatusMessage string       `json:"status-message,omitempty"`
	Raw           []byte       `json:"-"`
	Options       map[int]bool `json:"-"`
}

func (q Query) keys() int {
	n := 0
	for _, set := range []bool{q.IP.IsValid(), len(q.MAC) > 0, len(q.ClientID) > 0, len(q.RelayID) > 0, len(q.RemoteID) > 0} {
		if set {
			n++
		}
	}
	return n
}

// Message renders the query as a DHCPLEASEQUERY (or DHCPBULKLEASEQUERY).
func (q Query) Message(bulk bool) ([]byte, error) {
	if q.keys() != 1 {
		return nil, errors.New("a leasequery needs exactly one of ip, mac, client-id, relay-id, remote-id")
	}
	if !bulk && (len(q.RelayID) > 0 || len(q.RemoteID) > 0) {
		return nil, errors.New("relay-id and remote-id queries are bulk (TCP) only")
	}
	if bulk && q.IP.IsValid() {
		return nil, errors.New("bulk leasequery has no query by IP (RFC 6926)")
	}
	if !bulk && (!q.Start.IsZero() || !q.End.IsZero()) {
		return nil, errors.New("start and end times are for bulk (TCP) queries only")
	}
	for _, t := range []time.Time{q.Start, q.End} {
		if !t.IsZero() && (t.Unix() < 0 || t.Unix() > math.MaxInt32) {
			return nil, fmt.Errorf("time %s does not fit a leasequery time option", t.Format(time.RFC3339))
		}
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.Start.After(q.End) {
		return nil, errors.New("start time after end time")
	}
	if len(q.MAC) > 16 {
		return nil, fmt.Errorf("hardware address of %d bytes", len(q.MAC))
	}
	h := dhcpwire.Header{Op: dhcpwire.BootRequest, XID: q.XID, GIAddr: q.GIAddr}
	if q.IP.IsValid() {
		h.CIAddr = q.IP
	}
	if len(q.MAC) > 0 {
		h.HType, h.HLen = 1, uint8(len(q.MAC))
		copy(h.CHAddr[:], q.MAC)
	}
	typ := uint8(dhcpwire.LeaseQuery)
	if bulk {
		typ = dhcpwire.BulkLeaseQuery
		h.GIAddr = netip.Addr{}
	}
	b := dhcpwire.AppendHeader(nil, h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	if len(q.ClientID) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, q.ClientID)
	}
	var ri []byte
	if len(q.RelayID) > 0 {
		ri = dhcpwire.AppendOption(ri, dhcpwire.SubOptRelayID, q.RelayID)
	}
	if len(q.RemoteID) > 0 {
		ri = dhcpwire.AppendOption(ri, dhcpwire.SubOptRemoteID, q.RemoteID)
	}
	if ri != nil {
		b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, ri)
	}
	if !q.Start.IsZero() {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptQueryStartTime, uint32(q.Start.Unix()))
	}
	if !q.End.IsZero() {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptQueryEndTime, uint32(q.End.Unix()))
	}
	b = append(b, dhcpwire.OptEnd)
	return b, nil
}

// UDP sends the query from GIAddr:67 and waits for the reply.
func UDP(ctx context.Context, q Query) (*Reply, error) {
	msg, err := q.Message(false)
	if err != nil {
		return nil, err
	}
	if !q.GIAddr.IsValid() {
		return nil, errors.New("--giaddr is required: the server answers the address in giaddr")
	}
	var lc net.ListenConfig
	c, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(q.GIAddr, 67).String())
	if err != nil {
		return nil, fmt.Errorf("binding %s:67 (giaddr must be an address of this host): %w", q.GIAddr, err)
	}
	defer c.Close()
	if _, err := c.WriteTo(msg, net.UDPAddrFromAddrPort(q.Server)); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", q.Server, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(3 * time.Second)
	}
	c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return nil, fmt.Errorf("no reply from %s: %w", q.Server, err)
		}
		r, err := Decode(buf[:n])
		if err != nil || r.XID != q.XID {
			continue // not ours
		}
		return r, nil
	}
}

// Bulk runs an RFC 6926 query over TCP, calling fn for every reply up to
// and including DHCPLEASEQUERYDONE.
func Bulk(ctx context.Context, q Query, fn func(*Reply) error) error {
	return BulkRaw(ctx, q, func(m []byte) (bool, error) {
		r, err := Decode(m)
		if err != nil {
			return false, err
		}
		return r.Type == "leasequerydone", fn(r)
	})
}

// BulkRaw is Bulk for callers that read replies themselves: fn gets each
// message (valid until it returns) and says whether it was the last.
func BulkRaw(ctx context.Context, q Query, fn func(m []byte) (last bool, err error)) error {
	msg, err := q.Message(true)
	if err != nil {
		return err
	}
	var d net.Dialer
	if q.GIAddr.IsValid() {
		// The server checks the connection's source against its
		// requester list: speak from the address we were told is ours.
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(q.GIAddr, 0))
	}
	c, err := d.DialContext(ctx, "tcp4", q.Server.String())
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", q.Server, err)
	}
	defer c.Close()
	// The context ends the stream whenever it ends; deadlines only time
	// out single reads, so a long answer that keeps coming is read whole.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	idle := q.Idle
	if idle <= 0 {
		idle = 3 * time.Second
	}
	c.SetWriteDeadline(time.Now().Add(idle))
	if _, err := c.Write(Frame(msg)); err != nil {
		return fmt.Errorf("sending the query: %w", ctxErr(ctx, err))
	}
	r := bufio.NewReaderSize(&idleReader{ctx: ctx, c: c, idle: idle}, 64<<10)
	buf := make([]byte, 0, 1500)
	for {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return fmt.Errorf("reading replies: %w", ctxErr(ctx, err))
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		buf = slices.Grow(buf[:0], n)[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("reading replies: %w", ctxErr(ctx, err))
		}
		last, err := fn(buf)
		if err != nil || last {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading replies: %w", context.Cause(ctx))
		}
	}
}

// idleReader gives every read its own deadline: the server may take as
// long as it likes in all, but not between two pieces of its answer. Once
// ctx has ended it reads no more: its new deadline would otherwise undo
// the one ctx's end put on the connection. (If ctx ends after the check,
// that deadline comes after this one.)
type idleReader struct {
	ctx  context.Context
	c    net.Conn
	idle time.Duration
}

func (r *idleReader) Read(b []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(r.idle))
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.c.Read(b)
}

// ctxErr reports the context's end rather than the deadline it forced on
// the connection.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// Frame prefixes a message with its length (RFC 6926 §6.1).
func Frame(m []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
}

// ReadFrame reads one length-prefixed message.
func ReadFrame(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Decode reads a leasequery reply.
func Decode(b []byte) (*Reply, error) {
	var p dhcpwire.Packet
	if err := p.Parse(b); err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	r := &Reply{Type: dhcpwire.MessageName(p.MessageType()), XID: p.XID, Raw: b, Options: map[int]bool{}}
	for _, c := range p.Codes() {
		r.Options[int(c)] = true
	}
	if !p.CIAddr.IsUnspecified() {
		r.IP = p.CIAddr.String()
	}
	if p.HLen > 0 {
		r.HWAddr = net.HardwareAddr(p.CHAddr()).String()
	}
	u32 := func(code uint8) *uint32 {
		if v, ok := p.Option(code); ok && len(v) == 4 {
			x := binary.BigEndian.Uint32(v)
			return &x
		}
		return nil
	}
	r.LeaseTime, r.T1, r.T2, r.SinceLast = u32(dhcpwire.OptLeaseTime), u32(dhcpwire.OptRenewalTime), u32(dhcpwire.OptRebindingTime), u32(dhcpwire.OptCLTT)
	r.BaseTime, r.StateFor = u32(dhcpwire.OptBaseTime), u32(dhcpwire.OptStartTimeOfState)
	if v, ok := p.Option(dhcpwire.OptDHCPState); ok && len(v) == 1 {
		r.State = StateName(v[0])
	}
	if v, ok := p.Option(dhcpwire.OptServerID); ok && len(v) == 4 {
		r.ServerID = netip.AddrFrom4([4]byte(v)).String()
	}
	if v, ok := p.Option(dhcpwire.OptClientID); ok {
		r.ClientID = colonHex(v)
	}
	if v, ok := p.Option(dhcpwire.OptAssociatedIP); ok {
		for i := 0; i+4 <= len(v); i += 4 {
			r.AssociatedIPs = append(r.AssociatedIPs, netip.AddrFrom4([4]byte(v[i:i+4])).String())
		}
	}
	if v, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok {
		r.RelayInfo = hex.EncodeToString(v)
	}
	if v, ok := p.Option(dhcpwire.OptVendorClass); ok {
		r.VendorClass = string(v)
	}
	if v, ok := p.Option(dhcpwire.OptStatusCode); ok && len(v) >= 1 {
		r.Status, r.StatusMessage = &v[0], string(v[1:])
	}
	return r, nil
}

// stateNames are RFC 6926's dhcp-state values (option 156), from 1.
var stateNames = []string{"available", "active", "expired", "released", "abandoned", "reset", "remote", "transitioning"}

// StateName names an RFC 6926 dhcp-state value.
func StateName(v uint8) string {
	if v >= 1 && int(v) <= len(stateNames) {
		return stateNames[v-1]
	}
	return fmt.Sprintf("state-%d", v)
}

func colonHex(b []byte) string {
	s := make([]string, len(b))
	for i, x := range b {
		s[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(s, ":")
}

// String is a one-line summary.
func (r *Reply) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", strings.ToUpper(r.Type))
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	add("ip", r.IP)
	add("hw", r.HWAddr)
	add("client-id", r.ClientID)
	add("state", r.State)
	if r.StateFor != nil {
		add("in-state-for", (time.Duration(*r.StateFor) * time.Second).String())
	}
	if r.LeaseTime != nil {
		add("remaining", (time.Duration(*r.LeaseTime) * time.Second).String())
	}
	if r.SinceLast != nil {
		add("last-seen", (time.Duration(*r.SinceLast)*time.Second).String()+" ago")
	}
	add("also", strings.Join(r.AssociatedIPs, ","))
	add("relay-info", r.RelayInfo)
	add("vendor-class", r.VendorClass)
	add("server", r.ServerID)
	if r.Status != nil {
		add("status", fmt.Sprintf("%d %s", *r.Status, r.StatusMessage))
	}
	return b.String()
}
