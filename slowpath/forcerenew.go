package slowpath

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// FORCERENEW (RFC 3203, authenticated as RFC 6704 has it; issue 16).
//
// A client is forced by a campaign (StartForceRenew), one client being a
// campaign of one. Forcing a client makes it pending: the lease's fast-path
// entry is republished with Serve false (serveLocked; the republish goes
// through changeLocked and commit like every binding change), and only once
// that is on disk and in the map does the first FORCERENEW leave, so the
// REQUEST it provokes comes to the slow path. The FORCERENEW is resent with
// exponential backoff until the client's REQUEST or INFORM arrives (or a
// renewal the fast path answered is folded in), or the subnet's retransmit
// bound is reached. Then the entry is republished with Serve true; an
// answer counts in its campaigns only once that is on disk and in the map
// (frAnswer), which is what a campaign's end promises.
//
// Pending state is in memory only: after a restart a campaign sends again
// to every target not recorded as finished, each FORCERENEW with a fresh
// replay value.

// Defaults of a subnet's forcerenew settings (Juniper's, per the protocol
// digest C.1: 2 s doubling, 8 tries).
const (
	DefaultForceRenewStart = 2 * time.Second
	DefaultForceRenewCount = 8
)

// ForceRenewSettings is a subnet's `forcerenew:` section.
type ForceRenewSettings struct {
	// AllowUnauthenticated lets FORCERENEW go, unsigned, to clients that
	// hold no key (never sent option 145). Off by default: RFC 3203
	// requires authentication and dhcpcd ignores unsigned ones anyway.
	AllowUnauthenticated bool
	// RetransmitStart is the wait after the first FORCERENEW, doubled
	// after each (DefaultForceRenewStart when zero).
	RetransmitStart time.Duration
	// RetransmitCount is how many FORCERENEWs a client gets before it is
	// given up on (DefaultForceRenewCount when zero).
	RetransmitCount int
}

func (f ForceRenewSettings) withDefaults() ForceRenewSettings {
	if f.RetransmitStart <= 0 {
		f.RetransmitStart = DefaultForceRenewStart
	}
	if f.RetransmitCount <= 0 {
		f.RetransmitCount = DefaultForceRenewCount
	}
	return f
}

// Selector names the clients a campaign forces. Exactly one field is set.
type Selector struct {
	IP       netip.Addr       `json:"ip,omitzero"`
	HWAddr   net.HardwareAddr `json:"hw-address,omitempty"`
	ClientID []byte           `json:"client-id,omitempty"` // option 61 as sent, type byte included
	Subnet   netip.Prefix     `json:"subnet,omitzero"`
	// Pool is an inclusive range [Pool[0], Pool[1]].
	Pool [2]netip.Addr `json:"pool,omitzero"`
}

// ErrSelector is returned (wrapped) for a Selector with no field or more
// than one set.
var ErrSelector = errors.New("forcerenew: give exactly one of IP, MAC, client-id, subnet, pool")

// ErrNoTargets is returned (wrapped) when no active lease and no client
// configured by DHCPINFORM matches a Selector.
var ErrNoTargets = errors.New("forcerenew: no active lease or informed client matches")

// ErrNoCampaign is returned (wrapped) for an unknown campaign id.
var ErrNoCampaign = errors.New("forcerenew: no such campaign")

func (sel Selector) check() error {
	n := 0
	for _, set := range []bool{sel.IP.IsValid(), len(sel.HWAddr) > 0, len(sel.ClientID) > 0, sel.Subnet.IsValid(), sel.Pool[0].IsValid() || sel.Pool[1].IsValid()} {
		if set {
			n++
		}
	}
	if n != 1 {
		return ErrSelector
	}
	if (sel.Pool[0].IsValid() || sel.Pool[1].IsValid()) && (!sel.Pool[0].Is4() || !sel.Pool[1].Is4() || sel.Pool[1].Less(sel.Pool[0])) {
		return fmt.Errorf("%w: pool %s-%s is not an IPv4 range", ErrSelector, sel.Pool[0], sel.Pool[1])
	}
	return nil
}

func (sel Selector) match(l *lease.Lease) bool {
	switch {
	case sel.IP.IsValid():
		return l.IP == sel.IP
	case len(sel.HWAddr) > 0:
		return bytes.Equal(l.HWAddr, sel.HWAddr)
	case len(sel.ClientID) > 0:
		return bytes.Equal(l.ClientID, sel.ClientID)
	case sel.Subnet.IsValid():
		return sel.Subnet.Contains(l.IP)
	default:
		return !l.IP.Less(sel.Pool[0]) && !sel.Pool[1].Less(l.IP)
	}
}

// String describes the selector as xdhcpctl's flags do.
func (sel Selector) String() string {
	switch {
	case sel.IP.IsValid():
		return "ip " + sel.IP.String()
	case len(sel.HWAddr) > 0:
		return "mac " + sel.HWAddr.String()
	case len(sel.ClientID) > 0:
		return "client-id " + hex.EncodeToString(sel.ClientID)
	case sel.Subnet.IsValid():
		return "subnet " + sel.Subnet.String()
	default:
		return "pool " + sel.Pool[0].String() + "-" + sel.Pool[1].String()
	}
}

// CampaignOptions tune a campaign.
type CampaignOptions struct {
	// Move makes the server NAK the REQUEST each forced client answers
	// with, so that it starts over with a DISCOVER and gets the address
	// the configuration gives it now (a reservation, or a pool that is
	// not draining).
	Move bool `json:"move,omitempty"`
	// Rate bounds the clients forced per second; 0 is unlimited. At most
	// MaxForceRenewRate.
	Rate float64 `json:"rate,omitempty"`
}

// Client names one client in a campaign's report.
type Client struct {
	IP     netip.Addr       `json:"ip"`
	HWAddr net.HardwareAddr `json:"hw-address,omitempty"`
}

// CampaignStatus is a campaign's progress. Every target ends in exactly one
// of Renewed, Moved, Informed, NoAnswer, NoKey and Skipped; Remaining are
// the others (not yet forced, or waiting for an answer).
type CampaignStatus struct {
	ID       string          `json:"id"`
	Selector Selector        `json:"selector"`
	Options  CampaignOptions `json:"options"`
	Started  time.Time       `json:"started"`
	// Total is the number of leases and informed clients (configured by
	// DHCPINFORM, inform.go) the selector matched when the campaign
	// started.
	Total int `json:"total"`
	// Sent counts clients sent at least one FORCERENEW; Transmissions
	// counts every FORCERENEW sent, retransmissions included.
	Sent          int `json:"sent"`
	Transmissions int `json:"transmissions"`
	// Renewed answered with a REQUEST (ACKed) or an INFORM.
	Renewed int `json:"renewed"`
	// Moved answered and were NAKed to move (Move).
	Moved int `json:"moved"`
	// Informed are clients configured by DHCPINFORM that answered with a
	// new INFORM. They hold no lease: a Move campaign does not move them.
	Informed int `json:"informed"`
	// NoAnswer did not answer within the retransmit bound.
	NoAnswer int `json:"no-answer"`
	// NoKey hold no key (never sent option 145) in a subnet that does not
	// allow unauthenticated FORCERENEW: they were not sent one.
	NoKey int `json:"no-key"`
	// Skipped leases ended (released, expired, replaced), or informed
	// clients were forgotten or replaced, before the client could be
	// forced.
	Skipped int `json:"skipped"`
	// MovedAtRenewal counts clients of a Move campaign that could not be
	// forced (NoKey, NoAnswer) and were NAKed at their own next renewal,
	// which the fast path leaves to the slow path for them.
	MovedAtRenewal int  `json:"moved-at-renewal"`
	Remaining      int  `json:"remaining"`
	Done           bool `json:"done"`
	Stopped        bool `json:"stopped,omitempty"`
	// NoKeyClients and NoAnswerClients could not be forced: their leases
	// move only at their next renewal.
	NoKeyClients    []Client `json:"no-key-clients,omitempty"`
	NoAnswerClients []Client `json:"no-answer-clients,omitempty"`
}

// CampaignStore keeps campaigns durable (slowpath/store.Store implements
// it). Without one, campaigns do not survive a restart.
type CampaignStore interface {
	// PutCampaign durably writes a campaign's description (when meta is
	// not nil) and the given targets' progress before it returns.
	PutCampaign(id string, meta []byte, targets map[netip.Addr][]byte) error
	// CampaignRecords reads every stored campaign.
	CampaignRecords() ([]CampaignRecord, error)
}

// CampaignRecord is a stored campaign: its description and each target's
// progress, as PutCampaign wrote them.
type CampaignRecord = store.CampaignRecord

// outcome is a target's progress, the first byte of its stored value
// (with movedLater set once a client of a Move campaign that could not be
// forced has been moved at its own renewal, and informedTarget for a
// client configured by INFORM rather than a lease).
type outcome uint8

const (
	movedLater     = 0x80
	informedTarget = 0x40
	outFlags       = movedLater | informedTarget
)

const (
	outTodo outcome = iota // not finished (also while pending: a restart sends again)
	outRenewed
	outMoved
	outNoAnswer
	outNoKey
	outSkipped
	outInformed // an informed client answered with an INFORM
	outLast     = outInformed
)

// campaignMeta is a campaign's stored description.
type campaignMeta struct {
	Selector Selector        `json:"selector"`
	Options  CampaignOptions `json:"options"`
	Started  time.Time       `json:"started"`
	Stopped  bool            `json:"stopped,omitempty"`
}

type target struct {
	out      outcome
	later    bool // moved at its own renewal (movedLater)
	informed bool // a client configured by INFORM (informedTarget)
	hwType   uint8
	hw       net.HardwareAddr
	sent     bool
}

// campaign is a running or finished campaign; guarded by Server.mu.
type campaign struct {
	id    string
	meta  campaignMeta
	all   map[netip.Addr]*target
	todo  []netip.Addr // not yet forced, in address order
	next  int          // index into todo
	sent  int
	tx    int
	later int
	count [outLast + 1]int
	// inflight counts targets pending for this campaign.
	inflight int
	// dirty are targets whose progress is not yet stored.
	dirty map[netip.Addr]bool
	// metaDirty: the description changed (stopped) and is not yet stored.
	metaDirty      bool
	tokens         float64
	lastRefill     time.Time
	noKey, noReply []Client
}

func (c *campaign) remaining() int {
	return len(c.all) - c.count[outRenewed] - c.count[outMoved] - c.count[outInformed] - c.count[outNoAnswer] - c.count[outNoKey] - c.count[outSkipped]
}

func (c *campaign) done() bool { return c.meta.Stopped || (c.next >= len(c.todo) && c.inflight == 0) }

func (c *campaign) status() CampaignStatus {
	return CampaignStatus{
		ID: c.id, Selector: c.meta.Selector, Options: c.meta.Options, Started: c.meta.Started,
		Total: len(c.all), Sent: c.sent, Transmissions: c.tx,
		Renewed: c.count[outRenewed], Moved: c.count[outMoved], Informed: c.count[outInformed], NoAnswer: c.count[outNoAnswer],
		NoKey: c.count[outNoKey], Skipped: c.count[outSkipped], Remaining: c.remaining(), MovedAtRenewal: c.later,
		Done: c.done(), Stopped: c.meta.Stopped,
		NoKeyClients: slices.Clone(c.noKey), NoAnswerClients: slices.Clone(c.noReply),
	}
}

// finish records a target's outcome once.
func (c *campaign) finish(ip netip.Addr, o outcome) {
	t := c.all[ip]
	if t == nil || t.out != outTodo {
		return
	}
	t.out = o
	c.count[o]++
	c.dirty[ip] = true
	switch o {
	case outNoKey:
		c.noKey = append(c.noKey, Client{IP: ip, HWAddr: t.hw})
	case outNoAnswer:
		c.noReply = append(c.noReply, Client{IP: ip, HWAddr: t.hw})
	}
}

func (t *target) encode() []byte {
	o := byte(t.out)
	if t.later {
		o |= movedLater
	}
	if t.informed {
		o |= informedTarget
	}
	return append([]byte{o, t.hwType}, t.hw...)
}

// frPending is a client sent (or about to be sent) FORCERENEW; guarded by
// Server.mu.
type frPending struct {
	campaigns []*campaign
	move      bool
	informed  bool   // a client configured by INFORM, not a lease
	key       string // the lease's (or informed client's) client key when forcing began
	tries     int    // FORCERENEWs sent
	first     time.Time
	next      time.Time // next retransmission, or giving up after the last
}

// moveMark is a client a Move campaign could not force (no key, no
// answer): its next REQUEST for the address is NAKed as if it had been
// forced, and until then the fast path leaves its renewals to the slow
// path (serveLocked). Guarded by Server.mu.
type moveMark struct {
	c   *campaign
	key string // the lease's client key when marked
}

// markMoveLocked marks ip's client to move at its next renewal when c is
// a Move campaign.
func (s *Server) markMoveLocked(c *campaign, ip netip.Addr) {
	if !c.meta.Options.Move {
		return
	}
	if l := s.leases.Get(ip); l != nil && l.State == lease.Active {
		s.moveNext[ip] = &moveMark{c: c, key: l.ClientKey()}
	}
}

// frMsg is what one FORCERENEW is built from, copied under the lock.
type frMsg struct {
	ip      netip.Addr
	sid     netip.Addr // option 54
	src     netip.Addr // the source address: sid when it is ours
	xid     uint32
	htype   uint8
	chaddr  []byte
	key     []byte // empty: unauthenticated (allowed by the subnet)
	ifindex int
}

// newCampaignID is unique across restarts: the time and random bits.
func newCampaignID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("campaign id: %w", err)
	}
	return fmt.Sprintf("%s-%s", now.UTC().Format("20060102T150405"), hex.EncodeToString(b[:])), nil
}

// MaxForceRenewRate is the largest CampaignOptions.Rate: far above what a
// server sends, and small enough that the campaign's token count stays
// exact (a rate of 1e20 overflowed it, and such a campaign never sent a
// thing and never ended).
const MaxForceRenewRate = 1e6

// StartForceRenew starts forcing every active lease sel matches, at most
// o.Rate per second, and returns the campaign's id. The targets are fixed
// now; the campaign's description and targets are on disk (when the
// server has a CampaignStore) before it returns, so a restarted server
// resumes it (Load). The work is done by Run.
func (s *Server) StartForceRenew(sel Selector, o CampaignOptions) (string, error) {
	if err := sel.check(); err != nil {
		return "", err
	}
	if !(o.Rate >= 0 && o.Rate <= MaxForceRenewRate) { // NaN too
		return "", fmt.Errorf("forcerenew: rate %v: must be 0 (unlimited) or up to %v a second", o.Rate, float64(MaxForceRenewRate))
	}
	now := s.now()
	id, err := newCampaignID(now)
	if err != nil {
		return "", err
	}
	c := &campaign{id: id, meta: campaignMeta{Selector: sel, Options: o, Started: now}, all: map[netip.Addr]*target{}, dirty: map[netip.Addr]bool{}}
	s.mu.Lock()
	active := func(b *lease.Brief) bool { return b.State == lease.Active }
	s.leases.Range(active, func(l *lease.Lease) bool {
		if sel.match(l) {
			c.all[l.IP] = &target{hwType: l.HWType, hw: slices.Clone(l.HWAddr)}
			c.todo = append(c.todo, l.IP)
		}
		return true
	})
	for ip, ic := range s.informed {
		if l := s.leases.Get(ip); (l == nil || l.State != lease.Active) && sel.matchInformed(ic) {
			// A client configured by INFORM (issue 16): forced by the
			// same FORCERENEW, it answers with a new INFORM.
			c.all[ip] = &target{informed: true, hwType: ic.HWType, hw: slices.Clone(ic.HWAddr)}
			c.todo = append(c.todo, ip)
		}
	}
	s.mu.Unlock()
	if len(c.all) == 0 {
		return "", fmt.Errorf("%w %s", ErrNoTargets, sel)
	}
	slices.SortFunc(c.todo, func(a, b netip.Addr) int { return a.Compare(b) })
	if s.camps != nil {
		meta, err := json.Marshal(c.meta)
		if err != nil {
			return "", fmt.Errorf("forcerenew: encoding campaign: %w", err)
		}
		ts := make(map[netip.Addr][]byte, len(c.all))
		for ip, t := range c.all {
			ts[ip] = t.encode()
		}
		if err := s.camps.PutCampaign(id, meta, ts); err != nil {
			return "", fmt.Errorf("forcerenew: %w", err)
		}
	}
	s.mu.Lock()
	s.campaigns[id] = c
	s.campaignOrder = append(s.campaignOrder, id)
	s.mu.Unlock()
	s.log.Info("forcerenew campaign started", "id", id, "selector", sel.String(), "targets", len(c.all), "move", o.Move, "rate", o.Rate)
	s.wakeForceRenew()
	return id, nil
}

// Campaign returns a campaign's progress.
func (s *Server) Campaign(id string) (CampaignStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.campaigns[id]
	if c == nil {
		return CampaignStatus{}, fmt.Errorf("%w: %q", ErrNoCampaign, id)
	}
	return c.status(), nil
}

// Campaigns returns every campaign's progress, oldest first.
func (s *Server) Campaigns() []CampaignStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CampaignStatus, 0, len(s.campaignOrder))
	for _, id := range s.campaignOrder {
		out = append(out, s.campaigns[id].status())
	}
	return out
}

// StopCampaign stops a campaign: no client is forced for it any more, and
// FORCERENEWs already pending for it only are not retransmitted. The stop
// is durable (a restart does not resume it).
func (s *Server) StopCampaign(id string) error {
	s.mu.Lock()
	c := s.campaigns[id]
	if c == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNoCampaign, id)
	}
	var republish []*lease.Lease
	if !c.meta.Stopped {
		c.meta.Stopped, c.metaDirty = true, true
		now := s.now()
		for ip, m := range s.moveNext {
			if m.c == c {
				delete(s.moveNext, ip)
				if l := s.leases.Get(ip); s.fast != nil && l != nil && l.State == lease.Active {
					republish = append(republish, s.changeLocked(ip, causeForceRenew, now, func(*lease.Lease) {}))
				}
			}
		}
		for ip, p := range s.frPending {
			if i := slices.Index(p.campaigns, c); i >= 0 {
				p.campaigns = slices.Delete(p.campaigns, i, i+1)
				c.inflight--
				if len(p.campaigns) == 0 {
					if l := s.endPendingLocked(ip, now); l != nil {
						republish = append(republish, l)
					}
				}
			}
		}
	}
	s.mu.Unlock()
	s.commitServe(republish)
	s.log.Info("forcerenew campaign stopped", "id", id)
	return s.persistCampaigns()
}

// CampaignRemaining is the number of targets not yet finished over every
// campaign that is not done (the xdhcp_forcerenew_campaign_remaining gauge).
func (s *Server) CampaignRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.campaigns {
		if !c.meta.Stopped {
			n += c.remaining()
		}
	}
	return n
}

// loadCampaignsLocked resumes the stored campaigns (called by Load).
func (s *Server) loadCampaignsLocked() error {
	if s.camps == nil {
		return nil
	}
	recs, err := s.camps.CampaignRecords()
	if err != nil {
		return fmt.Errorf("loading forcerenew campaigns: %w", err)
	}
	for _, r := range recs {
		c, err := checkCampaignRecord(r)
		if err != nil {
			// The leases are the truth and serving them matters more
			// than one campaign: it is not resumed, and it stays on disk
			// for a look.
			s.log.Error("forcerenew campaign not resumed", "id", r.ID, "err", err)
			continue
		}
		for ip, v := range r.Targets {
			t := &target{hwType: v[1], hw: net.HardwareAddr(slices.Clone(v[2:])), informed: v[0]&informedTarget != 0}
			c.all[ip] = t
			switch o := outcome(v[0] &^ outFlags); {
			case o == outTodo:
				c.todo = append(c.todo, ip)
			default:
				c.finish(ip, o)
				if v[0]&movedLater != 0 {
					t.later = true
					c.later++
				} else if c.meta.Options.Move && !c.meta.Stopped && (o == outNoKey || o == outNoAnswer) {
					// Still to move at its next renewal, if it still
					// holds the address.
					if l := s.leases.Get(ip); l != nil && l.State == lease.Active && bytes.Equal(l.HWAddr, t.hw) {
						s.moveNext[ip] = &moveMark{c: c, key: l.ClientKey()}
					}
				}
			}
		}
		clear(c.dirty)
		slices.SortFunc(c.todo, func(a, b netip.Addr) int { return a.Compare(b) })
		slices.SortFunc(c.noKey, func(a, b Client) int { return a.IP.Compare(b.IP) })
		slices.SortFunc(c.noReply, func(a, b Client) int { return a.IP.Compare(b.IP) })
		s.campaigns[c.id] = c
		s.campaignOrder = append(s.campaignOrder, c.id)
		if !c.done() {
			s.log.Info("forcerenew campaign resumed", "id", c.id, "selector", c.meta.Selector.String(), "remaining", len(c.todo))
		}
	}
	slices.SortFunc(s.campaignOrder, func(a, b string) int { return s.campaigns[a].meta.Started.Compare(s.campaigns[b].meta.Started) })
	return nil
}

// checkCampaignRecord decodes a stored campaign's description and checks
// every target's record, so that a bad one changes nothing.
func checkCampaignRecord(r CampaignRecord) (*campaign, error) {
	c := &campaign{id: r.ID, all: map[netip.Addr]*target{}, dirty: map[netip.Addr]bool{}}
	if err := json.Unmarshal(r.Meta, &c.meta); err != nil {
		return nil, fmt.Errorf("forcerenew campaign %q: %w", r.ID, err)
	}
	if err := c.meta.Selector.check(); err != nil {
		return nil, fmt.Errorf("forcerenew campaign %q: %w", r.ID, err)
	}
	for ip, v := range r.Targets {
		if len(v) < 2 || outcome(v[0]&^outFlags) > outLast {
			return nil, fmt.Errorf("forcerenew campaign %q: target %s: bad record %x", r.ID, ip, v)
		}
	}
	return c, nil
}

// persistCampaigns stores the progress not yet stored. It runs without
// the lock (the store fsyncs).
func (s *Server) persistCampaigns() error {
	if s.camps == nil {
		return nil
	}
	type put struct {
		id   string
		meta []byte
		ts   map[netip.Addr][]byte
	}
	var puts []put
	s.mu.Lock()
	for _, id := range s.campaignOrder {
		c := s.campaigns[id]
		if len(c.dirty) == 0 && !c.metaDirty {
			continue
		}
		p := put{id: id, ts: make(map[netip.Addr][]byte, len(c.dirty))}
		if c.metaDirty {
			p.meta, _ = json.Marshal(c.meta) // plain data: cannot fail
			c.metaDirty = false
		}
		for ip := range c.dirty {
			p.ts[ip] = c.all[ip].encode()
		}
		clear(c.dirty)
		puts = append(puts, p)
	}
	s.mu.Unlock()
	var errs []error
	for _, p := range puts {
		if err := s.camps.PutCampaign(p.id, p.meta, p.ts); err != nil {
			// The progress stays in memory, and is marked to be stored
			// again at the next tick: a stop that was not stored would
			// otherwise be lost (a restart resumed the campaign, and a
			// second stop found it stopped and stored nothing).
			s.redirtyCampaign(p.id, p.meta != nil, p.ts)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.logLimited(slog.LevelError, "forcerenew_persist", "storing forcerenew campaign progress", "err", err)
		return fmt.Errorf("forcerenew: %w", err)
	}
	return nil
}

// forceRenewTick does one step of every campaign at now: it forces the
// clients the campaigns' rates allow, retransmits what is due and gives
// up on clients past the bound. Run calls it; tests call it with their
// clock.
func (s *Server) forceRenewTick(now time.Time) {
	var off, on []*lease.Lease
	var direct, resend []netip.Addr
	s.mu.Lock()
	for _, id := range s.campaignOrder {
		c := s.campaigns[id]
		if c.meta.Stopped || c.next >= len(c.todo) {
			continue
		}
		n := len(c.todo) - c.next
		if r := c.meta.Options.Rate; r > 0 {
			if c.lastRefill.IsZero() {
				c.tokens = 1
			} else if dt := now.Sub(c.lastRefill).Seconds(); dt > 0 {
				// A burst of at most a fifth of a second's worth (at
				// least one client) after an idle spell.
				c.tokens = min(c.tokens+r*dt, max(1, r/5))
			}
			c.lastRefill = now
			n = min(n, int(c.tokens))
			c.tokens -= float64(n)
		}
		n = min(n, frBatch-len(off)-len(direct))
		for ; n > 0; n-- {
			ip := c.todo[c.next]
			c.next++
			l, wait := s.forceLocked(c, ip, now, &on)
			switch {
			case l != nil:
				off = append(off, l)
			case wait:
				direct = append(direct, ip)
			}
		}
	}
	for ip, p := range s.frPending {
		if p.tries == 0 || now.Before(p.next) {
			continue
		}
		hw, held := s.pendingClientLocked(ip, p)
		if !held {
			// The lease ended or changed hands meanwhile (or the
			// informed client was forgotten or replaced).
			for _, c := range p.campaigns {
				c.finish(ip, outSkipped)
			}
			if l := s.endPendingLocked(ip, now); l != nil {
				on = append(on, l)
			}
			continue
		}
		set := s.forceRenewSettingsLocked(ip)
		if p.tries >= set.RetransmitCount {
			s.m.ForceRenewGaveUp.Inc()
			for _, c := range p.campaigns {
				c.finish(ip, outNoAnswer)
				if !p.informed { // an informed client holds no lease to move
					s.markMoveLocked(c, ip) // before the republish: Serve stays false
				}
			}
			s.logLimited(slog.LevelInfo, "forcerenew_gave_up", "no answer to FORCERENEW", "ip", ip, "client", hwAddr(hw), "tries", p.tries)
			if l := s.endPendingLocked(ip, now); l != nil {
				on = append(on, l)
			}
			continue
		}
		resend = append(resend, ip)
	}
	s.mu.Unlock()
	s.commitServe(on)
	if len(off) > 0 {
		// The first FORCERENEW leaves only once Serve false is on disk and
		// in the map, so the fast path does not answer the REQUEST it
		// provokes.
		ips := make([]netip.Addr, len(off))
		for i, l := range off {
			ips[i] = l.IP
		}
		s.commit(off, causeForceRenew, func(err error) {
			if err != nil {
				s.abandonPending(ips)
				return
			}
			s.sendForceRenews(ips, s.now())
		})
	}
	s.sendForceRenews(direct, now)
	s.sendForceRenews(resend, now)
	if err := s.persistCampaigns(); err != nil {
		_ = err // logged by persistCampaigns; retried on the next tick
	}
}

// redirtyCampaign marks what a failed store of campaign id left unstored:
// its description when meta is set, and the targets in ts.
func (s *Server) redirtyCampaign(id string, meta bool, ts map[netip.Addr][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.campaigns[id]
	if c == nil {
		return
	}
	c.metaDirty = c.metaDirty || meta
	for ip := range ts {
		c.dirty[ip] = true
	}
}

// frBatch bounds the clients one tick starts forcing, so that the lock is
// never held for long whatever the campaign's size.
const frBatch = 8192

// forceLocked starts forcing ip for c. It returns the change that turns
// the lease's serve bit off (to commit before the first FORCERENEW) when
// there is a fast path, or wait true when there is none and the
// FORCERENEW can go at once; neither when the client cannot be forced.
//
// A client of a Move campaign that has no key is marked to move at its
// next renewal instead (markMoveLocked); the change turning its serve bit
// off is added to serveOff.
func (s *Server) forceLocked(c *campaign, ip netip.Addr, now time.Time, serveOff *[]*lease.Lease) (*lease.Lease, bool) {
	t := c.all[ip]
	if t.informed {
		return nil, s.forceInformedLocked(c, ip, t)
	}
	l := s.leases.Get(ip)
	if l == nil || l.State != lease.Active || !bytes.Equal(l.HWAddr, t.hw) {
		c.finish(ip, outSkipped)
		return nil, false
	}
	if len(l.ForceRenewKey) != auth.KeyLen || s.ctr == nil {
		if !s.forceRenewSettingsLocked(ip).AllowUnauthenticated {
			s.m.ForceRenewNoKey.Inc()
			c.finish(ip, outNoKey)
			if c.meta.Options.Move && s.frPending[ip] == nil {
				s.markMoveLocked(c, ip)
				if s.fast != nil {
					*serveOff = append(*serveOff, s.changeLocked(ip, causeForceRenew, now, func(*lease.Lease) {}))
				}
			}
			return nil, false
		}
	}
	t.sent = true
	c.sent++
	c.inflight++
	if p := s.frPending[ip]; p != nil {
		// Already being forced by another campaign: this one shares
		// its outcome.
		p.campaigns = append(p.campaigns, c)
		p.move = p.move || c.meta.Options.Move
		return nil, false
	}
	s.frPending[ip] = &frPending{campaigns: []*campaign{c}, move: c.meta.Options.Move, key: l.ClientKey()}
	if s.fast == nil {
		return nil, true
	}
	return s.changeLocked(ip, causeForceRenew, now, func(*lease.Lease) {}), false
}

func (s *Server) forceRenewSettingsLocked(ip netip.Addr) ForceRenewSettings {
	if sn := s.subs.forAddr(ip); sn != nil {
		return sn.ForceRenew.withDefaults()
	}
	return ForceRenewSettings{}.withDefaults()
}

// endPendingLocked ends ip's pending FORCERENEW and returns the change that
// turns its serve bit back on, to commit with commitServe (nil without a
// fast path or lease).
func (s *Server) endPendingLocked(ip netip.Addr, now time.Time) *lease.Lease {
	p := s.frPending[ip]
	if p == nil {
		return nil
	}
	delete(s.frPending, ip)
	for _, c := range p.campaigns {
		c.inflight--
	}
	if s.fast == nil {
		return nil
	}
	return s.republishLocked(ip, now)
}

// republishLocked returns the change that republishes ip's active lease
// (its serve bit as serveLocked has it now), or nil when it has none.
func (s *Server) republishLocked(ip netip.Addr, now time.Time) *lease.Lease {
	if l := s.leases.Get(ip); l == nil || l.State != lease.Active {
		return nil
	}
	return s.changeLocked(ip, causeForceRenew, now, func(*lease.Lease) {})
}

// frAnswer is a client's answer to a pending FORCERENEW that its campaigns
// count only once on is committed and applied (commitAnswers): the client
// is renewed for the operator when its lease is on disk and the fast path
// answers its renewals again. Counted at the answer, `xdhcpctl forcerenew
// --wait` returned while the map still said Serve false, and a renewal
// sent then was punted (not_serving).
type frAnswer struct {
	// on republishes the lease; committed after the answer was handled,
	// it carries the record as the answer left it (the REQUEST's grant,
	// the folded renewal: commit submits the current record).
	on        *lease.Lease
	ip        netip.Addr
	out       outcome
	campaigns []*campaign
}

// answeredLocked records that ip's client answered a pending FORCERENEW
// (moved: it was NAKed to move) and returns the answer to commit with
// commitAnswers, or nil when it is counted already. ok is false when
// nothing was pending.
func (s *Server) answeredLocked(ip netip.Addr, moved bool, now time.Time) (*frAnswer, bool) {
	p := s.frPending[ip]
	if p == nil || p.tries == 0 {
		return nil, false
	}
	s.m.ForceRenewAnswered.Inc()
	a := &frAnswer{ip: ip, out: outRenewed, campaigns: p.campaigns}
	switch {
	case p.informed:
		a.out = outInformed
	case moved:
		a.out = outMoved
	}
	// No longer pending before the change is made, so that it turns the
	// serve bit on.
	delete(s.frPending, ip)
	if a.out == outRenewed {
		// Made without a fast path too: the answer counts once the
		// renewal is on disk.
		a.on = s.republishLocked(ip, now)
	}
	if a.on == nil {
		// Nothing to wait for: an informed client holds no lease (its
		// records go their own way, inform.go), and a moved one is
		// NAKed, its binding ended by the caller's commit and its entry,
		// Serve false until then, withdrawn with it.
		s.settleLocked(a, nil)
		return nil, true
	}
	return a, true
}

// commitAnswers commits the answers' changes (without the lock) and counts
// each answer in its campaigns once its change is applied: on disk and, with
// a fast path, in its map, at the end of the store transaction when the
// callbacks run within one (whenApplied).
func (s *Server) commitAnswers(as []*frAnswer) {
	if len(as) == 0 {
		return
	}
	cl := make([]*lease.Lease, len(as))
	for i, a := range as {
		cl[i] = a.on
	}
	s.commit(cl, causeForceRenew, func(err error) {
		s.whenApplied(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, a := range as {
				s.settleLocked(a, err)
			}
		})
	})
}

// settleLocked counts an answer in its campaigns, which stop waiting for
// it. When its change did not reach the disk (err), neither may the
// renewal have, and the fast path goes on punting the client's renewals:
// the client is reported with those that did not answer, as abandonPending
// reports a FORCERENEW that could not start, so that the operator sees it
// (`forcerenew --wait` exits 3) rather than a renewal that did not take.
func (s *Server) settleLocked(a *frAnswer, err error) {
	o := a.out
	if err != nil {
		o = outNoAnswer
		s.logLimited(slog.LevelError, "forcerenew_answer", "FORCERENEW answered, but the lease's commit failed: counted as no answer", "ip", a.ip, "err", err)
	}
	for _, c := range a.campaigns {
		c.inflight--
		c.finish(a.ip, o)
	}
}

// commitServe commits serve-bit changes (from endPendingLocked); without
// the lock.
func (s *Server) commitServe(cl []*lease.Lease) {
	if len(cl) > 0 {
		s.commit(cl, causeForceRenew, nil)
	}
}

// abandonPending ends pending FORCERENEWs whose serve-off change did not
// reach the disk: nothing was sent (the fast path would have answered the
// REQUEST), and the clients are reported with those that did not answer.
func (s *Server) abandonPending(ips []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range ips {
		p := s.frPending[ip]
		if p == nil {
			continue
		}
		delete(s.frPending, ip)
		for _, c := range p.campaigns {
			c.inflight--
			c.finish(ip, outNoAnswer)
		}
	}
}

// sendForceRenews sends one FORCERENEW to each of ips still pending and
// schedules the next: the wait doubles after each.
func (s *Server) sendForceRenews(ips []netip.Addr, now time.Time) {
	if len(ips) == 0 {
		return
	}
	msgs := make([]frMsg, 0, len(ips))
	s.mu.Lock()
	for _, ip := range ips {
		p, l := s.frPending[ip], s.leases.Get(ip)
		var m frMsg
		var key []byte
		switch {
		case p == nil:
			continue
		case p.informed:
			// A client configured by INFORM (inform.go): the xid of its
			// last INFORM, which is what dhcpcd checks in INFORM state.
			ic := s.informed[ip]
			if ic == nil {
				continue
			}
			m = frMsg{ip: ip, sid: ic.ServerID, xid: ic.XID, htype: ic.HWType, chaddr: ic.HWAddr, ifindex: ic.IfIndex}
			key = ic.Key
		case l == nil || l.State != lease.Active:
			continue
		default:
			m = frMsg{ip: ip, sid: l.ServerID, xid: l.LastXID, htype: l.HWType, chaddr: l.HWAddr, ifindex: int(l.IfIndex)}
			key = l.ForceRenewKey
			if l.GIAddr.IsValid() && !l.GIAddr.IsUnspecified() {
				m.ifindex = 0 // a relayed client is reached by routing
			}
		}
		set := s.forceRenewSettingsLocked(ip)
		if p.tries == 0 {
			p.first = now
		}
		p.next = now.Add(set.RetransmitStart << p.tries)
		p.tries++
		for _, c := range p.campaigns {
			c.tx++
		}
		if len(key) == auth.KeyLen && s.ctr != nil {
			m.key = key
		}
		m.src = m.sid
		if !s.isLocalLocked(m.sid) {
			// An RFC 5107 override (the relay's address) or a configured
			// server-id that is not ours: the kernel cannot send from
			// it, so it picks the source; option 54 still names sid.
			m.src = netip.Addr{}
		}
		m.chaddr, m.key = slices.Clone(m.chaddr), slices.Clone(m.key)
		msgs = append(msgs, m)
	}
	s.mu.Unlock()
	out := make([]Outgoing, 0, len(msgs))
	for _, m := range msgs {
		b, err := s.buildForceRenew(m)
		if err != nil {
			s.logLimited(slog.LevelError, "forcerenew_build", "building FORCERENEW", "ip", m.ip, "err", err)
			continue
		}
		out = append(out, Outgoing{Payload: b, IfIndex: m.ifindex, Src: m.src, Dst: netip.AddrPortFrom(m.ip, 68), Type: dhcpwire.ForceRenew})
	}
	if len(out) > 0 {
		s.m.ForceRenewSent.Add(float64(len(out)))
		s.emit(out)
	}
}

// buildForceRenew renders a FORCERENEW as RFC 3203 and dhcpcd (protocol
// digest C.1, C.4) want it: op BOOTREPLY, the xid of the last REQUEST ACKed
// (which dhcpcd checks), chaddr, 53 = 9, 54 = the server id the client
// holds, then option 90 with a digest under the binding's key, END, padding
// to the BOOTP minimum, and the digest computed last over exactly these
// bytes. Every option 90 takes the next replay value (one Counter for the
// server).
func (s *Server) buildForceRenew(m frMsg) ([]byte, error) {
	h := dhcpwire.Header{Op: dhcpwire.BootReply, HType: m.htype, HLen: uint8(min(len(m.chaddr), 16)), XID: m.xid}
	copy(h.CHAddr[:], m.chaddr)
	b := make([]byte, 0, bootpMinLen)
	b = dhcpwire.AppendHeader(b, h)
	b = append(b, dhcpwire.OptMessageType, 1, dhcpwire.ForceRenew)
	b = dhcpwire.AppendAddrOption(b, dhcpwire.OptServerID, m.sid)
	if len(m.key) == 0 {
		return finish(b), nil
	}
	replay, err := s.ctr.Next()
	if err != nil {
		return nil, fmt.Errorf("FORCERENEW to %s: %w", m.ip, err)
	}
	b = auth.AppendDigestOption(b, replay)
	b = finish(b)
	if err := auth.Sign(b, auth.Key(m.key)); err != nil {
		return nil, fmt.Errorf("FORCERENEW to %s: %w", m.ip, err)
	}
	return b, nil
}

// isLocalLocked reports whether a is an address of a served interface.
func (s *Server) isLocalLocked(a netip.Addr) bool {
	for _, i := range s.ifaces {
		for _, p := range i.Addrs {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// wakeForceRenew makes Run's FORCERENEW loop tick now.
func (s *Server) wakeForceRenew() {
	select {
	case s.frWake <- struct{}{}:
	default:
	}
}

// frTick is how often Run's FORCERENEW loop looks for due work; it bounds
// how late a retransmission or a rate-limited start can be.
const frTick = 100 * time.Millisecond

// nonceCapable reports whether the client sent option 145 listing
// HMAC-MD5: only such a client is given a key (RFC 6704).
func nonceCapable(p *dhcpwire.Packet) bool {
	v, ok := p.Option(dhcpwire.OptForceRenewNonce)
	if !ok {
		return false
	}
	algs, err := auth.ParseNonceCapable(v)
	return err == nil && algs.Has(auth.AlgorithmHMACMD5)
}

// forceRenewAnswerLocked checks whether a REQUEST or INFORM answers a
// pending FORCERENEW: one from the lease's client, for the leased address
// (ciaddr, or option 50 for INIT-REBOOT and SELECTING). It ends the
// pending state and returns the answer to commit with commitAnswers (the
// serve bit back on); move is the leased address when the client is to be
// moved (a REQUEST in a Move campaign), which the caller answers with a
// NAK (moveLocked) instead of handling it.
func (s *Server) forceRenewAnswerLocked(r *req, mt uint8) (answer *frAnswer, move netip.Addr) {
	if len(s.frPending) == 0 && len(s.moveNext) == 0 {
		return nil, netip.Addr{}
	}
	ip := r.p.CIAddr
	if s.frPending[ip] == nil && s.moveNext[ip] == nil {
		if want, ok := r.p.AddrOption(dhcpwire.OptRequestedIP); ok {
			ip = want
		}
	}
	if m := s.moveNext[ip]; m != nil && mt == dhcpwire.Request && m.key == r.key && s.frPending[ip] == nil {
		// A client a Move campaign could not force, renewing: moved now.
		delete(s.moveNext, ip)
		if t := m.c.all[ip]; t != nil && !t.later {
			t.later = true
			m.c.later++
			m.c.dirty[ip] = true
		}
		return nil, ip
	}
	p := s.frPending[ip]
	if p == nil || p.tries == 0 || p.key != r.key {
		return nil, netip.Addr{}
	}
	// An informed client holds no lease to move: whatever it answers
	// with is handled as usual (a new INFORM, normally).
	moving := p.move && !p.informed && mt == dhcpwire.Request
	a, _ := s.answeredLocked(ip, moving, r.now)
	if moving {
		move = ip
	}
	return a, move
}

// moveLocked ends the binding of a client NAKed to move, as a RELEASE
// would, and returns the change to commit (it withdraws the fast-path
// entry). The client's DISCOVER may get the same address back if nothing
// in the configuration moved it (a draining pool, a reservation).
func (s *Server) moveLocked(r *req, ip netip.Addr) *lease.Lease {
	return s.changeLocked(ip, causeRelease, r.now, func(l *lease.Lease) {
		l.State = lease.Released
		l.Expiry, l.CLTT = r.now, r.now
	})
}
