package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKeyRotationAndRevocation: tokens signed before and after a rotation
// are both accepted; revoking the old key refuses the old token while the
// new one keeps working. It has its own pair because revoking a key ends
// every token it signed.
func TestKeyRotationAndRevocation(t *testing.T) {
	t.Parallel()
	p := startedPair(t)

	oldTok := p.login(t, userAnalyst).AccessToken
	oldKid := kidOf(t, oldTok)
	if r := p.get(t, "/v1/me", oldTok); r.status != http.StatusOK {
		t.Fatalf("token before rotation refused: %s", r)
	}

	t.Logf("keys rotate: %s", strings.TrimSpace(p.keys(t, "rotate")))
	// The running authserver picks up the new key on its next reload.
	var newTok string
	ok, last := eventually(20*time.Second, func() (bool, string) {
		newTok = p.login(t, userAnalyst).AccessToken
		kid := kidOf(t, newTok)
		return kid != oldKid, "kid " + kid
	})
	if !ok {
		t.Fatalf("authserver still signs with %s 20s after 'keys rotate' (%s)\n%s", oldKid, last, p.keys(t, "list"))
	}
	newKid := kidOf(t, newTok)

	t.Run("both-accepted-after-rotate", func(t *testing.T) {
		if r := p.get(t, "/v1/me", oldTok); r.status != http.StatusOK {
			t.Errorf("token of the old key %s refused after rotation: %s", oldKid, r)
		}
		// simapi learns the new kid by refetching the JWKS on an unknown
		// kid, at most once per 2 s (verify.WithUnknownKIDRefetchInterval),
		// so a token of the new key may be refused for a few seconds.
		first := p.get(t, "/v1/me", newTok)
		if first.status != http.StatusOK {
			t.Logf("token of the new key %s first answered %s; polling", newKid, first)
		}
		ok, last := eventually(20*time.Second, func() (bool, string) {
			r := p.get(t, "/v1/me", newTok)
			return r.status == http.StatusOK, r.String()
		})
		if !ok {
			t.Fatalf("token of the new key %s not accepted within 20s: %s", newKid, last)
		}
	})

	t.Run("old-refused-after-revoke", func(t *testing.T) {
		t.Logf("keys revoke: %s", strings.TrimSpace(p.keys(t, "revoke", oldKid)))
		// authserver reloads keys every 5 s; simapi re-asks introspection
		// after its 1 s revocation cache.
		p.pollInvalid(t, oldTok, 20*time.Second)
		if r := p.get(t, "/v1/me", newTok); r.status != http.StatusOK {
			t.Errorf("token of the remaining key %s refused after revoking %s: %s", newKid, oldKid, r)
		}
		// A fresh login is signed by the remaining key and accepted.
		fresh := p.login(t, userAnalyst).AccessToken
		if k := kidOf(t, fresh); k == oldKid {
			t.Errorf("authserver still signs with revoked key %s", oldKid)
		}
		if r := p.get(t, "/v1/me", fresh); r.status != http.StatusOK {
			t.Errorf("fresh token refused after key revocation: %s", r)
		}
	})

	t.Run("revoke-active-key", func(t *testing.T) {
		// Revoking the active key makes authserver activate a replacement.
		t.Logf("keys revoke: %s", strings.TrimSpace(p.keys(t, "revoke", newKid)))
		p.pollInvalid(t, newTok, 20*time.Second)
		var third string
		ok, last := eventually(20*time.Second, func() (bool, string) {
			third = p.login(t, userAnalyst).AccessToken
			kid := kidOf(t, third)
			return kid != oldKid && kid != newKid, "kid " + kid
		})
		if !ok {
			t.Fatalf("authserver still signs with a revoked key 20s after revoking the active one (%s)\n%s", last, p.keys(t, "list"))
		}
		ok, last = eventually(20*time.Second, func() (bool, string) {
			r := p.get(t, "/v1/me", third)
			return r.status == http.StatusOK, r.String()
		})
		if !ok {
			t.Fatalf("token of the replacement key not accepted within 20s: %s", last)
		}
	})
}

// TestAuthServerDown: with introspection unreachable, a token simapi
// checked recently keeps working within TTL + grace; after that simapi
// fails closed with 503 and Retry-After; it recovers when authserver is
// back (same database and port).
func TestAuthServerDown(t *testing.T) {
	t.Parallel()
	p := startedPair(t)
	tok := p.login(t, userAnalyst).AccessToken
	unseen := p.login(t, userAnalyst).AccessToken // never shown to simapi while authserver is up
	if r := p.get(t, "/v1/me", tok); r.status != http.StatusOK {
		t.Fatalf("token refused while authserver is up: %s", r)
	}
	checked := time.Now()

	// Make simapi introspect the token right before the outage: wait out
	// the revocation cache of the request above first, so the answer cached
	// now was fetched between primed and primedEnd.
	time.Sleep(time.Until(checked.Add(revocationCacheTTL + 100*time.Millisecond)))
	primed := time.Now()
	if r := p.get(t, "/v1/me", tok); r.status != http.StatusOK {
		t.Fatalf("token refused while authserver is up: %s", r)
	}
	primedEnd := time.Now()
	p.auth.stop(t)

	t.Run("within-grace", func(t *testing.T) {
		// Past the cache TTL, so simapi must try introspection, fail to
		// reach it, and fall back on the cached answer.
		time.Sleep(time.Until(primedEnd.Add(revocationCacheTTL + 100*time.Millisecond)))
		r := p.get(t, "/v1/me", tok)
		if elapsed := time.Since(primed); elapsed >= revocationCacheTTL+introspectionGrace {
			t.Skipf("the request ended %.1fs after priming, beyond TTL+grace: its answer (%d) proves nothing", elapsed.Seconds(), r.status)
		}
		if r.status != http.StatusOK {
			t.Errorf("cached token refused within the grace period: %s", r)
		}
	})

	t.Run("after-grace-503", func(t *testing.T) {
		var r result
		ok, last := eventually(20*time.Second, func() (bool, string) {
			r = p.get(t, "/v1/me", tok)
			return r.status == http.StatusServiceUnavailable, r.String()
		})
		if !ok {
			t.Fatalf("no 503 within 20s of the outage: %s", last)
		}
		checkUnavailable(t, r)
		// A token simapi never checked cannot be vouched for either: 503,
		// never 200 (fail closed) and never 401 (it is not invalid).
		checkUnavailable(t, p.get(t, "/v1/me", unseen))
		checkUnavailable(t, p.get(t, "/v1/forecasts", tok))
	})

	t.Run("recovers", func(t *testing.T) {
		p.startAuth(t)
		p.waitReady(t, p.authURL, p.auth)
		for _, tk := range []string{tok, unseen} {
			ok, last := eventually(20*time.Second, func() (bool, string) {
				r := p.get(t, "/v1/me", tk)
				return r.status == http.StatusOK, r.String()
			})
			if !ok {
				t.Errorf("simapi did not recover within 20s of authserver's restart: %s", last)
			}
		}
	})
}

func checkUnavailable(t *testing.T, r result) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("want 503, got %s", r)
		return
	}
	ra := r.header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < 1 {
		t.Errorf("503 without a positive Retry-After (got %q): %s", ra, r)
	}
	if !strings.Contains(string(r.body), "temporarily_unavailable") {
		t.Errorf("503 body lacks temporarily_unavailable: %s", r)
	}
}

// TestSimAPIStartsFirst: simapi started before its authorization server
// is up but not ready, fails closed, and becomes ready once authserver
// starts.
func TestSimAPIStartsFirst(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.startSim(t)
	waitStatus(t, p.simURL+"/healthz", http.StatusOK, p.sim)
	if r := p.get(t, "/readyz", ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("simapi ready without an authorization server: %s", r)
	}
	// Any token is answered 503 (cannot decide), never 200.
	r := p.get(t, "/v1/me", "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.e30.c2ln")
	checkUnavailable(t, r)

	p.startAuth(t)
	p.waitReady(t, p.authURL, p.auth)
	p.waitReady(t, p.simURL, p.sim)
	tok := p.login(t, userRO).AccessToken
	ok, last := eventually(20*time.Second, func() (bool, string) {
		r := p.get(t, "/v1/me", tok)
		return r.status == http.StatusOK, r.String()
	})
	if !ok {
		t.Fatalf("simapi did not accept a valid token within 20s of authserver starting: %s", last)
	}
	if m := p.me(t, tok); m.TenantID != tenantA || m.Role != "read-only" {
		t.Errorf("/v1/me = %+v", m)
	}
}

// publishedKIDs returns the kids in authserver's JWKS.
func (p *pair) publishedKIDs(t *testing.T) []string {
	t.Helper()
	resp, err := httpClient.Get(p.authURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestKeyRevocationOfflineVerification runs simapi with offline
// verification only (no introspection client, which the CLI allows). A key
// removed from the JWKS "must stop verifying" once simapi has refetched the
// JWKS (pkg/verify startKeyCache); this checks that it does for every token
// it signed, including tokens simapi has already seen and cached.
func TestKeyRevocationOfflineVerification(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.noIntrospection = true
	p.start(t)

	seen := p.login(t, userAnalyst).AccessToken   // presented to simapi before the revocation
	unseen := p.login(t, userAnalyst).AccessToken // never presented before the revocation
	oldKid := kidOf(t, seen)
	if kidOf(t, unseen) != oldKid {
		t.Fatal("the two tokens have different kids")
	}
	if r := p.get(t, "/v1/me", seen); r.status != http.StatusOK {
		t.Fatalf("token refused before revocation: %s", r)
	}

	t.Logf("keys revoke: %s", strings.TrimSpace(p.keys(t, "revoke", oldKid)))
	ok, last := eventually(20*time.Second, func() (bool, string) {
		kids := p.publishedKIDs(t)
		return !slices.Contains(kids, oldKid), fmt.Sprint(kids)
	})
	if !ok {
		t.Fatalf("authserver still publishes revoked key %s after 20s: %s", oldKid, last)
	}
	// A token of the replacement key makes simapi refetch the JWKS (at most
	// once per 10 s); once it is accepted, simapi's key set is the JWKS
	// without the revoked key.
	fresh := p.login(t, userAnalyst).AccessToken
	if kidOf(t, fresh) == oldKid {
		t.Fatalf("authserver still signs with revoked key %s", oldKid)
	}
	ok, last = eventually(20*time.Second, func() (bool, string) {
		r := p.get(t, "/v1/me", fresh)
		return r.status == http.StatusOK, r.String()
	})
	if !ok {
		t.Fatalf("token of the replacement key not accepted within 20s: %s", last)
	}

	if r := p.get(t, "/v1/me", unseen); !isInvalidToken(r) {
		t.Errorf("unseen token of revoked key %s: want 401, got %s", oldKid, r)
	}
	if r := p.get(t, "/v1/me", seen); !isInvalidToken(r) {
		t.Errorf("token of revoked key %s still accepted from simapi's verified-token cache "+
			"although the key is gone from simapi's key set (an unseen token of the same key is refused): %s", oldKid, r)
	}
}
