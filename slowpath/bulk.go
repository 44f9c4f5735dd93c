package slowpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	statusMalformedQuery = 3
	statusNotAllowed     = 4
	maxBulkFrame         = 16 << 10 // a query is one DHCP message
	minBulkFrame         = 240
)

// ServeBulk accepts bulk leasequery connections on ln until ctx ends,
// and waits for the connections it started.
func (s *Server) ServeBulk(ctx context.Context, ln net.Listener, o BulkOptions) error {
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
			s.log.Warn("bulk leasequery accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		remote := netip.Addr{}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			remote = ta.AddrPort().Addr().Unmap()
		}
		lq := s.settings().Leasequery
		if !lq.Enabled || !slices.ContainsFunc(lq.Requesters, func(p netip.Prefix) bool { return p.Contains(remote) }) {
			s.m.Dropped.WithLabelValues("bulk_denied").Inc()
			s.log.Warn("bulk leasequery from a requester not in leasequery.requesters", "remote", remote)
			c.Close()
			continue
		}
		mu.Lock()
		if conns[remote] >= o.MaxConnsPerRequester {
			mu.Unlock()
			s.m.Dropped.WithLabelValues("bulk_too_many_connections").Inc()
			c.Close()
			continue
		}
		conns[remote]++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveBulkConn(ctx, c, o, func() {
				mu.Lock()
				conns[remote]--
				mu.Unlock()
			})
		}()
	}
}

// serveBulkConn answers queries on one connection, one at a time. The
// requester's slot is released before the connection closes, so a client
// that sees the close may connect again at once.
func (s *Server) serveBulkConn(ctx context.Context, c net.Conn, o BulkOptions, release func()) {
	defer c.Close()
	defer release()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	bw := bufio.NewWriterSize(&deadlineWriter{c: c, timeout: o.IdleTimeout}, 32<<10)
	err := s.bulkSession(ctx, r, bw, func() { c.SetReadDeadline(time.Now().Add(o.IdleTimeout)) })
	if err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("bulk leasequery connection closed", "remote", c.RemoteAddr(), "err", err)
	}
}

// bulkSession reads queries from r and answers each on w, until the
// stream ends or breaks; before each read it calls arm (deadlines).
func (s *Server) bulkSession(ctx context.Context, r *bufio.Reader, w *bufio.Writer, arm func()) error {
	first := true
	for {
		arm()
		msg, err := readBulkFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.m.Dropped.WithLabelValues("bulk_framing").Inc()
			}
			return err
		}
		var p dhcpwire.Packet
		if err := p.Parse(msg); err != nil || p.Op != dhcpwire.BootRequest || p.MessageType() != dhcpwire.BulkLeaseQuery {
			s.m.Dropped.WithLabelValues("bulk_malformed").Inc()
			return errors.New("not a bulk leasequery") // nothing sensible to answer on this stream
		}
		s.m.message(dhcpwire.BulkLeaseQuery).Inc()
		if err := s.answerBulk(ctx, &p, w, &first); err != nil {
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

func readBulkFrame(r *bufio.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < minBulkFrame || n > maxBulkFrame {
		return nil, fmt.Errorf("bulk leasequery frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("truncated frame: %w", err)
	}
	return b, nil
}

// bulkQuery is a validated DHCPBULKLEASEQUERY.
type bulkQuery struct {
	match      func(*lease.Lease) bool
	scan       bool           // relay-id / remote-id: walk every lease
	candidates []*lease.Lease // MAC / client-id: from the indexes
	from, to   time.Time      // CLTT filter (154, 155), zero when absent
}

// parseBulk checks a query (RFC 6926 §6.2) and returns what it selects,
// or a status code and message.
func (s *Server) parseBulk(p *dhcpwire.Packet) (bulkQuery, uint8, string) {
	var q bulkQuery
	if !p.CIAddr.IsUnspecified() || !p.YIAddr.IsUnspecified() || !p.SIAddr.IsUnspecified() {
		return q, statusMalformedQuery, "ciaddr, yiaddr and siaddr must be zero"
	}
	keys := 0
	hw := p.CHAddr()
	if p.HLen > 0 && slices.ContainsFunc(hw, func(b byte) bool { return b != 0 }) {
		keys++
		htype := p.HType
		q.candidates = s.leasesForHW(htype, hw)
		q.match = func(l *lease.Lease) bool { return l.HWType == htype && bytes.Equal(l.HWAddr, hw) }
	}
	if cid, ok := p.Option(dhcpwire.OptClientID); ok {
		keys++
		key := lease.ClientKey(cid, 0, nil)
		q.candidates = s.LookupClient(key)
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

// answerBulk streams one query's DHCPLEASEACTIVE messages and the closing
// DHCPLEASEQUERYDONE. Scans read bbolt a record at a time, so memory does
// not grow with the answer.
func (s *Server) answerBulk(ctx context.Context, p *dhcpwire.Packet, w *bufio.Writer, first *bool) error {
	q, status, why := s.parseBulk(p)
	now := s.now()
	if status == statusSuccess {
		send := func(l *lease.Lease) error {
			if l.State != lease.Active || !q.match(l) {
				return nil
			}
			if (!q.from.IsZero() && l.CLTT.Before(q.from)) || (!q.to.IsZero() && l.CLTT.After(q.to)) {
				return nil
			}
			return s.writeBulkActive(w, p, l, now, first)
		}
		var err error
		if q.scan {
			err = s.store.Load(ctx, send)
		} else {
			for _, l := range q.candidates {
				if err = send(l); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
	}
	h := dhcpwire.ReplyHeader(p)
	h.GIAddr = netip.Addr{}
	b := dhcpwire.AppendHeader(make([]byte, 0, 300), h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.LeaseQueryDone)
	if status != statusSuccess {
		b = dhcpwire.AppendOption(b, dhcpwire.OptStatusCode, append([]byte{status}, why...))
	}
	s.m.reply(dhcpwire.LeaseQueryDone).Inc()
	return writeBulkFrame(w, append(b, dhcpwire.OptEnd))
}

// writeBulkActive renders one binding (RFC 6926 §7.2): ciaddr and chaddr
// from the lease, 54 in the first message of the connection, base time,
// remaining times, 91, 61 and the stored 82.
func (s *Server) writeBulkActive(w *bufio.Writer, p *dhcpwire.Packet, l *lease.Lease, now time.Time, first *bool) error {
	s.mu.Lock()
	sub := s.subs.forAddr(l.IP)
	var t1, t2 uint32
	if sub != nil {
		_, t1, t2 = leaseTimes(sub, sub.LeaseTime)
	}
	sid := l.ServerID
	s.mu.Unlock()
	h := dhcpwire.ReplyHeader(p)
	h.GIAddr = netip.Addr{}
	h.CIAddr = l.IP
	h.HType, h.HLen = l.HWType, uint8(len(l.HWAddr))
	h.CHAddr = [16]byte{}
	copy(h.CHAddr[:], l.HWAddr)
	b := dhcpwire.AppendHeader(make([]byte, 0, 400), h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.LeaseActive)
	if *first && sid.IsValid() {
		b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, sid)
		*first = false
	}
	b = dhcpwire.AppendUint32Option(b, dhcpwire.OptBaseTime, uint32(now.Unix()))
	b = appendLeaseTimes(b, l, now, t1, t2)
	if len(l.ClientID) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptClientID, l.ClientID)
	}
	if len(l.RelayInfo) > 0 {
		b = dhcpwire.AppendOption(b, dhcpwire.OptRelayAgentInfo, l.RelayInfo)
	}
	s.m.reply(dhcpwire.LeaseActive).Inc()
	return writeBulkFrame(w, append(b, dhcpwire.OptEnd))
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
