package server

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	issued      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	introspect  *prometheus.CounterVec
	revocations *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authserver_tokens_issued_total", Help: "Access tokens issued, by grant type.",
		}, []string{"grant_type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authserver_token_failures_total", Help: "Failed OAuth requests, by endpoint and RFC 6749 error code.",
		}, []string{"endpoint", "error"}),
		introspect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authserver_introspections_total", Help: "Introspection answers, by result.",
		}, []string{"active"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authserver_revocations_total", Help: "Revocation requests, by token type found.",
		}, []string{"token_type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authserver_http_request_duration_seconds",
			Help:    "HTTP request latency, by route and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "status"}),
	}
	reg.MustRegister(m.issued, m.failures, m.introspect, m.revocations, m.latency)
	return m
}
