package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestPasswordGrantIssuesRFC9068Token(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice")
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for a client allowed refresh_token")
	}
	if tok.TokenType != "bearer" && tok.TokenType != "Bearer" {
		t.Errorf("token_type = %q", tok.TokenType)
	}
	// No scope requested: every scope the client is allowed. Her role
	// (analyst) is applied by the resource server, role AND scope.
	if got := tok.Extra("scope"); got != "forecasts:read simulations:run data:export observations:write users:manage billing:read" {
		t.Errorf("scope = %v", got)
	}
	h, c := jwtParts(t, tok.AccessToken)
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] == nil || h["kid"] == "" {
		t.Errorf("header = %v", h)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "tenant_id", "role"} {
		if _, ok := c[k]; !ok {
			t.Errorf("claim %s missing", k)
		}
	}
	if c["iss"] != e.srv.URL || c["client_id"] != "dash" || c["tenant_id"] != tenantA || c["role"] != "analyst" {
		t.Errorf("claims = %v", c)
	}
	if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != "simapi" {
		t.Errorf("aud = %v", c["aud"])
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat < 3599 || exp-iat > 3601 {
		t.Errorf("lifetime = %v s", exp-iat)
	}
	m := e.introspect(tok.AccessToken)
	if m["active"] != true || m["jti"] != c["jti"] || m["sub"] != c["sub"] || m["token_type"] != "Bearer" {
		t.Errorf("introspection = %v", m)
	}
}

func TestPasswordGrantFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	cfg := e.passwordConfig("dash", dashSecrt)
	cases := []struct{ name, user, pass string }{
		{"fail-wrong-password", "alice", "wrong-password-123"},
		{"fail-unknown-user", "nobody", "wrong-password-123"},
		{"fail-other-tenant-user", "bob", userPass},
		{"fail-overlong-password", "alice", userPass + strings.Repeat("x", 80)},
	}
	var first string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cfg.PasswordCredentialsToken(context.Background(), tc.user, tc.pass)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
				t.Fatalf("err = %v", err)
			}
			if first == "" {
				first = re.ErrorDescription
			} else if re.ErrorDescription != first {
				t.Errorf("answers differ: %q vs %q", re.ErrorDescription, first)
			}
		})
	}
}

func TestCrossTenantLoginRefused(t *testing.T) {
	e := newEnv(t)
	// bob exists in tenant B; dash belongs to tenant A.
	if _, err := e.passwordConfig("dash", dashSecrt).PasswordCredentialsToken(context.Background(), "bob", userPass); err == nil {
		t.Fatal("tenant A's client logged in tenant B's user")
	}
	tok, err := e.passwordConfig("dash-b", bSecret).PasswordCredentialsToken(context.Background(), "bob", userPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := jwtParts(t, tok.AccessToken); c["tenant_id"] != tenantB || c["role"] != "manager" {
		t.Errorf("claims = %v", c)
	}
}

func TestNoRefreshTokenWithoutRefreshGrant(t *testing.T) {
	e := newEnv(t)
	tok, err := e.passwordConfig("pw-only", dashSecrt).PasswordCredentialsToken(context.Background(), "alice", userPass)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Error("refresh token issued to a client without the refresh_token grant")
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t)
	tok, err := e.ccConfig().Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Error("client credentials must not get a refresh token")
	}
	_, c := jwtParts(t, tok.AccessToken)
	if c["sub"] != "svc" || c["client_id"] != "svc" || c["tenant_id"] != tenantA || c["role"] != "analyst" || c["scope"] != "forecasts:read simulations:run" {
		t.Errorf("claims = %v", c)
	}
	// A scope the client is not allowed is refused, never silently granted.
	_, err = e.ccConfig("data:export").Token(context.Background())
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Errorf("err = %v", err)
	}
	// A client without the grant is unauthorized_client.
	st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"client_credentials"}})
	if st != http.StatusBadRequest || m["error"] != "unauthorized_client" {
		t.Errorf("dash client_credentials: %d %v", st, m)
	}
}

func TestAutomaticRefreshRotatesAndReuseRevokesFamily(t *testing.T) {
	testAutomaticRefreshRotatesAndReuseRevokesFamily(t)
}

func testAutomaticRefreshRotatesAndReuseRevokesFamily(t *testing.T, opts ...func(*envOptions)) {
	e := newEnv(t, opts...)
	first := e.login("alice")
	// Let x/oauth2's TokenSource refresh on its own by handing it an
	// expired access token.
	expired := *first
	expired.Expiry = time.Now().Add(-time.Minute)
	src := e.passwordConfig("dash", dashSecrt).TokenSource(context.Background(), &expired)
	second, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken || second.RefreshToken == "" {
		t.Fatal("refresh did not rotate")
	}
	_, c1 := jwtParts(t, first.AccessToken)
	_, c2 := jwtParts(t, second.AccessToken)
	if c1["jti"] == c2["jti"] || c2["iat"].(float64) < c1["iat"].(float64) {
		t.Errorf("refreshed token reuses jti/iat: %v %v", c1, c2)
	}
	if !e.active(second.AccessToken) {
		t.Fatal("new access token inactive")
	}
	// The old refresh token stops working at once; presenting it again is
	// reuse, which revokes the whole family.
	st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, m)
	}
	if e.active(second.AccessToken) {
		t.Error("family access token still active after reuse")
	}
	st, m, _ = e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.RefreshToken}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("family refresh token still works: %d %v", st, m)
	}
	// An unrelated login of the same user is not affected.
	other := e.login("alice")
	if !e.active(other.AccessToken) {
		t.Error("unrelated family revoked")
	}
	events, err := e.app.Store.ListAudit(context.Background(), storageFilter("refresh.reuse_detected"))
	// Both presentations of a dead refresh token count as reuse.
	if err != nil || len(events) != 2 {
		t.Errorf("reuse audit events = %d, %v", len(events), err)
	}
}

func TestConcurrentRefreshOnlyOneWins(t *testing.T) { testConcurrentRefreshOnlyOneWins(t) }

func testConcurrentRefreshOnlyOneWins(t *testing.T, opts ...func(*envOptions)) {
	e := newEnv(t, opts...)
	tok := e.login("alice")
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	bodies := make([]map[string]any, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			codes[i], bodies[i], _ = e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		}(i)
	}
	wg.Wait()
	ok := 0
	for i, c := range codes {
		if c == http.StatusOK {
			ok++
		} else if c != http.StatusBadRequest || bodies[i]["error"] != "invalid_grant" {
			// Losers are told the token was used, never "retry": retrying
			// would be reuse and end the family.
			t.Errorf("loser answer %d %v", c, bodies[i])
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent refreshes succeeded, want exactly 1 (%v)", ok, codes)
	}
	// A loser that read the token after the winner committed presented a
	// used token: that is reuse, and it ends the family, winner included
	// (there is no grace period).
}

func TestRefreshScopeNarrowing(t *testing.T) { testRefreshScopeNarrowing(t) }

func testRefreshScopeNarrowing(t *testing.T, opts ...func(*envOptions)) {
	e := newEnv(t, opts...)
	tok := e.login("mallory") // admin: every scope
	cases := []struct {
		name, scope string
		status      int
		wantErr     string
		wantScope   string
	}{
		{"fail-widen-unknown", "forecasts:read openid", 400, "invalid_scope", ""},
		{"ok-narrow", "forecasts:read data:export", 200, "", "forecasts:read data:export"},
		{"fail-widen-after-narrow", "forecasts:read simulations:run", 400, "invalid_scope", ""},
		{"ok-same", "", 200, "", "forecasts:read data:export"},
	}
	rt := tok.RefreshToken
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			if tc.scope != "" {
				form.Set("scope", tc.scope)
			}
			st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, form)
			if st != tc.status || (tc.wantErr != "" && m["error"] != tc.wantErr) {
				t.Fatalf("%d %v", st, m)
			}
			if st == 200 {
				rt = m["refresh_token"].(string)
				if m["scope"] != tc.wantScope {
					t.Errorf("scope = %v", m["scope"])
				}
				if _, c := jwtParts(t, m["access_token"].(string)); c["scope"] != tc.wantScope {
					t.Errorf("token scope = %v", c["scope"])
				}
			}
		})
	}
}

func TestDisabledUserCannotRefreshAndTokensGoInactive(t *testing.T) {
	testDisabledUserCannotRefreshAndTokensGoInactive(t)
}

func testDisabledUserCannotRefreshAndTokensGoInactive(t *testing.T, opts ...func(*envOptions)) {
	e := newEnv(t, opts...)
	tok := e.login("alice")
	ctx := context.Background()
	u, err := e.app.Store.GetUserByUsername(ctx, tenantA, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u.Disabled = true
	if err := e.app.Store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if e.active(tok.AccessToken) {
		t.Error("disabled user's access token still active")
	}
	st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("disabled refresh: %d %v", st, m)
	}
	if _, err := e.passwordConfig("dash", dashSecrt).PasswordCredentialsToken(ctx, "alice", userPass); err == nil {
		t.Error("disabled user logged in")
	}
}

// TestRefreshOnPostgres runs the refresh flows on PostgreSQL, where a
// refresh is written as one statement (storage.RefreshGrantStore).
func TestRefreshOnPostgres(t *testing.T) {
	url := os.Getenv("AUTH_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("AUTH_TEST_POSTGRES_URL not set: PostgreSQL refresh flows skipped")
	}
	pg := func(o *envOptions) { o.postgres = url }
	t.Run("rotation-and-reuse", func(t *testing.T) { testAutomaticRefreshRotatesAndReuseRevokesFamily(t, pg) })
	t.Run("concurrent", func(t *testing.T) { testConcurrentRefreshOnlyOneWins(t, pg) })
	t.Run("narrowing", func(t *testing.T) { testRefreshScopeNarrowing(t, pg) })
	t.Run("disabled-user", func(t *testing.T) { testDisabledUserCannotRefreshAndTokensGoInactive(t, pg) })
}

func TestRefreshFamilyMaxLifetime(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newEnv(t, func(o *envOptions) { o.now = now; o.maxFamily = 2 * time.Hour })
	start := time.Now()
	tok := e.login("alice")
	st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != http.StatusOK {
		t.Fatalf("refresh within the lifetime: %d %v", st, m)
	}
	rt := m["refresh_token"].(string)
	// The rotated refresh token never outlives the family (24h TTL, 2h cap).
	if exp := e.introspect(rt)["exp"].(float64); exp > float64(start.Add(2*time.Hour+time.Minute).Unix()) {
		t.Errorf("refresh token expires %v, after the family's end", time.Unix(int64(exp), 0))
	}
	offset.Store(int64(3 * time.Hour))
	st, m, _ = e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("refresh past the lifetime: %d %v", st, m)
	}
	offset.Store(0)
	if e.active(rt) {
		t.Error("family still active after reaching its maximum lifetime")
	}
}
