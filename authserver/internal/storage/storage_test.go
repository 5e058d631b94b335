package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/storage/conformance"
)

// postgresEnv names the variable that enables the PostgreSQL runs, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable
const postgresEnv = "AUTH_TEST_POSTGRES_URL"

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// sqliteURL returns the URL of a new, empty SQLite database file.
func sqliteURL(t *testing.T) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "auth.db")
}

// postgresURL creates a fresh schema on the AUTH_TEST_POSTGRES_URL database,
// drops it (CASCADE) when the test ends, and returns base with search_path
// set to it, so that tests of other packages running in parallel against
// the same database never see each other's tables.
func postgresURL(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "authtest_" + hex.EncodeToString(b[:])

	admin, err := storage.Open(ctx, base, discard)
	if err != nil {
		t.Fatalf("open %s: %v", postgresEnv, err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Gorm.Exec(`CREATE SCHEMA ` + schema).Error; err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Gorm.Exec(`DROP SCHEMA ` + schema + ` CASCADE`).Error; err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})

	if _, err := url.Parse(base); err != nil {
		t.Fatalf("parse %s: %v", postgresEnv, err)
	}
	sep := "?"
	switch {
	case strings.HasSuffix(base, "?"), strings.HasSuffix(base, "&"):
		sep = ""
	case strings.Contains(base, "?"):
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// openStore opens and migrates the database at rawURL, checking that a new
// database gets every migration.
func openStore(t *testing.T, rawURL string) *storage.Store {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, rawURL, discard)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	n, err := db.Migrate(ctx)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if n != storage.SchemaVersion() {
		t.Fatalf("Migrate on a new database applied %d migrations, want %d", n, storage.SchemaVersion())
	}
	return storage.New(db, nil)
}

func postgresBase(t *testing.T) string {
	t.Helper()
	base := os.Getenv(postgresEnv)
	if base == "" {
		t.Skip(postgresEnv + " not set: PostgreSQL conformance skipped")
	}
	return base
}

func TestSQLite(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) *storage.Store {
		return openStore(t, sqliteURL(t))
	})
}

func TestPostgres(t *testing.T) {
	base := postgresBase(t)
	conformance.RunTests(t, func(t *testing.T) *storage.Store {
		return openStore(t, postgresURL(t, base))
	})
}

// TestPostgresSchemaIsolation checks that the store really lives in its own
// schema: the append-only trigger function is created there, not in public,
// and dropping one schema leaves another schema's store working.
func TestPostgresSchemaIsolation(t *testing.T) {
	base := postgresBase(t)
	ctx := context.Background()
	a := openStore(t, postgresURL(t, base))
	b := openStore(t, postgresURL(t, base))

	for _, s := range []*storage.Store{a, b} {
		var schema string
		if err := s.DB().Gorm.Raw(`SELECT current_schema()`).Scan(&schema).Error; err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(schema, "authtest_") {
			t.Fatalf("current_schema() = %q, want authtest_*", schema)
		}
		var fnSchema []string
		if err := s.DB().Gorm.Raw(`SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = 'audit_events_append_only' AND n.nspname = ?`, schema).Scan(&fnSchema).Error; err != nil {
			t.Fatal(err)
		}
		if len(fnSchema) != 1 {
			t.Errorf("audit_events_append_only() not found in schema %s", schema)
		}
		if err := s.CreateTenant(ctx, &storage.Tenant{ID: "same-id", Name: "x"}); err != nil {
			t.Errorf("CreateTenant in %s: %v (schemas not isolated?)", schema, err)
		}
	}
	if err := a.AppendAudit(ctx, &storage.AuditEvent{Type: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := a.DB().Gorm.Exec(`DELETE FROM audit_events`).Error; err == nil {
		t.Error("DELETE FROM audit_events succeeded")
	}
}

// TestMigrateConcurrent starts several instances on one new database at
// once: between them the migrations are applied exactly once and none fails.
// The race is timing-dependent, so it is tried on several new databases.
//
// BUG (PostgreSQL, fails intermittently until fixed in migrate.go): Migrate
// runs CREATE TABLE IF NOT EXISTS schema_migrations before taking the
// advisory lock, and concurrent CREATE TABLE IF NOT EXISTS on PostgreSQL
// fails with 23505 on pg_type_typname_nsp_index. Fix: run that statement in
// a transaction that first takes pg_advisory_xact_lock(7461936).
func TestMigrateConcurrent(t *testing.T) {
	backends := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", sqliteURL},
		{"postgres", func(t *testing.T) string { return postgresURL(t, postgresBase(t)) }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			for round := range 5 {
				migrateConcurrently(t, round, be.url(t))
			}
		})
	}
}

func migrateConcurrently(t *testing.T, round int, rawURL string) {
	t.Helper()
	ctx := context.Background()
	const instances = 6
	applied := make([]int, instances)
	errs := make([]error, instances)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range instances {
		db, err := storage.Open(ctx, rawURL, discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		wg.Go(func() {
			<-start
			applied[i], errs[i] = db.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range instances {
		if errs[i] != nil {
			t.Errorf("round %d: instance %d: Migrate: %v", round, i, errs[i])
		}
		total += applied[i]
	}
	if total != storage.SchemaVersion() {
		t.Errorf("round %d: instances applied %v migrations (total %d), want %d in all", round, applied, total, storage.SchemaVersion())
	}
}
