// Package slowpath is the DHCPv4 server: it classifies and answers every
// message the fast path does not, owns the lease table and keeps it durable
// in the lease store before any acknowledgement leaves.
package slowpath

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xdhcp/xdhcp/internal/fifo"
	"github.com/xdhcp/xdhcp/slowpath/auth"
	"github.com/xdhcp/xdhcp/slowpath/lease"
	"github.com/xdhcp/xdhcp/slowpath/store"
)

// Store is what the server needs from the durable lease store.
type Store interface {
	// Submit queues records and calls done once they are on disk.
	Submit(leases []*lease.Lease, done func(error))
	// Load calls fn for every record; the record is fn's only until it
	// returns (its byte fields may point into the store's memory).
	Load(ctx context.Context, fn func(*lease.Lease) error) error
	// LoadPage calls fn for up to limit records after the address after
	// (from the first when it is not valid), in address order, in one
	// short read; it returns the address to page on from (the last read,
	// or past it, a page then holding fewer records), or an invalid address
	// when no records are left. Long scans page with it so that no read
	// transaction stays open while they write to the network.
	LoadPage(after netip.Addr, limit int, fn func(*lease.Lease) error) (netip.Addr, error)
	History(clientKey string) ([]netip.Addr, error)
	// Moved records, in the client's history, that the client's most
	// recent address changed; it is written with a later fold.
	Moved(clientKey string, to, from netip.Addr)
}

// bulkSubmitter is a Store that writes a rewrite of many records in
// address order straight into its lease tree (store.Store.SubmitBulk).
type bulkSubmitter interface {
	SubmitBulk(leases []*lease.Lease, done func(error))
}

var _ bulkSubmitter = (*store.Store)(nil)

var _ behindStore = (*store.Store)(nil)

// mappedReleaser is a Store whose reads leave the file's pages counted in
// the daemon's resident set until it releases them (store.Store: bbolt's
// read-only shared mapping, whose pages stay in the page cache).
type mappedReleaser interface {
	ReleaseMapped() error
}

// releaseMapped gives back the store's mapped pages, after work that read
// much of the file: rewriting every record, or a bulk leasequery's scan,
// left the whole 2.6 GB of a ten-million-lease database in the RSS.
// Failing changes only the RSS.
func (s *Server) releaseMapped() {
	if r, ok := s.store.(mappedReleaser); ok {
		_ = r.ReleaseMapped()
	}
}

// Sender puts replies on the wire.
type Sender interface {
	Send(out []Outgoing)
}

// PayloadBuffers is implemented by a Sender that reuses reply buffers. A
// reply is about 500 bytes, two for every DORA: allocating each was a
// fifth of what the slow path allocated, which the collector then paid
// for.
type PayloadBuffers interface {
	// Payload returns an empty buffer with room for n bytes. A reply
	// built in it is marked Outgoing.Reuse, and the Sender may then reuse
	// the buffer once the reply is sent.
	Payload(n int) []byte
}

// Incoming is one received datagram with where it arrived.
type Incoming struct {
	Data    []byte
	Src     netip.AddrPort
	Dst     netip.Addr // destination address of the datagram (broadcast or ours)
	IfIndex int
	// Received is when the kernel took the datagram in (SO_TIMESTAMPNS),
	// zero when unknown: how long it waited for the server.
	Received time.Time
	// QueueFull says more than half its socket's buffer was in use once
	// its batch was read (slowpath/pktio measures the DISCOVER socket
	// only): a burst more and the kernel drops what comes.
	QueueFull bool
	// Priority says it was read from the priority socket (slowpath/pktio),
	// whose queue bounds its wait (classOf): REQUEST, DECLINE, RELEASE
	// and LEASEQUERY always, and the retransmitted DISCOVERs the kernel
	// let ahead of the DISCOVER socket's backlog (bpf/steer.c).
	Priority bool
}

// Outgoing is one reply and how to send it.
type Outgoing struct {
	Payload []byte
	IfIndex int
	Src     netip.Addr
	Dst     netip.AddrPort
	// HWDst, when set, asks for a link-layer send to this address (the
	// client has no IP address yet, or the reply is a broadcast).
	HWDst net.HardwareAddr
	Type  uint8 // message type, for counting
	// Reuse says Payload is the Sender's again once sent: it came from
	// its PayloadBuffers, and nothing refers to it after Send.
	Reuse bool
	// Received is the arrival (the kernel's timestamp) of the request
	// this answers, zero for a message the server sends unasked
	// (FORCERENEW) or a request without one: the Sender reports it with
	// the reply once sent (Metrics.ObserveSent).
	Received time.Time
}

// Interface describes a served interface.
type Interface struct {
	Index int
	Name  string
	Addrs []netip.Prefix
}

// Settings are the server-wide knobs.
type Settings struct {
	Authoritative bool
	OfferHold     time.Duration
	DeclineHold   time.Duration
	// HorizonAhead, when non-zero, is how far past now every ACK moves the
	// lease's promise horizon (ARCHITECTURE.md invariant 2); zero while
	// neither the fast path nor AckOnHorizon uses horizons. Only with a
	// fast path does AdvanceHorizons also move them in the background.
	HorizonAhead time.Duration
	// AckOnHorizon sends a renewal's ACK before its record is on disk
	// when the lease's horizon on disk covers the new expiry, as the fast
	// path grants within it (invariant 6: the record, or the horizon).
	// A crash before the record is written loses nothing the horizon
	// does not hold: a start after one holds every active lease to its
	// horizon (LoadHoldingGrants).
	AckOnHorizon bool
	Leasequery   Leasequery
	// OfferPoolShare bounds the offers pending in a subnet's pools to
	// this share of the addresses not bound (free plus offered), so that
	// a flood of DISCOVERs from random MACs cannot hold every free
	// address while real clients wait; at the bound the oldest pending
	// offer is withdrawn. Zero means no bound; New applies no default.
	OfferPoolShare float64
	// OfferPerCircuit bounds the offers pending for one relay circuit
	// (giaddr and option 82 circuit-id); zero means no bound.
	OfferPerCircuit int
	// InformedMax bounds the clients configured by DHCPINFORM that are
	// remembered for FORCERENEW (inform.go), the least recently informed
	// forgotten first; zero means DefaultInformedMax.
	InformedMax int
	// InformedTTL is how long an informed client is remembered without
	// an INFORM; zero means DefaultInformedTTL.
	InformedTTL time.Duration
	// MaxWait bounds the time a request may have waited in the socket
	// before the server reads it (issue 19): older, its client has
	// retransmitted or given up, and an answer would only cost the
	// requests behind it their turn; it is dropped and counted
	// (reason "stale"). DISCOVERs and INFORMs wait at most a quarter of
	// it: they wait in a socket of their own (slowpath/pktio), which the
	// server reads after the REQUESTs', and a DISCOVER is cheap to
	// retransmit; a relayed retransmitted DISCOVER that the kernel let
	// into the REQUEST socket too. Zero means no bound.
	MaxWait time.Duration
	// QueueTarget and QueueInterval bound each socket's backlog by time
	// (CoDel's idea, simplified): once every request in it has waited
	// longer than QueueTarget for a whole QueueInterval, the server is
	// behind for good, not in a burst, and drops that socket's requests
	// older than QueueTarget until one arrives younger, counted as
	// reason "overload". Answered requests then wait at most about
	// QueueTarget however far the offered load passes what the server
	// can do, and it spends its time on them instead of on answers
	// their clients stopped waiting for. Zero QueueTarget turns this
	// off, and with it DiscoverHoldoff, RequestHoldoff and the shedding
	// of unknown clients' REQUESTs. The lease store's queue is held
	// too: while the store is behind by more than QueueInterval, the
	// reader stops reading (Ready), and the backlog waits in the sockets.
	QueueTarget, QueueInterval time.Duration
	// DiscoverHoldoff: while the DISCOVER socket is behind (and for
	// holdoffLinger after), a client whose DISCOVER reached it less than
	// this ago has its next one dropped before it, by the Config's
	// HoldoffGate, and a client repeating within the holdoff has it
	// doubled, as often as the server allows while it stays behind
	// (Holdoff, gateLocked). A flood from many MACs then costs each of
	// them one DISCOVER per up to 16 holdoffs, and a new client's first
	// DISCOVER finds room in the socket (issue 19). Clients following
	// RFC 2131 retransmit after about 4 s, so a holdoff below 3 s never
	// drops theirs. Zero turns it off.
	DiscoverHoldoff time.Duration
	// RequestHoldoff is the same for DHCPREQUESTs and the REQUEST
	// socket: a flood of REQUESTs from many MACs costs each of them one
	// REQUEST per holdoff, doubled as for DISCOVERs (two, alternating
	// with DISCOVERs), and a bound client's renewal finds room. A client
	// whose DISCOVER is let in (one NAKed, starting again) is let off
	// once its holdoff. A client that retransmits its REQUEST sooner
	// than the holdoff (some embedded stacks do after 1 to 2 s), or
	// answers a FORCERENEW within it of its last REQUEST, waits for its
	// next try, longer for each try that comes as soon. Independently of it,
	// while that socket is behind, the server drops REQUESTs that would
	// bind an address to a client it has not seen, before an answer or a
	// commit (reason "overload_unknown"; knownRequestLocked): a flood's
	// REQUESTs for free addresses cost it a parse each, and those for
	// taken ones a NAK. Zero turns the holdoff off, not that.
	RequestHoldoff time.Duration
}

// Server answers DHCPv4 messages. Create it with New, then Load and Run.
type Server struct {
	// packets holds parsed requests for reuse (getPacket).
	packets sync.Pool

	log   *slog.Logger
	store Store
	send  Sender
	// bufs is send's PayloadBuffers, nil when it lends none: asked once
	// here rather than for every reply.
	bufs PayloadBuffers
	fast FastPath
	// staleFast is Config.StaleFastPath.
	staleFast bool
	// ahead sends the ACKs given on the horizon (Run runs it).
	ahead *aheadSender
	// partner is the failover partner, nil without failover.
	partner Partner
	gate    HoldoffGate
	m       *Metrics
	now     func() time.Time
	// backlog is the overload state behind Settings.QueueTarget.
	backlog backlog
	// logLimit keeps refused requesters from flooding the log.
	logLimit *logLimiter
	// subQ orders submissions to the store (see commit).
	subQ submitQueue
	// tx gathers a transaction's effects while its callbacks run
	// (Committed).
	tx txEffects
	// pubMu orders writes to the fast path: records are rendered and
	// written under it, taken before mu, so that a rendering is never
	// written over a later one (publish, PublishAll).
	pubMu sync.Mutex

	mu      sync.Mutex
	set     Settings
	subs    *subnets
	ifaces  map[int]Interface
	leases  *lease.Table
	clients clientIndex
	offers  map[netip.Addr]offer
	offerOf map[string]netip.Addr // client key → address offered to it
	offerQ  fifo.Queue[offerRef]
	// offerEpoch is when the server was made: offerRef's zero.
	offerEpoch time.Time
	// Pending offers by bound (a subnet's pools, or a relay circuit):
	// live counts, and the offers in the order made (with entries of
	// offers since taken or withdrawn, skipped when met).
	offerCount map[string]int
	offerFIFO  map[string]*fifo.Queue[offerRef]
	expiry     expiryHeap
	toFree     []netip.Addr
	counts     map[*Subnet]*[8]int64 // records per state, for metrics

	// FORCERENEW (forcerenew.go). ctr is the one replay counter every
	// option 90 draws from (nil: no keys are delivered); camps keeps
	// campaigns durable (nil: they are not).
	ctr           *auth.Counter
	camps         CampaignStore
	frPending     map[netip.Addr]*frPending
	moveNext      map[netip.Addr]*moveMark
	campaigns     map[string]*campaign
	campaignOrder []string
	frWake        chan struct{}
	// Clients configured by DHCPINFORM (inform.go): by ciaddr, and in
	// order of their last INFORM; informs keeps them durable (nil: not).
	informed  map[netip.Addr]*informedClient
	informLRU *list.List
	informs   InformStore
}

type offer struct {
	client string
	until  time.Time
	// pool and circuit name the bounds the offer counts against
	// (circuit "" when the client is not behind a relay's circuit).
	pool, circuit string
}

// offerRef is an offer's entry in the queues that order offers by age:
// 16 bytes, where an address and a time.Time were 48, because the queues
// hold one for every offer made in the last offer-time.
type offerRef struct {
	ip    uint32        // lease.AddrUint32
	until time.Duration // the offer's until, as offerSince gives it
}

func (s *Server) newOfferRef(ip netip.Addr, until time.Time) offerRef {
	return offerRef{ip: lease.AddrUint32(ip), until: s.offerSince(until)}
}

// offerSince is t as the offer queues keep it: since the server was made,
// on the monotonic clock when t has a reading of it (time.Now's do), as
// time.Time's own comparisons are, so that a step of the wall clock still
// delays no offer's end.
func (s *Server) offerSince(t time.Time) time.Duration { return t.Sub(s.offerEpoch) }

func (r offerRef) addr() netip.Addr { return lease.AddrFromUint32(r.ip) }

// Config is everything New needs.
type Config struct {
	Logger   *slog.Logger
	Store    Store
	Sender   Sender
	FastPath FastPath // optional: nil while the fast path is off
	// StaleFastPath, with FastPath nil: an XDP program of an earlier run
	// may still be attached and answering from its own map, which this
	// server neither reads nor updates, so the sweep holds each lapsed
	// lease to its horizon, which bounds what that map grants.
	StaleFastPath bool
	Partner       Partner // optional: nil without failover
	// Gate holds off repeated DISCOVERs and REQUESTs
	// (Settings.DiscoverHoldoff, RequestHoldoff); optional: nil, and
	// there is no holdoff.
	Gate     HoldoffGate
	Metrics  *Metrics // optional
	Settings Settings
	Subnets  []*Subnet
	Ifaces   []Interface
	Now      func() time.Time // optional, for tests
	// Counter is the server's RFC 3118 replay counter, over a durable
	// floor (store.ReplayFloor). Optional: without it no client is given
	// a FORCERENEW key and only subnets that allow unauthenticated
	// FORCERENEW can be forced.
	Counter *auth.Counter
	// Campaigns keeps FORCERENEW campaigns across restarts (the lease
	// store). Optional.
	Campaigns CampaignStore
	// Informed keeps the clients configured by DHCPINFORM across
	// restarts (the lease store). Optional: without it they are
	// remembered in memory only and their ACKs carry no FORCERENEW key.
	Informed InformStore
}

// New builds a server. Call Load before serving.
func New(c Config) (*Server, error) {
	if c.Store == nil || c.Sender == nil {
		return nil, errors.New("slowpath: store and sender are required")
	}
	s := &Server{
		log: c.Logger, store: c.Store, send: c.Sender, fast: c.FastPath, staleFast: c.StaleFastPath, ahead: newAheadSender(), partner: c.Partner, gate: c.Gate, m: c.Metrics, now: c.Now,
		leases: lease.NewTable(), clients: newClientIndex(),
		offers: map[netip.Addr]offer{}, offerOf: map[string]netip.Addr{},
		offerCount: map[string]int{}, offerFIFO: map[string]*fifo.Queue[offerRef]{},
		logLimit: newLogLimiter(time.Second),
		ctr:      c.Counter, camps: c.Campaigns,
		frPending: map[netip.Addr]*frPending{}, moveNext: map[netip.Addr]*moveMark{}, campaigns: map[string]*campaign{}, frWake: make(chan struct{}, 1),
		informed: map[netip.Addr]*informedClient{}, informLRU: list.New(), informs: c.Informed,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.offerEpoch = s.now()
	s.bufs, _ = s.send.(PayloadBuffers)
	if s.m == nil {
		s.m = NewMetrics()
	}
	if err := s.apply(c.Settings, c.Subnets, c.Ifaces); err != nil {
		return nil, err
	}
	return s, nil
}

// Reconfigure swaps in new settings, subnets and interfaces without losing
// any lease. The caller has validated them.
func (s *Server) Reconfigure(set Settings, subs []*Subnet, ifaces []Interface) error {
	s.mu.Lock()
	old := s.subs
	s.mu.Unlock()
	if err := s.apply(set, subs, ifaces); err != nil {
		return err
	}
	s.announceReservations(old)
	return nil
}

func (s *Server) apply(set Settings, list []*Subnet, ifaces []Interface) error {
	subs, err := newSubnets(list)
	if err != nil {
		return fmt.Errorf("slowpath: %w", err)
	}
	im := map[int]Interface{}
	for _, i := range ifaces {
		im[i.Index] = i
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set, s.subs, s.ifaces = set, subs, im
	s.rebuildPoolsLocked()
	return nil
}

// SetInterfaces updates the served interfaces' addresses (they may change
// at run time).
func (s *Server) SetInterfaces(ifaces []Interface) {
	im := map[int]Interface{}
	for _, i := range ifaces {
		im[i.Index] = i
	}
	s.mu.Lock()
	s.ifaces = im
	s.mu.Unlock()
}

// Load reads every lease from the store into memory.
func (s *Server) Load(ctx context.Context) error {
	_, err := s.load(ctx, false)
	return err
}

// LoadHoldingGrants is Load for a start after grants past the records
// may have been lost: a fast path whose map did not survive, a run that
// did not stop cleanly after ACKing renewals on their horizons
// (Settings.AckOnHorizon). Each active lease is held to its durable
// horizon as it is read, which
// is what AssumeGrantedToHorizon does after a Load, without a second pass
// over the table (3 s of a ten-million-lease start). held and commit are
// as AssumeGrantedToHorizon returns them.
func (s *Server) LoadHoldingGrants(ctx context.Context) (held int, commit func(context.Context) error, err error) {
	addrs, err := s.load(ctx, true)
	if err != nil {
		return 0, nil, err
	}
	return len(addrs), func(ctx context.Context) error { return s.commitAddrs(ctx, addrs, causeAssume) }, nil
}

// load is Load; hold, it holds every active lease to its durable horizon
// (holdToHorizon) and returns their addresses.
func (s *Server) load(ctx context.Context, hold bool) (held []uint32, err error) {
	var n int
	s.mu.Lock()
	defer s.mu.Unlock()
	// put is the last step of each record's load, on the goroutine that
	// fills the table.
	put := func(l *lease.Lease) {
		markDurable(l)
		if hold && holdToHorizon(l) {
			held = append(held, lease.AddrUint32(l.IP))
		}
		s.leases.Put(l)
	}
	if sl, ok := s.store.(snapshotLoader); ok {
		n, err = s.loadPipelined(ctx, sl, put)
	} else {
		err = s.store.Load(ctx, func(l *lease.Lease) error {
			put(l)
			if len(l.HWAddr) > 0 || len(l.ClientID) > 0 {
				s.indexClient(l, false, s.leases.Get)
			}
			n++
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("loading leases: %w", err)
	}
	s.rebuildPoolsLocked()
	s.log.Info("leases loaded", "count", n)
	if err := s.loadInformedLocked(); err != nil {
		return nil, err
	}
	// Campaigns resume once the leases and informed clients they target
	// are known; Run carries them on.
	if err := s.loadCampaignsLocked(); err != nil {
		return nil, err
	}
	s.mu.Unlock()
	s.announceReservations(nil)
	s.mu.Lock() // for the deferred unlock
	return held, nil
}

// snapshotLoader is a Store that lets a load read any record of the
// snapshot it walks (store.Store does).
type snapshotLoader interface {
	LoadWithLookup(ctx context.Context, fn func(l *lease.Lease, lookup store.Lookup) error, end func()) error
}

// The daemon's store takes the pipelined load: a signature that drifted
// would quietly load on one goroutine.
var _ snapshotLoader = (*store.Store)(nil)

// loadBatch is how many records go from one stage of the load to the
// next at a time.
const loadBatch = 4096

// loadChunk is a batch of records on their way to the lease table, with
// the arena holding their bytes and the snapshot's lookup. A few go round
// between the load's goroutines: new ones for every batch touched a
// gigabyte of fresh memory at ten million leases.
type loadChunk struct {
	leases []lease.Lease
	arena  []byte
	lookup store.Lookup
}

// loadPipelined loads the records in three stages, each on a goroutine of
// its own: this one reads and decodes them, the next indexes them by
// client, the last puts them in the lease table (put). Each stage owns
// what it builds, and all are done when this returns. The client index
// checks a client's other record in the store's snapshot (lookup), which
// holds what the table will. The load's work is mostly waiting for memory
// (a page of the database, a map insert, a record written): with the
// index built by the reader, the reader was the longest stage (1.0 of
// 1.7 s at a million leases) while the table's waited for it.
func (s *Server) loadPipelined(ctx context.Context, sl snapshotLoader, put func(*lease.Lease)) (int, error) {
	const inFlight = 6
	read, indexed, free := make(chan *loadChunk, inFlight), make(chan *loadChunk, inFlight), make(chan *loadChunk, inFlight)
	for range inFlight {
		free <- &loadChunk{leases: make([]lease.Lease, 0, loadBatch), arena: make([]byte, 0, 512*loadBatch)}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for c := range indexed {
			for i := range c.leases {
				put(&c.leases[i])
			}
			clear(c.leases) // the next batch's records must not keep these bytes
			c.leases, c.arena, c.lookup = c.leases[:0], c.arena[:0], nil
			free <- c
		}
	})
	// The index's stage looks records up in the snapshot: it ends within
	// the read transaction (LoadWithLookup's end), whatever the walk did.
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		defer close(indexed)
		for c := range read {
			for i := range c.leases {
				if l := &c.leases[i]; len(l.HWAddr) > 0 || len(l.ClientID) > 0 {
					s.indexClient(l, false, c.lookup)
				}
			}
			indexed <- c
		}
	}()
	n := 0
	c := <-free
	endReading := sync.OnceFunc(func() {
		if len(c.leases) > 0 {
			read <- c
		}
		close(read)
		<-indexDone
	})
	err := sl.LoadWithLookup(ctx, func(l *lease.Lease, lookup store.Lookup) error {
		// The record's bytes are the store's, valid only until fn
		// returns: copied into the chunk's arena (which may grow: the
		// records copied before keep the old one).
		c.leases = c.leases[:len(c.leases)+1]
		c.leases[len(c.leases)-1], c.arena = l.CopyInto(c.arena)
		c.lookup = lookup
		if len(c.leases) == loadBatch {
			read <- c
			c = <-free
		}
		n++
		return nil
	}, endReading)
	// Also when the transaction failed to begin, and end never ran.
	endReading()
	wg.Wait()
	return n, err
}

// moveClientLocked makes ip the client's most recent address, and tells
// the store's history when that moves the client from another address
// (LookupClient finds the current one here, the older ones there).
func (s *Server) moveClientLocked(k string, ip netip.Addr) {
	if cur, ok := s.clients.latestOf(k); ok && cur != ip {
		s.store.Moved(k, ip, cur)
	}
	s.clients.setLatest(k, ip)
}

// indexClientLocked remembers l as the client's address if it is the most
// recent binding we know for that client. live is false while the table
// is loaded: the history on disk already holds the moves between the
// records read.
func (s *Server) indexClientLocked(l *lease.Lease, live bool) {
	s.indexClient(l, live, s.leases.Get)
}

// indexClient is indexClientLocked reading a client's other record with
// get (the table, or during a load the store's snapshot). Without
// s.mu it is for the goroutine that owns the index while Load runs.
func (s *Server) indexClient(l *lease.Lease, live bool, get func(netip.Addr) *lease.Lease) {
	// The keys are hashed in place, not made: a load does this for
	// every record.
	h, hwKey := s.clients.keyHash(l.ClientID, l.HWType, l.HWAddr)
	// Leasequery by MAC finds bindings whatever client-id they used;
	// added after the client's latest address, which it may be.
	defer func() {
		if len(l.HWAddr) > 0 {
			hh := h
			if !hwKey {
				hh, _ = s.clients.keyHash(nil, l.HWType, l.HWAddr)
			}
			s.clients.addHWHash(hh, lease.AddrUint32(l.IP))
		}
	}()
	if cur, ok := s.clients.latestOfHash(h); ok && cur != l.IP {
		if o := get(cur); o != nil && lease.SameClient(o, l) && o.CLTT.After(l.CLTT) {
			return
		}
	}
	if live {
		s.moveClientLocked(l.ClientKey(), l.IP)
		return
	}
	s.clients.setLatestHash(h, hwKey, l.IP)
}

// rebuildPoolsLocked makes the allocators agree with the lease table: a
// record that is bound, offered, reserved or quarantined is taken; a free
// one is reusable in the order it became free; no record means fresh.
func (s *Server) rebuildPoolsLocked() {
	for _, sn := range s.subs.list {
		sn.set, _ = sn.newSet() // pools were checked by newSubnets
		sn.backup, _ = sn.newBackupSet()
		for ip := range sn.ReservedIP {
			sn.set.Take(ip)
			sn.backup.Take(ip)
		}
	}
	s.counts = map[*Subnet]*[8]int64{}
	var freed []freedAddr
	s.expiry = s.expiry[:0]
	if n := s.leases.Len(); cap(s.expiry) < n {
		// Sized once: grown an append at a time it was copied over
		// and again (a sixth of a load's own time at 3M leases).
		s.expiry = make(expiryHeap, 0, n)
	}
	now := s.now()
	s.leases.Range(nil, func(l *lease.Lease) bool {
		ip := l.IP
		// A binding ends at its expiry, and an ended one becomes FREE,
		// whether or not a subnet still holds the address (a reload, or
		// a restart with another configuration, may have removed it).
		switch {
		case l.State == lease.Active || l.State == lease.Abandoned:
			s.expiry.add(ip, l.Expiry, l.StateAt)
		case l.State.Ending():
			s.toFree = append(s.toFree, ip)
		}
		sn := s.subs.forAddr(ip)
		if sn == nil {
			return true // no pool holds the address
		}
		s.countLocked(sn, l.State, 1)
		// A record decides, not the owner's default (an independent
		// pool's upper half starts available in the BACKUP set).
		sn.backup.Take(ip)
		if !l.State.Reusable() {
			sn.set.Take(ip)
			if l.State == lease.Backup {
				freed = append(freed, freedOf(l)) // into the BACKUP set, below
			}
			return true
		}
		if _, reserved := sn.ReservedIP[ip]; !reserved {
			freed = append(freed, freedOf(l))
		}
		return true
	})
	sortByStateAt(freed)
	for _, f := range freed {
		if sn := s.subs.forAddr(f.ip); sn != nil {
			if f.backup {
				if _, reserved := sn.ReservedIP[f.ip]; !reserved {
					sn.backup.Free(f.ip)
				}
				continue
			}
			sn.set.Free(f.ip)
		}
	}
	for ip, o := range s.offers {
		if sn := s.subs.forAddr(ip); sn != nil && o.until.After(now) {
			sn.takeAddr(ip)
		}
	}
	s.expiry.init()
}

// rebuildExpiryLocked makes the expiry heap anew from the table: an entry
// for every active or abandoned record, in a subnet or not (as
// rebuildPoolsLocked makes it), in the heap's own memory, ordered at once.
func (s *Server) rebuildExpiryLocked() {
	s.expiry = s.expiry[:0]
	s.leases.Range(func(b *lease.Brief) bool {
		if b.State == lease.Active || b.State == lease.Abandoned {
			s.expiry.add(b.IP, b.Expiry, b.StateAt)
		}
		return false // the brief is all it needs
	}, func(*lease.Lease) bool { return true })
	s.expiry.init()
}

func (s *Server) countLocked(sn *Subnet, st lease.State, d int64) {
	c := s.counts[sn]
	if c == nil {
		c = new([8]int64)
		s.counts[sn] = c
	}
	if st < 8 {
		c[st] += d
	}
}

// commit is the one commit path: it stores changed records (the copies
// changeLocked returned), and once they are on disk fans them out: their
// horizons become durable, the fast path gets them (added, updated or
// withdrawn) unless c says it already holds them, and the partner gets
// them unless they came from it. Nothing reaches either before the disk
// (ARCHITECTURE.md invariants 2 and 6). Then after runs with the error.
// A batch shares one cause's fan-out. commit must be called without the
// lock: its callback takes it.
//
// The copies become commit's: the caller does not read them afterwards
// (current rewrites them, on whichever goroutine drains the queue).
//
// The copies are taken under the lock but submitted after it is released,
// so two goroutines could submit an address's versions in the wrong order
// (an older copy landing on disk after a newer, acknowledged one: an ACK
// lost). commit therefore submits, one batch at a time and in the order
// called, each address's current version, re-read under the lock at the
// moment of submission: a later submission always carries a version at
// least as new as an earlier one, and what an ACK waits for is at least
// what it acknowledged (ARCHITECTURE.md invariant 3).
func (s *Server) commit(cl []*lease.Lease, c cause, after func(error)) {
	q := &s.subQ
	q.mu.Lock()
	q.jobs.Push(commitJob{cl: cl, c: c, after: after})
	if q.draining {
		// The goroutine draining the queue submits it in turn (this may
		// be a callback it runs: a store that is closed answers at once).
		q.mu.Unlock()
		return
	}
	q.draining = true
	for q.jobs.Len() > 0 {
		j := q.jobs.Front()
		q.jobs.Pop()
		q.mu.Unlock()
		s.submit(s.current(j.cl), j.c, j.after)
		q.mu.Lock()
	}
	q.draining = false
	q.mu.Unlock()
}

// submitQueue holds commits waiting their turn to be submitted.
type submitQueue struct {
	mu       sync.Mutex
	jobs     fifo.Queue[commitJob]
	draining bool
}

type commitJob struct {
	cl    []*lease.Lease
	c     cause
	after func(error)
}

// current overwrites each copy with its address's record as it is now,
// marked Reserved for the partner (copies of addresses not in the table
// stay as they are). In place: the copies are the commit's once handed to
// it, and a fresh copy was a 512-byte allocation per record committed;
// only the byte fields get memory of their own.
func (s *Server) current(cl []*lease.Lease) []*lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range cl {
		if _, ok := s.leases.GetInto(l.IP, l, nil); ok {
			s.markReservedLocked(l)
		}
	}
	return cl
}

// submit hands one batch to the store and fans it out once it is on disk.
func (s *Server) submit(cl []*lease.Lease, c cause, after func(error)) {
	put := s.store.Submit
	if b, ok := s.store.(bulkSubmitter); ok && c == causeAssume {
		// Every lease held to its horizon, in address order, at a start
		// that found grants may be lost (LoadHoldingGrants): written
		// once, into the tree, not into the journal and then the tree.
		put = b.SubmitBulk
	}
	put(cl, func(err error) {
		if err != nil {
			s.m.CommitErrors.Inc()
			// Once per message while the disk fails: limited.
			s.logLimited(slog.LevelError, "commit", "lease commit failed", "leases", len(cl), "err", err)
		} else {
			for _, l := range cl {
				markDurable(l)
			}
			if !s.tx.add(cl, c.republish()) {
				s.durable(cl)
				if c.republish() {
					s.publish(cl)
				}
			}
			if s.partner != nil && c.forPartner() {
				s.partner.Update(cl, c == causeFold)
			}
		}
		if after != nil {
			after(err)
		}
	})
}

// txEffects are what a transaction's callbacks change in the lease table
// and the fast path, gathered while they run to be applied once for the
// transaction (Committed): taken per callback, the server's lock was
// contended with the handler's hundreds of times a transaction, and the
// ACKs waited behind it.
type txEffects struct {
	mu      sync.Mutex
	active  bool
	durable []*lease.Lease
	publish []*lease.Lease
	// then runs once they are applied (whenApplied).
	then []func()
}

// add gathers cl's effects when a transaction's callbacks are being
// gathered, and says whether it did.
func (t *txEffects) add(cl []*lease.Lease, publish bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return false
	}
	t.durable = append(t.durable, cl...)
	if publish {
		t.publish = append(t.publish, cl...)
	}
	return true
}

// Committed runs a lease store transaction's callbacks (runAll; it is
// store.Options.Callbacks) and then applies what they changed together:
// the durable horizons in one hold of the server's lock, the fast path's
// entries in one write. The replies they send go first (the daemon holds
// them until the end anyway, pktio.Hold); a reader of the table meanwhile
// sees the previous durable horizon, which is on disk too.
func (s *Server) Committed(runAll func()) {
	t := &s.tx
	t.mu.Lock()
	t.active = true
	t.mu.Unlock()
	runAll()
	t.mu.Lock()
	durable, publish, then := t.durable, t.publish, t.then
	t.active, t.durable, t.publish, t.then = false, nil, nil, nil
	t.mu.Unlock()
	if len(durable) > 0 {
		s.durable(durable)
	}
	if len(publish) > 0 {
		s.publish(lastPerAddress(publish))
	}
	for _, fn := range then {
		fn()
	}
}

// whenApplied runs fn, from a commit's callback, once that commit's
// effects are applied: at once, or at the end of the store transaction
// whose callbacks are running (Committed), after its write to the fast
// path. A callback runs before that write.
func (s *Server) whenApplied(fn func()) {
	t := &s.tx
	t.mu.Lock()
	if t.active {
		t.then = append(t.then, fn)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	fn()
}

// lastPerAddress keeps each address's last record of ls, in order: one
// write to the fast path must leave each entry as the last record says
// (an ACK then a RELEASE in one transaction: no entry).
func lastPerAddress(ls []*lease.Lease) []*lease.Lease {
	seen := make(map[netip.Addr]struct{}, len(ls))
	out := make([]*lease.Lease, 0, len(ls))
	for i := len(ls) - 1; i >= 0; i-- {
		if _, dup := seen[ls[i].IP]; !dup {
			seen[ls[i].IP] = struct{}{}
			out = append(out, ls[i])
		}
	}
	slices.Reverse(out)
	return out
}

// durable records that the records cl (copies, marked by markDurable) are
// on disk: each one's horizon becomes its address's DurableHorizon, the
// only horizon ever published (ARCHITECTURE.md invariant 2). Keeping the
// durable horizon beside the working one, rather than holding changes back
// until their commit, covers every cause at once: whatever moved a horizon
// in memory (an ACK, AdvanceHorizons, a change yet to come), a commit that
// fails leaves DurableHorizon where the disk is, and a reload's PublishAll,
// or another change's commit, publishes that. The store commits in the
// order submitted (one committer) and calls back in that order, so the
// last commit to land is the newest version on disk.
func (s *Server) durable(cl []*lease.Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cl {
		s.leases.SetDurableHorizon(c)
	}
}

// markDurable sets DurableHorizon for a record as it is on disk: its
// horizon while active; an inactive record promises the fast path nothing.
func markDurable(l *lease.Lease) {
	l.DurableHorizon = time.Time{}
	if l.State == lease.Active {
		l.DurableHorizon = l.Horizon
	}
}

// Lookup returns a copy of the lease for ip, or nil.
func (s *Server) Lookup(ip netip.Addr) *lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.leases.Get(ip); l != nil {
		return l
	}
	return nil
}

// Has reports whether ip has a record, without copying it.
func (s *Server) Has(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases.Has(ip)
}

// LookupClient returns copies of the leases a client key holds or held,
// most recent first.
func (s *Server) LookupClient(key string) []*lease.Lease {
	s.mu.Lock()
	var out []*lease.Lease
	if ip, ok := s.clients.latestOf(key); ok {
		if l := s.leases.Get(ip); l != nil && l.ClientKey() == key {
			out = append(out, l)
		}
	}
	s.mu.Unlock()
	hist, err := s.store.History(key)
	if err != nil {
		// The current lease still answers; the older ones are missing
		// from this reply, and the operator should know why.
		// Each leasequery can hit this while the disk fails: limited.
		s.logLimited(slog.LevelError, "history", "reading a client's lease history", "client", fmt.Sprintf("%x", key), "err", err)
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range hist {
		if len(out) > 0 && out[0].IP == ip {
			continue
		}
		if l := s.leases.Get(ip); l != nil && l.ClientKey() == key {
			out = append(out, l)
		}
	}
	return out
}

// Each calls fn with a copy of every lease, in no particular order.
func (s *Server) Each(fn func(*lease.Lease)) {
	s.mu.Lock()
	ls := make([]*lease.Lease, 0, s.leases.Len())
	s.leases.Range(nil, func(l *lease.Lease) bool {
		ls = append(ls, l.Clone())
		return true
	})
	s.mu.Unlock()
	for _, l := range ls {
		fn(l)
	}
}

// SubnetOf returns the configured subnet holding ip, or an invalid prefix.
func (s *Server) SubnetOf(ip netip.Addr) netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sn := s.subs.forAddr(ip); sn != nil {
		return sn.Prefix
	}
	return netip.Prefix{}
}

// PoolStats reports, per subnet, how many pool addresses are in each state.
func (s *Server) PoolStats() map[netip.Prefix]map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[netip.Prefix]map[string]int64{}
	for _, sn := range s.subs.list {
		m := map[string]int64{}
		c := s.counts[sn]
		for st := lease.Active; st <= lease.Backup; st++ {
			if c != nil {
				m[st.String()] = c[st]
			} else {
				m[st.String()] = 0
			}
		}
		// free counts what could be allocated now, which includes
		// expired and released addresses.
		m["free"] = int64(sn.set.Available())
		// Addresses of draining pools still in use: renumbering's
		// progress, falling to 0 as FORCERENEW moves their clients.
		m["draining"] = int64(sn.set.DrainingInUse())
		m["total"] = int64(sn.set.Size())
		m["offered"] = 0
		out[sn.Prefix] = m
	}
	for ip := range s.offers {
		if sn := s.subs.forAddr(ip); sn != nil {
			out[sn.Prefix]["offered"]++
		}
	}
	return out
}

// Run does the timed work until ctx ends: offer and lease expiry, and
// FORCERENEW campaigns (starts at their rates, retransmissions, giving
// up), in a goroutine Run owns and waits for; and, in another, sends the
// ACKs of renewals granted on their horizon (aheadSender).
func (s *Server) Run(ctx context.Context) error {
	frDone, aheadDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(frDone)
		s.runForceRenew(ctx)
	}()
	go func() {
		defer close(aheadDone)
		s.ahead.run(ctx, s.emit)
	}()
	defer func() { <-frDone; <-aheadDone }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sweep()
		}
	}
}

// runForceRenew ticks the FORCERENEW campaigns every frTick, and at once
// when one starts, until ctx ends.
func (s *Server) runForceRenew(ctx context.Context) {
	t := time.NewTicker(frTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Answers recorded since the last tick: stored now, so
			// a restart does not force those clients again.
			_ = s.persistCampaigns() // logged there
			return
		case <-t.C:
		case <-s.frWake:
		}
		s.forceRenewTick(s.now())
	}
}

// LeaseCount is the number of lease records held.
func (s *Server) LeaseCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases.Len()
}

// Find returns copies of the leases for which match is true.
func (s *Server) Find(match func(*lease.Lease) bool) []*lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*lease.Lease
	s.leases.Range(nil, func(l *lease.Lease) bool {
		if match(l) {
			out = append(out, l.Clone())
		}
		return true
	})
	return out
}
