package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/epitwin/epitwin/pkg/claims"
)

const (
	maxIntrospectionBytes = 64 << 10
	introspectionTimeout  = 5 * time.Second
)

// revEntry is a remembered introspection answer.
type revEntry struct {
	active    bool
	fetchedAt time.Time
}

// introspectionError is a failed introspection; transient ones (network,
// 5xx, 429) let a cached answer be used within the grace period.
type introspectionError struct {
	transient bool
	err       error
}

func (e *introspectionError) Error() string { return e.err.Error() }
func (e *introspectionError) Unwrap() error { return e.err }

// checkRevocation asks, through RFC 7662 introspection, whether an offline-
// valid token has been revoked. Answers are cached by jti for the revocation
// TTL, and identical concurrent look-ups share one request. When the
// endpoint is unreachable a cached answer is used up to TTL + grace; past
// that the Verifier fails closed with 503 rather than accept a token it
// cannot check.
func (v *Verifier) checkRevocation(ctx context.Context, raw string, tok *claims.AccessToken) *Error {
	if fn := v.cfg.revocationCheck; fn != nil {
		active, err := fn(ctx, raw, tok)
		if err != nil {
			return unavailable("revocation check unavailable", unavailableRetryAfter, err)
		}
		return revocationVerdict(revEntry{active: active})
	}
	if !v.cfg.introspect {
		return nil
	}
	now := v.cfg.now()
	cached, ok := v.revoked.Get(tok.ID)
	if ok && now.Sub(cached.fetchedAt) < v.cfg.revocationTTL {
		inc(v.m.hits, cacheRevocation)
		return revocationVerdict(cached)
	}
	inc(v.m.misses, cacheRevocation)
	ch := v.introSF.DoChan(tok.ID, func() (any, error) {
		return v.introspect(raw, tok.ID)
	})
	var res singleflightResult
	select {
	case r := <-ch:
		res = singleflightResult{r.Val, r.Err}
	case <-ctx.Done():
		return unavailable("revocation check interrupted", unavailableRetryAfter, ctx.Err())
	}
	if res.err == nil {
		return revocationVerdict(res.val.(revEntry))
	}
	var ie *introspectionError
	if errors.As(res.err, &ie) && ie.transient && ok &&
		now.Before(cached.fetchedAt.Add(v.cfg.revocationTTL+v.cfg.introspectionGrace)) {
		return revocationVerdict(cached)
	}
	return unavailable("revocation check unavailable", unavailableRetryAfter, res.err)
}

type singleflightResult struct {
	val any
	err error
}

func revocationVerdict(e revEntry) *Error {
	if !e.active {
		return invalidToken(reasonRevoked, "token revoked")
	}
	return nil
}

// introspect performs one RFC 7662 request and caches a definite answer.
func (v *Verifier) introspect(raw, jti string) (revEntry, error) {
	md := v.meta.Load()
	if md == nil {
		return revEntry{}, &introspectionError{transient: true, err: errors.New("introspection endpoint not yet discovered")}
	}
	// Detached from the request: the answer serves every waiter.
	ctx, cancel := context.WithTimeout(v.ctx, introspectionTimeout)
	defer cancel()
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return revEntry{}, &introspectionError{err: fmt.Errorf("build introspection request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", v.basicAut)
	resp, err := v.cfg.httpClient.Do(req)
	if err != nil {
		inc(v.m.introspect, introspectError)
		v.log.Warn("verify: introspection request failed", "jti", jti, "err", err)
		return revEntry{}, &introspectionError{transient: true, err: fmt.Errorf("introspection: %w", err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	switch {
	case err != nil:
		inc(v.m.introspect, introspectError)
		return revEntry{}, &introspectionError{transient: true, err: fmt.Errorf("read introspection response: %w", err)}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// Our own client credentials were refused: an operator problem,
		// never a verdict on the token (RFC 7662 §2.3).
		inc(v.m.introspect, introspectUnauthorized)
		v.log.Error("verify: introspection endpoint rejected our client credentials",
			"client_id", v.cfg.introspectID, "status", resp.StatusCode)
		return revEntry{}, &introspectionError{err: fmt.Errorf("introspection: client authentication failed (status %d)", resp.StatusCode)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		inc(v.m.introspect, introspectError)
		v.log.Warn("verify: introspection endpoint unavailable", "jti", jti, "status", resp.StatusCode)
		return revEntry{}, &introspectionError{transient: true, err: fmt.Errorf("introspection: status %d", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK || len(body) > maxIntrospectionBytes:
		inc(v.m.introspect, introspectError)
		v.log.Error("verify: unexpected introspection response", "jti", jti, "status", resp.StatusCode)
		return revEntry{}, &introspectionError{err: fmt.Errorf("introspection: unexpected status %d", resp.StatusCode)}
	}
	var ans struct {
		Active json.RawMessage `json:"active"`
		JTI    *string         `json:"jti"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		inc(v.m.introspect, introspectError)
		v.log.Error("verify: undecodable introspection response", "jti", jti, "err", err)
		return revEntry{}, &introspectionError{err: fmt.Errorf("introspection: decode: %w", err)}
	}
	// RFC 7662 §2.2: only a JSON true means active. An answer about a
	// different token is no answer about ours.
	active := string(ans.Active) == "true"
	if active && ans.JTI != nil && *ans.JTI != jti {
		v.log.Warn("verify: introspection answered for a different jti; treating as inactive", "jti", jti)
		active = false
	}
	if active {
		inc(v.m.introspect, introspectActive)
	} else {
		inc(v.m.introspect, introspectInactive)
	}
	e := revEntry{active: active, fetchedAt: v.cfg.now()}
	v.revoked.Add(jti, e)
	return e, nil
}
