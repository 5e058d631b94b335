package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// envPrefix is the prefix of every flag's environment variable: --foo-bar
// is AUTH_FOO_BAR, except --database which is AUTH_DATABASE_URL.
const envPrefix = "AUTH_"

// kekEnv holds the key-encryption key; it is never a flag.
const kekEnv = "AUTH_KEY_ENCRYPTION_KEY"

type globals struct {
	database string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "authserver",
		Short:         "EpiTwin OAuth 2.0 authorization server",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.database, "database", storage.DefaultURL, "database URL: sqlite:PATH or postgres://... (env AUTH_DATABASE_URL)")
	root.AddCommand(
		newServeCmd(g),
		newMigrateCmd(g),
		newTenantCmd(g),
		newUserCmd(g),
		newClientCmd(g),
		newKeysCmd(g),
		newSessionCmd(g),
		newAuditCmd(g),
		newBootstrapCmd(g),
	)
	return root
}

// envName returns the environment variable of a flag.
func envName(flag string) string {
	if flag == "database" {
		return "AUTH_DATABASE_URL"
	}
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets flags not given on the command line from their environment
// variables, so flags always win over the environment. Only configuration
// flags are bound (--database, and those of serve and keys): the arguments
// of one-off operator commands (--tenant, --role, --id, ...) never come from
// a stray variable in the operator's shell. Empty variables are ignored.
func applyEnv(cmd *cobra.Command) error {
	var firstErr error
	bindAll := false
	for c := cmd; c != nil; c = c.Parent() {
		if c.Name() == "serve" || c.Name() == "keys" {
			bindAll = true
		}
	}
	set := func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || (!bindAll && f.Name != "database") {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok && v != "" {
			if err := f.Value.Set(v); err != nil {
				firstErr = fmt.Errorf("%s: %w", envName(f.Name), err)
			}
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return firstErr
}

// openDB opens and migrates the database.
func (g *globals) openDB(ctx context.Context) (*storage.DB, error) {
	db, err := storage.Open(ctx, g.database, slog.Default())
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// loadKEK reads the key-encryption key: from AUTH_KEY_ENCRYPTION_KEY, or on
// the embedded database from (or newly into) the data directory. With
// PostgreSQL it must be configured, since every instance needs the same.
func loadKEK(db *storage.DB) ([]byte, error) {
	return keys.LoadKEK(os.Getenv(kekEnv), db.DataDir, db.Dialect == storage.DialectPostgres)
}
