package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	testAudience     = "simapi"
	testClientID     = "rs:simapi"
	testClientSecret = "s3cr3t p@ss&word"
)

// fakeClock is an injectable clock for WithNow.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

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

// testKey is a signing key and its public JWK.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func genKeys(t testing.TB) map[string]*testKey {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*testKey{
		"ES256": {kid: "ec-1", alg: "ES256", priv: ec},
		"RS256": {kid: "rsa-1", alg: "RS256", priv: rk},
		"EdDSA": {kid: "ed-1", alg: "EdDSA", priv: ed},
	}
}

func (k *testKey) publicJWK(t testing.TB) jwk.Key {
	t.Helper()
	j, err := jwk.FromRaw(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	_ = j.Set(jwk.KeyIDKey, k.kid)
	_ = j.Set(jwk.AlgorithmKey, jwa.SignatureAlgorithm(k.alg))
	_ = j.Set(jwk.KeyUsageKey, "sig")
	return j
}

// fakeAS is an authorization server: metadata, JWKS and introspection.
type fakeAS struct {
	t          testing.TB
	srv        *httptest.Server
	issuer     string
	mu         sync.Mutex
	keys       []*testKey
	jwksHits   atomic.Int64
	metaHits   atomic.Int64
	introHits  atomic.Int64
	down       atomic.Bool // everything answers 503
	introDown  atomic.Bool // introspection answers 500
	introBlock chan struct{}
	revoked    sync.Map // jti -> true
	introJTI   atomic.Value
	authFail   atomic.Bool
}

func newFakeAS(t testing.TB, keys ...*testKey) *fakeAS {
	t.Helper()
	as := &fakeAS{t: t, keys: keys}
	as.srv = httptest.NewServer(as)
	as.issuer = as.srv.URL
	t.Cleanup(as.srv.Close)
	return as
}

func (as *fakeAS) setKeys(keys ...*testKey) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.keys = keys
}

func (as *fakeAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if as.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	switch r.URL.Path {
	case wellKnownPath:
		as.metaHits.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer":                 as.issuer,
			"jwks_uri":               as.issuer + "/jwks",
			"introspection_endpoint": as.issuer + "/introspect",
		})
	case "/jwks":
		as.jwksHits.Add(1)
		as.mu.Lock()
		set := jwk.NewSet()
		for _, k := range as.keys {
			_ = set.AddKey(k.publicJWK(as.t))
		}
		as.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("ETag", `"v1"`)
		_ = json.NewEncoder(w).Encode(set)
	case "/introspect":
		as.introHits.Add(1)
		if as.introBlock != nil {
			<-as.introBlock
		}
		if as.introDown.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		id, secret, ok := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if as.authFail.Load() || !ok || id != testClientID || secret != testClientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		tok := r.PostForm.Get("token")
		jti := jtiOf(tok)
		if _, rev := as.revoked.Load(jti); rev || jti == "" {
			_, _ = io.WriteString(w, `{"active":false}`)
			return
		}
		if o, ok := as.introJTI.Load().(string); ok && o != "" {
			jti = o
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "jti": jti, "exp": 0})
	default:
		http.NotFound(w, r)
	}
}

// jtiOf reads the jti of a compact token without verifying it.
func jtiOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(b, &c)
	return c.JTI
}

// goodClaims returns a valid claim set at clock time now.
func goodClaims(issuer string, now time.Time) map[string]any {
	return map[string]any{
		"iss":       issuer,
		"sub":       "user-42",
		"aud":       []string{testAudience, "other"},
		"exp":       now.Add(10 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"jti":       "jti-" + randString(8),
		"client_id": "web",
		"scope":     "forecasts:read simulations:run",
		"tenant_id": "tenant-a",
		"role":      "analyst",
	}
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// sign signs claims with k using jwx, with the given extra header fields
// (typ at+jwt and kid by default; a nil value deletes a field).
func sign(t testing.TB, k *testKey, c map[string]any, hdr map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	_ = h.Set("typ", "at+jwt")
	_ = h.Set("kid", k.kid)
	for name, val := range hdr {
		if val == nil {
			_ = h.Remove(name)
			continue
		}
		if err := h.Set(name, val); err != nil {
			t.Fatalf("set header %s: %v", name, err)
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(k.alg), k.priv, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// rawToken assembles a token from raw header and payload JSON and signature bytes.
func rawToken(header, payload string, sig []byte) string {
	e := base64.RawURLEncoding
	return e.EncodeToString([]byte(header)) + "." + e.EncodeToString([]byte(payload)) + "." + e.EncodeToString(sig)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestVerifier builds a Verifier against as and waits until it is ready.
func newTestVerifier(t testing.TB, as *fakeAS, clk *fakeClock, opts ...Option) *Verifier {
	t.Helper()
	base := []Option{WithHTTPClient(as.srv.Client()), WithLogger(discardLogger()), WithNow(clk.Now)}
	v, err := New(context.Background(), as.issuer, testAudience, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	waitReady(t, v)
	return v
}

// waitReady polls Ready; the deadline is a hang guard, not a measurement.
func waitReady(t testing.TB, v *Verifier) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("verifier never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func asError(t testing.TB, err error) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v (%T) is not *Error", err, err)
	}
	return e
}

// httptestServerOn starts an httptest server on a fixed address.
func httptestServerOn(t testing.TB, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was just released; retry briefly if it lingers
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
