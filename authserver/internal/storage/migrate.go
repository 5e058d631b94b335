package storage

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/epitwin/epitwin/authserver/internal/keys"
)

// migration is one versioned, append-only schema change. Released
// migrations are never edited: a change to the schema is a new version.
type migration struct {
	version int
	name    string
	up      func(tx *gorm.DB, dialect string) error
}

var migrations = []migration{
	{1, "initial schema", func(tx *gorm.DB, _ string) error {
		return tx.Migrator().CreateTable(
			&Tenant{}, &User{}, &Client{},
			&AccessTokenRow{}, &RefreshTokenRow{},
			&AuditEvent{}, &keys.SigningKey{},
		)
	}},
	{2, "audit log is append-only", func(tx *gorm.DB, dialect string) error {
		var stmts []string
		if dialect == DialectPostgres {
			stmts = []string{
				`CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql`,
				`CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()`,
			}
		} else {
			stmts = []string{
				`CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
				`CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`,
			}
		}
		for _, s := range stmts {
			if err := tx.Exec(s).Error; err != nil {
				return err
			}
		}
		return nil
	}},
	{3, "index refresh families by user", func(tx *gorm.DB, _ string) error {
		return tx.Exec(`CREATE INDEX ix_refresh_tokens_user_active ON refresh_tokens (user_id, active)`).Error
	}},
	{4, "fewer indexes on the token-issuing path", func(tx *gorm.DB, dialect string) error {
		// Every token issued writes an access row and an audit event:
		// drop the indexes no query uses and serve tenant audit listings
		// (filter by tenant, page by id) from one composite index.
		for _, q := range []string{
			`DROP INDEX idx_access_tokens_tenant_id`,
			`DROP INDEX idx_refresh_tokens_tenant_id`,
			`DROP INDEX idx_audit_events_type`,
			`DROP INDEX idx_audit_events_time`,
			`DROP INDEX idx_audit_events_tenant_id`,
			`CREATE INDEX ix_audit_events_tenant_id_id ON audit_events (tenant_id, id)`,
			// "active" must not be indexed: rotating or revoking a token
			// then updates no index (a HOT update on PostgreSQL); the
			// user_id index serves the per-user queries.
			`DROP INDEX ix_refresh_tokens_user_active`,
		} {
			if err := tx.Exec(q).Error; err != nil {
				return err
			}
		}
		if dialect == DialectPostgres {
			// Leave room in each page for the rotated version of a row,
			// so deactivating a token stays on its page.
			for _, q := range []string{
				`ALTER TABLE refresh_tokens SET (fillfactor = 70)`,
				`ALTER TABLE access_tokens SET (fillfactor = 80)`,
			} {
				if err := tx.Exec(q).Error; err != nil {
					return err
				}
			}
		}
		return nil
	}},
	{5, "audit log cannot be truncated", func(tx *gorm.DB, dialect string) error {
		if dialect != DialectPostgres {
			return nil // SQLite has no TRUNCATE; DELETE is already refused.
		}
		return tx.Exec(`CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()`).Error
	}},
}

// SchemaVersion is the newest migration this binary knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// Migrate applies every migration newer than the database's version, each
// in its own transaction, and returns how many it applied. Concurrent
// callers (several instances starting at once) are serialized.
func (d *DB) Migrate(ctx context.Context) (int, error) {
	g := d.Gorm.WithContext(ctx)
	// Concurrent CREATE TABLE IF NOT EXISTS races on PostgreSQL (23505 on
	// pg_type), so it runs under the same advisory lock as the migrations.
	if err := g.Transaction(func(tx *gorm.DB) error {
		if d.Dialect == DialectPostgres {
			if err := tx.Exec(`SELECT pg_advisory_xact_lock(7461936)`).Error; err != nil {
				return err
			}
		}
		return tx.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at TIMESTAMP NOT NULL)`).Error
	}); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := 0
	for _, m := range migrations {
		done := false
		err := g.Transaction(func(tx *gorm.DB) error {
			if d.Dialect == DialectPostgres {
				// One migrator at a time across instances.
				if err := tx.Exec(`SELECT pg_advisory_xact_lock(7461936)`).Error; err != nil {
					return err
				}
			}
			var current int
			if err := tx.Raw(`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current).Error; err != nil {
				return err
			}
			if current > SchemaVersion() {
				return fmt.Errorf("database schema version %d is newer than this binary's %d: upgrade authserver", current, SchemaVersion())
			}
			if current >= m.version {
				return nil
			}
			if current != m.version-1 {
				return fmt.Errorf("database schema version %d cannot be migrated to %d", current, m.version)
			}
			if err := m.up(tx, d.Dialect); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			done = true
			return tx.Create(&schemaMigration{Version: m.version, Name: m.name, AppliedAt: time.Now().UTC()}).Error
		})
		if err != nil {
			return applied, err
		}
		if done {
			applied++
		}
	}
	return applied, nil
}

// Version returns the database's schema version (0 when never migrated).
func (d *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := d.Gorm.WithContext(ctx).Raw(`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v).Error
	return v, err
}
