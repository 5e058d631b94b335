package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/app"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// Fixed credentials of the seeded world.
const (
	tenantA    = "dept_a"
	tenantB    = "dept_b"
	userPass   = "correct-horse-battery"
	dashSecret = "dashboard-client-secret-0123456789abcd"
	bSecret    = "tenant-b-client-secret-0123456789abcde"
	opsSecret  = "operator-client-secret-0123456789abcdef"
	rsSecret   = "resource-server-secret-0123456789abcdef"
	overlap    = time.Minute
)

var allScopes = []string{"forecasts:read", "simulations:run", "data:export", "observations:write", "users:manage", "billing:read"}

// clock is the server's time: the real time plus an offset the test moves.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// env is a real authserver (app.New on SQLite, served on a loopback port)
// issuing tokens and serving the admin API at /admin/ exactly as
// production wires it: the mounted pkg/verify Verifier (audience
// "authserver") reads the server's own metadata and JWKS in process and
// checks revocation through oauth.Provider.Introspect on every request.
// The seeded world: tenants dept_a, dept_b and platform; boss (admin) and
// alice (analyst) in A, bob (admin) in B, op (admin) in platform; clients
// dash (A), dash-b (B), ops (platform) for the password and refresh grants
// with audiences simapi and authserver; resource servers simapi-rs
// (simapi) and admin-rs (authserver).
type env struct {
	t     *testing.T
	app   *app.App
	srv   *httptest.Server // the OAuth server, which also serves /admin/
	clock *clock

	mu     sync.Mutex
	bodies []string // every admin response body, checked for secrets
}

// requestID is sent with every admin request; the audit log records it.
const requestID = "req-test"

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+t.TempDir()+"/authserver.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: &clock{}}
	e.srv = httptest.NewUnstartedServer(nil)
	issuer := "http://" + e.srv.Listener.Addr().String()
	kek := make([]byte, 32)
	for i := range kek {
		kek[i] = byte(i + 1)
	}
	a, err := app.New(ctx, app.Config{
		Issuer: issuer, DB: db, KEK: kek,
		AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		SigningAlg: "ES256", BcryptCost: 4, Now: e.clock.Now,
		KeyReloadInterval: 50 * time.Millisecond,
		// Client changes must reach the cache at once.
		ClientCacheTTL: time.Hour,
		SecretOverlap:  overlap,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e.app = a
	e.srv.Config.Handler = a.Handler
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.seed()
	t.Cleanup(e.checkBodies)
	return e
}

func (e *env) seed() {
	e.t.Helper()
	ctx := context.Background()
	acc := e.app.Accounts
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	for _, tn := range []string{tenantA, tenantB, accounts.PlatformTenant} {
		_, err := acc.CreateTenant(ctx, "test", tn, tn)
		must(err)
	}
	for _, u := range []accounts.CreateUserInput{
		{TenantID: tenantA, Username: "boss", Password: userPass, Role: "admin"},
		{TenantID: tenantA, Username: "alice", Password: userPass, Role: "analyst"},
		{TenantID: tenantB, Username: "bob", Password: userPass, Role: "admin"},
		{TenantID: accounts.PlatformTenant, Username: "op", Password: userPass, Role: "admin"},
	} {
		_, err := acc.CreateUser(ctx, "test", u)
		must(err)
	}
	auds := []string{"simapi", "authserver"}
	pw := []string{"password", "refresh_token"}
	for _, c := range []accounts.CreateClientInput{
		{TenantID: tenantA, ID: "dash", Grants: pw, Scopes: allScopes, Audiences: auds, Secret: dashSecret},
		{TenantID: tenantB, ID: "dash-b", Grants: pw, Scopes: allScopes, Audiences: auds, Secret: bSecret},
		{TenantID: accounts.PlatformTenant, ID: "ops", Grants: pw, Scopes: allScopes, Audiences: auds, Secret: opsSecret},
		{TenantID: accounts.PlatformTenant, ID: "simapi-rs", Audiences: []string{"simapi"}, Introspect: true, Secret: rsSecret},
		{TenantID: accounts.PlatformTenant, ID: "admin-rs", Audiences: []string{"authserver"}, Introspect: true, Secret: rsSecret},
	} {
		_, _, err := acc.CreateClient(ctx, "test", c)
		must(err)
	}
}

// clientOf is the login client of each seeded user's tenant.
var clientOf = map[string][2]string{
	tenantA: {"dash", dashSecret}, tenantB: {"dash-b", bSecret}, accounts.PlatformTenant: {"ops", opsSecret},
}

// tokenForm posts to the token endpoint with client_secret_basic.
func (e *env) tokenForm(client, secret string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	return e.send(req, false)
}

// login returns the access and refresh tokens of a password login.
func (e *env) login(tenant, user, pass, audience string, scope ...string) (string, string) {
	e.t.Helper()
	c := clientOf[tenant]
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "audience": {audience}}
	if len(scope) > 0 {
		form.Set("scope", strings.Join(scope, " "))
	}
	st, m := e.tokenForm(c[0], c[1], form)
	if st != http.StatusOK {
		e.t.Fatalf("login %s/%s: %d %v", tenant, user, st, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

// adminToken logs a user in for the admin API.
func (e *env) adminToken(tenant, user string) string {
	e.t.Helper()
	at, _ := e.login(tenant, user, userPass, "authserver")
	return at
}

// refresh uses a refresh token and returns the status and the error code.
func (e *env) refresh(tenant, rt string) (int, string) {
	e.t.Helper()
	c := clientOf[tenant]
	st, m := e.tokenForm(c[0], c[1], url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	code, _ := m["error"].(string)
	return st, code
}

// active asks introspection whether a simapi token is active.
func (e *env) active(token string) bool {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("simapi-rs", rsSecret)
	st, m := e.send(req, false)
	if st != http.StatusOK {
		e.t.Fatalf("introspect: %d %v", st, m)
	}
	return m["active"] == true
}

// call sends an admin request; body is nil, a string (sent as is) or a
// value sent as JSON.
func (e *env) call(tok, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	req.Header.Set("X-Request-Id", requestID)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.send(req, true)
}

func (e *env) send(req *http.Request, adminAPI bool) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if adminAPI {
		e.mu.Lock()
		e.bodies = append(e.bodies, string(raw))
		e.mu.Unlock()
		if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnauthorized {
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				e.t.Errorf("%s %s: status %d with Content-Type %q, want a problem", req.Method, req.URL.Path, resp.StatusCode, ct)
			}
		}
	}
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			e.t.Fatalf("%s %s: non-JSON body %q (status %d)", req.Method, req.URL.Path, raw, resp.StatusCode)
		}
	}
	if resp.StatusCode == http.StatusMethodNotAllowed {
		if m == nil {
			m = map[string]any{}
		}
		m["_allow"] = resp.Header.Get("Allow")
	}
	return resp.StatusCode, m
}

// checkBodies fails the test if any admin response showed a password or
// secret hash.
func (e *env) checkBodies() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.bodies {
		for _, bad := range []string{"$2a$", "$2b$", "password_hash", "PasswordHash", "secret_hash", "SecretHash", "rotated_secret"} {
			if strings.Contains(b, bad) {
				e.t.Errorf("an admin response contains %q: %s", bad, b)
			}
		}
	}
}

func items(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	raw, ok := m["items"].([]any)
	if !ok {
		t.Fatalf("no items in %v", m)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i] = v.(map[string]any)
	}
	return out
}

func usersPath(t string) string { return "/admin/tenants/" + t + "/users" }

// jwtClaims decodes a JWT's header and claims without verifying it.
func jwtClaims(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

// subjectOf returns a token's sub.
func subjectOf(t *testing.T, tok string) string {
	t.Helper()
	_, c := jwtClaims(t, tok)
	return c["sub"].(string)
}
