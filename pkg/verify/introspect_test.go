package verify

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newIntrospectionEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	base := []Option{
		WithIntrospection(testClientID, testClientSecret),
		WithRevocationCacheTTL(50 * time.Millisecond),
		WithIntrospectionGrace(time.Second),
	}
	return newEnv(t, append(base, opts...)...)
}

func TestRevocation(t *testing.T) {
	e := newIntrospectionEnv(t)
	c := e.claims()
	tok := sign(t, e.keys["ES256"], c, nil)
	ctx := context.Background()
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatalf("active token: %v", err)
	}
	if got := e.as.introHits.Load(); got != 1 {
		t.Fatalf("%d introspections, want 1", got)
	}
	e.as.revoked.Store(c["jti"], true)
	// Within the TTL the cached "active" answer stands.
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatalf("within TTL: %v", err)
	}
	if got := e.as.introHits.Load(); got != 1 {
		t.Fatalf("%d introspections within TTL, want 1", got)
	}
	e.clk.Advance(51 * time.Millisecond)
	_, err := e.v.Verify(ctx, tok)
	if ve := asError(t, err); ve.Status != http.StatusUnauthorized || ve.Description != "token revoked" {
		t.Fatalf("got %v, want 401 token revoked", err)
	}
	// The revoked answer is cached too.
	if _, err := e.v.Verify(ctx, tok); err == nil || e.as.introHits.Load() != 2 {
		t.Fatalf("revoked answer not cached: err=%v hits=%d", err, e.as.introHits.Load())
	}
}

func TestIntrospectionDownUsesGraceThenFailsClosed(t *testing.T) {
	e := newIntrospectionEnv(t)
	tok := sign(t, e.keys["ES256"], e.claims(), nil)
	ctx := context.Background()
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	e.as.introDown.Store(true)
	e.clk.Advance(500 * time.Millisecond) // past TTL (50ms), within TTL+grace (1.05s)
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatalf("within grace: %v", err)
	}
	e.clk.Advance(600 * time.Millisecond) // past TTL+grace
	_, err := e.v.Verify(ctx, tok)
	ve := asError(t, err)
	if ve.Status != http.StatusServiceUnavailable || ve.Code != CodeTemporarilyUnavailable || ve.RetryAfter != 5*time.Second {
		t.Fatalf("got %+v, want 503 with Retry-After 5s", ve)
	}
	// Recovery.
	e.as.introDown.Store(false)
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestIntrospectionUnreachableWithoutCache(t *testing.T) {
	e := newIntrospectionEnv(t)
	e.as.introDown.Store(true)
	_, err := e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil))
	if ve := asError(t, err); ve.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503", err)
	}
	// A closed connection rather than a 5xx.
	e.as.srv.CloseClientConnections()
	e.as.srv.Close()
	_, err = e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil))
	if ve := asError(t, err); ve.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503", err)
	}
}

func TestIntrospectionBadCredentials(t *testing.T) {
	e := newIntrospectionEnv(t)
	e.as.authFail.Store(true)
	_, err := e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil))
	if ve := asError(t, err); ve.Status != http.StatusServiceUnavailable || ve.RetryAfter <= 0 {
		t.Fatalf("got %v, want 503 with Retry-After", err)
	}
}

func TestIntrospectionClientSecretBasicEncoding(t *testing.T) {
	// The fake server form-decodes id and secret (RFC 6749 §2.3.1); the
	// secret has a space, '@' and '&', so a raw SetBasicAuth would fail.
	e := newIntrospectionEnv(t)
	if _, err := e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil)); err != nil {
		t.Fatal(err)
	}
}

func TestIntrospectionJTIMismatch(t *testing.T) {
	e := newIntrospectionEnv(t)
	e.as.introJTI.Store("someone-else")
	_, err := e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil))
	if ve := asError(t, err); ve.Description != "token revoked" {
		t.Fatalf("got %v, want token revoked", err)
	}
}

func TestIntrospectionSingleflight(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newIntrospectionEnv(t, WithRegisterer(reg))
	e.as.introBlock = make(chan struct{})
	tok := sign(t, e.keys["ES256"], e.claims(), nil)
	misses := e.v.m.misses[cacheRevocation]

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := e.v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	// Release the (single) blocked introspection once all 50 have missed
	// the revocation cache and are waiting on it.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(misses) < n {
		if time.Now().After(deadline) {
			t.Fatal("goroutines never reached the revocation check")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the last ones step from the miss into the flight
	close(e.as.introBlock)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.as.introHits.Load(); got != 1 {
		t.Fatalf("%d introspection requests for 50 concurrent look-ups, want 1", got)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newIntrospectionEnv(t, WithRegisterer(reg))
	tok := sign(t, e.keys["ES256"], e.claims(), nil)
	ctx := context.Background()
	_, _ = e.v.Verify(ctx, tok)
	_, _ = e.v.Verify(ctx, tok)
	_, _ = e.v.Verify(ctx, "x.y.z")
	for _, c := range []struct {
		name string
		got  prometheus.Counter
		want float64
	}{
		{"ok", e.v.m.outcomes[reasonOK], 2},
		{"malformed", e.v.m.outcomes[reasonMalformed], 1},
		{"token hits", e.v.m.hits[cacheToken], 1},
		{"token misses", e.v.m.misses[cacheToken], 2},
		{"revocation hits", e.v.m.hits[cacheRevocation], 1},
		{"introspection active", e.v.m.introspect[introspectActive], 1},
		{"jwks ok", e.v.m.jwks[jwksOK], 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"verify_outcomes_total", "verify_introspection_requests_total", "verify_cache_hits_total", "verify_cache_misses_total", "verify_jwks_refreshes_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	// A second Verifier on the same registry shares the counters.
	v2, err := New(ctx, e.as.issuer, testAudience, WithRegisterer(reg), WithHTTPClient(e.as.srv.Client()), WithLogger(discardLogger()))
	if err != nil {
		t.Fatalf("second verifier on one registry: %v", err)
	}
	v2.Close()
}
