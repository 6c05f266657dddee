package tftp

import (
	"errors"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are created once per process and registered into each
// config's registry, so counters keep counting across reloads.
var (
	metricTransfers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "transfers_total",
		Help: "Finished TFTP transfers by server, direction and outcome.",
	}, []string{"server", "direction", "outcome"})
	metricInProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "transfers_in_progress",
		Help: "TFTP transfers running now.",
	}, []string{"server", "direction"})
	metricBytesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "bytes_sent_total",
		Help: "File bytes sent to clients in DATA packets, retransmissions excluded.",
	}, []string{"server"})
	metricBytesReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "bytes_received_total",
		Help: "File bytes received from clients in DATA packets.",
	}, []string{"server"})
	metricRetransmits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "retransmissions_total",
		Help: "Packets the server sent again because the client did not answer in time.",
	}, []string{"server"})
	metricErrorsSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "errors_sent_total",
		Help: "ERROR packets sent, by TFTP error code.",
	}, []string{"code"})
	metricRequestsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "requests_dropped_total",
		Help: "Requests left unanswered, by reason: duplicate (of a running transfer), limit_total (over max_transfers) or limit_host (over max_transfers_per_host with no stalled transfer of the host to evict).",
	}, []string{"server", "reason"})
	metricOptions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "options_negotiated_total",
		Help: "Transfers that negotiated each option (blksize, timeout, tsize, windowsize), so the options clients and firmware use can be seen.",
	}, []string{"server", "option"})
	metricDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "tftp", Name: "transfer_duration_seconds",
		Help:    "Duration of finished TFTP transfers.",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300},
	}, []string{"server", "direction"})
)

// registerMetrics adds the collectors, and more, to the config's registry.
func registerMetrics(ctx caddy.Context, more ...prometheus.Collector) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range append([]prometheus.Collector{
		metricTransfers, metricInProgress, metricBytesSent, metricBytesReceived,
		metricRetransmits, metricErrorsSent, metricRequestsDropped, metricOptions, metricDuration,
	}, more...) {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// serverMetrics holds one server's metric children, resolved once so the
// end of every transfer does not look labels up again.
type serverMetrics struct {
	name        string
	inProgress  [2]prometheus.Gauge    // by direction: read, write
	duration    [2]prometheus.Observer // by direction
	bytes       [2]prometheus.Counter  // sent on reads, received on writes
	finishedOK  [2]prometheus.Counter  // transfers_total with outcome ok
	retransmits prometheus.Counter
}

func newServerMetrics(name string) *serverMetrics {
	m := &serverMetrics{name: name, retransmits: metricRetransmits.WithLabelValues(name)}
	for i, dir := range [2]string{"read", "write"} {
		m.inProgress[i] = metricInProgress.WithLabelValues(name, dir)
		m.duration[i] = metricDuration.WithLabelValues(name, dir)
		m.finishedOK[i] = metricTransfers.WithLabelValues(name, dir, "ok")
	}
	m.bytes[0] = metricBytesSent.WithLabelValues(name)
	m.bytes[1] = metricBytesReceived.WithLabelValues(name)
	return m
}

// countOptions records the options a transfer negotiated.
func (m *serverMetrics) countOptions(opts []option) {
	for _, o := range opts {
		metricOptions.WithLabelValues(m.name, o.name).Inc()
	}
}

// finished returns the transfers_total counter for an outcome.
func (m *serverMetrics) finished(dir int, outcome string) prometheus.Counter {
	if outcome == "ok" {
		return m.finishedOK[dir]
	}
	return metricTransfers.WithLabelValues(m.name, [2]string{"read", "write"}[dir], outcome)
}

// dirIndex maps a request opcode to the index used by serverMetrics.
func dirIndex(op uint16) int {
	if op == opWRQ {
		return 1
	}
	return 0
}

// countErrorSent records an ERROR packet sent.
func countErrorSent(code ErrorCode) {
	metricErrorsSent.WithLabelValues(strconv.Itoa(int(code))).Inc()
}
