// Command simapi is EpiTwin's simulation API, a resource server that accepts
// access tokens issued by authserver.
//
//	simapi serve   [--addr 127.0.0.1:8081] [--issuer URL] [--audience simapi] [--database URL] ...
//	simapi migrate [--database URL]
//
// Every flag can also be set through the environment variable SIM_<FLAG>
// (upper case, dashes as underscores; --database is SIM_DATABASE_URL); a
// flag on the command line wins. The introspection client secret is read
// only from SIM_INTROSPECTION_CLIENT_SECRET, never from a flag.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/epitwin/epitwin/pkg/verify"
	"github.com/epitwin/epitwin/simapi/internal/server"
	"github.com/epitwin/epitwin/simapi/internal/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "simapi:", err)
		os.Exit(1)
	}
}

// run executes the command line; SIGINT and SIGTERM cancel its context.
func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newRootCmd(os.Getenv).ExecuteContext(ctx)
}

// secretEnv is the only source of the introspection client secret.
const secretEnv = "SIM_INTROSPECTION_CLIENT_SECRET"

type serveConfig struct {
	addr               string
	issuer             string
	audience           string
	introspectionID    string
	introspectionSec   string
	revocationCacheTTL time.Duration
	introspectionGrace time.Duration
	noRevocationCheck  bool
	jwksRefresh        time.Duration
	database           string
	databaseRole       string
	logLevel           string
	shutdownTimeout    time.Duration
}

func newRootCmd(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "simapi",
		Short:         "EpiTwin simulation API (OAuth2 resource server)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var database, dbRole, logLevel string
	addDB := func(fs *pflag.FlagSet) {
		fs.StringVar(&database, "database", store.DefaultURL, `database URL: "sqlite:PATH" or "postgres://..." (env SIM_DATABASE_URL)`)
		fs.StringVar(&dbRole, "database-role", "", "PostgreSQL role to SET LOCAL ROLE to in tenant transactions, for when the connecting user bypasses row-level security (env SIM_DATABASE_ROLE)")
		fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error (env SIM_LOG_LEVEL)")
	}

	var sc serveConfig
	serve := &cobra.Command{
		Use:   "serve",
		Short: "run the HTTP API (applies pending migrations first)",
		Args:  cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd.Flags(), getenv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc.database, sc.databaseRole, sc.logLevel = database, dbRole, logLevel
			sc.introspectionSec = getenv(secretEnv)
			if sc.introspectionID != "" && sc.introspectionSec == "" {
				return fmt.Errorf("--introspection-client-id is set but %s is empty: the introspection client secret is read only from that environment variable", secretEnv)
			}
			if sc.introspectionID == "" && !sc.noRevocationCheck {
				// Fail closed: without introspection a revoked token, or
				// one of a disabled user, is accepted until it expires.
				return fmt.Errorf("--introspection-client-id is required (revoked tokens would otherwise be accepted until they expire); pass --no-revocation-check to run without it")
			}
			return serveAPI(cmd.Context(), sc, os.Stderr)
		},
	}
	fs := serve.Flags()
	fs.StringVar(&sc.addr, "addr", "127.0.0.1:8081", "listen address (env SIM_ADDR)")
	fs.StringVar(&sc.issuer, "issuer", "http://127.0.0.1:8080", "authorization server issuer URL (env SIM_ISSUER)")
	fs.StringVar(&sc.audience, "audience", "simapi", "required token audience (env SIM_AUDIENCE)")
	fs.StringVar(&sc.introspectionID, "introspection-client-id", "", "client ID for RFC 7662 introspection (revocation checks); the secret comes from "+secretEnv+" (env SIM_INTROSPECTION_CLIENT_ID)")
	fs.DurationVar(&sc.revocationCacheTTL, "revocation-cache-ttl", 5*time.Second, "how long an introspection answer is cached (env SIM_REVOCATION_CACHE_TTL)")
	fs.BoolVar(&sc.noRevocationCheck, "no-revocation-check", false, "run without introspection: revoked tokens stay valid until they expire (env SIM_NO_REVOCATION_CHECK)")
	fs.DurationVar(&sc.jwksRefresh, "jwks-refresh-interval", time.Minute, "how often the authorization server's JWKS is refetched; bounds how long a revoked key still verifies (env SIM_JWKS_REFRESH_INTERVAL)")
	fs.DurationVar(&sc.introspectionGrace, "introspection-grace", 60*time.Second, "how long a cached active answer is trusted while introspection is unreachable (env SIM_INTROSPECTION_GRACE)")
	fs.DurationVar(&sc.shutdownTimeout, "shutdown-timeout", 20*time.Second, "grace period for in-flight requests on SIGTERM/SIGINT (env SIM_SHUTDOWN_TIMEOUT)")
	addDB(fs)

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "apply pending database migrations and exit",
		Args:  cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd.Flags(), getenv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(os.Stderr, logLevel)
			if err != nil {
				return err
			}
			st, err := openStore(cmd.Context(), database, dbRole, log)
			if err != nil {
				return err
			}
			defer st.Close()
			applied, err := st.Applied(cmd.Context())
			if err != nil {
				return err
			}
			log.Info("database migrated", "dialect", st.Dialect(), "version", applied[len(applied)-1].Version)
			return nil
		},
	}
	addDB(migrate.Flags())

	root.AddCommand(serve, migrate)
	return root
}

// envName maps a flag to its environment variable.
func envName(flag string) string {
	if flag == "database" {
		return "SIM_DATABASE_URL"
	}
	return "SIM_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func bindEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w *os.File, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", "simapi"), nil
}

// openStore opens and migrates the database.
func openStore(ctx context.Context, url, role string, log *slog.Logger) (*store.Store, error) {
	var opts []store.Option
	if role != "" {
		opts = append(opts, store.WithRole(role))
	}
	st, err := store.Open(ctx, url, opts...)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if st.Dialect() == store.Postgres {
		if ok, err := st.RLSEnforced(ctx); err != nil {
			log.Warn("could not check row-level security", "error", err.Error())
		} else if !ok {
			log.Warn("row-level security is NOT enforced: the database role is a superuser or has BYPASSRLS; connect as an ordinary role or set --database-role")
		}
	}
	return st, nil
}

// serveAPI wires logger, store, verifier and server, serves until ctx is
// cancelled, then shuts down gracefully.
func serveAPI(ctx context.Context, sc serveConfig, logOut *os.File) error {
	log, err := newLogger(logOut, sc.logLevel)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, sc.database, sc.databaseRole, log)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	vopts := []verify.Option{
		verify.WithLogger(log),
		verify.WithRegisterer(reg),
		verify.WithRevocationCacheTTL(sc.revocationCacheTTL),
		verify.WithIntrospectionGrace(sc.introspectionGrace),
		verify.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}),
		verify.WithJWKSRefreshInterval(sc.jwksRefresh),
	}
	if sc.introspectionID != "" {
		vopts = append(vopts, verify.WithIntrospection(sc.introspectionID, sc.introspectionSec))
	}
	v, err := verify.New(ctx, sc.issuer, sc.audience, vopts...)
	if err != nil {
		return fmt.Errorf("token verifier: %w", err)
	}
	defer v.Close()

	h, err := server.New(server.Config{
		Store: st, Auth: v.Middleware, Ready: v.Ready, Logger: log, Registry: reg,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              sc.addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute, // exports extend their own deadline per batch
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", sc.addr)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String(), "issuer", sc.issuer, "audience", sc.audience,
		"database", st.Dialect(), "introspection", sc.introspectionID != "")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), sc.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}
