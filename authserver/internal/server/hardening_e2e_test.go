package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/epitwin/epitwin/authserver/internal/server"
)

// TestMalformedRequests: bad input always gets an RFC 6749 JSON error,
// never a 500 or a token.
func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	basic := func(r *http.Request) { r.SetBasicAuth("dash", dashSecrt) }
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name, method, path, ctype, body string
		auth                            func(*http.Request)
		status                          int
		code                            string
	}{
		{"fail-json-body", "POST", "/oauth2/token", "application/json", `{"grant_type":"client_credentials"}`, basic, 400, "invalid_request"},
		{"fail-no-content-type", "POST", "/oauth2/token", "", "grant_type=client_credentials", basic, 400, "invalid_request"},
		{"fail-multipart", "POST", "/oauth2/token", "multipart/form-data; boundary=x", "--x--", basic, 400, "invalid_request"},
		{"fail-empty-body", "POST", "/oauth2/token", form, "", basic, 400, "invalid_request"},
		{"fail-no-grant", "POST", "/oauth2/token", form, "scope=forecasts:read", basic, 400, "invalid_request"},
		{"fail-unknown-grant", "POST", "/oauth2/token", form, "grant_type=authorization_code&code=x", basic, 400, "unsupported_grant_type"},
		{"fail-implicit-grant", "POST", "/oauth2/token", form, "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer", basic, 400, "unsupported_grant_type"},
		{"fail-repeated-param", "POST", "/oauth2/token", form, "grant_type=password&username=alice&username=bob&password=x", basic, 400, "invalid_request"},
		{"fail-bad-percent", "POST", "/oauth2/token", form, "grant_type=%zz", basic, 400, "invalid_request"},
		{"fail-huge-body", "POST", "/oauth2/token", form, "grant_type=password&username=" + strings.Repeat("a", 100<<10), basic, 413, "invalid_request"},
		{"fail-password-missing", "POST", "/oauth2/token", form, "grant_type=password&username=alice", basic, 400, "invalid_request"},
		{"fail-refresh-garbage", "POST", "/oauth2/token", form, "grant_type=refresh_token&refresh_token=garbage", basic, 400, "invalid_grant"},
		{"fail-refresh-empty", "POST", "/oauth2/token", form, "grant_type=refresh_token&refresh_token=", basic, 400, "invalid_grant"},
		{"fail-unknown-scope", "POST", "/oauth2/token", form, "grant_type=password&username=alice&password=" + userPass + "&scope=openid", basic, 400, "invalid_scope"},
		{"fail-unknown-audience", "POST", "/oauth2/token", form, "grant_type=password&username=alice&password=" + userPass + "&audience=evil", basic, 400, "invalid_request"},
		{"fail-prefix-audience", "POST", "/oauth2/token", form, "grant_type=password&username=alice&password=" + userPass + "&audience=simapi-evil", basic, 400, "invalid_request"},
		{"fail-no-client-auth", "POST", "/oauth2/token", form, "grant_type=client_credentials", nil, 401, "invalid_client"},
		{"fail-client-assertion", "POST", "/oauth2/token", form, "grant_type=client_credentials&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=x.y.z", nil, 400, "invalid_request"},
		{"fail-secret-in-query", "POST", "/oauth2/token?client_secret=x", form, "grant_type=client_credentials", basic, 400, "invalid_request"},
		{"fail-introspect-json", "POST", "/oauth2/introspect", "application/json", `{}`, basic, 400, "invalid_request"},
		{"fail-revoke-json", "POST", "/oauth2/revoke", "application/json", `{}`, basic, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.auth != nil {
				tc.auth(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			body, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("not JSON: %q", body)
			}
			if resp.StatusCode != tc.status || m["error"] != tc.code {
				t.Errorf("got %d %v, want %d %s", resp.StatusCode, m, tc.status, tc.code)
			}
			if m["access_token"] != nil {
				t.Error("token issued")
			}
			if tc.path == "/oauth2/token" && resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("Cache-Control: no-store missing")
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	t.Run("fail-get-token-endpoint", func(t *testing.T) {
		resp, err := http.Get(e.srv.URL + "/oauth2/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("fail-unknown-path", func(t *testing.T) {
		resp, err := http.Get(e.srv.URL + "/nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}

func TestClientSecretPost(t *testing.T) {
	e := newEnv(t)
	st, m, _ := e.post("/oauth2/token", "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {ccSecret}})
	if st != 200 || m["access_token"] == nil {
		t.Fatalf("client_secret_post: %d %v", st, m)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
	e.login("alice")
	e.post("/oauth2/token", "dash", "bad-secret", url.Values{"grant_type": {"client_credentials"}})
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`authserver_tokens_issued_total{grant_type="password"} 1`,
		`authserver_token_failures_total{endpoint="token",error="invalid_client"} 1`,
		`authserver_http_request_duration_seconds_bucket{route="POST /oauth2/token"`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// FuzzTokenEndpoint throws arbitrary bodies and credentials at the token
// endpoint's form handling: the answer is never a 5xx and never a token
// for credentials that are not the seeded ones.
func FuzzTokenEndpoint(f *testing.F) {
	e := newEnv(f)
	for _, seed := range []string{
		"grant_type=client_credentials",
		"grant_type=password&username=alice&password=x",
		"grant_type=refresh_token&refresh_token=abc.def",
		"grant_type=password&username=%00&password=%ff%fe",
		"grant_type=client_credentials&scope=forecasts:read+forecasts:read&audience=simapi&audience=x",
		"a=b&a=c", "%", "grant_type", "=&=&=", "grant_type=client_credentials&client_id=svc&client_secret=",
	} {
		f.Add(seed, "svc", "wrong")
	}
	f.Fuzz(func(t *testing.T, body, user, pass string) {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		rec := httptest.NewRecorder()
		e.app.Handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
		if rec.Code == 200 {
			t.Fatalf("token issued for fuzzed credentials %q/%q body %q", user, pass, body)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["error"] == nil {
			t.Fatalf("not an RFC 6749 error: %q", rec.Body.String())
		}
	})
}

// TestClientAddressBehindProxy: X-Forwarded-For names the client in the
// audit log (and the throttle) only when the peer is a trusted proxy.
func TestClientAddressBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted string
		want    string
	}{
		{"ok-untrusted-peer", "", "127.0.0.1"},
		{"ok-trusted-loopback-proxy", "127.0.0.0/8", "198.51.100.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxies, err := server.ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, func(o *envOptions) { o.proxies = proxies })
			req, _ := http.NewRequest(http.MethodPost, e.tokenURL(), strings.NewReader("grant_type=password&username=alice&password=wrong-password-1"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", "198.51.100.9")
			req.SetBasicAuth("dash", dashSecrt)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			evs, err := e.app.Store.ListAudit(context.Background(), storageFilter("login.failed"))
			if err != nil || len(evs) != 1 || evs[0].IP != tc.want {
				t.Fatalf("login.failed events = %+v (%v), want IP %s", evs, err, tc.want)
			}
		})
	}
}
