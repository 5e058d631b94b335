package server_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

func storageFilter(typ string) storage.AuditFilter { return storage.AuditFilter{Type: typ} }

func TestIntrospectionAccessControl(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice")
	cases := []struct {
		name, user, pass, token string
		status                  int
		active                  any
	}{
		{"ok", "simapi-rs", rsSecret, tok.AccessToken, 200, true},
		{"ok-refresh-token", "simapi-rs", rsSecret, tok.RefreshToken, 200, true},
		{"fail-not-resource-server", "dash", dashSecrt, tok.AccessToken, 401, nil},
		{"fail-bad-secret", "simapi-rs", "wrong-secret-wrong-secret-wrong-secret", tok.AccessToken, 401, nil},
		{"fail-no-auth", "", "", tok.AccessToken, 401, nil},
		{"inactive-other-audience", "other-rs", rsSecret, tok.AccessToken, 200, false},
		{"inactive-garbage", "simapi-rs", rsSecret, "not-a-token", 200, false},
		{"inactive-tampered", "simapi-rs", rsSecret, tok.AccessToken[:len(tok.AccessToken)-4] + "AAAA", 200, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, m, h := e.post("/oauth2/introspect", tc.user, tc.pass, url.Values{"token": {tc.token}})
			if st != tc.status {
				t.Fatalf("status %d, want %d (%v)", st, tc.status, m)
			}
			if st == 401 && (m["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "") {
				t.Errorf("401 body/header: %v %q", m, h.Get("WWW-Authenticate"))
			}
			if tc.active != nil && m["active"] != tc.active {
				t.Errorf("active = %v, want %v (%v)", m["active"], tc.active, m)
			}
			if m["active"] == false && len(m) != 1 {
				t.Errorf("inactive answer leaks fields: %v", m)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	e := newEnv(t)
	t.Run("ok-access-token", func(t *testing.T) {
		tok := e.login("alice")
		st, _, h := e.post("/oauth2/revoke", "dash", dashSecrt, url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}})
		if st != 200 || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d", st)
		}
		if e.active(tok.AccessToken) {
			t.Error("revoked access token still active")
		}
		// The refresh token of that login still works: only the access token was revoked.
		if st, m, _ := e.post("/oauth2/token", "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}); st != 200 {
			t.Errorf("refresh after access revocation: %d %v", st, m)
		}
	})
	t.Run("ok-refresh-token-revokes-family", func(t *testing.T) {
		tok := e.login("alice")
		st, _, _ := e.post("/oauth2/revoke", "dash", dashSecrt, url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}})
		if st != 200 {
			t.Fatalf("status %d", st)
		}
		if e.active(tok.AccessToken) || e.active(tok.RefreshToken) {
			t.Error("family still active after refresh-token revocation")
		}
	})
	t.Run("ok-wrong-hint", func(t *testing.T) {
		tok := e.login("alice")
		if st, _, _ := e.post("/oauth2/revoke", "dash", dashSecrt, url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"access_token"}}); st != 200 {
			t.Fatalf("status %d", st)
		}
		if e.active(tok.RefreshToken) {
			t.Error("refresh token still active")
		}
	})
	t.Run("fail-other-clients-token", func(t *testing.T) {
		tok := e.login("alice")
		st, m, _ := e.post("/oauth2/revoke", "pw-only", dashSecrt, url.Values{"token": {tok.AccessToken}})
		if st != http.StatusBadRequest || m["error"] != "unauthorized_client" {
			t.Fatalf("%d %v", st, m)
		}
		if !e.active(tok.AccessToken) {
			t.Error("another client revoked the token")
		}
	})
	t.Run("ok-unknown-token", func(t *testing.T) {
		if st, _, _ := e.post("/oauth2/revoke", "dash", dashSecrt, url.Values{"token": {"unknown"}}); st != 200 {
			t.Fatalf("status %d", st)
		}
	})
	t.Run("fail-no-token", func(t *testing.T) {
		if st, m, _ := e.post("/oauth2/revoke", "dash", dashSecrt, url.Values{}); st != 400 || m["error"] != "invalid_request" {
			t.Fatalf("%d %v", st, m)
		}
	})
	t.Run("fail-unauthenticated", func(t *testing.T) {
		if st, m, _ := e.post("/oauth2/revoke", "", "", url.Values{"token": {"x"}}); st != 401 || m["error"] != "invalid_client" {
			t.Fatalf("%d %v", st, m)
		}
	})
	events, err := e.app.Store.ListAudit(context.Background(), storageFilter("token.revoked"))
	if err != nil || len(events) < 3 {
		t.Errorf("revocation audit events = %d, %v", len(events), err)
	}
}

// TestIntrospectionStorageOutage: an unreachable database is "try again"
// (503), never an answer about the token.
func TestIntrospectionStorageOutage(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice")
	if !e.active(tok.AccessToken) { // also caches the resource server's client record
		t.Fatal("token inactive before the outage")
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	st, m, h := e.post("/oauth2/introspect", "simapi-rs", rsSecret, url.Values{"token": {tok.AccessToken}})
	if st != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("introspection during an outage: %d %v", st, m)
	}
}
