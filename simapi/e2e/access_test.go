package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSharedPair runs the tests that do not disturb the servers against one
// authserver+simapi pair.
func TestSharedPair(t *testing.T) {
	t.Parallel()
	p := startedPair(t)
	t.Run("RoleMatrix", func(t *testing.T) { t.Parallel(); testRoleMatrix(t, p) })
	t.Run("ScopeNarrowing", func(t *testing.T) { t.Parallel(); testScopeNarrowing(t, p) })
	t.Run("CrossTenant", func(t *testing.T) { t.Parallel(); testCrossTenant(t, p) })
	t.Run("Revocation", func(t *testing.T) { t.Parallel(); testRevocation(t, p) })
	t.Run("RefreshReuse", func(t *testing.T) { t.Parallel(); testRefreshReuse(t, p) })
	t.Run("Offboarding", func(t *testing.T) { t.Parallel(); testOffboarding(t, p) })
	t.Run("Attacks", func(t *testing.T) { t.Parallel(); testAttacks(t, p) })
}

// action is one cell column of the role matrix.
type action struct {
	name string
	perm string
	// do performs the action; nil means simapi has no route for it and the
	// cell is checked through the "permissions" list of GET /v1/me.
	do func(t *testing.T, p *pair, token string) result
}

var actions = []action{
	{"view", "forecasts:read", func(t *testing.T, p *pair, tok string) result {
		return p.get(t, "/v1/forecasts", tok)
	}},
	{"run", "simulations:run", func(t *testing.T, p *pair, tok string) result {
		return call(t, http.MethodPost, p.simURL+"/v1/simulate", tok, "application/json", simulateBody)
	}},
	{"export", "data:export", func(t *testing.T, p *pair, tok string) result {
		return p.get(t, "/v1/export?kind=forecasts&format=csv", tok)
	}},
	{"upload", "observations:write", func(t *testing.T, p *pair, tok string) result {
		return call(t, http.MethodPost, p.simURL+"/v1/observations", tok, "text/csv", []byte("date,cases\n2026-01-01,5\n"))
	}},
	{"manage-users", "users:manage", nil},
	{"billing", "billing:read", func(t *testing.T, p *pair, tok string) result {
		return p.get(t, "/v1/billing/usage", tok)
	}},
}

// roleAllows is the product's matrix, written out independently of pkg/rbac.
var roleAllows = map[string][]string{
	"read-only": {"view"},
	"analyst":   {"view", "run", "export"},
	"manager":   {"view", "run", "export", "upload"},
	"admin":     {"view", "run", "export", "upload", "manage-users", "billing"},
}

// checkAllowed asserts a 2xx.
func checkAllowed(t *testing.T, r result) {
	t.Helper()
	if r.status < 200 || r.status > 299 {
		t.Errorf("want 2xx, got %s", r)
	}
}

// checkForbidden asserts 403 with an insufficient_scope challenge naming perm.
func checkForbidden(t *testing.T, r result, perm string) {
	t.Helper()
	ch := r.header.Get("WWW-Authenticate")
	if r.status != http.StatusForbidden || !strings.Contains(ch, `error="insufficient_scope"`) {
		t.Errorf("want 403 insufficient_scope, got %s", r)
		return
	}
	if !strings.Contains(ch, `scope="`+perm+`"`) {
		t.Errorf("challenge %q does not name the missing scope %q", ch, perm)
	}
}

func testRoleMatrix(t *testing.T, p *pair) {
	for _, u := range []fixtureUser{userRO, userAnalyst, userManager, userAdmin} {
		tok := p.login(t, u).AccessToken
		me := p.me(t, tok)
		if me.Role != u.role || me.TenantID != u.tenant {
			t.Fatalf("%s: /v1/me says role %q tenant %q", u.name, me.Role, me.TenantID)
		}
		for _, a := range actions {
			t.Run(u.role+"/"+a.name, func(t *testing.T) {
				allowed := slices.Contains(roleAllows[u.role], a.name)
				if a.do == nil {
					// simapi has no users:manage route: the matrix cell is
					// the effective permission list simapi computes.
					if got := slices.Contains(me.Permissions, a.perm); got != allowed {
						t.Errorf("/v1/me permissions %v: has %s = %v, want %v", me.Permissions, a.perm, got, allowed)
					}
					return
				}
				r := a.do(t, p, tok)
				if allowed {
					checkAllowed(t, r)
				} else {
					checkForbidden(t, r, a.perm)
				}
			})
		}
	}
}

func testScopeNarrowing(t *testing.T, p *pair) {
	cases := []struct {
		name      string
		token     func(t *testing.T) string
		wantPerms []string
	}{
		{"admin-scope-forecasts-read", func(t *testing.T) string {
			return p.login(t, userAdmin, "forecasts:read").AccessToken
		}, []string{"forecasts:read"}},
		{"read-only-asks-run", func(t *testing.T) string {
			// The scope may be granted (the client allows it), but the
			// role cannot use it: role AND scope.
			return p.login(t, userRO, "forecasts:read", "simulations:run").AccessToken
		}, []string{"forecasts:read"}},
		{"client-credentials-analyst-forecasts-read", func(t *testing.T) string {
			return p.clientCredentials(t).AccessToken
		}, []string{"forecasts:read"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token(t)
			me := p.me(t, tok)
			if !slices.Equal(me.Permissions, c.wantPerms) {
				t.Errorf("/v1/me permissions = %v, want %v (role %s, scope %v)", me.Permissions, c.wantPerms, me.Role, me.Scope)
			}
			checkForbidden(t, call(t, http.MethodPost, p.simURL+"/v1/simulate", tok, "application/json", simulateBody), "simulations:run")
			checkAllowed(t, p.get(t, "/v1/forecasts", tok))
		})
	}
	t.Run("client-credentials-cannot-widen", func(t *testing.T) {
		// svc-a may only ever hold forecasts:read, whatever its role.
		tok, err := p.ccConfig("simulations:run").Token(p.oauthCtx())
		if err != nil {
			t.Logf("refused as expected: %v", err)
		} else {
			me := p.me(t, tok.AccessToken)
			if slices.Contains(me.Permissions, "simulations:run") {
				t.Errorf("svc-a obtained simulations:run: %v", me.Permissions)
			}
		}
	})
}

func testCrossTenant(t *testing.T, p *pair) {
	tokA := p.login(t, userManager).AccessToken
	tokB := p.login(t, userB).AccessToken
	idA := p.simulate(t, tokA)
	idB := p.simulate(t, tokB)

	// B uploads an observation on a date nobody in A uses.
	const dateB = "2031-07-04"
	r := call(t, http.MethodPost, p.simURL+"/v1/observations", tokB, "text/csv", []byte("date,cases\n"+dateB+",777\n"))
	checkAllowed(t, r)

	t.Run("login-via-other-tenant-client", func(t *testing.T) {
		// A tenant B user cannot log in through tenant A's client.
		tok, err := p.webConfig(webA).PasswordCredentialsToken(p.oauthCtx(), userB.name, password)
		if err == nil {
			t.Errorf("tenant B user logged in through tenant A's client; token for tenant %q", p.me(t, tok.AccessToken).TenantID)
		}
	})
	t.Run("get-other-tenant-forecast-404", func(t *testing.T) {
		for _, path := range []string{"/v1/forecasts/" + idA, "/v1/forecasts/" + idA + "/plot.svg"} {
			if r := p.get(t, path, tokB); r.status != http.StatusNotFound {
				t.Errorf("tenant B GET %s: want 404, got %s", path, r)
			}
		}
		// Positive control: the owner can read it.
		checkAllowed(t, p.get(t, "/v1/forecasts/"+idA, tokA))
	})
	t.Run("list-excludes-other-tenant", func(t *testing.T) {
		var l struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		r := p.get(t, "/v1/forecasts?limit=500", tokA)
		checkAllowed(t, r)
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range l.Items {
			ids = append(ids, it.ID)
		}
		if slices.Contains(ids, idB) || !slices.Contains(ids, idA) {
			t.Errorf("tenant A list %v: want %s and not %s", ids, idA, idB)
		}
	})
	t.Run("foreign-cursor", func(t *testing.T) {
		// A pagination cursor from tenant A's listing, replayed by tenant B,
		// must not page into A's rows.
		p.simulate(t, tokA)
		var l struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		r := p.get(t, "/v1/forecasts?limit=1", tokA)
		if err := json.Unmarshal(r.body, &l); err != nil || l.NextCursor == "" {
			t.Fatalf("tenant A's first page has no cursor: %s", r)
		}
		rB := p.get(t, "/v1/forecasts?limit=500&cursor="+url.QueryEscape(l.NextCursor), tokB)
		if rB.status >= 500 {
			t.Fatalf("foreign cursor: %s", rB)
		}
		if strings.Contains(string(rB.body), idA) {
			t.Errorf("tenant B paged into tenant A's forecasts with A's cursor: %s", rB.body)
		}
	})
	t.Run("observations-isolated", func(t *testing.T) {
		rA := p.get(t, "/v1/observations?limit=500", tokA)
		checkAllowed(t, rA)
		if strings.Contains(string(rA.body), dateB) {
			t.Errorf("tenant A sees tenant B's observation: %s", rA.body)
		}
		rB := p.get(t, "/v1/observations?limit=500", tokB)
		if !strings.Contains(string(rB.body), dateB) {
			t.Errorf("tenant B does not see its own observation: %s", rB)
		}
	})
	t.Run("export-isolated", func(t *testing.T) {
		for _, kind := range []string{"observations", "forecasts"} {
			rA := p.get(t, "/v1/export?kind="+kind+"&format=csv", tokA)
			checkAllowed(t, rA)
			for _, leak := range []string{dateB, idB} {
				if strings.Contains(string(rA.body), leak) {
					t.Errorf("tenant A %s export contains tenant B's %s", kind, leak)
				}
			}
			rB := p.get(t, "/v1/export?kind="+kind+"&format=csv", tokB)
			checkAllowed(t, rB)
			own := map[string]string{"observations": dateB, "forecasts": idB}[kind]
			if !strings.Contains(string(rB.body), own) {
				t.Errorf("tenant B %s export lacks its own %s: %s", kind, own, rB.body)
			}
		}
	})
}

// pollInvalid polls GET /v1/me with token until simapi answers 401
// invalid_token, within limit.
func (p *pair) pollInvalid(t *testing.T, token string, limit time.Duration) {
	t.Helper()
	start := time.Now()
	ok, last := eventually(limit, func() (bool, string) {
		r := p.get(t, "/v1/me", token)
		return isInvalidToken(r), r.String()
	})
	if !ok {
		t.Fatalf("token still not refused after %s; last answer %s", limit, last)
	}
	t.Logf("refused %.1fs after the event", time.Since(start).Seconds())
}

func testRevocation(t *testing.T, p *pair) {
	tok := p.login(t, userAnalyst)
	if r := p.get(t, "/v1/me", tok.AccessToken); r.status != http.StatusOK {
		t.Fatalf("fresh token not accepted: %s", r)
	}
	// Another tenant's client may not revoke it (RFC 7009 §2.1).
	if r := p.revoke(t, webB, tok.AccessToken, "access_token"); r.status != http.StatusBadRequest {
		t.Errorf("revocation by another client: want 400 unauthorized_client, got %d %s", r.status, r.body)
	}
	if r := p.get(t, "/v1/me", tok.AccessToken); r.status != http.StatusOK {
		t.Fatalf("token refused after a foreign client's revocation attempt: %s", r)
	}
	if r := p.revoke(t, webA, tok.AccessToken, "access_token"); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	p.pollInvalid(t, tok.AccessToken, 10*time.Second)
	// It stays refused.
	if r := p.get(t, "/v1/me", tok.AccessToken); !isInvalidToken(r) {
		t.Errorf("revoked token accepted again: %s", r)
	}

	t.Run("refresh-token-ends-family", func(t *testing.T) {
		// RFC 7009 §2.1: revoking a refresh token also invalidates the
		// access tokens of the same grant.
		tok := p.login(t, userAnalyst)
		if r := p.get(t, "/v1/me", tok.AccessToken); r.status != http.StatusOK {
			t.Fatalf("fresh token not accepted: %s", r)
		}
		if r := p.revoke(t, webA, tok.RefreshToken, "refresh_token"); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		p.pollInvalid(t, tok.AccessToken, 10*time.Second)
		if _, err := p.refresh(userAnalyst, tok.RefreshToken); err == nil {
			t.Error("revoked refresh token still redeems")
		}
	})
}

func testRefreshReuse(t *testing.T, p *pair) {
	first := p.login(t, userManager)
	if first.RefreshToken == "" {
		t.Fatal("no refresh token issued")
	}
	second, err := p.refresh(userManager, first.RefreshToken)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken || second.RefreshToken == "" {
		t.Fatal("refresh did not rotate the tokens")
	}
	if r := p.get(t, "/v1/me", second.AccessToken); r.status != http.StatusOK {
		t.Fatalf("refreshed access token not accepted: %s", r)
	}
	// Replay the rotated-out refresh token.
	_, err = p.refresh(userManager, first.RefreshToken)
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("reused refresh token: want invalid_grant, got %v", err)
	}
	// Reuse detection ends the family: the access token of the second
	// refresh must stop working at simapi ...
	p.pollInvalid(t, second.AccessToken, 10*time.Second)
	// ... and so must the second refresh token.
	if _, err := p.refresh(userManager, second.RefreshToken); err == nil {
		t.Error("refresh token of a family ended by reuse detection still works")
	}
}

// testOffboarding disables a person with the operator CLI while authserver
// runs: their refresh is refused at once and simapi rejects their access
// token within its revocation cache time.
func testOffboarding(t *testing.T, p *pair) {
	leaver := fixtureUser{tenantA, "leaver_a", "analyst"}
	if _, err := authCLI(p.dir, password+"\n", "user", "create", "--tenant", tenantA, "--username", leaver.name, "--role", leaver.role, "--bcrypt-cost", "4"); err != nil {
		t.Fatal(err)
	}
	tok := p.login(t, leaver)
	if r := p.get(t, "/v1/me", tok.AccessToken); r.status != http.StatusOK {
		t.Fatalf("fresh token not accepted: %s", r)
	}
	if _, err := authCLI(p.dir, "", "user", "disable", "--tenant", tenantA, "--username", leaver.name); err != nil {
		t.Fatal(err)
	}
	if _, err := p.refresh(leaver, tok.RefreshToken); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("disabled user's refresh: want invalid_grant, got %v", err)
	}
	p.pollInvalid(t, tok.AccessToken, 10*time.Second)
	if _, err := p.webConfig(webClientOf(leaver)).PasswordCredentialsToken(p.oauthCtx(), leaver.name, password); err == nil {
		t.Error("disabled user logged in")
	}
}
