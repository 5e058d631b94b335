package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

const (
	maxJWKSBytes     = 1 << 20
	maxMetadataBytes = 1 << 20
	minRSABits       = 2048 // RFC 7518 §3.3
)

// verKey is one usable verification key from the JWKS, already converted to
// its crypto/* public key so the cold path does no JWK work.
type verKey struct {
	alg string // the JWK "alg", empty if the JWKS did not pin one
	key any    // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of the JWKS, indexed by kid.
type keySet struct {
	byKID map[string][]verKey
	etag  string
}

// buildKeySet keeps the keys that can verify signatures: public (a private
// key published by mistake is reduced to its public half), with a kid, "use"
// absent or "sig", and RSA moduli of at least 2048 bits.
func buildKeySet(set jwk.Set) (*keySet, error) {
	ks := &keySet{byKID: make(map[string][]verKey, set.Len())}
	n := 0
	for i := 0; i < set.Len(); i++ {
		k, ok := set.Key(i)
		if !ok || k.KeyID() == "" {
			continue
		}
		if u := k.KeyUsage(); u != "" && u != "sig" {
			continue
		}
		pub, err := jwk.PublicKeyOf(k)
		if err != nil {
			continue
		}
		var raw any
		if err := pub.Raw(&raw); err != nil {
			continue
		}
		switch rk := raw.(type) {
		case *ecdsa.PublicKey:
		case ed25519.PublicKey:
		case *rsa.PublicKey:
			if rk.N.BitLen() < minRSABits {
				continue
			}
		default:
			continue
		}
		alg := ""
		if a := k.Algorithm(); a != nil {
			alg = a.String()
		}
		ks.byKID[k.KeyID()] = append(ks.byKID[k.KeyID()], verKey{alg: alg, key: raw})
		n++
	}
	if n == 0 {
		return nil, errors.New("jwks has no usable signature keys")
	}
	return ks, nil
}

// lookup returns the key with the given kid that fits alg. found reports
// whether the kid exists at all. A key only fits an algorithm of its own
// type and curve, and its pinned "alg" if it has one (RFC 8725 §3.1: the key
// determines the algorithm, never the token).
func (ks *keySet) lookup(kid, alg string) (key any, found bool) {
	cands, found := ks.byKID[kid]
	for _, c := range cands {
		if keyFits(alg, c) {
			return c.key, true
		}
	}
	return nil, found
}

func keyFits(alg string, k verKey) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "ES256", "ES384", "ES512":
		ec, ok := k.key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		want := "P-256"
		switch alg {
		case "ES384":
			want = "P-384"
		case "ES512":
			want = "P-521"
		}
		return ec.Curve.Params().Name == want
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.key.(*rsa.PublicKey)
		return ok
	case "EdDSA":
		_, ok := k.key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// httpGet fetches u with a body limit. It returns the status, the header and
// the body; it does not judge the status.
func (v *Verifier) httpGet(ctx context.Context, u string, limit int64, etag string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := v.cfg.httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("read %s: %w", u, err)
	}
	if int64(len(body)) > limit {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("response from %s exceeds %d bytes", u, limit)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// cacheClient adapts the Verifier's http.Client to the jwk.Cache HTTPClient
// interface, adding a timeout, the Verifier's lifetime context and a body
// limit that jwk.Cache itself lacks.
type cacheClient struct{ v *Verifier }

// Get implements jwk.HTTPClient.
func (c cacheClient) Get(u string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(c.v.ctx, defaultHTTPTimeout)
	defer cancel()
	status, hdr, body, err := c.v.httpGet(ctx, u, maxJWKSBytes, "")
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: hdr,
		Body: io.NopCloser(bytes.NewReader(body))}, nil
}

// errSink counts and logs failures of jwk.Cache's background refreshes.
type errSink func(error)

// Error implements jwk.ErrSink.
func (f errSink) Error(err error) { f(err) }

// fetchJWKS fetches the JWKS directly (not through jwk.Cache, whose Refresh
// schedules one more periodic refresh each time it is called) and installs
// it. It is used for retries of the first fetch and for unknown-kid refetches.
func (v *Verifier) fetchJWKS(ctx context.Context) error {
	md := v.meta.Load()
	if md == nil {
		return errors.New("metadata not yet discovered")
	}
	v.lastJWKSFetch.Store(v.cfg.now().UnixNano())
	etag := ""
	if cur := v.keys.Load(); cur != nil {
		etag = cur.etag
	}
	status, hdr, body, err := v.httpGet(ctx, md.JWKSURI, maxJWKSBytes, etag)
	if err == nil && status == http.StatusNotModified && etag != "" {
		inc(v.m.jwks, jwksNotModified)
		return nil
	}
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("jwks: unexpected status %d", status)
	}
	var ks *keySet
	if err == nil {
		var set jwk.Set
		if set, err = jwk.Parse(body); err == nil {
			ks, err = buildKeySet(set)
		}
	}
	if err != nil {
		inc(v.m.jwks, jwksError)
		return fmt.Errorf("fetch jwks: %w", err)
	}
	ks.etag = hdr.Get("ETag")
	v.keys.Store(ks)
	inc(v.m.jwks, jwksOK)
	return nil
}

// startKeyCache registers the JWKS with a jwk.Cache for periodic refresh and
// performs the first fetch through it. jwk.Cache schedules the next refresh
// after every fetch, successful or not, so this must happen exactly once;
// later retries go through fetchJWKS.
func (v *Verifier) startKeyCache(ctx context.Context, jwksURI string) error {
	window := min(max(v.cfg.jwksRefresh/5, time.Second), time.Minute)
	v.jwkCache = jwk.NewCache(v.ctx,
		jwk.WithRefreshWindow(window),
		jwk.WithErrSink(errSink(func(err error) {
			inc(v.m.jwks, jwksError)
			v.log.Warn("verify: background jwks refresh failed", "err", err)
		})))
	err := v.jwkCache.Register(jwksURI,
		jwk.WithHTTPClient(cacheClient{v}),
		// A fixed interval, not Cache-Control: a key removed from the JWKS
		// must stop verifying within the interval whatever max-age says.
		jwk.WithRefreshInterval(v.cfg.jwksRefresh),
		jwk.WithPostFetcher(jwk.PostFetchFunc(func(_ string, set jwk.Set) (jwk.Set, error) {
			ks, err := buildKeySet(set)
			if err != nil {
				return nil, err
			}
			v.lastJWKSFetch.Store(v.cfg.now().UnixNano())
			v.keys.Store(ks)
			inc(v.m.jwks, jwksOK)
			return set, nil
		})))
	if err != nil {
		return fmt.Errorf("register jwks: %w", err)
	}
	v.lastJWKSFetch.Store(v.cfg.now().UnixNano())
	if _, err := v.jwkCache.Refresh(ctx, jwksURI); err != nil {
		inc(v.m.jwks, jwksError)
		return fmt.Errorf("first jwks fetch: %w", err)
	}
	return nil
}

// refetchForUnknownKID refetches the JWKS once because a token named a kid
// we do not know, as happens right after a key rotation. Concurrent callers
// share one fetch (singleflight) and fetches are at least
// WithUnknownKIDRefetchInterval apart, so forged kids cannot turn the
// Verifier into an amplifier against the authorization server.
func (v *Verifier) refetchForUnknownKID(ctx context.Context) {
	ch := v.refetchSF.DoChan("jwks", func() (any, error) {
		now := v.cfg.now()
		if last := v.lastJWKSFetch.Load(); last != 0 && now.Sub(time.Unix(0, last)) < v.cfg.unknownKIDRefetch {
			inc(v.m.jwks, jwksRateLimited)
			return nil, nil
		}
		fctx, cancel := context.WithTimeout(v.ctx, defaultHTTPTimeout)
		defer cancel()
		if err := v.fetchJWKS(fctx); err != nil {
			v.log.Warn("verify: jwks refetch for unknown kid failed", "err", err)
		}
		return nil, nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}
