package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"golang.org/x/crypto/bcrypt"
)

// floorTable is created and dropped by the insert-floor scenario.
const floorTable = "loadgen_floor"

// prepareInsertFloor: every request is one autocommitted single-row INSERT
// through a pool of --workers connections to the same database the server
// uses — the cheapest durable write PostgreSQL can do here.
func (b *bench) prepareInsertFloor(ctx context.Context) (workerFunc, func(), error) {
	db, err := sql.Open("pgx", b.cfg.database)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(b.cfg.workers)
	db.SetMaxIdleConns(b.cfg.workers)
	stmts := []string{
		"DROP TABLE IF EXISTS " + floorTable,
		"CREATE TABLE " + floorTable + " (id bigserial PRIMARY KEY, v text, created_at timestamptz DEFAULT now())",
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("insert-floor: %w", err)
		}
	}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.ExecContext(cctx, "DROP TABLE IF EXISTS "+floorTable)
		db.Close()
	}
	insert := "INSERT INTO " + floorTable + " (v) VALUES ($1)"
	return func(ctx context.Context, i int) (op, error) {
		// Open this worker's connection before the clock starts.
		if err := db.PingContext(ctx); err != nil {
			return nil, err
		}
		v := "worker-" + strconv.Itoa(i)
		return func(ctx context.Context) error {
			_, err := db.ExecContext(ctx, insert, v)
			return err
		}, nil
	}, cleanup, nil
}

// prepareBcryptFloor: every request is one bcrypt comparison at the
// configured cost — the work a password grant cannot avoid.
func (b *bench) prepareBcryptFloor(context.Context) (workerFunc, func(), error) {
	pw := []byte(b.cfg.password)
	if len(pw) == 0 {
		pw = []byte("loadgen-bcrypt-floor-password")
	}
	hash, err := bcrypt.GenerateFromPassword(pw, b.cfg.bcryptCost)
	if err != nil {
		return nil, nil, err
	}
	return func(context.Context, int) (op, error) {
		return func(context.Context) error {
			return bcrypt.CompareHashAndPassword(hash, pw)
		}, nil
	}, noCleanup, nil
}

var dbNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// adminDatabase creates or drops a database through the admin URL, for
// deploy/bench-load.sh on hosts without psql.
func adminDatabase(ctx context.Context, adminURL, verb, name string) error {
	if !dbNamePattern.MatchString(name) {
		return fmt.Errorf("invalid database name %q", name)
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	stmt := `CREATE DATABASE "` + name + `"`
	if verb == "DROP" {
		stmt = `DROP DATABASE IF EXISTS "` + name + `" WITH (FORCE)`
	} else if verb != "CREATE" {
		return errors.New("unknown database operation " + verb)
	}
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s DATABASE %s: %w", verb, name, err)
	}
	return nil
}
