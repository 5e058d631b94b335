package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// adminBackends runs fn on SQLite and, when AUTH_TEST_POSTGRES_URL is set,
// on PostgreSQL.
func adminBackends(t *testing.T, fn func(t *testing.T, s *storage.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, openStore(t, sqliteURL(t)))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, openStore(t, postgresURL(t, postgresBase(t))))
	})
}

func seedTenant(t *testing.T, s *storage.Store, id string, users map[string]string) map[string]*storage.User {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateTenant(ctx, &storage.Tenant{ID: id, Name: id}); err != nil {
		t.Fatal(err)
	}
	out := map[string]*storage.User{}
	for name, role := range users {
		u := &storage.User{ID: id + "-" + name, TenantID: id, Username: name, PasswordHash: "x", Role: role}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		out[name] = u
	}
	return out
}

func TestAdminListUsersPage(t *testing.T) {
	adminBackends(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		us := seedTenant(t, s, "ta", map[string]string{"amy": "admin", "bo": "analyst", "cy": "analyst", "di": "read-only"})
		seedTenant(t, s, "tb", map[string]string{"eve": "admin"})
		us["cy"].Disabled = true
		if err := s.UpdateUser(ctx, us["cy"]); err != nil {
			t.Fatal(err)
		}
		yes, no := true, false
		tests := []struct {
			name string
			f    storage.UserFilter
			want []string
		}{
			{"all", storage.UserFilter{TenantID: "ta"}, []string{"amy", "bo", "cy", "di"}},
			{"page1", storage.UserFilter{TenantID: "ta", Limit: 2}, []string{"amy", "bo"}},
			{"page2", storage.UserFilter{TenantID: "ta", Limit: 2, AfterUsername: "bo"}, []string{"cy", "di"}},
			{"role", storage.UserFilter{TenantID: "ta", Role: "analyst"}, []string{"bo", "cy"}},
			{"disabled", storage.UserFilter{TenantID: "ta", Disabled: &yes}, []string{"cy"}},
			{"enabled", storage.UserFilter{TenantID: "ta", Disabled: &no, Role: "analyst"}, []string{"bo"}},
			{"other-tenant", storage.UserFilter{TenantID: "tb"}, []string{"eve"}},
		}
		for _, tc := range tests {
			got, err := s.ListUsersPage(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, u := range got {
				names = append(names, u.Username)
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, names, tc.want)
			}
		}
	})
}

func TestAdminDeleteUser(t *testing.T) {
	adminBackends(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		us := seedTenant(t, s, "ta", map[string]string{"amy": "admin"})
		if err := s.DeleteUser(ctx, us["amy"].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUser(ctx, us["amy"].ID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetUser after delete: %v", err)
		}
		if err := s.DeleteUser(ctx, us["amy"].ID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
	})
}

// TestAdminLastAdminRace demotes the two admins of a tenant at once, each
// after checking that another admin is left: exactly one may succeed.
func TestAdminLastAdminRace(t *testing.T) {
	adminBackends(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		for round := range 5 {
			tenant := fmt.Sprintf("t%d", round)
			us := seedTenant(t, s, tenant, map[string]string{"a1": "admin", "a2": "admin", "x": "analyst"})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, name := range []string{"a1", "a2"} {
				wg.Go(func() {
					errs[i] = s.InTx(ctx, func(ctx context.Context) error {
						n, err := s.CountEnabledAdmins(ctx, tenant)
						if err != nil {
							return err
						}
						if n <= 1 {
							return errLast
						}
						u, err := s.GetUser(ctx, us[name].ID)
						if err != nil {
							return err
						}
						u.Role = "manager"
						return s.UpdateUser(ctx, u)
					})
				})
			}
			wg.Wait()
			ok, last := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, errLast):
					last++
				default:
					t.Errorf("round %d: unexpected error %v", round, err)
				}
			}
			if ok != 1 || last != 1 {
				t.Errorf("round %d: %d succeeded, %d refused; want 1 and 1", round, ok, last)
			}
			if n, err := s.CountEnabledAdmins(ctx, tenant); err != nil || n != 1 {
				t.Errorf("round %d: %d admins left (%v), want 1", round, n, err)
			}
		}
	})
}

var errLast = errors.New("last admin")

func tokenRow(sig, req, client, user string, active bool, requested, exp time.Time) storage.TokenRow {
	return storage.TokenRow{SignatureHash: storage.HashSignature(sig), RequestID: req, ClientID: client, TenantID: "ta",
		Subject: user, UserID: user, Active: active, RequestedAt: requested.UTC(), ExpiresAt: exp.UTC(), Data: "{}"}
}

func TestAdminRefreshFamilies(t *testing.T) {
	adminBackends(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		g := s.DB().Gorm
		login := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		later := login.Add(30 * time.Minute)
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		rows := []storage.RefreshTokenRow{
			// family f1: rotated once; the newest row is active.
			{TokenRow: tokenRow("s1", "f1", "dash", "u1", false, login, exp), FamilyCreatedAt: login},
			{TokenRow: tokenRow("s2", "f1", "dash", "u1", true, later, exp.Add(time.Minute)), FamilyCreatedAt: login},
			// family f2: revoked.
			{TokenRow: tokenRow("s3", "f2", "dash", "u1", false, login, exp), FamilyCreatedAt: login},
			// family f3: expired.
			{TokenRow: tokenRow("s4", "f3", "dash", "u1", true, login, time.Now().Add(-time.Minute)), FamilyCreatedAt: login},
			// family f4: another user.
			{TokenRow: tokenRow("s5", "f4", "dash", "u2", true, login, exp), FamilyCreatedAt: login},
		}
		if err := g.Create(&rows).Error; err != nil {
			t.Fatal(err)
		}
		fs, err := s.ListRefreshFamilies(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 {
			t.Fatalf("families = %+v, want only f1", fs)
		}
		f := fs[0]
		if f.ID != "f1" || f.ClientID != "dash" || !f.CreatedAt.Equal(login) || !f.LastUsedAt.Equal(later) || !f.ExpiresAt.Equal(exp.Add(time.Minute)) {
			t.Errorf("family = %+v", f)
		}
		for _, tc := range []struct {
			name, user, id string
			found          bool
		}{
			{"own", "u1", "f1", true},
			{"revoked", "u1", "f2", false},
			{"expired", "u1", "f3", false},
			{"other-user", "u1", "f4", false},
			{"unknown", "u1", "nope", false},
		} {
			_, err := s.GetRefreshFamily(ctx, tc.user, tc.id)
			if tc.found != (err == nil) || (!tc.found && !errors.Is(err, storage.ErrNotFound)) {
				t.Errorf("%s: GetRefreshFamily err = %v", tc.name, err)
			}
		}
	})
}

func TestAdminClientSecretAndDelete(t *testing.T) {
	adminBackends(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		seedTenant(t, s, "ta", nil)
		c := &storage.Client{ID: "c1", TenantID: "ta", SecretHash: []byte("old"), GrantTypes: "password", Scopes: "forecasts:read", Audiences: "simapi"}
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(time.Hour)
		if err := s.SetClientSecret(ctx, "c1", []byte("new"), []byte("old"), &until); err != nil {
			t.Fatal(err)
		}
		got, err := s.LookupClient(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if string(got.SecretHash) != "new" || len(got.GetRotatedHashes()) != 1 || string(got.GetRotatedHashes()[0]) != "old" {
			t.Errorf("after rotation: hash %q rotated %q", got.SecretHash, got.GetRotatedHashes())
		}
		past := time.Now().Add(-time.Second)
		if err := s.SetClientSecret(ctx, "c1", []byte("new2"), []byte("new"), &past); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.LookupClient(ctx, "c1"); len(got.GetRotatedHashes()) != 0 {
			t.Error("an expired rotated secret is still accepted")
		}
		if err := s.SetClientSecret(ctx, "nope", []byte("x"), nil, nil); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("SetClientSecret(unknown) = %v", err)
		}

		exp := time.Now().Add(time.Hour)
		g := s.DB().Gorm
		if err := g.Create(&storage.AccessTokenRow{TokenRow: tokenRow("a1", "r1", "c1", "u1", true, time.Now(), exp)}).Error; err != nil {
			t.Fatal(err)
		}
		if err := g.Create(&storage.RefreshTokenRow{TokenRow: tokenRow("r1", "r1", "c1", "u1", true, time.Now(), exp), FamilyCreatedAt: time.Now()}).Error; err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteClient(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		var active int64
		g.Model(&storage.AccessTokenRow{}).Where("client_id = ? AND active = ?", "c1", true).Count(&active)
		var activeR int64
		g.Model(&storage.RefreshTokenRow{}).Where("client_id = ? AND active = ?", "c1", true).Count(&activeR)
		if active+activeR != 0 {
			t.Errorf("%d access and %d refresh tokens still active after DeleteClient", active, activeR)
		}
		if err := s.DeleteClient(ctx, "c1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("second DeleteClient = %v", err)
		}
	})
}
