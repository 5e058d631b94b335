package admin_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
)

// TestStaffLifecycle: a tenant admin creates, demotes, disables, resets
// and deletes a member of staff; each change ends the member's tokens.
func TestStaffLifecycle(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")

	st, u := e.call(boss, "POST", usersPath(tenantA), map[string]any{"username": "carol", "password": userPass, "role": "manager"})
	if st != http.StatusCreated || u["username"] != "carol" || u["role"] != "manager" || u["disabled"] != false || u["id"] == "" {
		t.Fatalf("create: %d %v", st, u)
	}
	for _, k := range []string{"created_at", "updated_at", "tenant_id"} {
		if _, ok := u[k]; !ok {
			t.Errorf("user has no %s: %v", k, u)
		}
	}
	if st, m := e.call(boss, "POST", usersPath(tenantA), map[string]any{"username": "carol", "password": userPass, "role": "analyst"}); st != http.StatusConflict {
		t.Errorf("duplicate user: %d %v", st, m)
	}
	if st, m := e.call(boss, "GET", usersPath(tenantA)+"/carol", nil); st != http.StatusOK || m["role"] != "manager" {
		t.Errorf("get: %d %v", st, m)
	}

	carol := usersPath(tenantA) + "/carol"
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
		// the user's role afterwards, "" if they cannot log in
		role string
	}{
		{"demote", "PATCH", carol, map[string]any{"role": "analyst"}, http.StatusOK, "analyst"},
		{"disable", "PATCH", carol, map[string]any{"disabled": true}, http.StatusOK, ""},
		{"enable", "PATCH", carol, map[string]any{"disabled": false}, http.StatusOK, "analyst"},
		{"reset", "POST", carol + "/password", map[string]any{"password": "a-brand-new-passphrase"}, http.StatusNoContent, "analyst"},
		{"delete", "DELETE", carol, nil, http.StatusNoContent, ""},
	}
	pass := userPass
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			// The member is logged in before each change.
			var at, rt string
			if st, _ := e.tokenForm("dash", dashSecret, url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {pass}}); st == http.StatusOK {
				at, rt = e.login(tenantA, "carol", pass, "simapi")
			}
			st, m := e.call(boss, s.method, s.path, s.body)
			if st != s.want {
				t.Fatalf("%s: %d %v", s.name, st, m)
			}
			if s.name == "reset" {
				pass = "a-brand-new-passphrase"
			}
			if at != "" && s.name != "enable" {
				if e.active(at) {
					t.Error("the access token is still active")
				}
				if st, code := e.refresh(tenantA, rt); st != http.StatusBadRequest || code != "invalid_grant" {
					t.Errorf("refresh after %s: %d %s, want invalid_grant", s.name, st, code)
				}
			}
			st, tok := e.tokenForm("dash", dashSecret, url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {pass}})
			switch {
			case s.role == "" && st == http.StatusOK:
				t.Errorf("login after %s succeeded", s.name)
			case s.role != "" && st != http.StatusOK:
				t.Errorf("login after %s: %d %v", s.name, st, tok)
			case s.role != "":
				_, claims := jwtClaims(t, tok["access_token"].(string))
				if claims["role"] != s.role {
					t.Errorf("role after %s = %v, want %s", s.name, claims["role"], s.role)
				}
			}
		})
	}
	if st, _ := e.call(boss, "GET", carol, nil); st != http.StatusNotFound {
		t.Errorf("get deleted user: %d", st)
	}
	// The old password stopped working at the reset.
	if st, _ := e.tokenForm("dash", dashSecret, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wrong-password-123"}}); st == http.StatusOK {
		t.Error("wrong password accepted")
	}
}

// TestDisabledUserTokens: disabling a logged-in user makes their refresh
// fail with invalid_grant and their access token inactive.
func TestDisabledUserTokens(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	at, rt := e.login(tenantA, "alice", userPass, "simapi")
	if !e.active(at) {
		t.Fatal("fresh token inactive")
	}
	if st, m := e.call(boss, "PATCH", usersPath(tenantA)+"/alice", map[string]any{"disabled": true}); st != http.StatusOK || m["disabled"] != true {
		t.Fatalf("disable: %d %v", st, m)
	}
	if st, code := e.refresh(tenantA, rt); st != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("refresh: %d %s, want 400 invalid_grant", st, code)
	}
	if e.active(at) {
		t.Error("access token of a disabled user is active")
	}
	if st, m := e.call(boss, "GET", usersPath(tenantA)+"?disabled=true", nil); st != http.StatusOK || len(items(t, m)) != 1 {
		t.Errorf("disabled filter: %d %v", st, m)
	}
}

// TestTenantIsolation: a tenant admin gets 404 for every route of another
// tenant (and of a tenant that does not exist), never 403.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	bob := e.adminToken(tenantB, "bob")
	routes := []struct{ method, path string }{
		{"GET", "/users"},
		{"POST", "/users"},
		{"GET", "/users/bob"},
		{"PATCH", "/users/bob"},
		{"DELETE", "/users/bob"},
		{"POST", "/users/bob/password"},
		{"GET", "/users/bob/sessions"},
		{"DELETE", "/users/bob/sessions"},
		{"DELETE", "/users/bob/sessions/x"},
		{"GET", "/clients"},
		{"POST", "/clients"},
		{"POST", "/clients/dash-b/secret"},
		{"DELETE", "/clients/dash-b"},
		{"GET", "/audit"},
	}
	for _, tenant := range []string{tenantB, "no_such_tenant"} {
		for _, r := range routes {
			t.Run(tenant+" "+r.method+r.path, func(t *testing.T) {
				var body any
				if r.method == "POST" || r.method == "PATCH" {
					body = map[string]any{}
				}
				if st, m := e.call(boss, r.method, "/admin/tenants/"+tenant+r.path, body); st != http.StatusNotFound {
					t.Errorf("%d %v, want 404", st, m)
				}
			})
		}
	}
	// Nothing changed in B, and bob still works there.
	if st, m := e.call(bob, "GET", usersPath(tenantB)+"/bob", nil); st != http.StatusOK || m["role"] != "admin" {
		t.Errorf("bob: %d %v", st, m)
	}
	if st, _ := e.call(bob, "GET", usersPath(tenantA)+"/boss", nil); st != http.StatusNotFound {
		t.Errorf("bob reads A: %d", st)
	}
	// The probe is on B's... no: on A's own record, as admin.denied.
	st, m := e.call(boss, "GET", "/admin/tenants/"+tenantA+"/audit?type=admin.denied&limit=500", nil)
	if st != http.StatusOK || len(items(t, m)) < len(routes) {
		t.Errorf("denied events in A: %d %d", st, len(items(t, m)))
	}
	if st, m := e.call(bob, "GET", "/admin/tenants/"+tenantB+"/audit?actor="+url.QueryEscape(subjectOf(t, boss)), nil); st != http.StatusOK || len(items(t, m)) != 0 {
		t.Errorf("B's audit shows A's probes: %v", m)
	}
}

// TestPermissions: users:manage is required (role and scope); operator
// routes are for platform admins only.
func TestPermissions(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	alice := e.adminToken(tenantA, "alice")
	narrow, _ := e.login(tenantA, "boss", userPass, "authserver", "forecasts:read")
	simapiTok, _ := e.login(tenantA, "boss", userPass, "simapi")
	op := e.adminToken(accounts.PlatformTenant, "op")

	tests := []struct {
		name         string
		tok          string
		method, path string
		body         any
		want         int
	}{
		{"no-token", "", "GET", usersPath(tenantA), nil, http.StatusUnauthorized},
		{"wrong-audience", simapiTok, "GET", usersPath(tenantA), nil, http.StatusUnauthorized},
		{"analyst", alice, "GET", usersPath(tenantA), nil, http.StatusForbidden},
		{"analyst-create", alice, "POST", usersPath(tenantA), map[string]any{"username": "x", "password": userPass, "role": "admin"}, http.StatusForbidden},
		{"scope-narrowed", narrow, "GET", usersPath(tenantA), nil, http.StatusForbidden},
		{"admin", boss, "GET", usersPath(tenantA), nil, http.StatusOK},
		{"tenant-create", boss, "POST", "/admin/tenants", map[string]any{"id": "dept_c", "name": "C"}, http.StatusForbidden},
		{"tenant-list", boss, "GET", "/admin/tenants", nil, http.StatusForbidden},
		{"keys-list", boss, "GET", "/admin/keys", nil, http.StatusForbidden},
		{"keys-rotate", boss, "POST", "/admin/keys/rotate", nil, http.StatusForbidden},
		{"keys-revoke", boss, "POST", "/admin/keys/x/revoke", nil, http.StatusForbidden},
		{"introspect-client", boss, "POST", "/admin/tenants/" + tenantA + "/clients", map[string]any{"id": "rs", "audiences": []string{"simapi"}, "introspect": true}, http.StatusForbidden},
		{"introspect-rotate", boss, "POST", "/admin/tenants/" + accounts.PlatformTenant + "/clients/simapi-rs/secret", nil, http.StatusNotFound},
		{"op-tenant-list", op, "GET", "/admin/tenants", nil, http.StatusOK},
		{"op-in-tenant", op, "GET", usersPath(tenantB), nil, http.StatusOK},
		{"op-unknown-tenant", op, "GET", usersPath("dept_zz"), nil, http.StatusNotFound},
		{"op-introspect-client", op, "POST", "/admin/tenants/" + tenantA + "/clients", map[string]any{"id": "rs", "audiences": []string{"simapi"}, "introspect": true}, http.StatusCreated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m := e.call(tc.tok, tc.method, tc.path, tc.body)
			if st != tc.want {
				t.Errorf("%d %v, want %d", st, m, tc.want)
			}
		})
	}
	// Each refusal by rbac is in the caller's tenant's log.
	st, m := e.call(boss, "GET", "/admin/tenants/"+tenantA+"/audit?type=admin.denied&limit=500", nil)
	if st != http.StatusOK || len(items(t, m)) < 9 {
		t.Errorf("denied events: %d %v", st, m)
	}
}

// TestRoleCeilingAndClientRules: what a tenant admin may give a client.
func TestRoleCeilingAndClientRules(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	clients := "/admin/tenants/" + tenantA + "/clients"
	tests := []struct {
		name string
		body map[string]any
		want int
	}{
		{"ok", map[string]any{"id": "svc", "grants": []string{"client_credentials"}, "scopes": []string{"forecasts:read"}, "audiences": []string{"simapi"}, "role": "analyst"}, http.StatusCreated},
		{"admin-role", map[string]any{"id": "svc2", "grants": []string{"client_credentials"}, "scopes": []string{"users:manage"}, "audiences": []string{"simapi"}, "role": "admin"}, http.StatusCreated},
		{"unknown-role", map[string]any{"id": "svc3", "grants": []string{"client_credentials"}, "scopes": []string{"forecasts:read"}, "audiences": []string{"simapi"}, "role": "root"}, http.StatusBadRequest},
		{"unknown-scope", map[string]any{"id": "svc4", "grants": []string{"password"}, "scopes": []string{"root:all"}, "audiences": []string{"simapi"}}, http.StatusBadRequest},
		{"introspect", map[string]any{"id": "rs", "audiences": []string{"simapi"}, "introspect": true}, http.StatusForbidden},
		{"no-id", map[string]any{"grants": []string{"password"}}, http.StatusBadRequest},
		{"duplicate", map[string]any{"id": "dash", "grants": []string{"password"}, "scopes": []string{"forecasts:read"}, "audiences": []string{"simapi"}}, http.StatusConflict},
		{"secret-supplied", map[string]any{"id": "svc5", "client_secret": "x"}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m := e.call(boss, "POST", clients, tc.body)
			if st != tc.want {
				t.Fatalf("%d %v, want %d", st, m, tc.want)
			}
			if st == http.StatusCreated && (len(m["client_secret"].(string)) < 32 || m["id"] != tc.body["id"]) {
				t.Errorf("created client: %v", m)
			}
		})
	}
	st, m := e.call(boss, "GET", clients, nil)
	if st != http.StatusOK {
		t.Fatalf("list: %d", st)
	}
	for _, c := range items(t, m) {
		if _, ok := c["client_secret"]; ok {
			t.Errorf("listing shows a secret: %v", c)
		}
	}
}

// TestLastAdmin: the last enabled admin cannot be demoted, disabled or
// deleted, not even by two concurrent demotions of two admins.
func TestLastAdmin(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	self := usersPath(tenantA) + "/boss"
	for _, tc := range []struct {
		name, method, path string
		body               any
	}{
		{"demote", "PATCH", self, map[string]any{"role": "manager"}},
		{"disable", "PATCH", self, map[string]any{"disabled": true}},
		{"delete", "DELETE", self, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, m := e.call(boss, tc.method, tc.path, tc.body); st != http.StatusConflict {
				t.Errorf("%d %v, want 409", st, m)
			}
		})
	}
	if st, m := e.call(boss, "GET", self, nil); st != http.StatusOK || m["role"] != "admin" || m["disabled"] != false {
		t.Fatalf("boss changed: %v", m)
	}

	op := e.adminToken(accounts.PlatformTenant, "op")
	for round := range 3 {
		// Two admins, both demoted at once.
		if st, m := e.call(op, "PATCH", usersPath(tenantA)+"/alice", map[string]any{"role": "admin"}); st != http.StatusOK {
			t.Fatalf("promote: %d %v", st, m)
		}
		if st, m := e.call(op, "PATCH", self, map[string]any{"role": "admin"}); st != http.StatusOK {
			t.Fatalf("promote: %d %v", st, m)
		}
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, name := range []string{"alice", "boss"} {
			wg.Go(func() {
				statuses[i], _ = e.call(op, "PATCH", usersPath(tenantA)+"/"+name, map[string]any{"role": "manager"})
			})
		}
		wg.Wait()
		ok, conflict := 0, 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				ok++
			case http.StatusConflict:
				conflict++
			}
		}
		if ok != 1 || conflict != 1 {
			t.Errorf("round %d: statuses %v, want one 200 and one 409", round, statuses)
		}
		st, m := e.call(op, "GET", usersPath(tenantA)+"?role=admin&disabled=false", nil)
		if st != http.StatusOK || len(items(t, m)) != 1 {
			t.Errorf("round %d: enabled admins %v", round, m)
		}
	}
}

// TestSecretRotation: after a rotation the old secret keeps working for
// the overlap, then stops; the new one works throughout.
func TestSecretRotation(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	clients := "/admin/tenants/" + tenantA + "/clients"
	st, c := e.call(boss, "POST", clients, map[string]any{"id": "svc", "grants": []string{"client_credentials"},
		"scopes": []string{"forecasts:read"}, "audiences": []string{"simapi"}, "role": "analyst"})
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, c)
	}
	oldSecret := c["client_secret"].(string)
	cc := func(secret string) int {
		st, _ := e.tokenForm("svc", secret, url.Values{"grant_type": {"client_credentials"}})
		return st
	}
	if st := cc(oldSecret); st != http.StatusOK {
		t.Fatalf("first secret: %d", st)
	}
	st, r := e.call(boss, "POST", clients+"/svc/secret", nil)
	if st != http.StatusOK {
		t.Fatalf("rotate: %d %v", st, r)
	}
	newSecret := r["client_secret"].(string)
	if newSecret == oldSecret || r["previous_secret_expires_at"] == nil {
		t.Fatalf("rotation answer: %v", r)
	}
	for _, tc := range []struct {
		name    string
		advance bool
		secret  string
		want    int
	}{
		{"old-in-overlap", false, oldSecret, http.StatusOK},
		{"new-in-overlap", false, newSecret, http.StatusOK},
		{"old-after", true, oldSecret, http.StatusUnauthorized},
		{"new-after", false, newSecret, http.StatusOK},
		{"garbage", false, "not-the-secret-0123456789abcdefghijkl", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.advance {
				e.clock.Advance(overlap + 1)
			}
			if st := cc(tc.secret); st != tc.want {
				t.Errorf("%d, want %d", st, tc.want)
			}
		})
	}
	if st, _ := e.call(boss, "POST", clients+"/nope/secret", nil); st != http.StatusNotFound {
		t.Errorf("rotate unknown: %d", st)
	}
}

// TestClientDelete: deleting a client revokes every token issued to it.
func TestClientDelete(t *testing.T) {
	e := newEnv(t)
	op := e.adminToken(accounts.PlatformTenant, "op")
	at, rt := e.login(tenantA, "alice", userPass, "simapi")
	if st, m := e.call(op, "DELETE", "/admin/tenants/"+tenantA+"/clients/dash", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %v", st, m)
	}
	if e.active(at) {
		t.Error("access token of a deleted client is active")
	}
	if st, _ := e.tokenForm("dash", dashSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); st == http.StatusOK {
		t.Error("refresh with a deleted client succeeded")
	}
	if st, _ := e.call(op, "DELETE", "/admin/tenants/"+tenantA+"/clients/dash", nil); st != http.StatusNotFound {
		t.Errorf("second delete: %d", st)
	}
	if st, _ := e.call(op, "DELETE", "/admin/tenants/"+tenantA+"/clients/dash-b", nil); st != http.StatusNotFound {
		t.Errorf("delete of B's client through A: %d", st)
	}
}

// TestSessions: list a user's sessions, end one, then sign out everywhere.
func TestSessions(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	sessions := usersPath(tenantA) + "/alice/sessions"
	at1, rt1 := e.login(tenantA, "alice", userPass, "simapi")
	at2, rt2 := e.login(tenantA, "alice", userPass, "simapi")

	st, m := e.call(boss, "GET", sessions, nil)
	if st != http.StatusOK || len(items(t, m)) != 2 {
		t.Fatalf("sessions: %d %v", st, m)
	}
	s := items(t, m)[0]
	for _, k := range []string{"id", "client_id", "created_at", "last_used_at", "expires_at"} {
		if s[k] == nil || s[k] == "" {
			t.Errorf("session has no %s: %v", k, s)
		}
	}
	// Which family is rt1's? End the first listed and see which refresh fails.
	if st, m := e.call(boss, "DELETE", sessions+"/"+s["id"].(string), nil); st != http.StatusNoContent {
		t.Fatalf("revoke one: %d %v", st, m)
	}
	if e.active(at1) == e.active(at2) {
		t.Error("revoking one session should end exactly one access token")
	}
	st1, _ := e.refresh(tenantA, rt1)
	st2, _ := e.refresh(tenantA, rt2)
	if (st1 == http.StatusOK) == (st2 == http.StatusOK) {
		t.Fatalf("after revoking one session: refresh statuses %d and %d, want exactly one 200", st1, st2)
	}
	if st, m := e.call(boss, "GET", sessions, nil); st != http.StatusOK || len(items(t, m)) != 1 {
		t.Errorf("sessions after one revoked: %v", m)
	}
	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"again", sessions + "/" + s["id"].(string), http.StatusNotFound},
		{"unknown", sessions + "/nope", http.StatusNotFound},
		{"other-user", usersPath(tenantA) + "/boss/sessions/" + items(t, m)[0]["id"].(string), http.StatusNotFound},
		{"unknown-user", usersPath(tenantA) + "/ghost/sessions", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, m := e.call(boss, "DELETE", tc.path, nil); st != tc.want {
				t.Errorf("%d %v, want %d", st, m, tc.want)
			}
		})
	}

	at3, rt3 := e.login(tenantA, "alice", userPass, "simapi")
	if st, m := e.call(boss, "DELETE", sessions, nil); st != http.StatusNoContent {
		t.Fatalf("sign out everywhere: %d %v", st, m)
	}
	if e.active(at3) {
		t.Error("access token active after sign-out everywhere")
	}
	if st, code := e.refresh(tenantA, rt3); code != "invalid_grant" {
		t.Errorf("refresh after sign-out everywhere: %d %s", st, code)
	}
	if st, m := e.call(boss, "GET", sessions, nil); st != http.StatusOK || len(items(t, m)) != 0 {
		t.Errorf("sessions after sign-out everywhere: %v", m)
	}
}

// TestOperator: tenants and keys.
func TestOperator(t *testing.T) {
	e := newEnv(t)
	op := e.adminToken(accounts.PlatformTenant, "op")
	if st, m := e.call(op, "POST", "/admin/tenants", map[string]any{"id": "dept_c", "name": "Department C"}); st != http.StatusCreated || m["id"] != "dept_c" {
		t.Fatalf("create tenant: %d %v", st, m)
	}
	for _, tc := range []struct {
		name string
		body any
		want int
	}{
		{"duplicate", map[string]any{"id": "dept_c", "name": "again"}, http.StatusConflict},
		{"bad-id", map[string]any{"id": "Bad Id", "name": "x"}, http.StatusBadRequest},
		{"no-name", map[string]any{"id": "dept_d"}, http.StatusBadRequest},
		{"reserved", map[string]any{"id": accounts.PlatformTenant, "name": "x"}, http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, m := e.call(op, "POST", "/admin/tenants", tc.body); st != tc.want {
				t.Errorf("%d %v, want %d", st, m, tc.want)
			}
		})
	}
	st, m := e.call(op, "GET", "/admin/tenants", nil)
	if st != http.StatusOK || len(items(t, m)) != 4 {
		t.Errorf("tenants: %d %v", st, m)
	}
	// The operator staffs the new tenant with its first admin.
	if st, m := e.call(op, "POST", usersPath("dept_c"), map[string]any{"username": "chief", "password": userPass, "role": "admin"}); st != http.StatusCreated {
		t.Errorf("first admin: %d %v", st, m)
	}

	st, m = e.call(op, "GET", "/admin/keys", nil)
	if st != http.StatusOK || len(items(t, m)) != 1 {
		t.Fatalf("keys: %d %v", st, m)
	}
	oldKID := items(t, m)[0]["kid"].(string)
	st, k := e.call(op, "POST", "/admin/keys/rotate", nil)
	if st != http.StatusCreated || k["kid"] == oldKID || k["kid"] == "" {
		t.Fatalf("rotate: %d %v", st, k)
	}
	if st, m := e.call(op, "POST", "/admin/keys/no-such-kid/revoke", nil); st != http.StatusNotFound {
		t.Errorf("revoke unknown: %d %v", st, m)
	}
	if st, m := e.call(op, "POST", "/admin/keys/"+oldKID+"/revoke", nil); st != http.StatusNoContent {
		t.Errorf("revoke: %d %v", st, m)
	}
	// The operator's own token was signed by the revoked key.
	if st, _ := e.call(op, "GET", "/admin/keys", nil); st != http.StatusUnauthorized {
		t.Errorf("token signed by a revoked key: %d", st)
	}
	op = e.adminToken(accounts.PlatformTenant, "op")
	st, m = e.call(op, "GET", "/admin/keys", nil)
	states := map[string]string{}
	for _, it := range items(t, m) {
		states[it["kid"].(string)] = it["state"].(string)
	}
	if st != http.StatusOK || states[oldKID] != "revoked" || states[k["kid"].(string)] != "active" {
		t.Errorf("keys after: %v", states)
	}
}

// TestAuditTrail: every admin action, done or refused, is in the log of
// its tenant, filterable and paged; the log cannot be changed.
func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	bossSub := subjectOf(t, boss)
	clients := "/admin/tenants/" + tenantA + "/clients"
	actions := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", usersPath(tenantA), map[string]any{"username": "dan", "password": userPass, "role": "analyst"}, http.StatusCreated},
		{"POST", usersPath(tenantA), map[string]any{"username": "eve", "password": "short", "role": "analyst"}, http.StatusBadRequest},
		{"PATCH", usersPath(tenantA) + "/dan", map[string]any{"role": "manager"}, http.StatusOK},
		{"PATCH", usersPath(tenantA) + "/boss", map[string]any{"role": "manager"}, http.StatusConflict},
		{"POST", usersPath(tenantA) + "/dan/password", map[string]any{"password": "another-long-passphrase"}, http.StatusNoContent},
		{"DELETE", usersPath(tenantA) + "/dan/sessions", nil, http.StatusNoContent},
		{"POST", clients, map[string]any{"id": "svc", "grants": []string{"client_credentials"}, "scopes": []string{"forecasts:read"}, "audiences": []string{"simapi"}, "role": "analyst"}, http.StatusCreated},
		{"POST", clients, map[string]any{"id": "rs", "audiences": []string{"simapi"}, "introspect": true}, http.StatusForbidden},
		{"POST", clients + "/svc/secret", nil, http.StatusOK},
		{"DELETE", clients + "/svc", nil, http.StatusNoContent},
		{"DELETE", usersPath(tenantA) + "/dan", nil, http.StatusNoContent},
		{"GET", "/admin/tenants/" + tenantB + "/users", nil, http.StatusNotFound},
		{"PATCH", usersPath(tenantA) + "/alice", `{"role": "manager", "extra": 1}`, http.StatusBadRequest},
	}
	for _, a := range actions {
		if st, m := e.call(boss, a.method, a.path, a.body); st != a.want {
			t.Fatalf("%s %s: %d %v, want %d", a.method, a.path, st, m, a.want)
		}
	}
	want := []struct{ typ, subject, outcome string }{
		{"admin.user.created", "dan", "success"},
		{"admin.user.created", "eve", "failure"},
		{"admin.user.updated", "dan", "success"},
		{"admin.user.updated", "boss", "failure"},
		{"admin.user.password_reset", "dan", "success"},
		{"admin.sessions.revoked", "dan", "success"},
		{"admin.client.created", "svc", "success"},
		{"admin.denied", "rs", "failure"},
		{"admin.client.secret_rotated", "svc", "success"},
		{"admin.client.deleted", "svc", "success"},
		{"admin.user.deleted", "dan", "success"},
		{"admin.denied", tenantB, "failure"},
		{"admin.user.updated", "alice", "failure"},
	}
	// Walk the whole log of A two events at a time.
	var got []map[string]any
	cursor := ""
	for range 100 {
		st, m := e.call(boss, "GET", "/admin/tenants/"+tenantA+"/audit?limit=2&actor="+url.QueryEscape(bossSub)+"&cursor="+cursor, nil)
		if st != http.StatusOK {
			t.Fatalf("audit: %d %v", st, m)
		}
		got = append(got, items(t, m)...)
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	var seq []string
	for _, ev := range got {
		if strings.HasPrefix(ev["type"].(string), "admin.") {
			seq = append(seq, fmt.Sprintf("%s %s %s", ev["type"], ev["subject"], ev["outcome"]))
			if ev["actor"] != bossSub || ev["ip"] != "127.0.0.1" || ev["request_id"] != requestID {
				t.Errorf("event %v: wrong actor, ip or request id", ev)
			}
			if !strings.Contains(ev["details"].(string), `"actor_username":"boss"`) {
				t.Errorf("event %v does not name the actor", ev)
			}
		}
	}
	var wantSeq []string
	for _, w := range want {
		wantSeq = append(wantSeq, fmt.Sprintf("%s %s %s", w.typ, w.subject, w.outcome))
	}
	if strings.Join(seq, "\n") != strings.Join(wantSeq, "\n") {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(wantSeq, "\n"))
	}

	for _, tc := range []struct {
		name, query string
		want, n     int
	}{
		{"type", "?type=admin.user.deleted", http.StatusOK, 1},
		{"subject", "?subject=svc&type=admin.client.created", http.StatusOK, 1},
		{"since-future", "?since=2999-01-01T00:00:00Z", http.StatusOK, 0},
		{"until-past", "?until=2000-01-01T00:00:00Z", http.StatusOK, 0},
		{"bad-since", "?since=yesterday", http.StatusBadRequest, -1},
		{"bad-limit", "?limit=501", http.StatusBadRequest, -1},
		{"bad-cursor", "?cursor=abc", http.StatusBadRequest, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m := e.call(boss, "GET", "/admin/tenants/"+tenantA+"/audit"+tc.query, nil)
			if st != tc.want || (tc.n >= 0 && len(items(t, m)) != tc.n) {
				t.Errorf("%d %v", st, m)
			}
		})
	}
	// Append-only: no route edits or deletes it.
	for _, method := range []string{"DELETE", "PATCH", "PUT", "POST"} {
		if st, m := e.call(boss, method, "/admin/tenants/"+tenantA+"/audit", nil); st != http.StatusMethodNotAllowed || m["_allow"] == "" {
			t.Errorf("%s audit: %d %v", method, st, m)
		}
	}
}

// TestProblems: malformed requests get precise problems.
func TestProblems(t *testing.T) {
	e := newEnv(t)
	boss := e.adminToken(tenantA, "boss")
	big := `{"username":"` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name, method, path string
		body               any
		want               int
		detail             string
	}{
		{"bad-json", "POST", usersPath(tenantA), `{"username":`, http.StatusBadRequest, "not valid JSON"},
		{"unknown-field", "POST", usersPath(tenantA), `{"username":"x","pw":"y"}`, http.StatusBadRequest, `"pw"`},
		{"wrong-type", "PATCH", usersPath(tenantA) + "/alice", `{"disabled":"yes"}`, http.StatusBadRequest, `"disabled"`},
		{"two-objects", "PATCH", usersPath(tenantA) + "/alice", `{"disabled":true}{}`, http.StatusBadRequest, "single JSON object"},
		{"missing-field", "POST", usersPath(tenantA), `{"username":"x","role":"analyst"}`, http.StatusBadRequest, `"password"`},
		{"bad-role", "POST", usersPath(tenantA), map[string]any{"username": "x", "password": userPass, "role": "root"}, http.StatusBadRequest, "role"},
		{"bad-username", "POST", usersPath(tenantA), map[string]any{"username": "no spaces", "password": userPass, "role": "analyst"}, http.StatusBadRequest, "username"},
		{"weak-password", "POST", usersPath(tenantA) + "/alice/password", map[string]any{"password": "short"}, http.StatusBadRequest, "password"},
		{"empty-patch", "PATCH", usersPath(tenantA) + "/alice", map[string]any{}, http.StatusBadRequest, "nothing to update"},
		{"too-large", "POST", usersPath(tenantA), big, http.StatusRequestEntityTooLarge, "at most"},
		{"bad-limit", "GET", usersPath(tenantA) + "?limit=0", nil, http.StatusBadRequest, "limit"},
		{"bad-disabled", "GET", usersPath(tenantA) + "?disabled=maybe", nil, http.StatusBadRequest, "disabled"},
		{"bad-role-filter", "GET", usersPath(tenantA) + "?role=root", nil, http.StatusBadRequest, "role"},
		{"bad-cursor", "GET", usersPath(tenantA) + "?cursor=%21%21", nil, http.StatusBadRequest, "cursor"},
		{"unknown-user", "GET", usersPath(tenantA) + "/ghost", nil, http.StatusNotFound, "user not found"},
		{"no-route", "GET", "/admin/nothing", nil, http.StatusNotFound, "no such endpoint"},
		{"method", "PUT", usersPath(tenantA), nil, http.StatusMethodNotAllowed, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m := e.call(boss, tc.method, tc.path, tc.body)
			if st != tc.want {
				t.Fatalf("%d %v, want %d", st, m, tc.want)
			}
			if m["type"] != "about:blank" || m["status"] != float64(tc.want) || m["title"] == "" || !strings.Contains(m["detail"].(string), tc.detail) {
				t.Errorf("problem %v, want detail containing %q", m, tc.detail)
			}
		})
	}
}

// TestUserPaging walks the user listing page by page.
func TestUserPaging(t *testing.T) {
	e := newEnv(t)
	op := e.adminToken(accounts.PlatformTenant, "op")
	for i := range 7 {
		if st, m := e.call(op, "POST", usersPath(tenantB), map[string]any{"username": fmt.Sprintf("u%02d", i), "password": userPass, "role": "read-only"}); st != http.StatusCreated {
			t.Fatalf("create: %d %v", st, m)
		}
	}
	var names []string
	cursor := ""
	pages := 0
	for range 20 {
		st, m := e.call(op, "GET", usersPath(tenantB)+"?limit=3&role=read-only&cursor="+url.QueryEscape(cursor), nil)
		if st != http.StatusOK {
			t.Fatalf("page: %d %v", st, m)
		}
		pages++
		for _, u := range items(t, m) {
			names = append(names, u["username"].(string))
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || strings.Join(names, ",") != "u00,u01,u02,u03,u04,u05,u06" {
		t.Errorf("%d pages: %v", pages, names)
	}
	if st, m := e.call(op, "GET", usersPath(tenantB)+"?limit=500", nil); st != http.StatusOK || len(items(t, m)) != 8 {
		t.Errorf("all: %d %v", st, m)
	}
}
