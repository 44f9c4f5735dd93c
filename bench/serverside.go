package bench

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/xdhcp/xdhcp/internal/netns"
)

// ServerSide is where a phase's time went inside xdhcpd, read from its
// histograms before and after the phase (issue 19): how long requests
// waited in their socket, how long from arrival to ACK (queued, and
// sent) and how much of
// that from the hand-over to the store until on disk, and how long each
// lease store transaction took. Milliseconds; quantiles are upper
// bucket bounds (the buckets are slowpath's latencyBuckets; one past the
// last finite bound reads as that bound), 0 with no observations.
type ServerSide struct {
	WaitP50 float64 `json:"priority-wait-p50-ms"`
	WaitP99 float64 `json:"priority-wait-p99-ms"`
	AckP50  float64 `json:"ack-p50-ms"`
	AckP99  float64 `json:"ack-p99-ms"`
	// SentP50 and SentP99 are from arrival until the reply was handed to
	// the kernel (xdhcp_slowpath_reply_seconds, every reply; 0 before
	// the daemon had it): AckP99 ends when the ACK is queued to leave.
	SentP50     float64 `json:"sent-p50-ms,omitempty"`
	SentP99     float64 `json:"sent-p99-ms,omitempty"`
	StoreP50    float64 `json:"store-wait-p50-ms,omitempty"`
	StoreP99    float64 `json:"store-wait-p99-ms,omitempty"`
	CommitP50   float64 `json:"commit-p50-ms"`
	CommitP99   float64 `json:"commit-p99-ms"`
	CommitMean  float64 `json:"commit-mean-ms"`
	LeasesPerTx float64 `json:"leases-per-commit"`
	// Stale and Overload are the requests the server dropped for waiting
	// too long in a socket (reasons "stale": past max-wait; "overload":
	// past queue-target while behind), per second of the phase; Behind
	// the share of the phase it stopped reading for the lease store to
	// catch up (xdhcp_slowpath_store_behind_seconds_total, from the commit
	// that added it; 0 before).
	Stale    float64 `json:"dropped-stale-per-second"`
	Overload float64 `json:"dropped-overload-per-second"`
	Behind   float64 `json:"store-behind-share"`
	// OnHorizon is the share of the ACKs that left on the lease's
	// promise horizon, before their record was on disk
	// (xdhcp_slowpath_acks_on_horizon_total; 0 before it, and with
	// server.renewal-ack record).
	OnHorizon float64 `json:"acks-on-horizon-share,omitempty"`
}

// serverSideMetrics are the histograms ServerSide reads.
var serverSideMetrics = []string{"xdhcp_slowpath_wait_seconds", "xdhcp_slowpath_ack_seconds", "xdhcp_slowpath_reply_seconds", "xdhcp_slowpath_store_wait_seconds", "xdhcp_store_commit_seconds", "xdhcp_store_commit_leases"}

// serverSideCounters are the counters ServerSide reads.
var serverSideCounters = []string{"xdhcp_slowpath_dropped_total", "xdhcp_slowpath_store_behind_seconds_total", "xdhcp_slowpath_acks_on_horizon_total"}

// serverSideProbe scrapes xdhcpd's /metrics at addr in ns now, and
// returns a function that scrapes again and reports the difference; nil
// when the first scrape failed.
func serverSideProbe(ns *netns.NS, addr string) func() (*ServerSide, error) {
	before, err := scrapeText(ns, addr)
	if err != nil {
		return func() (*ServerSide, error) { return nil, err }
	}
	start := time.Now()
	return func() (*ServerSide, error) {
		after, err := scrapeText(ns, addr)
		if err != nil {
			return nil, err
		}
		return serverSideBetween(before, after, time.Since(start)), nil
	}
}

// serverSideBetween computes ServerSide from two scrapes of /metrics
// taken elapsed apart.
func serverSideBetween(before, after string, elapsed time.Duration) *ServerSide {
	names := append(histogramSeries(), serverSideCounters...)
	b, a := promSeries(before, names...), promSeries(after, names...)
	d := func(series string) float64 { return a[series] - b[series] }
	ms := func(sec float64) float64 { return sec * float64(time.Second/time.Millisecond) }
	q := func(name, labels string, p float64) float64 { return ms(bucketQuantile(a, b, name, labels, p)) }
	ss := &ServerSide{
		WaitP50:   q("xdhcp_slowpath_wait_seconds", `class="priority"`, 0.5),
		WaitP99:   q("xdhcp_slowpath_wait_seconds", `class="priority"`, 0.99),
		AckP50:    q("xdhcp_slowpath_ack_seconds", "", 0.5),
		AckP99:    q("xdhcp_slowpath_ack_seconds", "", 0.99),
		SentP50:   q("xdhcp_slowpath_reply_seconds", "", 0.5),
		SentP99:   q("xdhcp_slowpath_reply_seconds", "", 0.99),
		StoreP50:  q("xdhcp_slowpath_store_wait_seconds", "", 0.5),
		StoreP99:  q("xdhcp_slowpath_store_wait_seconds", "", 0.99),
		CommitP50: q("xdhcp_store_commit_seconds", "", 0.5),
		CommitP99: q("xdhcp_store_commit_seconds", "", 0.99),
	}
	if n := d("xdhcp_store_commit_seconds_count"); n > 0 {
		ss.CommitMean = ms(d("xdhcp_store_commit_seconds_sum") / n)
		ss.LeasesPerTx = d("xdhcp_store_commit_leases_sum") / n
	}
	if n := d("xdhcp_slowpath_ack_seconds_count"); n > 0 {
		ss.OnHorizon = min(1, d("xdhcp_slowpath_acks_on_horizon_total")/n)
	}
	if sec := elapsed.Seconds(); sec > 0 {
		ss.Stale = d(`xdhcp_slowpath_dropped_total{reason="stale"}`) / sec
		ss.Overload = d(`xdhcp_slowpath_dropped_total{reason="overload"}`) / sec
		ss.Behind = d("xdhcp_slowpath_store_behind_seconds_total") / sec
	}
	return ss
}

// histogramSeries names the _bucket, _sum and _count series of
// serverSideMetrics.
func histogramSeries() []string {
	var out []string
	for _, m := range serverSideMetrics {
		out = append(out, m+"_bucket", m+"_sum", m+"_count")
	}
	return out
}

// bucketQuantile is the upper bound of the bucket holding quantile p of
// the observations of histogram name (series whose labels contain
// labels) made between scrapes b and a: the largest finite bound when it
// is the +Inf bucket, 0 with none (JSON has no NaN or Inf).
func bucketQuantile(a, b map[string]float64, name, labels string, p float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + "_bucket{"
	for series, v := range a {
		if !strings.HasPrefix(series, prefix) || !strings.Contains(series, labels) {
			continue
		}
		i := strings.Index(series, `le="`)
		if i < 0 {
			continue
		}
		s := series[i+4:]
		s = s[:strings.IndexByte(s, '"')]
		le, err := strconv.ParseFloat(s, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - b[series]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return 0
	}
	want := p * bs[len(bs)-1].n // buckets are cumulative; the last is +Inf
	finite := 0.0
	for _, x := range bs {
		if math.IsInf(x.le, 1) {
			break
		}
		if finite = x.le; x.n >= want {
			return x.le
		}
	}
	return finite
}
