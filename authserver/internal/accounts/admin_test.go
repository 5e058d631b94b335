package accounts

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/rbac"
)

const pass = "correct-horse-battery"

func admin(tenant string) Actor {
	return Actor{Subject: tenant + "-admin", TenantID: tenant, Role: rbac.Admin, Scopes: rbac.Scopes()}
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestActorPermissions(t *testing.T) {
	tests := []struct {
		name             string
		a                Actor
		manage, operator bool
	}{
		{"tenant-admin", admin("ta"), true, false},
		{"operator", admin(PlatformTenant), true, true},
		{"admin-without-scope", Actor{TenantID: "ta", Role: rbac.Admin, Scopes: []string{"forecasts:read"}}, false, false},
		{"manager-with-scope", Actor{TenantID: "ta", Role: rbac.Manager, Scopes: rbac.Scopes()}, false, false},
		{"platform-manager", Actor{TenantID: PlatformTenant, Role: rbac.Manager, Scopes: rbac.Scopes()}, false, false},
		{"disabled-admin", Actor{TenantID: PlatformTenant, Role: rbac.Admin, Scopes: rbac.Scopes(), gone: true}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.a.CanManage() != tc.manage || tc.a.IsOperator() != tc.operator {
				t.Errorf("CanManage %v IsOperator %v, want %v %v", tc.a.CanManage(), tc.a.IsOperator(), tc.manage, tc.operator)
			}
		})
	}
}

// TestCeilings: an actor grants no role above its own and no scope its
// role cannot use. (With today's matrix only admins reach these checks,
// so they bite only if users:manage is ever given to a lower role.)
func TestCeilings(t *testing.T) {
	tests := []struct {
		name   string
		actor  rbac.Role
		role   rbac.Role
		scopes []string
		ok     bool
	}{
		{"admin-admin", rbac.Admin, rbac.Admin, rbac.Scopes(), true},
		{"manager-manager", rbac.Manager, rbac.Manager, []string{"observations:write"}, true},
		{"manager-admin", rbac.Manager, rbac.Admin, nil, false},
		{"manager-scope", rbac.Manager, rbac.ReadOnly, []string{"users:manage"}, false},
		{"analyst-manager", rbac.Analyst, rbac.Manager, nil, false},
		{"readonly-readonly", rbac.ReadOnly, rbac.ReadOnly, []string{"forecasts:read"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Actor{Role: tc.actor}
			err := errors.Join(checkRoleCeiling(a, tc.role, "role"), checkScopeCeiling(a, tc.scopes))
			if (err == nil) != tc.ok || (err != nil && kindOf(err) != Forbidden) {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func newService(t *testing.T) *Service {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "a.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pw, err := oauth.NewPasswords(4)
	if err != nil {
		t.Fatal(err)
	}
	h, err := oauth.NewSecretHasher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Store: storage.New(db, nil), Passwords: pw, Secrets: h}
	for _, tn := range []string{"ta", "tb", PlatformTenant} {
		if _, err := s.CreateTenant(ctx, "test", tn, tn); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []CreateUserInput{
		{TenantID: "ta", Username: "boss", Password: pass, Role: "admin"},
		{TenantID: "ta", Username: "amy", Password: pass, Role: "admin"},
		{TenantID: "ta", Username: "al", Password: pass, Role: "analyst"},
		{TenantID: "tb", Username: "bob", Password: pass, Role: "admin"},
	} {
		if _, err := s.CreateUser(ctx, "test", u); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestServiceRules(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	role := func(r string) *string { return &r }
	yes := true
	forged := Actor{Subject: "m", TenantID: "ta", Role: rbac.Manager, Scopes: rbac.Scopes()}
	tests := []struct {
		name string
		run  func() error
		want Kind
	}{
		{"create", func() error {
			_, err := s.CreateUserAs(ctx, admin("ta"), CreateUserInput{TenantID: "ta", Username: "cy", Password: pass, Role: "manager"})
			return err
		}, 0},
		{"no-permission", func() error {
			_, err := s.CreateUserAs(ctx, forged, CreateUserInput{TenantID: "ta", Username: "dd", Password: pass, Role: "read-only"})
			return err
		}, Forbidden},
		{"other-tenant", func() error { _, err := s.GetUser(ctx, admin("ta"), "tb", "bob"); return err }, NotFound},
		{"operator-other-tenant", func() error { _, err := s.GetUser(ctx, admin(PlatformTenant), "tb", "bob"); return err }, 0},
		{"common-password", func() error { return s.ResetPassword(ctx, admin("ta"), "ta", "al", "password1234") }, Invalid},
		{"password-has-username", func() error { return s.ResetPassword(ctx, admin("ta"), "ta", "al", "al-is-my-password") }, 0},
		{"password-has-username-3", func() error { return s.ResetPassword(ctx, admin("ta"), "ta", "boss", "the-boss-password") }, Invalid},
		{"unknown-user", func() error { return s.DeleteUser(ctx, admin("ta"), "ta", "ghost") }, NotFound},
		{"demote-one-of-two", func() error {
			_, err := s.UpdateUser(ctx, admin("ta"), "ta", "amy", UpdateUserInput{Role: role("manager")})
			return err
		}, 0},
		{"demote-last", func() error {
			_, err := s.UpdateUser(ctx, admin("ta"), "ta", "boss", UpdateUserInput{Role: role("manager")})
			return err
		}, Conflict},
		{"disable-last", func() error {
			_, err := s.UpdateUser(ctx, admin("ta"), "ta", "boss", UpdateUserInput{Disabled: &yes})
			return err
		}, Conflict},
		{"delete-last", func() error { return s.DeleteUser(ctx, admin("ta"), "ta", "boss") }, Conflict},
		{"introspect-client", func() error {
			_, _, err := s.CreateClientAs(ctx, admin("ta"), CreateClientInput{TenantID: "ta", ID: "rs", Audiences: []string{"simapi"}, Introspect: true})
			return err
		}, Forbidden},
		{"tenant-by-tenant-admin", func() error { _, err := s.CreateTenantAs(ctx, admin("ta"), "c1", "C"); return err }, Forbidden},
		{"tenant-by-operator", func() error { _, err := s.CreateTenantAs(ctx, admin(PlatformTenant), "c1", "C"); return err }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); kindOf(err) != tc.want || (tc.want == 0 && err != nil) {
				t.Errorf("err = %v (kind %d), want kind %d", err, kindOf(err), tc.want)
			}
		})
	}
	// Refusals are recorded as admin.denied.
	es, err := s.Store.ListAudit(ctx, storage.AuditFilter{Type: EventAdminDenied, Limit: 100})
	if err != nil || len(es) < 3 {
		t.Errorf("denied events: %d (%v)", len(es), err)
	}
	for _, e := range es {
		if e.Outcome != storage.OutcomeFailure {
			t.Errorf("denied event with outcome %s", e.Outcome)
		}
	}
}

// TestConcurrentDemotions: two admins demoted at once through the service;
// the tenant keeps exactly one.
func TestConcurrentDemotions(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	manager := "manager"
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, name := range []string{"boss", "amy"} {
			wg.Go(func() {
				_, errs[i] = s.UpdateUser(ctx, admin("ta"), "ta", name, UpdateUserInput{Role: &manager})
			})
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) || kindOf(errors.Join(errs...)) != Conflict {
			t.Fatalf("round %d: %v, want one success and one conflict", round, errs)
		}
		n, err := s.Store.CountEnabledAdmins(ctx, "ta")
		if err != nil || n != 1 {
			t.Fatalf("round %d: %d admins", round, n)
		}
		admin := "admin"
		for _, name := range []string{"boss", "amy"} {
			if _, err := s.UpdateUser(ctx, admin2(), "ta", name, UpdateUserInput{Role: &admin}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func admin2() Actor { return admin(PlatformTenant) }

func TestRotateClientSecret(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	now := time.Now()
	s.Now = func() time.Time { return now }
	_, _, err := s.CreateClientAs(ctx, admin("ta"), CreateClientInput{TenantID: "ta", ID: "svc", Grants: []string{"client_credentials"},
		Scopes: []string{"forecasts:read"}, Audiences: []string{"simapi"}, Role: "analyst"})
	if err != nil {
		t.Fatal(err)
	}
	c, secret, err := s.RotateClientSecret(ctx, admin("ta"), "ta", "svc", time.Hour)
	if err != nil || secret == "" {
		t.Fatal(err)
	}
	if c.RotatedSecretExpiresAt == nil || c.RotatedSecretExpiresAt.Sub(now.Add(time.Hour)).Abs() > time.Millisecond {
		t.Errorf("rotated expiry = %v", c.RotatedSecretExpiresAt)
	}
	if len(c.GetRotatedHashes()) != 1 {
		t.Error("the previous secret is not accepted during the overlap")
	}
	if _, _, err := s.RotateClientSecret(ctx, admin("tb"), "ta", "svc", time.Hour); kindOf(err) != NotFound {
		t.Errorf("rotation from another tenant: %v", err)
	}
	if _, _, err := s.RotateClientSecret(ctx, admin("tb"), "tb", "svc", time.Hour); kindOf(err) != NotFound {
		t.Errorf("rotation of another tenant's client: %v", err)
	}
}

func TestActorFromToken(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	boss, err := s.Store.GetUserByUsername(ctx, "ta", "boss")
	if err != nil {
		t.Fatal(err)
	}
	scope := "users:manage"
	tests := []struct {
		name   string
		tok    claims.AccessToken
		manage bool
		user   string
	}{
		{"user", claims.AccessToken{Subject: boss.ID, TenantID: "ta", Role: "admin", Scope: scope, ClientID: "dash"}, true, "boss"},
		{"wrong-tenant", claims.AccessToken{Subject: boss.ID, TenantID: "tb", Role: "admin", Scope: scope, ClientID: "dash"}, false, "boss"},
		{"deleted-user", claims.AccessToken{Subject: "gone", TenantID: "ta", Role: "admin", Scope: scope, ClientID: "dash"}, false, ""},
		// Service accounts never administer, whatever role they carry.
		{"fail-client-credentials", claims.AccessToken{Subject: "svc", TenantID: "ta", Role: "admin", Scope: scope, ClientID: "svc"}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := s.ActorFromToken(ctx, &tc.tok)
			if err != nil || a.CanManage() != tc.manage || a.Username != tc.user {
				t.Errorf("actor %+v (%v)", a, err)
			}
		})
	}
}
