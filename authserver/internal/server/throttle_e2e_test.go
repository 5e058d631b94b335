package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

// fakeClock is the throttle's clock: frozen until the test advances it, so
// every lock and Retry-After is exact.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newThrottledEnv is the seeded server with a throttle.Limiter of default
// policy (5 free failures per account or client, 20 per address, then 1s,
// 2s, 4s, …) on a fake clock. Every request comes from 127.0.0.1.
func newThrottledEnv(t *testing.T) (*env, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	lim := throttle.New(throttle.Config{Now: clk.Now})
	return newEnv(t, func(o *envOptions) { o.throttle = lim }), clk
}

// oauthFailure is one refused OAuth request as the wire shows it.
type oauthFailure struct {
	status     int
	code       string
	retryAfter int // seconds; 0 when absent
}

// wantThrottled checks a 429 in the RFC 6749 §5.2 format with an integer
// Retry-After of at least min seconds, and returns that value.
func wantThrottled(t *testing.T, st int, m map[string]any, h http.Header, code string, min int) int {
	t.Helper()
	if st != http.StatusTooManyRequests {
		t.Fatalf("status %d %v, want 429", st, m)
	}
	if m["error"] != code {
		t.Errorf("error %v, want %s", m["error"], code)
	}
	if d, ok := m["error_description"].(string); !ok || d == "" {
		t.Errorf("no error_description: %v", m)
	}
	for k := range m {
		if k != "error" && k != "error_description" && k != "error_uri" {
			t.Errorf("unexpected member %q in an RFC 6749 error: %v", k, m)
		}
	}
	if _, ok := m["access_token"]; ok {
		t.Errorf("a throttled request got a token: %v", m)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	ra := h.Get("Retry-After")
	secs, err := strconv.Atoi(ra)
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want an integer number of seconds >= 1", ra)
	}
	if secs < min {
		t.Errorf("Retry-After %d, want >= %d (the remaining lock)", secs, min)
	}
	return secs
}

// passwordLogin posts a password grant for tenant A's dash client.
func (e *env) passwordLogin(user, pass string) (int, map[string]any, http.Header) {
	e.t.Helper()
	return e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}})
}

// auditEvents returns the audit events of type typ.
func (e *env) auditEvents(typ string) []storage.AuditEvent {
	e.t.Helper()
	evs, err := e.app.Store.ListAudit(context.Background(), storage.AuditFilter{Type: typ, Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func countEvents(evs []storage.AuditEvent, match func(storage.AuditEvent) bool) int {
	n := 0
	for _, ev := range evs {
		if match(ev) {
			n++
		}
	}
	return n
}

// TestThrottleLoginAccount: wrong passwords for alice lock her account
// after the free failures with growing locks; during a lock even the right
// password gets 429 and no token; after the lock the right password works
// and forgets the failures; other users behind the same address are not
// affected.
func TestThrottleLoginAccount(t *testing.T) {
	e, clk := newThrottledEnv(t)
	cfg := e.passwordConfig("dash", dashSecrt) // AuthStyleInHeader: no retry with body credentials
	ctx := context.Background()

	wrong := func(i int) {
		t.Helper()
		_, err := cfg.PasswordCredentialsToken(ctx, "alice", fmt.Sprintf("wrong-password-%d", i))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_grant" {
			t.Fatalf("wrong password %d: %v, want 400 invalid_grant", i, err)
		}
	}
	for i := range throttle.DefaultFreeFailures {
		wrong(i)
	}

	// Locked: the next attempt is refused before the password is checked.
	st, m, h := e.passwordLogin("alice", "wrong-password-x")
	if ra := wantThrottled(t, st, m, h, "invalid_grant", 1); ra != 1 {
		t.Errorf("first lock: Retry-After %d, want 1 (BaseDelay)", ra)
	}
	// x/oauth2 sees the same refusal.
	_, err := cfg.PasswordCredentialsToken(ctx, "alice", "wrong-password-y")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusTooManyRequests || re.ErrorCode != "invalid_grant" {
		t.Errorf("x/oauth2 during lock: %v", err)
	}
	// The right password during the lock: 429, no token.
	st, m, h = e.passwordLogin("alice", userPass)
	wantThrottled(t, st, m, h, "invalid_grant", 1)
	if tok, err := cfg.PasswordCredentialsToken(ctx, "alice", userPass); err == nil || tok != nil {
		t.Fatalf("correct password during the lock got a token: %v %v", tok, err)
	}

	// Another user from the same address is not locked by alice.
	if tok, err := cfg.PasswordCredentialsToken(ctx, "mallory", userPass); err != nil || tok.AccessToken == "" {
		t.Fatalf("mallory from the same address: %v", err)
	}

	// Past the lock, a sixth failure is checked (400) and doubles the lock.
	clk.Advance(time.Second)
	wrong(throttle.DefaultFreeFailures)
	st, m, h = e.passwordLogin("alice", userPass)
	if ra := wantThrottled(t, st, m, h, "invalid_grant", 2); ra != 2 {
		t.Errorf("second lock: Retry-After %d, want 2", ra)
	}
	// Six failures of alice (and one more from mallory's address count) are
	// below the per-address threshold: rita still logs in.
	if _, err := cfg.PasswordCredentialsToken(ctx, "rita", userPass); err != nil {
		t.Fatalf("rita from the same address: %v", err)
	}

	// Retry-After never understates the remaining lock: a client that waits
	// exactly that long must get through.
	clk.Advance(600 * time.Millisecond) // 1.4s left
	st, m, h = e.passwordLogin("alice", userPass)
	ra := wantThrottled(t, st, m, h, "invalid_grant", 2)
	clk.Advance(time.Duration(ra) * time.Second)
	tok, err := cfg.PasswordCredentialsToken(ctx, "alice", userPass)
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("correct password after Retry-After: %v", err)
	}
	if !e.active(tok.AccessToken) {
		t.Error("the token after the lock is not active")
	}

	// The success reset the account: five fresh free failures, then the
	// base lock again (not 4s).
	for i := range throttle.DefaultFreeFailures {
		wrong(100 + i)
	}
	st, m, h = e.passwordLogin("alice", userPass)
	if ra := wantThrottled(t, st, m, h, "invalid_grant", 1); ra != 1 {
		t.Errorf("lock after the reset: Retry-After %d, want 1", ra)
	}

	// The audit log: every refused attempt is a login.failed, the throttled
	// ones with reason throttled.
	evs := e.auditEvents(storage.EventLoginFailed)
	throttled := countEvents(evs, func(ev storage.AuditEvent) bool {
		return ev.Subject == "alice" && ev.TenantID == tenantA && ev.ClientID == "dash" &&
			ev.Outcome == storage.OutcomeFailure && ev.IP == "127.0.0.1" && strings.Contains(ev.Details, `"reason":"throttled"`)
	})
	bad := countEvents(evs, func(ev storage.AuditEvent) bool {
		return ev.Subject == "alice" && strings.Contains(ev.Details, `"reason":"bad_credentials"`)
	})
	// Throttled: x, y, the right password twice, the right password after
	// the sixth failure, after 600ms, and after the reset.
	if throttled != 7 {
		t.Errorf("%d login.failed events with reason throttled, want 7", throttled)
	}
	if bad != 2*throttle.DefaultFreeFailures+1 {
		t.Errorf("%d login.failed events with reason bad_credentials, want %d", bad, 2*throttle.DefaultFreeFailures+1)
	}
	if n := countEvents(evs, func(ev storage.AuditEvent) bool { return ev.Subject != "alice" }); n != 0 {
		t.Errorf("%d login.failed events for other users", n)
	}
}

// TestThrottleLoginPerIP: failures across many usernames lock the address
// after FreeFailuresPerIP, for every user; a success does not reset the
// address.
func TestThrottleLoginPerIP(t *testing.T) {
	e, clk := newThrottledEnv(t)
	session := e.login("mallory") // logged in before the address is locked
	for i := range throttle.DefaultFreeFailuresPerIP {
		// Unknown users and known ones alike, each below its own threshold.
		user := fmt.Sprintf("ghost%02d", i)
		if i%4 == 0 {
			user = "alice"
		}
		st, m, _ := e.passwordLogin(user, "wrong-password")
		if st != http.StatusBadRequest || m["error"] != "invalid_grant" {
			t.Fatalf("failure %d (%s): %d %v", i, user, st, m)
		}
	}
	// rita never failed, but her address is locked.
	st, m, h := e.passwordLogin("rita", userPass)
	if ra := wantThrottled(t, st, m, h, "invalid_grant", 1); ra != 1 {
		t.Errorf("Retry-After %d, want 1", ra)
	}
	// Only logins are locked: the address's failed logins are no failed
	// client authentications, so refresh and introspection go on.
	st, m, _ = e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {session.RefreshToken}})
	if st != http.StatusOK {
		t.Fatalf("refresh during the address's login lock: %d %v", st, m)
	}
	// (The refresh ended the old access token; the new one is asked about.)
	if st, m, _ := e.post("/oauth2/introspect", "simapi-rs", rsSecret, url.Values{"token": {m["access_token"].(string)}}); st != http.StatusOK || m["active"] != true {
		t.Errorf("introspection during the address's login lock: %d %v", st, m)
	}
	if n := countEvents(e.auditEvents(storage.EventClientAuthFailed), func(storage.AuditEvent) bool { return true }); n != 0 {
		t.Errorf("%d client.auth_failed events, but every client authenticated", n)
	}
	clk.Advance(time.Second)
	if st, m, _ := e.passwordLogin("rita", userPass); st != http.StatusOK || m["access_token"] == nil {
		t.Fatalf("after the address lock: %d %v", st, m)
	}
	// rita's success does not launder the address's failures: the next
	// failure locks it for 2s.
	if st, _, _ := e.passwordLogin("ghost99", "wrong-password"); st != http.StatusBadRequest {
		t.Fatalf("failure 21: %d", st)
	}
	st, m, h = e.passwordLogin("rita", userPass)
	if ra := wantThrottled(t, st, m, h, "invalid_grant", 2); ra != 2 {
		t.Errorf("Retry-After %d, want 2", ra)
	}
	if n := countEvents(e.auditEvents(storage.EventLoginFailed), func(ev storage.AuditEvent) bool {
		return ev.Subject == "rita" && strings.Contains(ev.Details, `"reason":"throttled"`)
	}); n != 2 {
		t.Errorf("%d throttled login.failed events for rita, want 2", n)
	}
}

// TestThrottleClientAuth: wrong client secrets at the token, introspection
// and revocation endpoints lock the client after the free failures: 429
// invalid_client with Retry-After, and the right secret is refused until
// the lock ends; then it works and forgets the failures.
func TestThrottleClientAuth(t *testing.T) {
	const wrongSecret = "not-the-secret-0123456789abcdefghijkl"
	type endpoint struct {
		name, path, client, secret string
		form                       url.Values
		// ok checks a successful answer.
		ok func(t *testing.T, e *env, st int, m map[string]any)
	}
	endpoints := []endpoint{
		{"token", "/oauth2/token", "svc", ccSecret, url.Values{"grant_type": {"client_credentials"}},
			func(t *testing.T, _ *env, st int, m map[string]any) {
				if st != http.StatusOK || m["access_token"] == nil {
					t.Fatalf("client credentials: %d %v", st, m)
				}
			}},
		{"introspect", "/oauth2/introspect", "simapi-rs", rsSecret, nil,
			func(t *testing.T, _ *env, st int, m map[string]any) {
				if st != http.StatusOK || m["active"] != true {
					t.Fatalf("introspect: %d %v", st, m)
				}
			}},
		// Not dash: every login through dash would reset dash's failures.
		{"revoke", "/oauth2/revoke", "pw-only", dashSecrt, nil,
			func(t *testing.T, e *env, st int, m map[string]any) {
				if st != http.StatusOK {
					t.Fatalf("revoke: %d %v", st, m)
				}
			}},
	}
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			e, clk := newThrottledEnv(t)
			f := ep.form
			if f == nil {
				// A token of the endpoint's client (simapi-rs may
				// introspect dash's tokens).
				issuer := ep.client
				if ep.client == "simapi-rs" {
					issuer = "dash"
				}
				tok, err := e.passwordConfig(issuer, dashSecrt).PasswordCredentialsToken(context.Background(), "alice", userPass)
				if err != nil {
					t.Fatal(err)
				}
				f = url.Values{"token": {tok.AccessToken}}
			}
			form := func() url.Values { return f }
			for i := range throttle.DefaultFreeFailures {
				st, m, h := e.post(ep.path, ep.client, wrongSecret, form())
				if st != http.StatusUnauthorized || m["error"] != "invalid_client" || h.Get("Retry-After") != "" {
					t.Fatalf("wrong secret %d: %d %v Retry-After %q, want 401 invalid_client", i, st, m, h.Get("Retry-After"))
				}
			}
			st, m, h := e.post(ep.path, ep.client, wrongSecret, form())
			if ra := wantThrottled(t, st, m, h, "invalid_client", 1); ra != 1 {
				t.Errorf("Retry-After %d, want 1", ra)
			}
			// The right secret during the lock.
			st, m, h = e.post(ep.path, ep.client, ep.secret, form())
			wantThrottled(t, st, m, h, "invalid_client", 1)
			if _, ok := m["active"]; ok {
				t.Errorf("introspection answered during the lock: %v", m)
			}
			// Another client from the same address is not locked.
			if tok := e.login("mallory"); tok.AccessToken == "" {
				t.Fatal("no token for another client")
			}
			clk.Advance(time.Second)
			st, m, _ = e.post(ep.path, ep.client, ep.secret, form())
			ep.ok(t, e, st, m)
			// The success forgot the client's failures.
			for i := range throttle.DefaultFreeFailures {
				if st, m, _ := e.post(ep.path, ep.client, wrongSecret, form()); st != http.StatusUnauthorized {
					t.Fatalf("wrong secret %d after the reset: %d %v", i, st, m)
				}
			}
			st, m, h = e.post(ep.path, ep.client, ep.secret, form())
			if ra := wantThrottled(t, st, m, h, "invalid_client", 1); ra != 1 {
				t.Errorf("lock after the reset: Retry-After %d, want 1", ra)
			}

			evs := e.auditEvents(storage.EventClientAuthFailed)
			mine := func(reason string) int {
				return countEvents(evs, func(ev storage.AuditEvent) bool {
					return ev.ClientID == ep.client && ev.Outcome == storage.OutcomeFailure && ev.IP == "127.0.0.1" &&
						strings.Contains(ev.Details, `"endpoint":"`+ep.name+`"`) && strings.Contains(ev.Details, `"reason":"throttled"`) == (reason == "throttled")
				})
			}
			if n := mine("throttled"); n != 3 {
				t.Errorf("%d throttled client.auth_failed events, want 3", n)
			}
			if n := mine("bad_secret"); n != 2*throttle.DefaultFreeFailures {
				t.Errorf("%d client.auth_failed events for a wrong secret, want %d", n, 2*throttle.DefaultFreeFailures)
			}
		})
	}
}

// TestThrottleClientAuthSharedAcrossEndpoints: the client lock is per
// client, not per endpoint: failures at introspection lock revocation too.
func TestThrottleClientAuthSharedAcrossEndpoints(t *testing.T) {
	e, clk := newThrottledEnv(t)
	tok := e.login("alice").AccessToken
	for range throttle.DefaultFreeFailures {
		if st, _, _ := e.post("/oauth2/introspect", "simapi-rs", "wrong-secret-0123456789abcdefghijklmn", url.Values{"token": {tok}}); st != http.StatusUnauthorized {
			t.Fatalf("wrong secret: %d", st)
		}
	}
	st, m, h := e.post("/oauth2/revoke", "simapi-rs", rsSecret, url.Values{"token": {tok}})
	wantThrottled(t, st, m, h, "invalid_client", 1)
	// x/oauth2 with the client locked: the token endpoint refuses too, and
	// with AuthStyleInHeader x/oauth2 does not retry with body credentials.
	cfg := e.passwordConfig("simapi-rs", rsSecret)
	_, err := cfg.PasswordCredentialsToken(context.Background(), "alice", userPass)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusTooManyRequests || re.ErrorCode != "invalid_client" {
		t.Errorf("token endpoint for the locked client: %v", err)
	}
	clk.Advance(time.Second)
	if !e.active(tok) {
		t.Error("introspection after the lock")
	}
}

// TestThrottleClientAuthPerIP: wrong secrets for many client ids, each
// below its own threshold, lock client authentication from the address
// after FreeFailuresPerIP, for every client.
func TestThrottleClientAuthPerIP(t *testing.T) {
	e, clk := newThrottledEnv(t)
	tok := e.login("alice").AccessToken
	for i := range throttle.DefaultFreeFailuresPerIP {
		id := fmt.Sprintf("nobody%02d", i) // unknown clients fail the same way
		if i%4 == 0 {
			id = "other-rs"
		}
		if st, m, _ := e.post("/oauth2/introspect", id, "wrong-secret-0123456789abcdefghijklmn", url.Values{"token": {tok}}); st != http.StatusUnauthorized || m["error"] != "invalid_client" {
			t.Fatalf("failure %d (%s): %d %v", i, id, st, m)
		}
	}
	st, m, h := e.post("/oauth2/introspect", "simapi-rs", rsSecret, url.Values{"token": {tok}})
	if ra := wantThrottled(t, st, m, h, "invalid_client", 1); ra != 1 {
		t.Errorf("Retry-After %d, want 1", ra)
	}
	_, err := e.ccConfig().Token(context.Background())
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusTooManyRequests || re.ErrorCode != "invalid_client" {
		t.Errorf("client credentials from the locked address: %v", err)
	}
	clk.Advance(time.Second)
	if !e.active(tok) {
		t.Error("introspection after the address lock")
	}
	if n := countEvents(e.auditEvents(storage.EventClientAuthFailed), func(ev storage.AuditEvent) bool {
		return strings.Contains(ev.Details, `"reason":"throttled"`) && (ev.ClientID == "simapi-rs" || ev.ClientID == "svc")
	}); n != 2 {
		t.Errorf("%d throttled client.auth_failed events, want 2", n)
	}
}
