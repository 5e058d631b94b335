package verify

import (
	"context"
	"fmt"
	"github.com/epitwin/epitwin/pkg/claims"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and hard limits of the options.
const (
	defaultLeeway             = 60 * time.Second
	maxLeeway                 = 60 * time.Second
	defaultMaxTokenSize       = 8192
	defaultRevocationTTL      = 5 * time.Second
	defaultIntrospectionGrace = 60 * time.Second
	defaultCacheSize          = 10000
	defaultJWKSRefresh        = 5 * time.Minute
	minJWKSRefresh            = time.Second // httprc cannot tick faster
	defaultUnknownKIDRefetch  = 2 * time.Second
	defaultHTTPTimeout        = 10 * time.Second
)

// supportedAlg reports whether alg is an asymmetric JWS algorithm
// (RFC 7518 §3) a Verifier can be configured to accept. "none" and the HMAC
// family are deliberately absent: RFC 8725 §3.1 asks verifiers to allow only
// the algorithms they expect, and an HMAC "verified" with a public key as its
// secret is the classic key-confusion attack (RFC 8725 §2.1).
func supportedAlg(alg string) bool {
	switch alg {
	case "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA":
		return true
	}
	return false
}

// config is what the options set; New fills in defaults and validates it.
type config struct {
	httpClient         *http.Client
	logger             *slog.Logger
	now                func() time.Time
	leeway             time.Duration
	allowedAlgs        []string
	maxTokenSize       int
	introspectID       string
	introspectSecret   string
	introspect         bool
	revocationCheck    RevocationCheck
	revocationTTL      time.Duration
	introspectionGrace time.Duration
	cacheSize          int
	jwksRefresh        time.Duration
	unknownKIDRefetch  time.Duration
	registerer         prometheus.Registerer
	errs               []error
}

// Option configures a Verifier built by New.
type Option func(*config)

// WithHTTPClient sets the client used for discovery, JWKS and introspection
// requests. The default is a client with a 10 second timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(cfg *config) {
		if c != nil {
			cfg.httpClient = c
		}
	}
}

// WithLogger sets the logger; the default is slog.Default(). The Verifier
// never logs a token or a secret, at most a jti or a hash prefix.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) {
		if l != nil {
			cfg.logger = l
		}
	}
}

// WithNow sets the clock used for every time decision (token validity, cache
// ages, refetch rate limits). It exists for tests.
func WithNow(now func() time.Time) Option {
	return func(cfg *config) {
		if now != nil {
			cfg.now = now
		}
	}
}

// WithLeeway sets the allowed clock skew for exp, nbf and iat. The default
// is 60 seconds; larger values are capped at 60 seconds and negative ones
// mean no leeway.
func WithLeeway(d time.Duration) Option {
	return func(cfg *config) { cfg.leeway = min(max(d, 0), maxLeeway) }
}

// WithAllowedAlgs sets the JWS algorithms accepted in the token header. The
// default is ES256, RS256 and EdDSA. New fails if any algorithm is "none",
// HMAC or otherwise unsupported (RFC 8725 §3.1).
func WithAllowedAlgs(algs ...string) Option {
	return func(cfg *config) { cfg.allowedAlgs = append([]string(nil), algs...) }
}

// WithMaxTokenSize sets the largest raw token, in bytes, that is examined at
// all; longer tokens are rejected before any parsing. The default is 8192.
func WithMaxTokenSize(n int) Option {
	return func(cfg *config) {
		if n > 0 {
			cfg.maxTokenSize = n
		}
	}
}

// WithIntrospection enables the revocation check: after the offline checks,
// each token's jti is confirmed active through the authorization server's
// RFC 7662 introspection endpoint, authenticating with client_secret_basic.
func WithIntrospection(clientID, clientSecret string) Option {
	return func(cfg *config) {
		cfg.introspect = true
		cfg.introspectID = clientID
		cfg.introspectSecret = clientSecret
		if clientID == "" {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: introspection client id is empty"))
		}
	}
}

// RevocationCheck reports whether an offline-valid token is still active.
// An error means the answer is unknown: the Verifier then fails closed with
// 503, never open.
type RevocationCheck func(ctx context.Context, raw string, tok *claims.AccessToken) (active bool, err error)

// WithRevocationCheck replaces RFC 7662 introspection with an in-process
// check, for a service that can see the authorization server's state
// directly (the authorization server's own admin API). The check runs on
// every request, uncached, so a revocation takes effect at once.
func WithRevocationCheck(fn RevocationCheck) Option {
	return func(cfg *config) {
		cfg.revocationCheck = fn
		if fn == nil {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: nil revocation check"))
		}
	}
}

// WithRevocationCacheTTL sets how long an introspection answer is trusted
// before it is asked again. The default is 5 seconds.
func WithRevocationCacheTTL(d time.Duration) Option {
	return func(cfg *config) {
		if d > 0 {
			cfg.revocationTTL = d
		}
	}
}

// WithIntrospectionGrace sets how long past its TTL a cached introspection
// answer may still be used while the introspection endpoint is unreachable.
// After that the Verifier fails closed with 503. The default is 60 seconds.
func WithIntrospectionGrace(d time.Duration) Option {
	return func(cfg *config) { cfg.introspectionGrace = max(d, 0) }
}

// WithCacheSize bounds the number of entries of both the verified-token cache
// and the revocation cache. The default is 10000.
func WithCacheSize(n int) Option {
	return func(cfg *config) {
		if n > 0 {
			cfg.cacheSize = n
		}
	}
}

// WithJWKSRefreshInterval sets how often the JWKS is refreshed in the
// background, regardless of its Cache-Control. The default is 5 minutes;
// values below 1 second are raised to 1 second.
func WithJWKSRefreshInterval(d time.Duration) Option {
	return func(cfg *config) {
		if d > 0 {
			cfg.jwksRefresh = max(d, minJWKSRefresh)
		}
	}
}

// WithUnknownKIDRefetchInterval sets the minimum time between two JWKS
// refetches triggered by a token whose kid is not in the cached JWKS, so that
// a flood of forged kids cannot hammer the authorization server. The default
// is 2 seconds.
func WithUnknownKIDRefetchInterval(d time.Duration) Option {
	return func(cfg *config) { cfg.unknownKIDRefetch = max(d, 0) }
}

// WithRegisterer registers the Verifier's Prometheus metrics on r. With nil
// (the default) no metrics are registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(cfg *config) { cfg.registerer = r }
}

func defaultConfig() config {
	return config{
		httpClient:         &http.Client{Timeout: defaultHTTPTimeout},
		logger:             slog.Default(),
		now:                time.Now,
		leeway:             defaultLeeway,
		allowedAlgs:        []string{"ES256", "RS256", "EdDSA"},
		maxTokenSize:       defaultMaxTokenSize,
		revocationTTL:      defaultRevocationTTL,
		introspectionGrace: defaultIntrospectionGrace,
		cacheSize:          defaultCacheSize,
		jwksRefresh:        defaultJWKSRefresh,
		unknownKIDRefetch:  defaultUnknownKIDRefetch,
	}
}
