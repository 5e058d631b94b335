package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/epitwin/epitwin/authserver/internal/app"
	"github.com/epitwin/epitwin/authserver/internal/server"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

type serveOptions struct {
	addr            string
	issuer          string
	refreshTTL      time.Duration
	refreshMax      time.Duration
	bcryptCost      int
	logLevel        string
	cleanupInterval time.Duration
	clientCacheTTL  time.Duration
	secretOverlap   time.Duration
	redisURL        string
	noThrottle      bool
	pprofAddr       string
	trustedProxies  string
	keys            keyOptions
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization server (migrates the database first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, g, o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address")
	f.StringVar(&o.issuer, "issuer", "http://127.0.0.1:8080", "issuer URL: the iss of every token and the base of every endpoint")
	f.DurationVar(&o.keys.accessTTL, "access-token-ttl", time.Hour, "access-token lifetime")
	f.DurationVar(&o.refreshTTL, "refresh-token-ttl", 720*time.Hour, "refresh-token lifetime (renewed on every rotation)")
	f.DurationVar(&o.refreshMax, "refresh-family-max-lifetime", 0, "cap on how long one login can be kept alive by refreshing, e.g. 2160h (0: no cap; each refresh renews --refresh-token-ttl)")
	f.StringVar(&o.keys.alg, "signing-alg", "ES256", "algorithm of new signing keys: ES256, RS256 or EdDSA")
	f.DurationVar(&o.keys.rotationPeriod, "key-rotation-period", 0, "rotate the signing key this often (0: only by 'keys rotate')")
	f.DurationVar(&o.keys.jwksMaxAge, "jwks-max-age", 5*time.Minute, "Cache-Control max-age of the JWKS; a scheduled next key is published 2x this long before it signs")
	f.IntVar(&o.bcryptCost, "bcrypt-cost", 12, "bcrypt cost of new password hashes and of the dummy compare")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&o.clientCacheTTL, "client-cache-ttl", 2*time.Second, "how long client records are cached; a client change made by another instance is seen within this time (0: no cache)")
	f.DurationVar(&o.secretOverlap, "secret-rotation-overlap", 24*time.Hour, "how long a rotated client secret keeps working")
	f.StringVar(&o.redisURL, "redis-url", "", "Redis URL (redis://host:6379/0) to share login throttling between instances; empty: per instance")
	f.BoolVar(&o.noThrottle, "disable-throttling", false, "turn off login and client-authentication throttling (load tests only)")
	f.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of load balancers whose X-Forwarded-For names the client (for throttling and the audit log); empty: the TCP peer is the client")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiling (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (empty: off)")
	f.DurationVar(&o.cleanupInterval, "token-cleanup-interval", time.Hour, "how often expired token rows are deleted")
	return cmd
}

// validateIssuer checks RFC 8414 §2: https (or http on loopback), no query
// or fragment, no trailing slash.
func validateIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("--issuer must be an absolute http(s) URL, got %q", s)
	}
	if u.Scheme == "http" {
		// Tokens and client secrets cross this origin: plain http only
		// where it never leaves the machine.
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--issuer must use https unless its host is loopback (got %q)", s)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "/") {
		return fmt.Errorf("--issuer must have no query, fragment or trailing slash")
	}
	return nil
}

func newLogger(level string, w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serve(ctx context.Context, g *globals, o serveOptions, logOut interface{ Write([]byte) (int, error) }) error {
	log, err := newLogger(o.logLevel, logOut)
	if err != nil {
		return err
	}
	if err := validateIssuer(o.issuer); err != nil {
		return err
	}
	if o.keys.accessTTL < time.Minute || o.refreshTTL < o.keys.accessTTL {
		return errors.New("--access-token-ttl must be at least 1m and --refresh-token-ttl at least as long")
	}

	db, err := storage.Open(ctx, g.database, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	log.Info("database ready", "dialect", db.Dialect, "migrations_applied", n)
	kek, err := loadKEK(db)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	proxies, err := server.ParseTrustedProxies(o.trustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	var limiter *throttle.Limiter
	if !o.noThrottle {
		tc := throttle.Config{Logger: log}
		if o.redisURL != "" {
			opt, err := redis.ParseURL(o.redisURL)
			if err != nil {
				return fmt.Errorf("--redis-url: %w", err)
			}
			// Short timeouts: a slow Redis must not stall logins; the
			// limiter falls back to its in-process state.
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = 500*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond, 1
			rc := redis.NewClient(opt)
			defer rc.Close()
			tc.Redis = rc
		}
		limiter = throttle.New(tc)
	} else {
		log.Warn("login and client-authentication throttling is disabled")
	}
	a, err := app.New(ctx, app.Config{
		Issuer:                   o.issuer,
		DB:                       db,
		KEK:                      kek,
		AccessTokenTTL:           o.keys.accessTTL,
		RefreshTokenTTL:          o.refreshTTL,
		MaxRefreshFamilyLifetime: o.refreshMax,
		SigningAlg:               o.keys.alg,
		KeyRotationPeriod:        o.keys.rotationPeriod,
		JWKSMaxAge:               o.keys.jwksMaxAge,
		BcryptCost:               o.bcryptCost,
		ClientCacheTTL:           o.clientCacheTTL,
		SecretOverlap:            o.secretOverlap,
		Throttle:                 limiter,
		TrustedProxies:           proxies,
		Logger:                   log,
		Registry:                 reg,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	bg, cancelBG := context.WithCancel(ctx)
	defer cancelBG()
	a.Run(bg, o.cleanupInterval)

	if o.pprofAddr != "" {
		if err := servePprof(bg, o.pprofAddr, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("authserver listening", "addr", ln.Addr().String(), "issuer", o.issuer)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return hs.Shutdown(shutCtx)
}

// servePprof serves the Go profiler on a loopback address only: profiles
// reveal memory contents and must never face the network.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr must be a loopback address, got %q", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	log.Warn("profiling endpoint enabled", "addr", ln.Addr().String())
	return nil
}
