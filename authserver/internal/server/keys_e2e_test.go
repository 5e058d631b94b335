package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

func (e *env) jwksKIDs() []string {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL + "/.well-known/jwks.json")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}

func kidOf(t testing.TB, tok string) string {
	h, _ := jwtParts(t, tok)
	return h["kid"].(string)
}

func TestKeyRotationKeepsOldTokensValid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before, err := e.ccConfig().Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldKID := kidOf(t, before.AccessToken)
	// Rotate as the CLI does: through the database, not through this
	// server's own manager, then let the reload pick it up.
	newKey, err := e.app.Keys.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := e.ccConfig().Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := kidOf(t, after.AccessToken); got != newKey.KID || got == oldKID {
		t.Errorf("new token kid = %s, want %s", got, newKey.KID)
	}
	kids := e.jwksKIDs()
	if !slices.Contains(kids, oldKID) || !slices.Contains(kids, newKey.KID) {
		t.Errorf("JWKS = %v, want both %s and %s", kids, oldKID, newKey.KID)
	}
	if !e.active(before.AccessToken) || !e.active(after.AccessToken) {
		t.Error("a token is inactive after rotation")
	}
}

func TestKeyRevocationDeactivatesItsTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before, err := e.ccConfig().Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldKID := kidOf(t, before.AccessToken)
	if err := e.app.Keys.Revoke(ctx, oldKID); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.jwksKIDs(), oldKID) {
		t.Error("revoked key still published")
	}
	if e.active(before.AccessToken) {
		t.Error("token of a revoked key is still active")
	}
	after, err := e.ccConfig().Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, after.AccessToken) == oldKID || !e.active(after.AccessToken) {
		t.Error("no working replacement key after revoking the active key")
	}
}

// TestRotationByAnotherInstance shows a running server picking up a
// rotation made elsewhere (the CLI or another instance) on its reload.
func TestRotationByAnotherInstance(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.app.Run(ctx, 0) // reload every 50ms in tests
	other := newEnvOnDB(t, e)
	k, err := other.Keys.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tok, err := e.ccConfig().Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, tok.AccessToken) == k.KID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rotation by another instance not picked up within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJWKSCaching(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("headers = %v", resp.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/.well-known/jwks.json", nil)
	req.Header.Set("If-None-Match", etag)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET = %d", resp2.StatusCode)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"issuer":                 e.srv.URL,
		"token_endpoint":         e.srv.URL + "/oauth2/token",
		"jwks_uri":               e.srv.URL + "/.well-known/jwks.json",
		"introspection_endpoint": e.srv.URL + "/oauth2/introspect",
		"revocation_endpoint":    e.srv.URL + "/oauth2/revoke",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %s", k, m[k], want)
		}
	}
	if len(m["scopes_supported"].([]any)) != 6 || len(m["grant_types_supported"].([]any)) != 3 {
		t.Errorf("metadata = %v", m)
	}
}
