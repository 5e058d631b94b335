package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialects supported by Open.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// DefaultURL is the embedded database used when none is configured.
const DefaultURL = "sqlite:./var/authserver.db"

// Storage errors. Callers compare with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrUnavailable marks a read that failed because the database did
	// not answer, as opposed to a row that is not there.
	ErrUnavailable = errors.New("database unavailable")
)

// DB is an open database and the dialect it speaks.
type DB struct {
	Gorm    *gorm.DB
	Dialect string
	// DataDir is the directory of the SQLite file; empty on PostgreSQL.
	DataDir string
}

// Open connects to url: "sqlite:PATH" (the directory is created) or a
// "postgres://" / "postgresql://" URL. It does not migrate.
func Open(ctx context.Context, rawURL string, log *slog.Logger) (*DB, error) {
	cfg := &gorm.Config{
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
		SkipDefaultTransaction: true,
		PrepareStmt:            false,
		TranslateError:         false,
	}
	switch {
	case strings.HasPrefix(rawURL, "sqlite:"):
		path := strings.TrimPrefix(rawURL, "sqlite:")
		path = strings.TrimPrefix(path, "//")
		if path == "" || strings.ContainsAny(path, "?#") {
			return nil, fmt.Errorf("invalid sqlite URL %q: want sqlite:PATH", rawURL)
		}
		dir := filepath.Dir(path)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		// WAL lets readers run beside the single writer; _txlock=immediate
		// takes the write lock at BEGIN so two concurrent refreshes
		// serialize instead of failing half-way (see docs/decisions).
		dsn := path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		g, err := gorm.Open(sqlite.Open(dsn), cfg)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		sqlDB, err := g.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(8)
		if err := sqlDB.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		// The file holds password hashes and encrypted keys: owner only.
		_ = os.Chmod(path, 0o600)
		abs, _ := filepath.Abs(dir)
		return &DB{Gorm: g, Dialect: DialectSQLite, DataDir: abs}, nil
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		if _, err := url.Parse(rawURL); err != nil {
			return nil, fmt.Errorf("invalid postgres URL: %w", err)
		}
		g, err := gorm.Open(postgres.Open(rawURL), cfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", redactErr(err, rawURL))
		}
		sqlDB, err := g.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(32)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		if err := sqlDB.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("connect postgres: %w", redactErr(err, rawURL))
		}
		return &DB{Gorm: g, Dialect: DialectPostgres}, nil
	default:
		return nil, fmt.Errorf("unsupported database URL (want sqlite:PATH or postgres://...)")
	}
}

// redactErr keeps a password in the URL out of error messages.
func redactErr(err error, rawURL string) error {
	u, perr := url.Parse(rawURL)
	if perr != nil || u.User == nil {
		return err
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return errors.New(strings.ReplaceAll(err.Error(), p, "xxxxx"))
	}
	return err
}

// Ping reports whether the database answers.
func (d *DB) Ping(ctx context.Context) error {
	sqlDB, err := d.Gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close closes the connection pool.
func (d *DB) Close() error {
	sqlDB, err := d.Gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// isUniqueViolation reports a duplicate-key error on either dialect.
func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// isSerializationFailure reports a conflict between concurrent transactions
// that the caller may retry: 40001/40P01 on PostgreSQL, SQLITE_BUSY on SQLite.
func isSerializationFailure(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	return err != nil && (strings.Contains(err.Error(), "database is locked") || strings.Contains(err.Error(), "SQLITE_BUSY"))
}
