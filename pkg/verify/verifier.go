package verify

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"golang.org/x/sync/singleflight"

	"github.com/epitwin/epitwin/pkg/claims"
)

const (
	bootstrapBackoffStart = 100 * time.Millisecond
	bootstrapBackoffMax   = 2 * time.Second
	firstAttemptTimeout   = 2 * time.Second
	notReadyRetryAfter    = 2 * time.Second
	unavailableRetryAfter = 5 * time.Second
	wellKnownPath         = "/.well-known/oauth-authorization-server"
)

// metadata is the part of the RFC 8414 authorization server metadata a
// Verifier uses.
type metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// cachedToken is a verified token remembered under the SHA-256 of its raw
// form.
type cachedToken struct {
	tok *claims.AccessToken
	exp time.Time
}

// Verifier verifies access tokens issued by one authorization server for one
// audience. It is safe for concurrent use. The *claims.AccessToken values it
// returns may be shared between requests and must be treated as read-only.
type Verifier struct {
	cfg      config
	issuer   string
	audience string
	allowed  map[string]bool
	log      *slog.Logger
	m        *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	meta          atomic.Pointer[metadata]
	keys          atomic.Pointer[keySet]
	lastJWKSFetch atomic.Int64 // unix nanoseconds of the last JWKS fetch attempt
	jwkCache      *jwk.Cache   // set once by the bootstrap goroutine
	refetchSF     singleflight.Group

	tokens   *lru[[sha256.Size]byte, cachedToken]
	revoked  *lru[string, revEntry]
	introSF  singleflight.Group
	basicAut string // precomputed client_secret_basic credentials
}

// New returns a Verifier for tokens issued by issuer (compared exactly with
// the metadata's issuer and the tokens' iss) and meant for audience.
//
// New does not fail when the authorization server is down. It makes one
// short attempt at discovery and the first JWKS fetch, then keeps retrying
// in the background with exponential backoff (100ms up to 2s) until it
// succeeds; until then Verify fails with 503 and Ready reports false. The
// background work stops when ctx is done or Close is called.
func New(ctx context.Context, issuer, audience string, opts ...Option) (*Verifier, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("verify: issuer %q is not an http(s) URL without query or fragment", issuer)
	}
	if audience == "" {
		return nil, errors.New("verify: audience is empty")
	}
	allowed := make(map[string]bool, len(cfg.allowedAlgs))
	for _, a := range cfg.allowedAlgs {
		if !supportedAlg(a) {
			return nil, fmt.Errorf("verify: algorithm %q is not allowed (only asymmetric signature algorithms)", a)
		}
		allowed[a] = true
	}
	if len(allowed) == 0 {
		return nil, errors.New("verify: no algorithms allowed")
	}
	m, err := newMetrics(cfg.registerer)
	if err != nil {
		return nil, fmt.Errorf("verify: register metrics: %w", err)
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v := &Verifier{
		cfg:      cfg,
		issuer:   issuer,
		audience: audience,
		allowed:  allowed,
		log:      cfg.logger,
		m:        m,
		ctx:      bctx,
		cancel:   cancel,
		tokens:   newLRU[[sha256.Size]byte, cachedToken](cfg.cacheSize),
		revoked:  newLRU[string, revEntry](cfg.cacheSize),
	}
	if cfg.introspect {
		// RFC 6749 §2.3.1: client_secret_basic form-urlencodes the id and
		// secret before base64, which SetBasicAuth alone does not do.
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(url.QueryEscape(cfg.introspectID), url.QueryEscape(cfg.introspectSecret))
		v.basicAut = r.Header.Get("Authorization")
	}
	// Stop with the caller's context too, but never let a request-scoped
	// deadline cut an in-flight fetch short.
	stop := context.AfterFunc(ctx, cancel)
	err = v.bootstrapOnce(1)
	if err != nil {
		v.log.Warn("verify: authorization server not reachable yet, retrying in the background", "issuer", v.issuer, "err", err)
	} else {
		v.log.Info("verify: ready", "issuer", v.issuer)
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer stop()
		if err == nil {
			<-v.ctx.Done() // nothing to retry; jwk.Cache refreshes on its own
			return
		}
		v.bootstrap()
	}()
	return v, nil
}

// bootstrap discovers the metadata and loads the first JWKS, retrying with
// exponential backoff and jitter until it succeeds or the Verifier closes.
func (v *Verifier) bootstrap() {
	backoff := bootstrapBackoffStart
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := v.bootstrapOnce(attempt); err == nil {
				v.log.Info("verify: ready", "issuer", v.issuer, "attempts", attempt)
				return
			} else if attempt%10 == 0 {
				v.log.Warn("verify: authorization server still not reachable, retrying", "issuer", v.issuer, "attempt", attempt, "err", err)
			}
		}
		if v.ctx.Err() != nil {
			return
		}
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-v.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, bootstrapBackoffMax)
	}
}

func (v *Verifier) bootstrapOnce(attempt int) error {
	timeout := defaultHTTPTimeout
	if attempt == 1 {
		timeout = firstAttemptTimeout
	}
	ctx, cancel := context.WithTimeout(v.ctx, timeout)
	defer cancel()
	md := v.meta.Load()
	if md == nil {
		var err error
		if md, err = v.discover(ctx); err != nil {
			return err
		}
		v.meta.Store(md)
	}
	if v.jwkCache == nil {
		return v.startKeyCache(ctx, md.JWKSURI)
	}
	if v.keys.Load() != nil { // a background refresh got there first
		return nil
	}
	return v.fetchJWKS(ctx)
}

// discover fetches and checks the RFC 8414 metadata.
func (v *Verifier) discover(ctx context.Context) (*metadata, error) {
	u := strings.TrimSuffix(v.issuer, "/") + wellKnownPath
	status, _, body, err := v.httpGet(ctx, u, maxMetadataBytes, "")
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("discovery: unexpected status %d", status)
	}
	var md metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("discovery: decode metadata: %w", err)
	}
	// RFC 8414 §3.3: the issuer in the metadata must be identical to the
	// one the metadata was retrieved for, or it may be an impersonation.
	if md.Issuer != v.issuer {
		return nil, fmt.Errorf("discovery: metadata issuer %q does not match %q", md.Issuer, v.issuer)
	}
	if err := v.checkEndpoint("jwks_uri", md.JWKSURI); err != nil {
		return nil, err
	}
	if v.cfg.introspect {
		if err := v.checkEndpoint("introspection_endpoint", md.IntrospectionEndpoint); err != nil {
			return nil, err
		}
	}
	return &md, nil
}

// checkEndpoint requires an absolute http(s) URL, and https when the issuer
// is https so the metadata cannot downgrade key or revocation transport.
func (v *Verifier) checkEndpoint(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("discovery: %s %q is not an absolute http(s) URL", name, raw)
	}
	if strings.HasPrefix(v.issuer, "https:") && u.Scheme != "https" {
		return fmt.Errorf("discovery: %s %q is not https", name, raw)
	}
	return nil
}

// Ready reports whether a JWKS has been loaded, i.e. whether Verify can
// accept tokens. Use it for readiness probes.
func (v *Verifier) Ready() bool { return v.keys.Load() != nil }

// Close stops the background discovery and JWKS refresh. Verify keeps
// working with the keys already loaded.
func (v *Verifier) Close() {
	v.once.Do(func() {
		v.cancel()
		v.wg.Wait()
	})
}

// Verify checks rawToken and returns its claims. Every error is an *Error:
// 401 invalid_token for a token that fails any check, 503
// temporarily_unavailable (with RetryAfter) when the Verifier cannot decide
// because keys or the introspection endpoint are not available.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (*claims.AccessToken, error) {
	tok, e := v.verify(ctx, rawToken)
	if e != nil {
		e.realm = v.audience
		inc(v.m.outcomes, e.reason)
		return nil, e
	}
	inc(v.m.outcomes, reasonOK)
	return tok, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*claims.AccessToken, *Error) {
	if len(raw) > v.cfg.maxTokenSize {
		return nil, invalidToken(reasonTooLarge, "token too large")
	}
	if raw == "" {
		return nil, invalidToken(reasonMalformed, "missing token")
	}
	now := v.cfg.now()
	// Hash the string's bytes in place; Sum256 only reads them.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	if ct, ok := v.tokens.Get(key); ok {
		if !now.Before(ct.exp.Add(v.cfg.leeway)) {
			v.tokens.Remove(key)
			return nil, invalidToken(reasonExpired, "token expired")
		}
		// A key removed from the JWKS (revoked or expired) stops vouching
		// for tokens remembered under it as well.
		if ks := v.keys.Load(); ks == nil || len(ks.byKID[ct.tok.KeyID]) == 0 {
			v.tokens.Remove(key)
			return nil, invalidToken(reasonUnknownKID, "unknown key")
		}
		inc(v.m.hits, cacheToken)
		if e := v.checkRevocation(ctx, raw, ct.tok); e != nil {
			return nil, e
		}
		return ct.tok, nil
	}
	inc(v.m.misses, cacheToken)
	tok, e := v.verifyOffline(ctx, raw, now)
	if e != nil {
		return nil, e
	}
	v.tokens.Add(key, cachedToken{tok: tok, exp: tok.ExpiresAt})
	if e := v.checkRevocation(ctx, raw, tok); e != nil {
		return nil, e
	}
	return tok, nil
}

// verifyOffline is the full check of a token not seen before.
func (v *Verifier) verifyOffline(ctx context.Context, raw string, now time.Time) (*claims.AccessToken, *Error) {
	h, e := parseHeader(raw)
	if e != nil {
		return nil, e
	}
	// RFC 8725 §3.1: only the algorithms we expect; HS* and none never are.
	if !v.allowed[h.alg] {
		return nil, invalidToken(reasonAlgNotAllowed, "algorithm not allowed")
	}
	ks := v.keys.Load()
	if ks == nil {
		return nil, unavailable("signing keys not yet available", notReadyRetryAfter, nil)
	}
	key, found := ks.lookup(h.kid, h.alg)
	if !found {
		v.refetchForUnknownKID(ctx)
		if ks = v.keys.Load(); ks != nil {
			key, found = ks.lookup(h.kid, h.alg)
		}
		if !found {
			return nil, invalidToken(reasonUnknownKID, "unknown key")
		}
	}
	if key == nil {
		return nil, invalidToken(reasonAlgNotAllowed, "algorithm does not match key")
	}
	// The key is ours, chosen by kid from the JWKS, and the algorithm is
	// pinned with it: jwx never sees a chance to use a key from the header.
	payload, err := jws.Verify([]byte(raw), jws.WithKey(jwa.SignatureAlgorithm(h.alg), key))
	if err != nil {
		return nil, invalidToken(reasonBadSignature, "bad signature")
	}
	tok, e := parseClaims(payload)
	if e != nil {
		return nil, e
	}
	tok.KeyID = h.kid
	if e := v.checkClaims(tok, now); e != nil {
		return nil, e
	}
	return tok, nil
}

// checkClaims validates iss, aud and the times (RFC 9068 §4, RFC 7519 §4.1),
// allowing the configured leeway (at most 60s) for clock skew.
func (v *Verifier) checkClaims(t *claims.AccessToken, now time.Time) *Error {
	if t.Issuer != v.issuer {
		return invalidToken(reasonWrongIssuer, "wrong issuer")
	}
	if !t.HasAudience(v.audience) {
		return invalidToken(reasonWrongAudience, "wrong audience")
	}
	l := v.cfg.leeway
	if !now.Before(t.ExpiresAt.Add(l)) {
		return invalidToken(reasonExpired, "token expired")
	}
	if !t.NotBefore.IsZero() && t.NotBefore.After(now.Add(l)) {
		return invalidToken(reasonNotYetValid, "token not yet valid")
	}
	if t.IssuedAt.After(now.Add(l)) {
		return invalidToken(reasonNotYetValid, "token issued in the future")
	}
	return nil
}
