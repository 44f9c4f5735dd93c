package failover

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relationship's Prometheus metrics (issue 17's names).
// They are created per relationship and registered by the daemon.
type Metrics struct {
	// State is 1 for the current state of each side
	// (side="local"|"partner", state=lower-case draft name), 0 otherwise.
	State *prometheus.GaugeVec
	// Updates counts binding updates by direction (dir="sent"|"received")
	// and result ("acked", "rejected", "sent", "applied", "refused").
	Updates *prometheus.CounterVec
	// QueueDepth is the number of updates waiting to be sent or acked.
	QueueDepth prometheus.Gauge
	// Skew is the partner's clock minus ours, in seconds.
	Skew prometheus.Gauge
	// PoolAddresses is the pools' FREE (owner="primary") and BACKUP
	// (owner="secondary") addresses.
	PoolAddresses *prometheus.GaugeVec
	// Disconnects counts connections ended, by reject reason name.
	Disconnects *prometheus.CounterVec
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xdhcp_failover_state", Help: "1 for the failover state each side is in (side: local, partner)."},
			[]string{"side", "state"}),
		Updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_failover_updates_total", Help: "Binding updates by direction and result."},
			[]string{"dir", "result"}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdhcp_failover_queue_depth", Help: "Binding updates waiting to be sent or acknowledged."}),
		Skew: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdhcp_failover_skew_seconds", Help: "The partner's clock minus ours, as measured."}),
		PoolAddresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xdhcp_failover_pool_addresses", Help: "Free pool addresses by owner (primary: FREE, secondary: BACKUP)."},
			[]string{"owner"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdhcp_failover_disconnects_total", Help: "Failover connections ended, by reason."},
			[]string{"reason"}),
	}
}

// Collectors returns every metric, for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.State, m.Updates, m.QueueDepth, m.Skew, m.PoolAddresses, m.Disconnects}
}
