package slowpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/lease"
)

// BulkOptions bound the TCP bulk leasequery service (RFC 6926).
type BulkOptions struct {
	MaxConnsPerRequester int
	// IdleTimeout closes a connection that sends no query, or takes no
	// reply, for this long (idle, half-open and stalled readers alike).
	IdleTimeout time.Duration
}

// RFC 6926 status codes (option 151).
const (
	statusSuccess        = 0
	statusUnspecFail     = 1
	statusMalformedQuery = 3
	statusNotAllowed     = 4
	maxBulkFrame         = 16 << 10 // a query is one DHCP message
	minBulkFrame         = 240
)

// bulkReader is all that bulk leasequery sees of the server: reads only,
// so the TCP service, which runs on its own goroutines at its requesters'
// pace, cannot change a binding or take part in the commit path. readView
// implements it over a Server.
type bulkReader interface {
	// LoadPage reads the lease store a page at a time (Store.LoadPage).
	LoadPage(after netip.Addr, limit int, fn func(*lease.Lease) error) (netip.Addr, error)
	// ReleaseMapped gives back the store's pages a scan has mapped in.
	ReleaseMapped()
	// ByHW and ByClient return copies of the bindings the indexes name
	// for a hardware address or a client key (they may have moved on).
	ByHW(htype uint8, hw []byte) []*lease.Lease
	ByClient(key string) []*lease.Lease
	// EffectiveExpiry is when l's binding ends (effectiveExpiryLocked).
	EffectiveExpiry(l *lease.Lease) time.Time
	// RenewTimes is T1 and T2 of l's grant until exp, by l's subnet.
	RenewTimes(l *lease.Lease, exp time.Time) (t1, t2 uint32)
	// Leasequery is the current leasequery configuration.
	Leasequery() Leasequery
	Now() time.Time
}

// readView is a Server seen through bulkReader.
type readView struct{ s *Server }

func (v readView) LoadPage(after netip.Addr, limit int, fn func(*lease.Lease) error) (netip.Addr, error) {
	return v.s.store.LoadPage(after, limit, fn)
}
func (v readView) ReleaseMapped()                             { v.s.releaseMapped() }
func (v readView) ByHW(htype uint8, hw []byte) []*lease.Lease { return v.s.leasesForHW(htype, hw) }
func (v readView) ByClient(key string) []*lease.Lease         { return v.s.LookupClient(key) }
func (v readView) EffectiveExpiry(l *lease.Lease) time.Time   { return v.s.effectiveExpiry(l) }
func (v readView) Leasequery() Leasequery                     { return v.s.settings().Leasequery }
func (v readView) Now() time.Time                             { return v.s.now() }

func (v readView) RenewTimes(l *lease.Lease, exp time.Time) (t1, t2 uint32) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return renewTimes(v.s.subs.forAddr(l.IP), l, exp)
}

// bulkServer is the bulk leasequery service: the read view, and where it
// counts and logs.
type bulkServer struct {
	view bulkReader
	m    *Metrics
	log  *slog.Logger
	warn func(kind, msg string, args ...any) // rate-limited
}

// bulk builds the bulk leasequery service over a read-only view of s.
func (s *Server) bulk() *bulkServer {
	return &bulkServer{view: readView{s}, m: s.m, log: s.log, warn: s.warnLimited}
}

// ServeBulk accepts bulk leasequery connections on ln until ctx ends,
// and waits for the connections it started.
func (s *Server) ServeBulk(ctx context.Context, ln net.Listener, o BulkOptions) error {
	return s.bulk().serve(ctx, ln, o)
}

func (s *bulkServer) serve(ctx context.Context, ln net.Listener, o BulkOptions) error {
	if o.MaxConnsPerRequester <= 0 {
		o.MaxConnsPerRequester = 4
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var mu sync.Mutex
	conns := map[netip.Addr]int{}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.warn("bulk_accept", "bulk leasequery accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		remote := netip.Addr{}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			remote = ta.AddrPort().Addr().Unmap()
		}
		if !s.allowed(remote) {
			s.m.Dropped.WithLabelValues("bulk_denied").Inc()
			s.warn("bulk_denied", "bulk leasequery from a requester not in leasequery.requesters", "remote", remote)
			c.Close()
			continue
		}
		mu.Lock()
		if conns[remote] >= o.MaxConnsPerRequester {
			mu.Unlock()
			s.m.Dropped.WithLabelValues("bulk_too_many_connections").Inc()
			s.warn("bulk_too_many_connections", "bulk leasequery connection refused: requester at its connection limit",
				"remote", remote, "limit", o.MaxConnsPerRequester)
			c.Close()
			continue
		}
		conns[remote]++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveBulkConn(ctx, c, remote, o, func() {
				mu.Lock()
				conns[remote]--
				mu.Unlock()
			})
		}()
	}
}

// allowed says whether remote may ask bulk leasequeries now: leasequery
// on and remote among leasequery.requesters. Both are live settings, so
// an open connection asks before each query too.
func (s *bulkServer) allowed(remote netip.Addr) bool {
	lq := s.view.Leasequery()
	return lq.Enabled && slices.ContainsFunc(lq.Requesters, func(p netip.Prefix) bool { return p.Contains(remote) })
}

// errRevoked ends a connection whose requester a reload no longer allows.
var errRevoked = errors.New("requester no longer allowed (leasequery settings reloaded)")

// serveBulkConn answers queries on one connection, one at a time. The
// requester's slot is released before the connection closes, so a client
// that sees the close may connect again at once.
func (s *bulkServer) serveBulkConn(ctx context.Context, c net.Conn, remote netip.Addr, o BulkOptions, release func()) {
	defer c.Close()
	defer release()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	bw := bufio.NewWriterSize(&deadlineWriter{c: c, timeout: o.IdleTimeout}, 32<<10)
	local := netip.Addr{}
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = ta.AddrPort().Addr().Unmap()
	}
	err := s.session(ctx, r, bw, local, func() bool { return s.allowed(remote) }, func() { c.SetReadDeadline(time.Now().Add(o.IdleTimeout)) })
	if errors.Is(err, errRevoked) {
		s.warn("bulk_denied", "bulk leasequery connection closed: its requester is no longer in leasequery.requesters", "remote", remote)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("bulk leasequery connection closed", "remote", c.RemoteAddr(), "err", err)
	}
}

// session reads queries from r and answers each on w, until the
// stream ends or breaks; before each read it calls arm (deadlines), and
// before each answer allowed (a reload may have revoked the requester).
// local is the server's address on the connection.
func (s *bulkServer) session(ctx context.Context, r *bufio.Reader, w *bufio.Writer, local netip.Addr, allowed func() bool, arm func()) error {
	for {
		arm()
		msg, err := readBulkFrame(r)
		if err != nil {
			// Only a bad frame is a drop: a requester that closes, or
			// idles past the timeout between queries (RFC 6926 lets it
			// keep the connection), or a shutdown, drops nothing.
			if errors.Is(err, errBadFrame) {
				s.m.Dropped.WithLabelValues("bulk_framing").Inc()
			}
			return err
		}
		var p dhcpwire.Packet
		if err := p.Parse(msg); err != nil {
			s.m.Dropped.WithLabelValues("bulk_malformed").Inc()
			return fmt.Errorf("not a bulk leasequery: %w", err) // nothing sensible to answer on this stream
		}
		if p.Op != dhcpwire.BootRequest || p.MessageType() != dhcpwire.BulkLeaseQuery {
			s.m.Dropped.WithLabelValues("bulk_malformed").Inc()
			return fmt.Errorf("not a bulk leasequery: op %d, message type %d", p.Op, p.MessageType())
		}
		s.m.message(dhcpwire.BulkLeaseQuery).Inc()
		if !allowed() {
			s.m.Dropped.WithLabelValues("bulk_denied").Inc()
			return errRevoked
		}
		if err := s.answerBulk(ctx, &p, w, local); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// deadlineWriter gives every write its own deadline, so a reader that
// stops reading is dropped after the timeout instead of holding us.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(b)
}

// errBadFrame is a frame readBulkFrame refused: a length out of bounds,
// or a frame cut short.
var errBadFrame = errors.New("bad bulk leasequery frame")

func readBulkFrame(r *bufio.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated length", errBadFrame)
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < minBulkFrame || n > maxBulkFrame {
		return nil, fmt.Errorf("%w: %d bytes", errBadFrame, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: truncated: %w", errBadFrame, err)
	}
	return b, nil
}

// bulkQuery is a validated DHCPBULKLEASEQUERY.
type bulkQuery struct {
	match      func(*lease.Lease) bool
	scan       bool           // relay-id / remote-id: walk every lease
	candidates []*lease.Lease // MAC / client-id: from the indexes
	from, to   time.Time      // change-time filter (154, 155), zero when absent
}

// parseBulk checks a query (RFC 6926 §6.2) and returns what it selects,
// or a status code and message.
func (s *bulkServer) parseBulk(p *dhcpwire.Packet) (bulkQuery, uint8, string) {
	var q bulkQuery
	if !p.CIAddr.IsUnspecified() || !p.YIAddr.IsUnspecified() || !p.SIAddr.IsUnspecified() {
		return q, statusMalformedQuery, "ciaddr, yiaddr and siaddr must be zero"
	}
	keys := 0
	hw := p.CHAddr()
	if p.HLen > 0 && slices.ContainsFunc(hw, func(b byte) bool { return b != 0 }) {
		keys++
		htype := p.HType
		q.candidates = s.view.ByHW(htype, hw)
		q.match = func(l *lease.Lease) bool { return l.HWType == htype && bytes.Equal(l.HWAddr, hw) }
	}
	if cid, ok := p.Option(dhcpwire.OptClientID); ok {
		keys++
		key := lease.ClientKey(cid, 0, nil)
		q.candidates = s.view.ByClient(key)
		q.match = func(l *lease.Lease) bool { return bytes.Equal(l.ClientID, cid) }
	}
	if ri, ok := p.Option(dhcpwire.OptRelayAgentInfo); ok {
		for _, sub := range []uint8{dhcpwire.SubOptRelayID, dhcpwire.SubOptRemoteID} {
			v, ok := subOption(ri, sub)
			if !ok {
				continue
			}
			if len(v) == 0 {
				return q, statusMalformedQuery, "empty relay-id or remote-id"
			}
			keys++
			want := bytes.Clone(v)
			q.scan = true
			q.match = func(l *lease.Lease) bool {
				got, ok := subOption(l.RelayInfo, sub)
				return ok && bytes.Equal(got, want)
			}
		}
	}
	switch {
	case keys > 1:
		return q, statusMalformedQuery, "more than one query key"
	case keys == 0:
		return q, statusNotAllowed, "queries for every binding are not supported"
	}
	for _, f := range []struct {
		code uint8
		dst  *time.Time
	}{{dhcpwire.OptQueryStartTime, &q.from}, {dhcpwire.OptQueryEndTime, &q.to}} {
		if v, ok := p.Option(f.code); ok {
			if len(v) != 4 || int32(binary.BigEndian.Uint32(v)) < 0 {
				return q, statusMalformedQuery, "bad query-start-time or query-end-time"
			}
			*f.dst = time.Unix(int64(binary.BigEndian.Uint32(v)), 0)
		}
	}
	if !q.from.IsZero() && !q.to.IsZero() && q.from.After(q.to) {
		return q, statusMalformedQuery, "query-start-time after query-end-time"
	}
	return q, statusSuccess, ""
}

// subOption finds a relay agent sub-option.
func subOption(ri []byte, code uint8) ([]byte, bool) {
	for i := 0; i+1 < len(ri); {
		n := int(ri[i+1])
		if i+2+n > len(ri) {
			return nil, false
		}
		if ri[i] == code {
			return ri[i+2 : i+2+n], true
		}
		i += 2 + n
	}
	return nil, false
}

// bulkPage is how many records a scan reads per store transaction: enough
// to keep the per-transaction cost small, few enough that the matches of
// one page are a bounded amount of memory.
const bulkPage = 1024

// bulkPagesMapped is how many pages a scan reads between two releases of
// the store's mapped pages (some 65 MB of the file).
const bulkPagesMapped = 256

// dhcpState returns a binding's RFC 6926 dhcp-state (option 156) and the
// time it entered that state, as of now. RFC 6926 numbers its states as
// the failover draft numbers binding states, which lease.State follows:
// FREE is AVAILABLE, and BACKUP's 7 is REMOTE (the partner may allocate
// it, we may not). An active lease whose expiry has passed is EXPIRED from
// its expiry on, whether or not the sweeper has run.
func dhcpState(l *lease.Lease, exp, now time.Time) (uint8, time.Time) {
	since := l.StateAt
	if since.IsZero() {
		since = l.Start
	}
	switch {
	case l.State == lease.Active && !now.Before(exp):
		return uint8(lease.Expired), exp
	case !l.State.Valid():
		return uint8(lease.Free), since
	}
	return uint8(l.State), since
}

// bulkAnswer is one query's reply stream.
type bulkAnswer struct {
	s     *bulkServer
	w     *bufio.Writer
	p     *dhcpwire.Packet
	q     bulkQuery
	now   time.Time
	local netip.Addr // the connection's local address: option 54 when nothing better is known
	sent  bool       // a message of this query has gone out (54 goes in the first)
}

// errStore marks a failure to read the lease store, which ends a query
// with a status code, unlike a failure to write, which ends the connection.
type errStore struct{ err error }

func (e errStore) Error() string { return "reading the lease store: " + e.err.Error() }
func (e errStore) Unwrap() error { return e.err }

// answerBulk streams one query's DHCPLEASEACTIVE and DHCPLEASEUNASSIGNED
// messages and the closing DHCPLEASEQUERYDONE. A scan reads the store a
// page at a time in short transactions and writes each page's matches out
// only after its transaction has ended, so a reader that stops reading
// holds no transaction open (bbolt's remap on growth, and so every commit,
// would wait for it) and memory stays bounded by a page.
func (s *bulkServer) answerBulk(ctx context.Context, p *dhcpwire.Packet, w *bufio.Writer, local netip.Addr) error {
	q, status, why := s.parseBulk(p)
	a := &bulkAnswer{s: s, w: w, p: p, q: q, now: s.view.Now(), local: local}
	if status == statusSuccess {
		var err error
		if q.scan {
			err = a.scan(ctx)
		} else {
			for _, l := range q.candidates {
				if !q.match(l) { // the indexes may name bindings since moved on
					continue
				}
				if err = a.send(l); err != nil {
					break
				}
			}
		}
		var se errStore
		switch {
		case errors.As(err, &se):
			// The connection is still good: say the query failed rather
			// than let the requester take a partial answer for all of it.
			s.log.Error("bulk leasequery cut short", "xid", p.XID, "err", err)
			status, why = statusUnspecFail, "lease store unavailable"
		case err != nil:
			return err
		}
	}
	h := dhcpwire.ReplyHeader(p)
	h.GIAddr = netip.Addr{}
	// DONE is about the query, not a binding: no hardware address (as
	// Kea), so it cannot be taken for one.
	h.HType, h.HLen, h.CHAddr = 0, 0, [16]byte{}
	b := dhcpwire.AppendHeader(make([]byte, 0, 300), h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.LeaseQueryDone)
	b = a.appendServerID(b, netip.Addr{})
	// base-time lets the requester ask next time for what changed since.
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptBaseTime, uint32(a.now.Unix()))
	if status != statusSuccess {
		b = dhcpwire.AppendOption(b, dhcpwire.OptStatusCode, append([]byte{status}, why...))
	}
	s.m.reply(dhcpwire.LeaseQueryDone).Inc()
	return writeBulkFrame(w, append(b, dhcpwire.OptEnd))
}

// scan walks every record for relay-id and remote-id queries.
func (a *bulkAnswer) scan(ctx context.Context) error {
	var after netip.Addr
	var page []*lease.Lease
	defer a.s.view.ReleaseMapped()
	for n := 1; ; n++ {
		if n%bulkPagesMapped == 0 {
			a.s.view.ReleaseMapped()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		page = page[:0]
		next, err := a.s.view.LoadPage(after, bulkPage, func(l *lease.Lease) error {
			if a.q.match(l) {
				page = append(page, l)
			}
			return nil
		})
		if err != nil {
			return errStore{err}
		}
		for _, l := range page {
			if err := a.send(l); err != nil {
				return err
			}
		}
		clear(page) // let the records go while the next page is read
		if !next.IsValid() {
			return nil
		}
		after = next
	}
}

// send writes one binding that matches the query's key, if it changed in
// the query's time window (RFC 6926 selects bindings that changed on or
// after the start time): the later of its last transaction and its state
// change.
func (a *bulkAnswer) send(l *lease.Lease) error {
	exp := a.s.view.EffectiveExpiry(l)
	bound := bound(l, exp, a.now)
	state, since := dhcpState(l, exp, a.now)
	changed := since
	if l.CLTT.After(changed) {
		changed = l.CLTT
	}
	if (!a.q.from.IsZero() && changed.Before(a.q.from)) || (!a.q.to.IsZero() && changed.After(a.q.to)) {
		return nil
	}
	return a.writeLease(l, exp, bound, state, since)
}

// appendServerID adds option 54 to the query's first message, so that
// each query's answer names its server even when several share a
// connection: the address the binding's client was given, else the
// address the requester connected to.
func (a *bulkAnswer) appendServerID(b []byte, sid netip.Addr) []byte {
	if a.sent {
		return b
	}
	a.sent = true
	if !sid.IsValid() {
		sid = a.local
	}
	if !sid.IsValid() {
		return b
	}
	return dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, sid)
}

// writeLease renders one binding (RFC 6926): ciaddr and chaddr from
// the lease, 54 in the query's first message, base time, dhcp-state and
// when it was entered, remaining times while bound, 91, 61, 60 while bound
// and the stored 82. A binding that is not bound goes as DHCPLEASEUNASSIGNED.
func (a *bulkAnswer) writeLease(l *lease.Lease, exp time.Time, bound bool, state uint8, since time.Time) error {
	s, now := a.s, a.now
	var t1, t2 uint32
	if bound {
		t1, t2 = s.view.RenewTimes(l, exp)
	}
	typ := uint8(dhcpwire.LeaseUnassigned)
	if bound {
		typ = dhcpwire.LeaseActive
	}
	h := dhcpwire.ReplyHeader(a.p)
	h.GIAddr = netip.Addr{}
	h.CIAddr = l.IP
	h.HType, h.HLen = l.HWType, uint8(len(l.HWAddr))
	h.CHAddr = [16]byte{}
	copy(h.CHAddr[:], l.HWAddr)
	b := dhcpwire.AppendHeader(make([]byte, 0, 400), h)
	b = append(b, dhcpwire.OptMessageType, 1, typ)
	b = a.appendServerID(b, l.ServerID)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptBaseTime, uint32(now.Unix()))
	b = append(b, dhcpwire.OptDHCPState, 1, state)
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptStartTimeOfState, secondsBefore(now, since))
	if bound {
		b = appendLeaseTimes(b, l, exp, now, t1, t2)
	} else if !l.CLTT.IsZero() {
		b = dhcpwire.AppendUint32Option(b, dhcpwire.OptCLTT, secondsBefore(now, l.CLTT))
	}
	if len(l.ClientID) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, l.ClientID)
	}
	if bound && len(l.VendorClass) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptVendorClass, l.VendorClass)
	}
	if len(l.RelayInfo) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, l.RelayInfo)
	}
	s.m.reply(typ).Inc()
	return writeBulkFrame(a.w, append(b, dhcpwire.OptEnd))
}

// secondsBefore is how many whole seconds t lies before now (0 if after).
func secondsBefore(now, t time.Time) uint32 {
	if t.IsZero() || !now.After(t) {
		return 0
	}
	return uint32(now.Sub(t) / time.Second)
}

func writeBulkFrame(w *bufio.Writer, m []byte) error {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(m)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err := w.Write(m)
	return err
}
