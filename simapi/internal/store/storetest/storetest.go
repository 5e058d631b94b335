// Package storetest creates migrated, throw-away stores for tests: a SQLite
// file in the test's temporary directory, or, when SIM_TEST_POSTGRES_URL is
// set, a fresh PostgreSQL schema with its own non-superuser role.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/epitwin/epitwin/simapi/internal/store"
)

// PostgresEnv names the environment variable holding the PostgreSQL URL of
// the test database.
const PostgresEnv = "SIM_TEST_POSTGRES_URL"

// SQLite returns a migrated store on a new SQLite file, closed at cleanup.
func SQLite(tb testing.TB) *store.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite:"+filepath.Join(tb.TempDir(), "simapi.db"))
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return s
}

// PostgresURL returns SIM_TEST_POSTGRES_URL or skips the test.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		tb.Skipf("%s not set: skipping PostgreSQL test", PostgresEnv)
	}
	return u
}

// PG describes a throw-away PostgreSQL schema.
type PG struct {
	// URL connects as the test user (the schema owner) with search_path set
	// to Schema.
	URL string
	// Schema is the fresh schema, simapi_test_<random>.
	Schema string
	// Role is a fresh NOLOGIN, non-superuser role the store switches to
	// (SET LOCAL ROLE) in tenant transactions, so that row-level security
	// applies although the test user is a superuser.
	Role string
	// Admin is a connection as the test user with search_path = Schema.
	Admin *gorm.DB
}

// NewPG creates a fresh schema and role on the SIM_TEST_POSTGRES_URL
// database (skipping the test if it is unset) and drops both at cleanup.
// Tests of other packages run in parallel on the same database, so nothing
// is shared.
func NewPG(tb testing.TB) *PG {
	tb.Helper()
	base := PostgresURL(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	p := &PG{Schema: "simapi_test_" + suffix, Role: "simapi_test_app_" + suffix}

	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("connect to %s: %v", PostgresEnv, err)
	}
	adminSQL, _ := admin.DB()
	for _, q := range []string{
		`CREATE SCHEMA "` + p.Schema + `"`,
		`CREATE ROLE "` + p.Role + `" NOLOGIN NOSUPERUSER NOBYPASSRLS`,
	} {
		if err := admin.Exec(q).Error; err != nil {
			adminSQL.Close()
			tb.Fatalf("%s: %v", q, err)
		}
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if p.Admin != nil {
			if db, err := p.Admin.DB(); err == nil {
				db.Close()
			}
		}
		a := admin.WithContext(ctx)
		if err := a.Exec(`DROP SCHEMA "` + p.Schema + `" CASCADE`).Error; err != nil {
			tb.Errorf("drop schema %s: %v", p.Schema, err)
		}
		if err := a.Exec(`DROP ROLE "` + p.Role + `"`).Error; err != nil {
			tb.Errorf("drop role %s: %v", p.Role, err)
		}
		adminSQL.Close()
	})

	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", p.Schema)
	u.RawQuery = q.Encode()
	p.URL = u.String()
	p.Admin, err = gorm.Open(postgres.Open(p.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("connect to schema: %v", err)
	}
	return p
}

// Postgres returns a migrated store on a fresh schema (see NewPG), using
// store.WithRole so that row-level security is enforced. It skips the test
// when SIM_TEST_POSTGRES_URL is unset.
func Postgres(tb testing.TB) *store.Store {
	tb.Helper()
	s, _ := PostgresWithPG(tb)
	return s
}

// PostgresWithPG is Postgres that also returns the schema description.
func PostgresWithPG(tb testing.TB) (*store.Store, *PG) {
	tb.Helper()
	p := NewPG(tb)
	ctx := context.Background()
	s, err := store.Open(ctx, p.URL, store.WithRole(p.Role))
	if err != nil {
		tb.Fatalf("open postgres store: %v", err)
	}
	// Registered after NewPG's cleanup, so it runs before the schema is dropped.
	tb.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return s, p
}
