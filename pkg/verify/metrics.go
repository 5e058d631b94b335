package verify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome reasons, the bounded label set of verify_outcomes_total.
const (
	reasonOK               = "ok"
	reasonMalformed        = "malformed"
	reasonTooLarge         = "too_large"
	reasonAlgNotAllowed    = "alg_not_allowed"
	reasonBadHeader        = "bad_header"
	reasonUnknownKID       = "unknown_kid"
	reasonBadSignature     = "bad_signature"
	reasonBadClaims        = "bad_claims"
	reasonExpired          = "expired"
	reasonNotYetValid      = "not_yet_valid"
	reasonWrongIssuer      = "wrong_issuer"
	reasonWrongAudience    = "wrong_audience"
	reasonRevoked          = "revoked"
	reasonUnavailable      = "unavailable"
	introspectActive       = "active"
	introspectInactive     = "inactive"
	introspectError        = "error"
	introspectUnauthorized = "unauthorized"
	cacheToken             = "token"
	cacheRevocation        = "revocation"
	jwksOK                 = "ok"
	jwksError              = "error"
	jwksNotModified        = "not_modified"
	jwksRateLimited        = "rate_limited"
)

// metrics holds pre-resolved counters so the hot path never hashes labels.
// Without a Registerer the counters exist but are never exported.
type metrics struct {
	outcomes   map[string]prometheus.Counter
	introspect map[string]prometheus.Counter
	hits       map[string]prometheus.Counter
	misses     map[string]prometheus.Counter
	jwks       map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := func(name, help, label string) (*prometheus.CounterVec, error) {
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		if reg == nil {
			return cv, nil
		}
		if err := reg.Register(cv); err != nil {
			// A second Verifier on the same registry shares the counters.
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					return existing, nil
				}
			}
			return nil, err
		}
		return cv, nil
	}
	resolve := func(cv *prometheus.CounterVec, values ...string) map[string]prometheus.Counter {
		m := make(map[string]prometheus.Counter, len(values))
		for _, v := range values {
			m[v] = cv.WithLabelValues(v)
		}
		return m
	}
	out, err := vec("verify_outcomes_total", "Access-token verifications by outcome.", "reason")
	if err != nil {
		return nil, err
	}
	intro, err := vec("verify_introspection_requests_total", "RFC 7662 introspection requests by result.", "result")
	if err != nil {
		return nil, err
	}
	hits, err := vec("verify_cache_hits_total", "Cache hits by cache.", "cache")
	if err != nil {
		return nil, err
	}
	misses, err := vec("verify_cache_misses_total", "Cache misses by cache.", "cache")
	if err != nil {
		return nil, err
	}
	jwks, err := vec("verify_jwks_refreshes_total", "JWKS fetches by result.", "result")
	if err != nil {
		return nil, err
	}
	return &metrics{
		outcomes: resolve(out, reasonOK, reasonMalformed, reasonTooLarge, reasonAlgNotAllowed, reasonBadHeader,
			reasonUnknownKID, reasonBadSignature, reasonBadClaims, reasonExpired, reasonNotYetValid,
			reasonWrongIssuer, reasonWrongAudience, reasonRevoked, reasonUnavailable),
		introspect: resolve(intro, introspectActive, introspectInactive, introspectError, introspectUnauthorized),
		hits:       resolve(hits, cacheToken, cacheRevocation),
		misses:     resolve(misses, cacheToken, cacheRevocation),
		jwks:       resolve(jwks, jwksOK, jwksError, jwksNotModified, jwksRateLimited),
	}, nil
}

func inc(m map[string]prometheus.Counter, label string) {
	if c, ok := m[label]; ok {
		c.Inc()
	}
}
