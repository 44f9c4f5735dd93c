package fastpath

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the program's counters and the entry count. The
// counters live in the kernel and survive daemon restarts, so they are
// read at scrape time rather than mirrored.
func (m *Maps) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Maps }

var (
	descReplies = prometheus.NewDesc("xdhcp_fastpath_replies_total", "Renewals the XDP program answered (it returned XDP_TX); the driver may still drop a reply: see xdhcp_fastpath_tx_errors_total.", nil, nil)
	descPunts   = prometheus.NewDesc("xdhcp_fastpath_punts_total", "Packets to port 67 the XDP program passed up to the slow path (or, for rate_limited, dropped), by reason.", []string{"reason"}, nil)
	descLost    = prometheus.NewDesc("xdhcp_fastpath_events_lost_total", "Renewal events lost before the daemon read them (a lapped event ring); the map scan recovers what they said.", nil, nil)
	descLeases  = prometheus.NewDesc("xdhcp_fastpath_leases", "Lease entries in the XDP map.", nil, nil)
	descTmpl    = prometheus.NewDesc("xdhcp_fastpath_templates", "Distinct reply templates in the XDP map.", nil, nil)
	descCap     = prometheus.NewDesc("xdhcp_fastpath_lease_capacity", "Lease entries the XDP map holds at most (fastpath.max-leases).", nil, nil)
	descRefused = prometheus.NewDesc("xdhcp_fastpath_publish_refused_total", "Leases the daemon could not write to the XDP map (their renewals go to the slow path), by reason: map_full, slots_full, too_big, error.", []string{"reason"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReplies
	ch <- descPunts
	ch <- descLost
	ch <- descLeases
	ch <- descTmpl
	ch <- descCap
	ch <- descRefused
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	cs, err := c.m.Counters()
	if err != nil {
		// A scrape that cannot read the map says so instead of
		// silently leaving the fast path's series out.
		ch <- prometheus.NewInvalidMetric(descReplies, err)
	}
	for name, v := range cs {
		switch name {
		case "answered":
			ch <- prometheus.MustNewConstMetric(descReplies, prometheus.CounterValue, float64(v))
		case "events_lost":
			ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(v))
		case "not_dhcp":
			// Not DHCP at all: not a punt.
		default:
			ch <- prometheus.MustNewConstMetric(descPunts, prometheus.CounterValue, float64(v), name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descLeases, prometheus.GaugeValue, float64(c.m.Len()))
	ch <- prometheus.MustNewConstMetric(descTmpl, prometheus.GaugeValue, float64(c.m.Templates()))
	ch <- prometheus.MustNewConstMetric(descCap, prometheus.GaugeValue, float64(c.m.Capacity()))
	// Every reason, zero included, so that an alert can be written before
	// the first refusal.
	refused := c.m.Refused()
	for _, r := range []string{refusedMapFull, refusedSlotsFull, refusedTooBig, refusedError} {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refused[r]), r)
	}
}
