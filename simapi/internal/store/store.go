// Package store persists simapi's tenant data (forecasts and observations)
// with gorm on SQLite (the embedded default) or PostgreSQL.
//
// Every method takes a context and the caller's tenant ID, and every query
// filters on it. On PostgreSQL the tables additionally carry row-level
// security (ENABLE + FORCE, policy tenant_id = current_setting('app.tenant_id',
// true)) and every tenant operation runs in a transaction that first calls
// set_config('app.tenant_id', $tenant, true), so even a query that forgot its
// tenant filter sees only the caller's rows. RLS is not enforced for
// superusers or BYPASSRLS roles; connect as an ordinary role, or name one
// with [WithRole] to have each tenant transaction run SET LOCAL ROLE to it
// (what the tests do, since their database user is a superuser).
//
// SQLite has no row-level security: there the isolation rests on the
// application filter alone, which the conformance suite
// (store/conformance) checks on both databases.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DefaultURL is the database used when none is configured.
const DefaultURL = "sqlite:./var/simapi.db"

// Dialect names the database behind a Store.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Errors returned by the store.
var (
	// ErrNotFound means no row of the caller's tenant has that key. A row
	// that exists for another tenant is reported the same way.
	ErrNotFound = errors.New("store: not found")
	// ErrBadCursor means a pagination cursor was not produced by this store
	// for this listing.
	ErrBadCursor = errors.New("store: invalid cursor")
	// ErrNoTenant means the tenant ID was empty.
	ErrNoTenant = errors.New("store: empty tenant id")
)

// MaxLimit is the largest page size a listing returns.
const MaxLimit = 500

// Store is the database handle. It is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect Dialect
	role    string // PostgreSQL role for SET LOCAL ROLE in tenant transactions, or ""
}

// Option configures Open.
type Option func(*options)

type options struct {
	role string
}

// WithRole makes every tenant transaction on PostgreSQL start with
// SET LOCAL ROLE role, and makes Migrate grant that role what it needs
// (USAGE on the schema, DML on the tenant tables). Use it when the
// connecting user is a superuser or otherwise bypasses row-level security;
// the connecting user must be a member of role. Ignored on SQLite.
func WithRole(role string) Option { return func(o *options) { o.role = role } }

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Open connects to url: "sqlite:PATH" (PATH may be ":memory:" for tests
// with a single connection) or "postgres://..." / "postgresql://...".
// It does not migrate; call Migrate.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.role != "" && !identRE.MatchString(o.role) {
		return nil, fmt.Errorf("store: invalid role name %q", o.role)
	}
	if url == "" {
		url = DefaultURL
	}
	cfg := &gorm.Config{
		Logger:                                   logger.Discard,
		NowFunc:                                  func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		SkipDefaultTransaction:                   true,
		DisableForeignKeyConstraintWhenMigrating: true,
	}
	s := &Store{}
	var dia gorm.Dialector
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return nil, errors.New("store: sqlite URL has no path")
		}
		if path != ":memory:" {
			if dir := filepath.Dir(path); dir != "." {
				if err := os.MkdirAll(dir, 0o750); err != nil {
					return nil, fmt.Errorf("store: create database directory: %w", err)
				}
			}
		}
		dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_txlock=immediate&_time_format=sqlite"
		dia = sqlite.Open(dsn)
		s.dialect = SQLite
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		dia = postgres.Open(url)
		s.dialect = Postgres
		s.role = o.role
	default:
		return nil, errors.New(`store: unsupported database URL (want "sqlite:PATH" or "postgres://...")`)
	}
	db, err := gorm.Open(dia, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", s.dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if s.dialect == SQLite && strings.Contains(url, ":memory:") {
		// Every connection to :memory: is a different database.
		sqlDB.SetMaxOpenConns(1)
	} else if s.dialect == Postgres {
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(20)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	s.db, s.sqlDB = db, sqlDB
	if err := s.Ping(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return s, nil
}

// Dialect reports the database kind.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close releases the connections.
func (s *Store) Close() error { return s.sqlDB.Close() }

// RLSEnforced reports whether row-level security applies to the tenant
// transactions of s: always false on SQLite; on PostgreSQL false when the
// effective role of a tenant transaction is a superuser or has BYPASSRLS.
func (s *Store) RLSEnforced(ctx context.Context) (bool, error) {
	if s.dialect != Postgres {
		return false, nil
	}
	var bypass bool
	err := s.tenantTx(ctx, "rls-probe", func(tx *gorm.DB) error {
		return tx.Raw(`SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user`).Row().Scan(&bypass)
	})
	if err != nil {
		return false, fmt.Errorf("store: probe role: %w", err)
	}
	return !bypass, nil
}

// tenantTx runs fn in a transaction scoped to tenant. On PostgreSQL it first
// switches to the configured role (if any) and sets app.tenant_id, which the
// row-level-security policies read; both are transaction-local.
func (s *Store) tenantTx(ctx context.Context, tenant string, fn func(tx *gorm.DB) error) error {
	if tenant == "" {
		return ErrNoTenant
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.dialect == Postgres {
			if s.role != "" {
				// The role name was validated as an identifier in Open.
				if err := tx.Exec(`SET LOCAL ROLE "` + s.role + `"`).Error; err != nil {
					return fmt.Errorf("set role: %w", err)
				}
			}
			if err := tx.Exec(`SELECT set_config('app.tenant_id', ?, true)`, tenant).Error; err != nil {
				return fmt.Errorf("set tenant: %w", err)
			}
		}
		return fn(tx)
	})
}

// tenantRead runs a read-only fn for tenant. SQLite reads need no
// transaction (and with _txlock=immediate one would serialize readers);
// PostgreSQL reads need one so that app.tenant_id stays transaction-local.
func (s *Store) tenantRead(ctx context.Context, tenant string, fn func(tx *gorm.DB) error) error {
	if tenant == "" {
		return ErrNoTenant
	}
	if s.dialect == SQLite {
		return fn(s.db.WithContext(ctx))
	}
	return s.tenantTx(ctx, tenant, fn)
}

// NewID returns a random RFC 4122 version 4 UUID string.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}
