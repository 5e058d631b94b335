package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/app"
	"github.com/epitwin/epitwin/authserver/internal/server"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

// Fixed credentials of the seeded world.
const (
	tenantA   = "district_health_dept_a"
	tenantB   = "district_health_dept_b"
	userPass  = "correct-horse-battery"
	rsSecret  = "resource-server-secret-0123456789abcdef"
	ccSecret  = "service-client-secret-0123456789abcdef"
	dashSecrt = "dashboard-client-secret-0123456789abcd"
	bSecret   = "tenant-b-client-secret-0123456789abcde"
)

// env is a running authserver on a loopback port with a seeded world:
// tenants A and B; users alice (analyst) and mallory (admin) in A, bob in B;
// clients "dash" (password+refresh, A), "svc" (client credentials, A),
// "dash-b" (password+refresh, B) and the resource server "simapi-rs".
type env struct {
	t   testing.TB
	app *app.App
	srv *httptest.Server
	db  *storage.DB
	now func() time.Time
}

type envOptions struct {
	accessTTL  time.Duration
	now        func() time.Time
	bcryptCost int
	// postgres, when set, is a PostgreSQL URL: the env gets a fresh schema.
	postgres string
	// maxFamily caps refresh families (0: none).
	maxFamily time.Duration
	// proxies are trusted load balancers.
	proxies server.TrustedProxies
	// throttle, when set, throttles logins and client authentication.
	throttle *throttle.Limiter
}

// pgSchema creates a throw-away schema and returns a URL that uses it.
func pgSchema(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := storage.Open(ctx, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "authbench_" + hex.EncodeToString(b[:])
	if err := admin.Gorm.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Gorm.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

func newEnv(t testing.TB, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{accessTTL: time.Hour, now: time.Now, bcryptCost: 4}
	for _, f := range opts {
		f(&o)
	}
	ctx := context.Background()
	dbURL := "sqlite:" + t.TempDir() + "/authserver.db"
	if o.postgres != "" {
		dbURL = pgSchema(t, o.postgres)
	}
	db, err := storage.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	kek := testKEK()
	e := &env{t: t, db: db, now: o.now}
	e.srv = httptest.NewUnstartedServer(nil)
	issuer := "http://" + e.srv.Listener.Addr().String()
	a, err := app.New(ctx, app.Config{
		Issuer: issuer, DB: db, KEK: kek,
		AccessTokenTTL: o.accessTTL, RefreshTokenTTL: 24 * time.Hour,
		SigningAlg: "ES256", BcryptCost: o.bcryptCost, Now: o.now,
		MaxRefreshFamilyLifetime: o.maxFamily,
		TrustedProxies:           o.proxies,
		KeyReloadInterval:        50 * time.Millisecond, ClientCacheTTL: 2 * time.Second,
		Throttle: o.throttle,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	t.Cleanup(a.Close)
	e.srv.Config.Handler = a.Handler
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	e.seed()
	return e
}

// newEnvOnDB wires a second server instance over e's database, as a second
// replica sharing the database would be.
func newEnvOnDB(t testing.TB, e *env) *app.App {
	t.Helper()
	a, err := app.New(context.Background(), app.Config{
		Issuer: e.srv.URL, DB: e.db, KEK: testKEK(),
		AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		SigningAlg: "ES256", BcryptCost: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func testKEK() []byte {
	kek := make([]byte, 32)
	for i := range kek {
		kek[i] = byte(i + 1)
	}
	return kek
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
	for _, tn := range []string{tenantA, tenantB, "platform"} {
		_, err := acc.CreateTenant(ctx, "test", tn, tn)
		must(err)
	}
	for _, u := range []accounts.CreateUserInput{
		{TenantID: tenantA, Username: "alice", Password: userPass, Role: "analyst"},
		{TenantID: tenantA, Username: "mallory", Password: userPass, Role: "admin"},
		{TenantID: tenantA, Username: "rita", Password: userPass, Role: "read-only"},
		{TenantID: tenantB, Username: "bob", Password: userPass, Role: "manager"},
	} {
		_, err := acc.CreateUser(ctx, "test", u)
		must(err)
	}
	all := []string{"forecasts:read", "simulations:run", "data:export", "observations:write", "users:manage", "billing:read"}
	for _, c := range []accounts.CreateClientInput{
		{TenantID: tenantA, ID: "dash", Grants: []string{"password", "refresh_token"}, Scopes: all, Audiences: []string{"simapi"}, Secret: dashSecrt},
		{TenantID: tenantA, ID: "svc", Grants: []string{"client_credentials"}, Scopes: []string{"forecasts:read", "simulations:run"}, Audiences: []string{"simapi"}, Role: "analyst", Secret: ccSecret},
		{TenantID: tenantB, ID: "dash-b", Grants: []string{"password", "refresh_token"}, Scopes: all, Audiences: []string{"simapi"}, Secret: bSecret},
		{TenantID: "platform", ID: "simapi-rs", Audiences: []string{"simapi"}, Introspect: true, Secret: rsSecret},
		{TenantID: "platform", ID: "other-rs", Audiences: []string{"reports"}, Introspect: true, Secret: rsSecret},
		{TenantID: tenantA, ID: "pw-only", Grants: []string{"password"}, Scopes: all, Audiences: []string{"simapi"}, Secret: dashSecrt},
	} {
		_, _, err := acc.CreateClient(ctx, "test", c)
		must(err)
	}
}

func (e *env) tokenURL() string { return e.srv.URL + "/oauth2/token" }

// passwordConfig is a real x/oauth2 client; the auth style is pinned so a
// failure is not retried with credentials in the body.
func (e *env) passwordConfig(clientID, secret string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, Scopes: scopes,
		Endpoint: oauth2.Endpoint{TokenURL: e.tokenURL(), AuthStyle: oauth2.AuthStyleInHeader},
	}
}

func (e *env) ccConfig(scopes ...string) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: "svc", ClientSecret: ccSecret, TokenURL: e.tokenURL(),
		Scopes: scopes, AuthStyle: oauth2.AuthStyleInHeader}
}

func (e *env) login(user string) *oauth2.Token {
	e.t.Helper()
	tok, err := e.passwordConfig("dash", dashSecrt).PasswordCredentialsToken(context.Background(), user, userPass)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return tok
}

// post sends a form with basic auth and returns status and decoded JSON.
func (e *env) post(path, user, pass string, form url.Values) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			e.t.Fatalf("%s: non-JSON body %q (status %d)", path, body, resp.StatusCode)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func (e *env) introspect(token string) map[string]any {
	e.t.Helper()
	st, m, _ := e.post("/oauth2/introspect", "simapi-rs", rsSecret, url.Values{"token": {token}})
	if st != http.StatusOK {
		e.t.Fatalf("introspect: status %d %v", st, m)
	}
	return m
}

func (e *env) active(token string) bool {
	e.t.Helper()
	return e.introspect(token)["active"] == true
}

// jwtParts decodes a JWT's header and claims without verifying it.
func jwtParts(t testing.TB, tok string) (map[string]any, map[string]any) {
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
