package proxydhcp

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are created once per process and registered into each
// config's registry, so counters keep counting across reloads.
var (
	metricAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "proxy_dhcp", Name: "answers_total",
		Help: "proxyDHCP answers sent, by client architecture (option 93), message type (offer, ack) and client (pxe for firmware, ipxe, http).",
	}, []string{"arch", "type", "client"})
	metricIgnored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "proxy_dhcp", Name: "ignored_total",
		Help: "Requests left unanswered, by reason (not_pxe, malformed, no_boot_file, ...).",
	}, []string{"reason"})
	metricSendErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "proxy_dhcp", Name: "send_errors_total",
		Help: "Answers that could not be sent.",
	})
)

// registerMetrics adds the collectors to a config's registry.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metricAnswers, metricIgnored, metricSendErrors} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}
