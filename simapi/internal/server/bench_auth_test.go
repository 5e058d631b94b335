package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/epitwin/epitwin/pkg/verify"
)

// testIssuer is a minimal authorization server for the benchmark: RFC 8414
// metadata, a JWKS with one ES256 key, and introspection that says active.
type testIssuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func newTestIssuer(b *testing.B) *testIssuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ti := &testIssuer{key: key}
	mux := http.NewServeMux()
	ti.srv = httptest.NewServer(mux)
	b.Cleanup(ti.srv.Close)
	enc := base64.RawURLEncoding
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks", "introspection_endpoint": ti.srv.URL + "/introspect",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		pub, _ := key.PublicKey.ECDH()
		raw := pub.Bytes() // 0x04 || X || Y
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig",
			"x": enc.EncodeToString(raw[1:33]), "y": enc.EncodeToString(raw[33:]),
		}}})
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "jti": "bench-jti"})
	})
	return ti
}

// mint signs an RFC 9068 access token for tenant-a's admin.
func (ti *testIssuer) mint(b *testing.B) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": "bench"})
	now := time.Now()
	c, _ := json.Marshal(map[string]any{
		"iss": ti.srv.URL, "sub": "alice", "aud": []string{"simapi"}, "exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(), "nbf": now.Unix(), "jti": "bench-jti", "client_id": "dash",
		"scope": "forecasts:read", "tenant_id": "tenant-a", "role": "admin",
	})
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, ti.key, d[:])
	if err != nil {
		b.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig)
}

// BenchmarkGetForecastAuthenticated is BenchmarkGetForecast behind the real
// verifier (offline signature check once, then the remembered token, plus
// the cached revocation check), so the two give the cost of auth per
// request as a ratio measured in the same run.
func BenchmarkGetForecastAuthenticated(b *testing.B) {
	ti := newTestIssuer(b)
	v, err := verify.New(context.Background(), ti.srv.URL, "simapi",
		verify.WithIntrospection("simapi-rs", "bench-secret-bench-secret-bench-secret"),
		verify.WithHTTPClient(ti.srv.Client()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	for deadline := time.Now().Add(10 * time.Second); !v.Ready(); {
		if time.Now().After(deadline) {
			b.Fatal("verifier not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	benchGetForecast(b, v.Middleware, ti.mint(b))
}
