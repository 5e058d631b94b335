package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one numbered schema step. Each runs in its own transaction
// together with the insert of its schema_migrations row.
type migration struct {
	version  int
	name     string
	sqlite   []string
	postgres []string
}

// migrations are applied in order; never edit a released step, add one.
var migrations = []migration{
	{
		version: 1,
		name:    "forecasts and observations",
		sqlite: []string{
			`CREATE TABLE forecasts (
				id            TEXT PRIMARY KEY,
				tenant_id     TEXT NOT NULL,
				created_by    TEXT NOT NULL,
				client_id     TEXT NOT NULL,
				created_at    DATETIME NOT NULL,
				compute_ns    INTEGER NOT NULL,
				days          INTEGER NOT NULL,
				r0            REAL NOT NULL,
				peak_day      INTEGER NOT NULL,
				peak_infected REAL NOT NULL,
				attack_rate   REAL NOT NULL,
				params        TEXT NOT NULL,
				result        TEXT NOT NULL
			)`,
			`CREATE INDEX forecasts_tenant_created ON forecasts (tenant_id, created_at DESC, id DESC)`,
			`CREATE TABLE observations (
				tenant_id    TEXT NOT NULL,
				date         TEXT NOT NULL,
				cases        INTEGER NOT NULL CHECK (cases >= 0),
				deaths       INTEGER CHECK (deaths >= 0),
				hospitalized INTEGER CHECK (hospitalized >= 0),
				updated_at   DATETIME NOT NULL,
				PRIMARY KEY (tenant_id, date)
			)`,
		},
		postgres: []string{
			`CREATE TABLE forecasts (
				id            TEXT COLLATE "C" PRIMARY KEY,
				tenant_id     TEXT NOT NULL,
				created_by    TEXT NOT NULL,
				client_id     TEXT NOT NULL,
				created_at    TIMESTAMPTZ NOT NULL,
				compute_ns    BIGINT NOT NULL,
				days          INTEGER NOT NULL,
				r0            DOUBLE PRECISION NOT NULL,
				peak_day      INTEGER NOT NULL,
				peak_infected DOUBLE PRECISION NOT NULL,
				attack_rate   DOUBLE PRECISION NOT NULL,
				params        JSONB NOT NULL,
				result        JSONB NOT NULL
			)`,
			`CREATE INDEX forecasts_tenant_created ON forecasts (tenant_id, created_at DESC, id DESC)`,
			`CREATE TABLE observations (
				tenant_id    TEXT NOT NULL,
				date         TEXT COLLATE "C" NOT NULL CHECK (date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
				cases        BIGINT NOT NULL CHECK (cases >= 0),
				deaths       BIGINT CHECK (deaths >= 0),
				hospitalized BIGINT CHECK (hospitalized >= 0),
				updated_at   TIMESTAMPTZ NOT NULL,
				PRIMARY KEY (tenant_id, date)
			)`,
		},
	},
	{
		version: 2,
		name:    "row-level security (PostgreSQL only)",
		sqlite:  nil, // SQLite has no RLS; isolation rests on the application filter.
		postgres: []string{
			`ALTER TABLE forecasts ENABLE ROW LEVEL SECURITY`,
			`ALTER TABLE forecasts FORCE ROW LEVEL SECURITY`,
			`CREATE POLICY tenant_isolation ON forecasts
				USING (tenant_id = current_setting('app.tenant_id', true))
				WITH CHECK (tenant_id = current_setting('app.tenant_id', true))`,
			`ALTER TABLE observations ENABLE ROW LEVEL SECURITY`,
			`ALTER TABLE observations FORCE ROW LEVEL SECURITY`,
			`CREATE POLICY tenant_isolation ON observations
				USING (tenant_id = current_setting('app.tenant_id', true))
				WITH CHECK (tenant_id = current_setting('app.tenant_id', true))`,
		},
	},
}

// LatestVersion is the schema version Migrate brings a database to.
func LatestVersion() int { return migrations[len(migrations)-1].version }

// AppliedMigration is one row of schema_migrations.
type AppliedMigration struct {
	Version   int
	AppliedAt time.Time
}

// Migrate applies every pending migration, each in its own transaction, and
// records it in schema_migrations (version, applied_at). It is idempotent
// and safe to run from several processes at once (PostgreSQL serializes on
// an advisory lock, SQLite on its write lock). It runs as the connecting
// user, which should own the tables; with WithRole it then grants that role
// USAGE on the schema and DML on the tenant tables.
func (s *Store) Migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DATETIME NOT NULL)`
	if s.dialect == Postgres {
		create = `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)`
	}
	if s.dialect == Postgres {
		// CREATE TABLE IF NOT EXISTS can still race on the catalog; serialize it.
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.schema_migrations'))`).Error; err != nil {
				return err
			}
			return tx.Exec(create).Error
		})
		if err != nil {
			return fmt.Errorf("store: create schema_migrations: %w", err)
		}
	} else if err := db.Exec(create).Error; err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	for _, m := range migrations {
		err := db.Transaction(func(tx *gorm.DB) error {
			stmts := m.sqlite
			if s.dialect == Postgres {
				stmts = m.postgres
				if err := tx.Exec(`SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.schema_migrations'))`).Error; err != nil {
					return err
				}
			}
			var n int64
			if err := tx.Raw(`SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Row().Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, q := range stmts {
				if err := tx.Exec(q).Error; err != nil {
					return err
				}
			}
			return tx.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, time.Now().UTC()).Error
		})
		if err != nil {
			return fmt.Errorf("store: migration %d (%s): %w", m.version, m.name, err)
		}
	}
	if s.dialect == Postgres && s.role != "" {
		grants := []string{
			`GRANT USAGE ON SCHEMA ` + `"` + "%s" + `"` + ` TO "` + s.role + `"`,
			`GRANT SELECT, INSERT, UPDATE, DELETE ON forecasts, observations TO "` + s.role + `"`,
			`GRANT SELECT ON schema_migrations TO "` + s.role + `"`,
		}
		var schema string
		if err := db.Raw(`SELECT current_schema()`).Row().Scan(&schema); err != nil {
			return fmt.Errorf("store: current schema: %w", err)
		}
		if !identRE.MatchString(schema) {
			return fmt.Errorf("store: unexpected schema name %q", schema)
		}
		grants[0] = fmt.Sprintf(grants[0], schema)
		for _, q := range grants {
			if err := db.Exec(q).Error; err != nil {
				return fmt.Errorf("store: grant to %s: %w", s.role, err)
			}
		}
	}
	return nil
}

// Applied lists the applied migrations in version order.
func (s *Store) Applied(ctx context.Context) ([]AppliedMigration, error) {
	var out []AppliedMigration
	rows, err := s.db.WithContext(ctx).Raw(`SELECT version, applied_at FROM schema_migrations ORDER BY version`).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: list migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m AppliedMigration
		if err := rows.Scan(&m.Version, &m.AppliedAt); err != nil {
			return nil, fmt.Errorf("store: list migrations: %w", err)
		}
		m.AppliedAt = m.AppliedAt.UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}
