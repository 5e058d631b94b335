package keys

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestJWKSHandler(t *testing.T) {
	t.Parallel()
	m := startedManager(t, Config{JWKSMaxAge: 120 * time.Second})
	body, etag := m.JWKS()
	if len(etag) != 66 || etag[0] != '"' || etag[65] != '"' {
		t.Fatalf("ETag %s is not a quoted SHA-256 hex digest", etag)
	}
	h := m.JWKSHandler()
	tests := []struct {
		name        string
		method      string
		ifNoneMatch string
		wantStatus  int
		wantBody    bool
	}{
		{name: "ok", method: http.MethodGet, wantStatus: http.StatusOK, wantBody: true},
		{name: "ok-head", method: http.MethodHead, wantStatus: http.StatusOK},
		{name: "ok-stale-etag", method: http.MethodGet, ifNoneMatch: `"stale"`, wantStatus: http.StatusOK, wantBody: true},
		{name: "ok-not-modified", method: http.MethodGet, ifNoneMatch: etag, wantStatus: http.StatusNotModified},
		{name: "ok-not-modified-list", method: http.MethodGet, ifNoneMatch: `"a", ` + etag, wantStatus: http.StatusNotModified},
		{name: "ok-not-modified-weak", method: http.MethodGet, ifNoneMatch: "W/" + etag, wantStatus: http.StatusNotModified},
		{name: "ok-not-modified-star", method: http.MethodGet, ifNoneMatch: "*", wantStatus: http.StatusNotModified},
		{name: "fail-post", method: http.MethodPost, wantStatus: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, "/.well-known/jwks.json", nil)
			if tt.ifNoneMatch != "" {
				req.Header.Set("If-None-Match", tt.ifNoneMatch)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusMethodNotAllowed {
				return
			}
			if got := rec.Header().Get("ETag"); got != etag {
				t.Fatalf("ETag = %q, want %q", got, etag)
			}
			if got := rec.Header().Get("Cache-Control"); got != "public, max-age=120" {
				t.Fatalf("Cache-Control = %q", got)
			}
			if tt.wantStatus == http.StatusOK {
				if got := rec.Header().Get("Content-Type"); got != "application/json" {
					t.Fatalf("Content-Type = %q", got)
				}
			}
			if tt.wantBody != (rec.Body.String() == string(body)) {
				t.Fatalf("body = %q", rec.Body.String())
			}
		})
	}
}

func TestJWKSHandlerBeforeLoad(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, newSQLiteDB(t).open(t), Config{})
	rec := httptest.NewRecorder()
	m.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status = %d, Cache-Control = %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
}

func TestJWKSETagChangesWithKeys(t *testing.T) {
	t.Parallel()
	m := startedManager(t, Config{})
	_, before := m.JWKS()
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, again := m.JWKS(); again != before {
		t.Fatal("ETag changed without a key change")
	}
	if _, err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, after := m.JWKS(); after == before {
		t.Fatal("ETag unchanged after rotation")
	}
}
