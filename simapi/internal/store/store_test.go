package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/epitwin/epitwin/simapi/internal/store"
	"github.com/epitwin/epitwin/simapi/internal/store/conformance"
	"github.com/epitwin/epitwin/simapi/internal/store/storetest"
)

func TestConformanceSQLite(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) *store.Store { return storetest.SQLite(t) })
}

func TestConformancePostgres(t *testing.T) {
	storetest.PostgresURL(t)
	conformance.RunTests(t, func(t *testing.T) *store.Store { return storetest.Postgres(t) })
}

func TestOpenRejectsUnknownURL(t *testing.T) {
	for _, u := range []string{"mysql://x", "sqlite:", "file.db"} {
		if _, err := store.Open(context.Background(), u); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	if _, err := store.Open(context.Background(), "postgres://x/y", store.WithRole(`bad"role`)); err == nil {
		t.Error("invalid role name accepted")
	}
}

func TestSQLiteMemory(t *testing.T) {
	s, err := store.Open(context.Background(), "sqlite::memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.RLSEnforced(context.Background()); ok {
		t.Fatal("RLSEnforced on SQLite")
	}
}

func seed(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	for _, tenant := range []string{"tenant-a", "tenant-a", "tenant-b"} {
		f := &store.Forecast{Params: json.RawMessage(`{}`), Result: json.RawMessage(`{}`)}
		f.CreatedAt = time.Now()
		if err := s.CreateForecast(ctx, tenant, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpsertObservations(ctx, "tenant-b", []store.Observation{{Date: "2026-01-01", Cases: 1}}); err != nil {
		t.Fatal(err)
	}
}

// TestRowLevelSecurity proves that on PostgreSQL a query without any tenant
// filter, run inside a tenant transaction, sees and touches only that
// tenant's rows, and that outside a tenant transaction it sees none.
func TestRowLevelSecurity(t *testing.T) {
	s, pg := storetest.PostgresWithPG(t)
	ctx := context.Background()
	seed(t, s)

	if ok, err := s.RLSEnforced(ctx); err != nil || !ok {
		t.Fatalf("RLSEnforced = %v, %v; want true", ok, err)
	}
	count := func(tenant, table string) int64 {
		t.Helper()
		var n int64
		err := s.TenantTx(ctx, tenant, func(tx *gorm.DB) error {
			return tx.Raw(`SELECT count(*) FROM ` + table).Row().Scan(&n) // no tenant filter
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("tenant-a", "forecasts"); n != 2 {
		t.Errorf("tenant-a unfiltered count(forecasts) = %d, want 2", n)
	}
	if n := count("tenant-b", "forecasts"); n != 1 {
		t.Errorf("tenant-b unfiltered count(forecasts) = %d, want 1", n)
	}
	if n := count("tenant-a", "observations"); n != 0 {
		t.Errorf("tenant-a unfiltered count(observations) = %d, want 0", n)
	}
	if n := count("tenant-b", "observations"); n != 1 {
		t.Errorf("tenant-b unfiltered count(observations) = %d, want 1", n)
	}
	// The superuser owner sees everything (RLS does not apply to it): the
	// rows really are there.
	var all int64
	if err := pg.Admin.Raw(`SELECT count(*) FROM forecasts`).Row().Scan(&all); err != nil || all != 3 {
		t.Fatalf("owner count = %d, %v; want 3", all, err)
	}

	// Unfiltered UPDATE and DELETE reach only the tenant's rows.
	err := s.TenantTx(ctx, "tenant-b", func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE forecasts SET created_by = 'mallory'`)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			t.Errorf("unfiltered UPDATE touched %d rows, want 1", res.RowsAffected)
		}
		res = tx.Exec(`DELETE FROM observations`)
		if res.RowsAffected != 1 {
			t.Errorf("unfiltered DELETE touched %d rows, want 1", res.RowsAffected)
		}
		return res.Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var mallory int64
	pg.Admin.Raw(`SELECT count(*) FROM forecasts WHERE created_by = 'mallory'`).Row().Scan(&mallory)
	if mallory != 1 {
		t.Errorf("%d rows changed by tenant-b's unfiltered UPDATE, want 1", mallory)
	}

	// WITH CHECK: a tenant transaction cannot write another tenant's rows.
	err = s.TenantTx(ctx, "tenant-a", func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO observations (tenant_id, date, cases, updated_at) VALUES ('tenant-b', '2026-05-05', 1, now())`).Error
	})
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("cross-tenant insert: err = %v, want a row-level security violation", err)
	}

	// As the app role but without app.tenant_id, nothing is visible.
	var n int64
	err = pg.Admin.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`SET LOCAL ROLE "` + pg.Role + `"`).Error; err != nil {
			return err
		}
		return tx.Raw(`SELECT count(*) FROM forecasts`).Row().Scan(&n)
	})
	if err != nil || n != 0 {
		t.Errorf("no tenant set: count = %d, %v; want 0", n, err)
	}
}

// TestSQLiteHasNoRLS documents that on SQLite an unfiltered query sees every
// tenant: isolation there rests on the store's tenant filter, which the
// conformance suite checks.
func TestSQLiteHasNoRLS(t *testing.T) {
	s := storetest.SQLite(t)
	seed(t, s)
	var n int64
	err := s.TenantTx(context.Background(), "tenant-a", func(tx *gorm.DB) error {
		return tx.Raw(`SELECT count(*) FROM forecasts`).Row().Scan(&n)
	})
	if err != nil || n != 3 {
		t.Fatalf("count = %d, %v; want 3 (no RLS on SQLite)", n, err)
	}
	if _, err := s.GetForecast(context.Background(), "tenant-c", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
}
