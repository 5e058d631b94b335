package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/epitwin/epitwin/pkg/rbac"
)

func TestMiddleware(t *testing.T) {
	e := newEnv(t)
	good := sign(t, e.keys["ES256"], e.claims(), nil)
	expired := sign(t, e.keys["ES256"], with(e.claims(), "exp", e.clk.Now().Add(-time10m()).Unix()), nil)
	var seen string
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := FromContext(r.Context())
		if !ok {
			t.Error("no token in context")
			return
		}
		seen = tok.Subject
	}))
	tests := []struct {
		name       string
		header     []string
		wantStatus int
		wantWWW    string
		wantError  string
	}{
		{"ok", []string{"Bearer " + good}, 200, "", ""},
		{"ok-lowercase-scheme", []string{"bearer " + good}, 200, "", ""},
		{"fail-no-header", nil, 401, `Bearer realm="simapi"`, ""},
		{"fail-basic-scheme", []string{"Basic dXNlcjpwYXNz"}, 401, `Bearer realm="simapi"`, ""},
		{"fail-bearer-without-token", []string{"Bearer"}, 400, `Bearer realm="simapi", error="invalid_request", error_description="missing bearer token"`, "invalid_request"},
		{"fail-bearer-two-tokens", []string{"Bearer a b"}, 400, "", "invalid_request"},
		{"fail-bearer-bad-chars", []string{"Bearer a,b"}, 400, "", "invalid_request"},
		{"fail-two-headers", []string{"Bearer " + good, "Bearer " + good}, 400, "", "invalid_request"},
		{"fail-expired", []string{"Bearer " + expired}, 401, `Bearer realm="simapi", error="invalid_token", error_description="token expired"`, "invalid_token"},
		{"fail-garbage", []string{"Bearer abc"}, 401, "", "invalid_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = ""
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			for _, v := range tt.header {
				r.Header.Add("Authorization", v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus == 200 {
				if seen != "user-42" {
					t.Fatal("handler did not see the token")
				}
				return
			}
			www := w.Header().Get("WWW-Authenticate")
			if tt.wantWWW != "" && www != tt.wantWWW {
				t.Fatalf("WWW-Authenticate %q, want %q", www, tt.wantWWW)
			}
			if tt.wantError == "" && strings.Contains(www, "error=") {
				t.Fatalf("challenge %q must not carry an error code (RFC 6750 §3.1)", www)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body["error"] != tt.wantError {
				t.Fatalf("body error %q, want %q", body["error"], tt.wantError)
			}
			if strings.Contains(w.Body.String(), good) {
				t.Fatal("response echoes the token")
			}
		})
	}
}

func time10m() time.Duration { return 10 * time.Minute }

func TestMiddlewareNotReady(t *testing.T) {
	v, err := New(context.Background(), "http://"+freeAddr(t), testAudience, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	keys := genKeys(t)
	tok := sign(t, keys["ES256"], goodClaims("http://x", newFakeClock().Now()), nil)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	v.Middleware(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d Retry-After=%q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), CodeTemporarilyUnavailable) {
		t.Fatalf("body %s", w.Body)
	}
}

func TestRequire(t *testing.T) {
	e := newEnv(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name       string
		role       string
		scope      string
		perm       rbac.Permission
		noToken    bool
		wantStatus int
		wantDesc   string
	}{
		{"ok", "analyst", "forecasts:read simulations:run", rbac.RunSimulations, false, 204, ""},
		{"fail-missing-scope", "analyst", "forecasts:read", rbac.RunSimulations, false, 403, "missing permission simulations:run"},
		{"fail-role-denied-with-scope", "read-only", "forecasts:read users:manage", rbac.ManageUsers, false, 403, "role read-only does not grant permission users:manage"},
		{"fail-unknown-role", "root", "users:manage", rbac.ManageUsers, false, 403, "does not grant"},
		{"fail-no-token", "", "", rbac.ViewForecasts, true, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.claims()
			c["role"], c["scope"] = tt.role, tt.scope
			h := e.v.Middleware(Require(tt.perm)(ok))
			if tt.noToken {
				h = Require(tt.perm)(ok)
			}
			r := httptest.NewRequest(http.MethodPost, "/sim", nil)
			if !tt.noToken {
				r.Header.Set("Authorization", "Bearer "+sign(t, e.keys["ES256"], c, nil))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != 403 {
				return
			}
			wantWWW := `Bearer error="insufficient_scope", error_description="` + tt.wantDesc
			if www := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(www, `Bearer error="insufficient_scope"`) ||
				!strings.HasSuffix(www, `scope="`+string(tt.perm)+`"`) || (!strings.Contains(www, tt.wantDesc)) {
				t.Fatalf("WWW-Authenticate %q, want like %q ... scope=%q", www, wantWWW, tt.perm)
			}
			var body map[string]string
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if body["error"] != CodeInsufficientScope || body["scope"] != string(tt.perm) || !strings.Contains(body["error_description"], string(tt.perm)) {
				t.Fatalf("body %v does not name the missing permission", body)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, errors.New("boom"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "boom") {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	WriteError(w, &Error{Status: 401, Code: CodeInvalidToken, Description: "bad \"quote\"\n"})
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token", error_description="bad quote"` {
		t.Fatalf("unsafe characters not removed: %q", got)
	}
	w = httptest.NewRecorder()
	WriteError(w, unavailable("down", 1500*time.Millisecond, nil))
	if w.Code != 503 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("got %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestParseBearer(t *testing.T) {
	for _, tt := range []struct {
		in     string
		want   string
		status int
	}{
		{"Bearer abc.def-_~+/==", "abc.def-_~+/==", 0},
		{"BEARER   abc", "abc", 0},
		{"Bearer abc=d", "", 400},
		{"Bearer =", "", 400},
		{"Bearer\tabc", "", 401},
		{"Token abc", "", 401},
		{"", "", 401},
	} {
		got, e := parseBearer([]string{tt.in})
		status := 0
		if e != nil {
			status = e.Status
		}
		if got != tt.want || status != tt.status {
			t.Errorf("parseBearer(%q) = %q, %d; want %q, %d", tt.in, got, status, tt.want, tt.status)
		}
	}
}
