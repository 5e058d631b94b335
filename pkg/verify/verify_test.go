package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// env is a running authorization server, keys, clock and verifier.
type env struct {
	as   *fakeAS
	keys map[string]*testKey
	clk  *fakeClock
	v    *Verifier
}

func newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	keys := genKeys(t)
	as := newFakeAS(t, keys["ES256"], keys["RS256"], keys["EdDSA"])
	clk := newFakeClock()
	v := newTestVerifier(t, as, clk, opts...)
	return &env{as: as, keys: keys, clk: clk, v: v}
}

func (e *env) claims() map[string]any { return goodClaims(e.as.issuer, e.clk.Now()) }

func without(c map[string]any, name string) map[string]any { delete(c, name); return c }

func with(c map[string]any, name string, val any) map[string]any { c[name] = val; return c }

func TestVerify(t *testing.T) {
	e := newEnv(t)
	es := e.keys["ES256"]
	now := e.clk.Now()

	// An attacker's own key, its JWKS served at a URL the attacker controls.
	evil, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evilKey := &testKey{kid: "evil", alg: "ES256", priv: evil}
	evilAS := newFakeAS(t, evilKey)
	evilJWK := evilKey.publicJWK(t)

	// HS256 "signed" with the verifier's public key as the HMAC secret.
	der, _ := x509.MarshalPKIXPublicKey(es.priv.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pubJWKJSON, _ := json.Marshal(es.publicJWK(t))
	hmacToken := func(secret []byte) string {
		h := jws.NewHeaders()
		_ = h.Set("typ", "at+jwt")
		_ = h.Set("kid", es.kid)
		payload, _ := json.Marshal(e.claims())
		out, err := jws.Sign(payload, jws.WithKey(jwa.HS256, secret, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	good := sign(t, es, e.claims(), nil)
	parts := strings.Split(good, ".")
	payloadJSON, _ := json.Marshal(e.claims())
	noneTok := func(alg string) string {
		return rawToken(`{"alg":"`+alg+`","typ":"at+jwt","kid":"ec-1"}`, string(payloadJSON), []byte("sig"))
	}
	swapSig := func(tok string, sig []byte) string {
		p := strings.Split(tok, ".")
		return p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	headerOnly := func(hdr string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + parts[1] + "." + parts[2]
	}

	tests := []struct {
		name     string
		token    string
		wantDesc string // "" means the token must verify
	}{
		{"ok", good, ""},
		{"ok-rs256", sign(t, e.keys["RS256"], e.claims(), nil), ""},
		{"ok-eddsa", sign(t, e.keys["EdDSA"], e.claims(), nil), ""},
		{"ok-aud-string", sign(t, es, with(e.claims(), "aud", testAudience), nil), ""},
		{"ok-typ-application-at+jwt", sign(t, es, e.claims(), map[string]any{"typ": "application/AT+JWT"}), ""},
		{"ok-no-scope", sign(t, es, without(e.claims(), "scope"), nil), ""},
		{"ok-no-nbf", sign(t, es, without(e.claims(), "nbf"), nil), ""},
		{"ok-expired-within-leeway", sign(t, es, with(e.claims(), "exp", now.Add(-30*time.Second).Unix()), nil), ""},
		{"ok-iat-future-within-leeway", sign(t, es, with(e.claims(), "iat", now.Add(30*time.Second).Unix()), nil), ""},
		{"ok-jku-ignored-kid-known", sign(t, es, e.claims(), map[string]any{"jku": evilAS.issuer + "/jwks"}), ""},

		{"fail-expired", sign(t, es, with(e.claims(), "exp", now.Add(-61*time.Second).Unix()), nil), "token expired"},
		{"fail-alg-none", noneTok("none"), "unsigned token"},
		{"fail-alg-None", noneTok("None"), "unsigned token"},
		{"fail-alg-NONE", noneTok("NONE"), "unsigned token"},
		{"fail-alg-nOnE", noneTok("nOnE"), "unsigned token"},
		{"fail-alg-none-empty-sig", strings.TrimSuffix(noneTok("none"), "c2ln"), "empty token segment"},
		{"fail-hs256-public-key-pem", hmacToken(pubPEM), "algorithm not allowed"},
		{"fail-hs256-public-key-jwk-json", hmacToken(pubJWKJSON), "algorithm not allowed"},
		{"fail-alg-not-allowlisted-es384", rawToken(`{"alg":"ES384","typ":"at+jwt","kid":"ec-1"}`, string(payloadJSON), []byte("sig")), "algorithm not allowed"},
		{"fail-alg-key-mismatch", sign(t, &testKey{kid: "rsa-1", alg: "ES256", priv: es.priv}, e.claims(), nil), "algorithm does not match key"},
		{"fail-unknown-kid", sign(t, &testKey{kid: "nope", alg: "ES256", priv: es.priv}, e.claims(), nil), "unknown key"},
		{"fail-jku-header-attacker-kid", sign(t, evilKey, e.claims(), map[string]any{"jku": evilAS.issuer + "/jwks"}), "unknown key"},
		{"fail-jwk-header-attacker-kid", sign(t, evilKey, e.claims(), map[string]any{"jwk": evilJWK}), "unknown key"},
		{"fail-jwk-header-real-kid", sign(t, &testKey{kid: "ec-1", alg: "ES256", priv: evil}, e.claims(), map[string]any{"jwk": evilJWK}), "bad signature"},
		{"fail-x5c-ignored", sign(t, &testKey{kid: "ec-1", alg: "ES256", priv: evil}, e.claims(), map[string]any{"x5u": evilAS.issuer + "/cert"}), "bad signature"},
		{"fail-ecdsa-zero-signature", swapSig(good, make([]byte, 64)), "bad signature"},
		{"fail-ecdsa-short-signature", swapSig(good, []byte{1, 2, 3}), "bad signature"},
		{"fail-tampered-payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payloadJSON), "analyst", "admin", 1))) + "." + parts[2], "bad signature"},
		{"fail-nbf-future", sign(t, es, with(e.claims(), "nbf", now.Add(2*time.Minute).Unix()), nil), "token not yet valid"},
		{"fail-iat-future", sign(t, es, with(e.claims(), "iat", now.Add(2*time.Minute).Unix()), nil), "token issued in the future"},
		{"fail-wrong-iss", sign(t, es, with(e.claims(), "iss", e.as.issuer+"/evil"), nil), "wrong issuer"},
		{"fail-wrong-aud", sign(t, es, with(e.claims(), "aud", []string{"authserver"}), nil), "wrong audience"},
		{"fail-wrong-typ", sign(t, es, e.claims(), map[string]any{"typ": "JWT"}), "wrong token type"},
		{"fail-missing-typ", sign(t, es, e.claims(), map[string]any{"typ": nil}), "wrong token type"},
		{"fail-missing-kid", sign(t, es, e.claims(), map[string]any{"kid": nil}), "missing kid"},
		{"fail-missing-sub", sign(t, es, without(e.claims(), "sub"), nil), "missing claim sub"},
		{"fail-missing-jti", sign(t, es, without(e.claims(), "jti"), nil), "missing claim jti"},
		{"fail-missing-tenant_id", sign(t, es, without(e.claims(), "tenant_id"), nil), "missing claim tenant_id"},
		{"fail-missing-role", sign(t, es, without(e.claims(), "role"), nil), "missing claim role"},
		{"fail-missing-client_id", sign(t, es, without(e.claims(), "client_id"), nil), "missing claim client_id"},
		{"fail-missing-exp", sign(t, es, without(e.claims(), "exp"), nil), "missing claim exp"},
		{"fail-missing-iat", sign(t, es, without(e.claims(), "iat"), nil), "missing claim iat"},
		{"fail-missing-iss", sign(t, es, without(e.claims(), "iss"), nil), "missing claim iss"},
		{"fail-missing-aud", sign(t, es, without(e.claims(), "aud"), nil), "missing claim aud"},
		{"fail-empty-sub", sign(t, es, with(e.claims(), "sub", ""), nil), "empty claim sub"},
		{"fail-tenant_id-number", sign(t, es, with(e.claims(), "tenant_id", 7), nil), "claim tenant_id is not a string"},
		{"fail-role-null", sign(t, es, with(e.claims(), "role", nil), nil), "claim role is not a string"},
		{"fail-scope-array", sign(t, es, with(e.claims(), "scope", []string{"forecasts:read"}), nil), "claim scope is not a string"},
		{"fail-aud-number", sign(t, es, with(e.claims(), "aud", 5), nil), "claim aud is not a string"},
		{"fail-aud-mixed-array", sign(t, es, with(e.claims(), "aud", []any{testAudience, 5}), nil), "claim aud is not a string"},
		{"fail-exp-string", sign(t, es, with(e.claims(), "exp", "9999999999"), nil), "claim exp is not a number"},
		{"fail-oversized", sign(t, es, with(e.claims(), "pad", strings.Repeat("x", 9000)), nil), "token too large"},
		{"fail-empty", "", "missing token"},
		{"fail-2-segments", parts[0] + "." + parts[1], "three segments"},
		{"fail-4-segments", good + "." + parts[2], "three segments"},
		{"fail-padded-base64", parts[0] + "=." + parts[1] + "." + parts[2], "padded base64"},
		{"fail-plus-in-segment", parts[0] + "." + parts[1] + "." + "+" + parts[2][1:], "non-url-safe base64"},
		{"fail-slash-in-segment", parts[0] + "." + "/" + parts[1][1:] + "." + parts[2], "non-url-safe base64"},
		{"fail-space-in-segment", parts[0] + " ." + parts[1] + "." + parts[2], "invalid character"},
		{"fail-noncanonical-base64", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + nudge(parts[2][len(parts[2])-1]), "invalid base64"},
		{"fail-crit-header", sign(t, es, e.claims(), map[string]any{"crit": []string{"exp"}}), "crit header not supported"},
		{"fail-b64-header", headerOnly(`{"alg":"ES256","typ":"at+jwt","kid":"ec-1","b64":false}`), "b64 header not supported"},
		{"fail-cty-header", sign(t, es, e.claims(), map[string]any{"cty": "JWT"}), "nested token not supported"},
		{"fail-garbled-header-json", headerOnly(`{"alg":"ES256",`), "header is not a JSON object"},
		{"fail-header-array", headerOnly(`["alg","ES256"]`), "header is not a JSON object"},
		{"fail-header-duplicate-alg", headerOnly(`{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"ec-1"}`), "header is not a JSON object"},
		{"fail-header-trailing-data", headerOnly(`{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}{}`), "header is not a JSON object"},
		{"fail-alg-number", headerOnly(`{"alg":256,"typ":"at+jwt","kid":"ec-1"}`), "missing alg"},
		{"fail-garbled-payload-json", signRaw(t, es, `{"iss":`), "claims are not a JSON object"},
		{"fail-payload-not-object", signRaw(t, es, `"just a string"`), "claims are not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := e.v.Verify(context.Background(), tt.token)
			if tt.wantDesc == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if tok.Subject != "user-42" || tok.TenantID != "tenant-a" || tok.KeyID == "" || !tok.HasAudience(testAudience) {
					t.Fatalf("claims = %+v", tok)
				}
				return
			}
			if tok != nil {
				t.Fatalf("got token %+v, want error", tok)
			}
			ve := asError(t, err)
			if ve.Status != http.StatusUnauthorized || ve.Code != CodeInvalidToken {
				t.Fatalf("got %d %s, want 401 invalid_token", ve.Status, ve.Code)
			}
			if !strings.Contains(ve.Description, tt.wantDesc) {
				t.Fatalf("description %q, want it to contain %q", ve.Description, tt.wantDesc)
			}
			if strings.Contains(ve.Error(), tt.token[:min(len(tt.token), 20)]) && tt.token != "" {
				t.Fatalf("error message contains the token")
			}
		})
	}
	if n := evilAS.jwksHits.Load(); n != 0 {
		t.Errorf("attacker's jku was fetched %d times", n)
	}
}

// nudge returns a different base64url character with the same top bits
// where possible, making the last character's unused bits non-zero.
func nudge(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

// signRaw signs an arbitrary payload string (for malformed claim sets).
func signRaw(t testing.TB, k *testKey, payload string) string {
	t.Helper()
	h := jws.NewHeaders()
	_ = h.Set("typ", "at+jwt")
	_ = h.Set("kid", k.kid)
	out, err := jws.Sign([]byte(payload), jws.WithKey(jwa.SignatureAlgorithm(k.alg), k.priv, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestTokenCache(t *testing.T) {
	e := newEnv(t)
	c := e.claims()
	c["exp"] = e.clk.Now().Add(time.Minute).Unix()
	tok := sign(t, e.keys["ES256"], c, nil)
	first, err := e.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("second verification did not come from the cache")
	}
	// Past exp + leeway the cached entry must not be used.
	e.clk.Advance(time.Minute + 61*time.Second)
	_, err = e.v.Verify(context.Background(), tok)
	if ve := asError(t, err); ve.Description != "token expired" {
		t.Fatalf("got %v, want token expired", err)
	}
	if e.v.tokens.Len() != 0 {
		t.Error("expired token left in cache")
	}
}

func TestTokenCacheBounded(t *testing.T) {
	e := newEnv(t, WithCacheSize(3))
	for range 10 {
		if _, err := e.v.Verify(context.Background(), sign(t, e.keys["EdDSA"], e.claims(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.tokens.Len(); n != 3 {
		t.Fatalf("cache holds %d, want 3", n)
	}
}

func TestUnknownKIDRefetchRateLimited(t *testing.T) {
	e := newEnv(t)
	e.clk.Advance(11 * time.Second) // past the startup fetch's rate limit window
	forge := func() string {
		return sign(t, &testKey{kid: "forged-" + randString(6), alg: "ES256", priv: e.keys["ES256"].priv}, e.claims(), nil)
	}
	tokens := make([]string, 100)
	for i := range tokens {
		tokens[i] = forge()
	}
	flood := func() {
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Go(func() {
				_, err := e.v.Verify(context.Background(), tok)
				if ve := asError(t, err); ve.Description != "unknown key" {
					t.Errorf("got %v, want unknown key", err)
				}
			})
		}
		wg.Wait()
	}
	before := e.as.jwksHits.Load()
	flood()
	if got := e.as.jwksHits.Load() - before; got != 1 {
		t.Fatalf("first flood: %d JWKS fetches, want exactly 1", got)
	}
	flood()
	if got := e.as.jwksHits.Load() - before; got != 1 {
		t.Fatalf("second flood within the interval: %d JWKS fetches in total, want 1", got)
	}
	e.clk.Advance(11 * time.Second)
	flood()
	if got := e.as.jwksHits.Load() - before; got != 2 {
		t.Fatalf("flood after the interval: %d JWKS fetches in total, want 2", got)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	next := &testKey{kid: "ec-2", alg: "ES256", priv: ec2}
	e.as.setKeys(e.keys["ES256"], next)
	tok := sign(t, next, e.claims(), nil)

	// Within the rate-limit window of the startup fetch the new kid is
	// still unknown; once the window passes one refetch picks it up.
	if _, err := e.v.Verify(context.Background(), tok); err == nil {
		t.Fatal("new kid accepted without a refetch")
	}
	e.clk.Advance(11 * time.Second)
	before := e.as.jwksHits.Load()
	if _, err := e.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := e.as.jwksHits.Load() - before; got != 1 {
		t.Fatalf("%d JWKS fetches, want 1", got)
	}
	// The old key keeps working while it is still published.
	if _, err := e.v.Verify(context.Background(), sign(t, e.keys["ES256"], e.claims(), nil)); err != nil {
		t.Fatal(err)
	}
}

func TestAuthorizationServerDownAtStart(t *testing.T) {
	keys := genKeys(t)
	addr := freeAddr(t)
	clk := newFakeClock()
	issuer := "http://" + addr
	v, err := New(context.Background(), issuer, testAudience, WithLogger(discardLogger()), WithNow(clk.Now))
	if err != nil {
		t.Fatalf("New must not fail when the authorization server is down: %v", err)
	}
	defer v.Close()
	if v.Ready() {
		t.Fatal("ready without keys")
	}
	tok := sign(t, keys["ES256"], goodClaims(issuer, clk.Now()), nil)
	_, err = v.Verify(context.Background(), tok)
	ve := asError(t, err)
	if ve.Status != http.StatusServiceUnavailable || ve.Code != CodeTemporarilyUnavailable || ve.RetryAfter <= 0 {
		t.Fatalf("got %+v, want 503 temporarily_unavailable with Retry-After", ve)
	}
	// Garbage is still a 401, keys or not.
	if _, err := v.Verify(context.Background(), "a.b"); asError(t, err).Status != http.StatusUnauthorized {
		t.Fatalf("got %v for garbage, want 401", err)
	}

	// Now the authorization server comes up on that address.
	as := &fakeAS{t: t, keys: []*testKey{keys["ES256"]}, issuer: issuer}
	as.srv = httptestServerOn(t, addr, as)
	waitReady(t, v)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after start-up: %v", err)
	}
}

func TestMetadataIssuerMismatch(t *testing.T) {
	keys := genKeys(t)
	as := newFakeAS(t, keys["ES256"])
	as.issuer = "https://impostor.example"
	v, err := New(context.Background(), as.srv.URL, testAudience, WithHTTPClient(as.srv.Client()), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Ready() {
		t.Fatal("ready despite an issuer mismatch in the metadata")
	}
	if n := as.jwksHits.Load(); n != 0 {
		t.Fatalf("JWKS fetched %d times from a mismatched issuer", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		issuer string
		aud    string
		opts   []Option
	}{
		{"fail-alg-none", "https://as.example", "api", []Option{WithAllowedAlgs("none")}},
		{"fail-alg-hs256", "https://as.example", "api", []Option{WithAllowedAlgs("ES256", "HS256")}},
		{"fail-no-algs", "https://as.example", "api", []Option{WithAllowedAlgs()}},
		{"fail-issuer-not-url", "as.example", "api", nil},
		{"fail-empty-audience", "https://as.example", "", nil},
		{"fail-empty-introspection-client", "https://as.example", "api", []Option{WithIntrospection("", "x")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(ctx, tt.issuer, tt.aud, append(tt.opts, WithLogger(discardLogger()))...)
			if err == nil {
				v.Close()
				t.Fatal("New accepted a bad configuration")
			}
		})
	}
}

func TestOptionsClamp(t *testing.T) {
	cfg := defaultConfig()
	for _, o := range []Option{WithLeeway(10 * time.Minute), WithJWKSRefreshInterval(time.Millisecond), WithMaxTokenSize(-1)} {
		o(&cfg)
	}
	if cfg.leeway != maxLeeway || cfg.jwksRefresh != minJWKSRefresh || cfg.maxTokenSize != defaultMaxTokenSize {
		t.Fatalf("options not clamped: %+v", cfg)
	}
}

func TestCloseStopsBackgroundRetries(t *testing.T) {
	addr := freeAddr(t)
	v, err := New(context.Background(), "http://"+addr, testAudience, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close() // idempotent
}

func TestJWKSKeyFiltering(t *testing.T) {
	keys := genKeys(t)
	set := jwk.NewSet()
	enc := keys["ES256"].publicJWK(t)
	_ = enc.Set(jwk.KeyUsageKey, "enc")
	_ = set.AddKey(enc)
	if _, err := buildKeySet(set); err == nil {
		t.Fatal("an encryption-only key was accepted for signatures")
	}
	priv, _ := jwk.FromRaw(keys["EdDSA"].priv)
	_ = priv.Set(jwk.KeyIDKey, "ed-priv")
	set2 := jwk.NewSet()
	_ = set2.AddKey(priv)
	ks, err := buildKeySet(set2)
	if err != nil {
		t.Fatal(err)
	}
	if k, found := ks.lookup("ed-priv", "EdDSA"); !found || k == nil {
		t.Fatal("private JWK not reduced to a usable public key")
	}
	if k, _ := ks.lookup("ed-priv", "ES256"); k != nil {
		t.Fatal("Ed25519 key accepted for ES256")
	}
}
