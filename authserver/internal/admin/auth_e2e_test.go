package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
)

// These tests exercise the admin API's authentication as app.New mounts
// it: tokens from the real token endpoint, verified by the in-process
// pkg/verify Verifier with a revocation check on every request.

// bearer sends an admin GET and returns the status, the decoded body and
// the WWW-Authenticate challenge.
func (e *env) bearer(tok, path string) (int, map[string]any, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	e.mu.Lock()
	e.bodies = append(e.bodies, string(raw))
	e.mu.Unlock()
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			e.t.Fatalf("GET %s: non-JSON body %q (status %d)", path, raw, resp.StatusCode)
		}
	}
	return resp.StatusCode, m, resp.Header.Get("WWW-Authenticate")
}

// wantInvalidToken checks an RFC 6750 invalid_token refusal.
func wantInvalidToken(t *testing.T, st int, m map[string]any, www, desc string) {
	t.Helper()
	if st != http.StatusUnauthorized || m["error"] != "invalid_token" {
		t.Fatalf("got %d %v, want 401 invalid_token", st, m)
	}
	if desc != "" && m["error_description"] != desc {
		t.Errorf("error_description %q, want %q", m["error_description"], desc)
	}
	if !strings.HasPrefix(www, "Bearer ") || !strings.Contains(www, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q, want a Bearer invalid_token challenge", www)
	}
}

// TestAdminAuthWrongAudience: a token the real token endpoint issued for
// simapi is refused by the admin API, which only accepts "authserver".
func TestAdminAuthWrongAudience(t *testing.T) {
	e := newEnv(t)
	simapiTok, _ := e.login(tenantA, "boss", userPass, "simapi")
	if !e.active(simapiTok) {
		t.Fatal("the simapi token is not active")
	}
	st, m, www := e.bearer(simapiTok, usersPath(tenantA))
	wantInvalidToken(t, st, m, www, "wrong audience")

	// The same user's token for the admin API works.
	if st, m, _ := e.bearer(e.adminToken(tenantA, "boss"), usersPath(tenantA)); st != http.StatusOK {
		t.Errorf("authserver token: %d %v", st, m)
	}
	// No token at all: a challenge without an error code.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+usersPath(tenantA), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if www := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(www, "Bearer") || strings.Contains(www, "error=") {
		t.Errorf("no token: %d %q", resp.StatusCode, www)
	}
}

// TestAdminAuthRevokedToken: an admin token revoked at /oauth2/revoke is
// refused by the very next admin request, although the verifier has just
// verified (and cached) it.
func TestAdminAuthRevokedToken(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	for range 3 { // warm every cache there is
		if st, m, _ := e.bearer(boss, usersPath(tenantA)); st != http.StatusOK {
			t.Fatalf("before revocation: %d %v", st, m)
		}
	}
	other := e.adminToken(tenantA, "boss")
	c := clientOf[tenantA]
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {boss}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c[0], c[1])
	if st, m := e.send(req, false); st != http.StatusOK {
		t.Fatalf("revoke: %d %v", st, m)
	}
	st, m, www := e.bearer(boss, usersPath(tenantA))
	wantInvalidToken(t, st, m, www, "")
	// Only that token: the same admin's other token still works.
	if st, m, _ := e.bearer(other, usersPath(tenantA)); st != http.StatusOK {
		t.Errorf("another token of the same user: %d %v", st, m)
	}
}

// TestAdminAuthAfterKeyRotation: after POST /admin/keys/rotate the token
// endpoint signs with the new key, and a token with the new kid is accepted
// by the admin API at once; tokens of the previous key keep working.
func TestAdminAuthAfterKeyRotation(t *testing.T) {
	e := newEnv(t)
	op := e.adminToken(accounts.PlatformTenant, "op")
	boss := e.adminToken(tenantA, "boss")
	if st, m, _ := e.bearer(boss, usersPath(tenantA)); st != http.StatusOK {
		t.Fatalf("before rotation: %d %v", st, m)
	}
	oldHdr, _ := jwtClaims(t, boss)
	st, k := e.call(op, "POST", "/admin/keys/rotate", nil)
	if st != http.StatusCreated || k["kid"] == oldHdr["kid"] {
		t.Fatalf("rotate: %d %v", st, k)
	}
	fresh := e.adminToken(tenantA, "boss")
	hdr, _ := jwtClaims(t, fresh)
	if hdr["kid"] != k["kid"] {
		t.Fatalf("new token kid %v, want the new key %v", hdr["kid"], k["kid"])
	}
	// Right after the rotation, without waiting for a JWKS refresh.
	if st, m, _ := e.bearer(fresh, usersPath(tenantA)); st != http.StatusOK {
		t.Errorf("token of the new key: %d %v", st, m)
	}
	if st, m, _ := e.bearer(boss, usersPath(tenantA)); st != http.StatusOK {
		t.Errorf("token of the previous key: %d %v", st, m)
	}
	if st, m, _ := e.bearer(op, "/admin/keys"); st != http.StatusOK {
		t.Errorf("operator's token of the previous key: %d %v", st, m)
	}
}

// TestAdminAuthDisableSelf: an admin who disables their own account (there
// is another admin, so the last-admin guard allows it) loses the admin API
// with their very next request.
func TestAdminAuthDisableSelf(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	if st, m := e.call(boss, "POST", usersPath(tenantA), map[string]any{"username": "carol", "password": userPass, "role": "admin"}); st != http.StatusCreated {
		t.Fatalf("second admin: %d %v", st, m)
	}
	carol := e.adminToken(tenantA, "carol")
	if st, m := e.call(boss, "PATCH", usersPath(tenantA)+"/boss", map[string]any{"disabled": true}); st != http.StatusOK || m["disabled"] != true {
		t.Fatalf("disable self: %d %v", st, m)
	}
	st, m, www := e.bearer(boss, usersPath(tenantA))
	wantInvalidToken(t, st, m, www, "")
	// Nor can a fresh login get a new token.
	form := url.Values{"grant_type": {"password"}, "username": {"boss"}, "password": {userPass}, "audience": {"authserver"}}
	if st, m := e.tokenForm("dash", dashSecret, form); st == http.StatusOK {
		t.Errorf("disabled admin logged in: %v", m)
	}
	// The other admin is unaffected and sees boss disabled.
	if st, m, _ := e.bearer(carol, usersPath(tenantA)+"/boss"); st != http.StatusOK || m["disabled"] != true {
		t.Errorf("carol reads boss: %d %v", st, m)
	}
}
