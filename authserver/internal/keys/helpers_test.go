package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/ory/fosite/token/jwt"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// postgresEnv names the variable that enables the PostgreSQL variants.
const postgresEnv = "AUTH_TEST_POSTGRES_URL"

// testKEK returns a fixed key-encryption key.
func testKEK() []byte {
	return []byte("0123456789abcdef0123456789abcdef")
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().UTC()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testDB is one database; open returns independent handles to it, as two
// server instances would have.
type testDB struct {
	dialector func() gorm.Dialector
}

func (d testDB) open(t testing.TB) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(d.dialector(), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

// newSQLiteDB creates a temp-file SQLite database with the signing_keys
// table, using the DSN options the server is expected to use.
func newSQLiteDB(t testing.TB) testDB {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "keys.db") +
		"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	d := testDB{dialector: func() gorm.Dialector { return sqlite.Open(dsn) }}
	createTable(t, d.open(t))
	return d
}

// newPostgresDB creates a fresh schema on AUTH_TEST_POSTGRES_URL, points
// search_path at it and drops it at the end of the test.
func newPostgresDB(t testing.TB, base string) testDB {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "keys_test_" + hex.EncodeToString(b[:])
	admin := testDB{dialector: func() gorm.Dialector { return postgres.Open(base) }}.open(t)
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	var dsn string
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
	} else {
		dsn = strings.TrimSpace(base) + " search_path=" + schema
	}
	d := testDB{dialector: func() gorm.Dialector { return postgres.Open(dsn) }}
	createTable(t, d.open(t))
	return d
}

func createTable(t testing.TB, db *gorm.DB) {
	t.Helper()
	if err := db.Migrator().CreateTable(&SigningKey{}); err != nil {
		t.Fatalf("create table: %v", err)
	}
}

// forEachBackend runs fn on SQLite and, when AUTH_TEST_POSTGRES_URL is set,
// on PostgreSQL.
func forEachBackend(t *testing.T, fn func(t *testing.T, db testDB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newSQLiteDB(t))
	})
	t.Run("postgres", func(t *testing.T) {
		base := os.Getenv(postgresEnv)
		if base == "" {
			t.Skip(postgresEnv + " is not set; skipping the PostgreSQL variant (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
		}
		t.Parallel()
		fn(t, newPostgresDB(t, base))
	})
}

// auditLog records audit events.
type auditLog struct {
	mu     sync.Mutex
	events []string
}

func (a *auditLog) record(_ context.Context, eventType, kid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, eventType+" "+kid)
}

func (a *auditLog) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...)
}

// newTestManager returns a Manager with test defaults for unset fields.
func newTestManager(t testing.TB, db *gorm.DB, cfg Config) *Manager {
	t.Helper()
	if cfg.KEK == nil {
		cfg.KEK = testKEK()
	}
	if cfg.MaxTokenTTL == 0 {
		cfg.MaxTokenTTL = 15 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := NewManager(db, cfg)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

// startedManager returns a Manager on a fresh SQLite database with an
// active key.
func startedManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m := newTestManager(t, newSQLiteDB(t).open(t), cfg)
	if err := m.EnsureActive(context.Background()); err != nil {
		t.Fatalf("EnsureActive: %v", err)
	}
	return m
}

// testClaims returns access token claims valid for an hour of real time.
func testClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":       "https://auth.example",
		"sub":       "user-1",
		"client_id": "client-1",
		"jti":       "jti-1",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
}

// mustSign issues a token with m's signer.
func mustSign(t testing.TB, m *Manager) string {
	t.Helper()
	tok, _, err := m.Signer().Generate(context.Background(), testClaims(), &jwt.Headers{})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return tok
}

// headerKID returns the kid header of a token without verifying it.
func headerKID(t testing.TB, token string) string {
	t.Helper()
	tok, _ := jwt.ParseWithClaims(token, jwt.MapClaims{}, nil)
	if tok == nil {
		t.Fatalf("unparsable token %q", token)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// jwksKIDs returns the kids in the JWKS, in document order.
func jwksKIDs(t testing.TB, m *Manager) []string {
	t.Helper()
	body, _ := m.JWKS()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kid, _ := k["kid"].(string)
		kids = append(kids, kid)
	}
	return kids
}

// states returns kid → state from List.
func states(t testing.TB, m *Manager) map[string]State {
	t.Helper()
	infos, err := m.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := make(map[string]State, len(infos))
	for _, i := range infos {
		out[i.KID] = i.State
	}
	return out
}
