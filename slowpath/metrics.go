package slowpath

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdhcp/xdhcp/internal/dhcpwire"
)

// Metrics are the slow path's Prometheus counters. They are created per
// server (no global registry) and registered by the daemon.
type Metrics struct {
	Messages     *prometheus.CounterVec
	Replies      *prometheus.CounterVec
	Dropped      *prometheus.CounterVec
	CommitErrors prometheus.Counter
	// FastRenewalsFolded counts fast-path renewals written to the store.
	FastRenewalsFolded prometheus.Counter
	// Replaced counts bindings ended because their client was granted
	// another address in the same subnet (ARCHITECTURE.md 8).
	Replaced prometheus.Counter
	// OffersWithdrawn counts pending offers withdrawn to stay within the
	// bounds, by bound (pool, circuit).
	OffersWithdrawn *prometheus.CounterVec
	// OfferRequestsKept counts SELECTING REQUESTs for a pending offer
	// spared the overload drop (Handle, backlog.spare): their queue was
	// behind and they had waited past QueueTarget.
	OfferRequestsKept prometheus.Counter
	// DiscoverRetriesKept counts retransmitted DISCOVERs (secs above 0)
	// spared the overload drop (Server.spared).
	DiscoverRetriesKept prometheus.Counter
	// FORCERENEW (issue 16): messages sent (retransmissions included),
	// clients that answered, clients given up on after the retransmit
	// bound, and clients not forced for want of a key.
	ForceRenewSent     prometheus.Counter
	ForceRenewAnswered prometheus.Counter
	ForceRenewGaveUp   prometheus.Counter
	ForceRenewNoKey    prometheus.Counter
	// Clients configured by DHCPINFORM forgotten: the least recently
	// informed at the table's bound (Settings.InformedMax), and those
	// not heard from within Settings.InformedTTL.
	InformedEvicted prometheus.Counter
	InformedExpired prometheus.Counter
	// Where a request's time goes (issue 19), from the kernel's receive
	// timestamp: Wait until the server takes it to handle, by class (its
	// socket; the dropped are counted in Dropped);
	// AckLatency until its ACK is queued to leave, the lease on disk (it
	// leaves with the transaction's other ACKs, in one send, once their
	// callbacks have run); StoreWait the part of that from the
	// handler's hand-over of the lease to be committed until its
	// callback starts (the commit in flight, its own, and the callbacks
	// before it); CommitTime each lease store transaction, fsync
	// included, and CommitLeases its size.
	Wait       *prometheus.HistogramVec
	AckLatency prometheus.Histogram
	// ReplyLatency is the whole of it, for every reply: from the
	// request's arrival until the reply was handed to the kernel (the
	// send returned; ObserveSent). AckLatency stops when the ACK is
	// queued, and the wait for the sender and the send itself came to
	// half the p99 measured at 120% of the ceiling (2026-12-07:
	// 16 and 27 ms of about 36).
	ReplyLatency prometheus.Histogram
	// AckedOnHorizon counts renewals ACKed before their record was on
	// disk, under a promise horizon that was (Settings.AckOnHorizon).
	AckedOnHorizon prometheus.Counter
	StoreWait      prometheus.Histogram
	// StoreBehind is the time the packet reader waited for the lease
	// store to catch up (Server.Ready).
	StoreBehind  prometheus.Counter
	CommitTime   prometheus.Histogram
	CommitLeases prometheus.Histogram
	// FoldTime is each fold of the lease journal into the lease tree,
	// its pauses included, and FoldLeases the addresses it wrote.
	FoldTime   prometheus.Histogram
	FoldLeases prometheus.Histogram

	// Children of Messages and Replies by message type, resolved once:
	// a label lookup per packet costs more than the rest of a leasequery.
	byMsg, byReply [256]prometheus.Counter
	byClass        [classes]prometheus.Observer
}

// latencyBuckets resolve the range that matters for a request's latency
// (a client retransmits after 4 s; issue 19's goal is 20 ms at p99).
var latencyBuckets = []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1, 2.5}

// ObserveSent records replies the Sender handed to the kernel at sent:
// each one's time since its request arrived (Outgoing.Received;
// ReplyLatency). The Sender calls it after each send (pktio.Conn.SetSent).
func (m *Metrics) ObserveSent(out []Outgoing, sent time.Time) {
	for _, o := range out {
		if !o.Received.IsZero() {
			m.ReplyLatency.Observe(sent.Sub(o.Received).Seconds())
		}
	}
}

// ObserveCommit records one lease store transaction (store.Options.Observe).
func (m *Metrics) ObserveCommit(leases int, took time.Duration) {
	m.CommitTime.Observe(took.Seconds())
	m.CommitLeases.Observe(float64(leases))
}

// ObserveFold records one fold of the lease journal (store.Options.ObserveFold).
func (m *Metrics) ObserveFold(leases int, took time.Duration) {
	m.FoldTime.Observe(took.Seconds())
	m.FoldLeases.Observe(float64(leases))
}

func (m *Metrics) message(t uint8) prometheus.Counter { return m.byMsg[t] }
func (m *Metrics) reply(t uint8) prometheus.Counter   { return m.byReply[t] }

// NewMetrics creates unregistered metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_messages_total", Help: "DHCP messages received by the slow path, by type.",
		}, []string{"type"}),
		Replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_replies_total", Help: "Replies sent by the slow path, by type.",
		}, []string{"type"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_dropped_total", Help: "Messages the slow path did not answer, by reason.",
		}, []string{"reason"}),
		CommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_commit_errors_total", Help: "Lease store transactions that failed; their replies were not sent.",
		}),
		FastRenewalsFolded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_fastpath_renewals_folded_total", Help: "Renewals answered by XDP and recorded in the lease store.",
		}),
		Replaced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_bindings_replaced_total", Help: "Bindings released because their client was granted another address in the same subnet.",
		}),
		OffersWithdrawn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_offers_withdrawn_total", Help: "Pending offers withdrawn, oldest first, to keep a pool's or a relay circuit's pending offers within bounds.",
		}, []string{"bound"}),
		OfferRequestsKept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_offer_requests_kept_total", Help: "REQUESTs taking a pending offer that were spared the overload drop (their queue was behind and they had waited past server.queue-target), a few a second at most; they are then handled as any other, and server.max-wait still bounds them.",
		}),
		DiscoverRetriesKept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_discover_retries_kept_total", Help: "Retransmitted DISCOVERs (secs above 0: their client has been asking a second or more) that were spared the overload drop (their queue was behind and they had waited past server.queue-target), a few a second at most; they are then handled as any other, and server.max-wait still bounds them.",
		}),
		ForceRenewSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_forcerenew_sent_total", Help: "FORCERENEW messages sent, retransmissions included.",
		}),
		ForceRenewAnswered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_forcerenew_answered_total", Help: "Clients that answered a FORCERENEW (REQUEST, INFORM, or a renewal the fast path answered).",
		}),
		ForceRenewGaveUp: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_forcerenew_gave_up_total", Help: "Clients given up on after the FORCERENEW retransmit bound.",
		}),
		InformedEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_informed_evicted_total", Help: "Clients configured by DHCPINFORM forgotten, least recently informed first, to keep the table within its bound.",
		}),
		InformedExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_informed_expired_total", Help: "Clients configured by DHCPINFORM forgotten after a day (by default) without an INFORM.",
		}),
		ForceRenewNoKey: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_forcerenew_no_key_total", Help: "Clients not sent FORCERENEW: no key (they never sent option 145) and the subnet does not allow unauthenticated FORCERENEW.",
		}),
		Wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xdhcp_slowpath_wait_seconds", Help: "Time from a message's arrival (kernel timestamp) until the slow path took it to handle (the dropped ones are in xdhcp_slowpath_dropped_total), by socket (priority: REQUEST, DECLINE, RELEASE, LEASEQUERY; bulk: the rest).", Buckets: latencyBuckets,
		}, []string{"class"}),
		ReplyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_slowpath_reply_seconds", Help: "Time from a request's arrival (kernel timestamp) until its reply was handed to the kernel to send (the send system call returned): the server's part of a client's wait, from the socket it waited in to the sender's queue and the send.", Buckets: latencyBuckets,
		}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_slowpath_ack_seconds", Help: "Time from a REQUEST's arrival (kernel timestamp) until its DHCPACK was queued to be sent: the lease on disk (it leaves with its transaction's other ACKs in one send), or for a renewal its promise horizon (xdhcp_slowpath_acks_on_horizon_total).", Buckets: latencyBuckets,
		}),
		AckedOnHorizon: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_acks_on_horizon_total", Help: "Renewals ACKed before their record was on disk, because the lease's promise horizon on disk already covered the new expiry (server.renewal-ack horizon); the record follows in the next group commit.",
		}),
		StoreWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_slowpath_store_wait_seconds", Help: "Time from a REQUEST's lease handed over to be committed until it was on disk and its ACK's callback started: the commit in flight, its own, and the callbacks before it (part of xdhcp_slowpath_ack_seconds).", Buckets: latencyBuckets,
		}),
		StoreBehind: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xdhcp_slowpath_store_behind_seconds_total", Help: "Time the packet reader stopped reading requests because the lease store was behind by more than server.queue-interval (its transaction in flight had run, or its oldest queued change had waited, that much longer than a transaction takes); the requests meanwhile wait in the sockets, where the queue bounds drop those that waited too long.",
		}),
		CommitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_store_commit_seconds", Help: "Lease store transactions' duration, fsync included.", Buckets: latencyBuckets,
		}),
		CommitLeases: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_store_commit_leases", Help: "Lease records per lease store transaction (group commit).", Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		FoldTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_store_fold_seconds", Help: "Folds of the lease journal into the lease tree: their duration, pauses included.", Buckets: prometheus.ExponentialBuckets(.001, 4, 8),
		}),
		FoldLeases: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xdhcp_store_fold_leases", Help: "Addresses each fold of the lease journal wrote into the lease tree.", Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
	}
	m.byClass[classPriority], m.byClass[classBulk] = m.Wait.WithLabelValues("priority"), m.Wait.WithLabelValues("bulk")
	for t := range 256 {
		name := dhcpwire.MessageName(uint8(t))
		m.byMsg[t], m.byReply[t] = m.Messages.WithLabelValues(name), m.Replies.WithLabelValues(name)
	}
	return m
}

// Register adds the metrics, and a collector of pool occupancy for srv, to reg.
func (m *Metrics) Register(reg prometheus.Registerer, srv *Server) error {
	remaining := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xdhcp_forcerenew_campaign_remaining", Help: "Clients FORCERENEW campaigns have yet to finish (not forced yet, or waiting for an answer).",
	}, func() float64 { return float64(srv.CampaignRemaining()) })
	informed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xdhcp_informed_clients", Help: "Clients configured by DHCPINFORM remembered, so that FORCERENEW can reach them.",
	}, func() float64 { return float64(srv.InformedCount()) })
	for _, c := range []prometheus.Collector{m.Messages, m.Replies, m.Dropped, m.CommitErrors, m.FastRenewalsFolded, m.Replaced, m.OffersWithdrawn, m.OfferRequestsKept, m.DiscoverRetriesKept,
		m.ForceRenewSent, m.ForceRenewAnswered, m.ForceRenewGaveUp, m.ForceRenewNoKey, m.InformedEvicted, m.InformedExpired, m.Wait, m.AckLatency, m.ReplyLatency, m.AckedOnHorizon, m.StoreWait, m.StoreBehind, m.CommitTime, m.CommitLeases, m.FoldTime, m.FoldLeases, remaining, informed, poolCollector{srv}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var poolDesc = prometheus.NewDesc("xdhcp_pool_addresses",
	"Pool addresses by state; free counts what could be allocated now (including expired and released).",
	[]string{"subnet", "state"}, nil)

type poolCollector struct{ s *Server }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- poolDesc }

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for pfx, m := range c.s.PoolStats() {
		for st, v := range m {
			ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(v), pfx.String(), st)
		}
	}
}
