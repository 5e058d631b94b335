// Package app wires authserver's parts — storage, key ring, OAuth provider,
// HTTP server — from one Config. The serve command and the end-to-end tests
// both build the server through it, so the tests run what production runs.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/admin"
	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/server"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
	"github.com/epitwin/epitwin/pkg/verify"
)

// Config is everything the server needs.
type Config struct {
	Issuer          string
	DB              *storage.DB
	KEK             []byte
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// MaxRefreshFamilyLifetime caps how long one login can be kept alive
	// by refreshing (0: no cap).
	MaxRefreshFamilyLifetime time.Duration
	SigningAlg               string
	// KeyRotationPeriod enables scheduled rotation (0: off).
	KeyRotationPeriod time.Duration
	JWKSMaxAge        time.Duration
	// KeyReloadInterval is how often the key ring is re-read (default 5s).
	KeyReloadInterval time.Duration
	BcryptCost        int
	// TrustedProxies are load balancers whose X-Forwarded-For is believed.
	TrustedProxies server.TrustedProxies
	// SecretOverlap is how long a rotated client secret keeps working.
	SecretOverlap time.Duration
	// ClientCacheTTL bounds how long a client change made by another
	// instance takes to be seen (0: no caching).
	ClientCacheTTL time.Duration
	// Throttle limits password guessing and client-secret guessing; nil
	// disables throttling.
	Throttle *throttle.Limiter
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
}

// App is a wired authserver.
type App struct {
	Handler  http.Handler
	Store    *storage.Store
	Keys     *keys.Manager
	Provider *oauth.Provider
	Accounts *accounts.Service
	cfg      Config
	verifier *verify.Verifier
}

// Close stops the admin API verifier's background work.
func (a *App) Close() { a.verifier.Close() }

// New wires the server over an open, migrated database and makes sure a
// signing key is active.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.DB == nil {
		return nil, errors.New("app: database required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	store := storage.New(cfg.DB, cfg.Now)
	store.SetClientCacheTTL(cfg.ClientCacheTTL)
	km, err := keys.NewManager(cfg.DB.Gorm, keys.Config{
		KEK:            cfg.KEK,
		Alg:            cfg.SigningAlg,
		MaxTokenTTL:    cfg.AccessTokenTTL,
		RotationPeriod: cfg.KeyRotationPeriod,
		JWKSMaxAge:     cfg.JWKSMaxAge,
		ReloadInterval: cfg.KeyReloadInterval,
		Now:            cfg.Now,
		Logger:         cfg.Logger,
		Audit:          store.KeyAuditor("authserver"),
	})
	if err != nil {
		return nil, err
	}
	if err := km.EnsureActive(ctx); err != nil {
		return nil, err
	}
	passwords, err := oauth.NewPasswords(cfg.BcryptCost)
	if err != nil {
		return nil, err
	}
	provider, err := oauth.NewProvider(oauth.Config{
		Issuer:                   cfg.Issuer,
		AccessTokenTTL:           cfg.AccessTokenTTL,
		RefreshTokenTTL:          cfg.RefreshTokenTTL,
		MaxRefreshFamilyLifetime: cfg.MaxRefreshFamilyLifetime,
		Store:                    store,
		Signer:                   km.Signer(),
		Keys:                     km,
		MasterKey:                cfg.KEK,
		Passwords:                passwords,
		Throttle:                 loginThrottle(cfg.Throttle),
		Now:                      cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	acc := &accounts.Service{Store: store, Passwords: passwords, Secrets: provider.SecretHasher, Now: cfg.Now}
	verifier, err := newAdminVerifier(ctx, cfg.Issuer, km, provider, cfg.Now, cfg.Logger)
	if err != nil {
		return nil, err
	}
	adminAPI := admin.New(admin.Config{
		Accounts:      acc,
		Store:         store,
		Keys:          km,
		Authenticate:  verifier.Middleware,
		SecretOverlap: cfg.SecretOverlap,
		Now:           cfg.Now,
		Logger:        cfg.Logger,
	})
	srv := server.New(server.Config{
		Issuer:         cfg.Issuer,
		Provider:       provider,
		Store:          store,
		Keys:           km,
		Logger:         cfg.Logger,
		Registry:       cfg.Registry,
		Now:            cfg.Now,
		Admin:          adminAPI,
		Throttle:       cfg.Throttle,
		TrustedProxies: cfg.TrustedProxies,
	})
	return &App{Handler: srv, Store: store, Keys: km, Provider: provider, Accounts: acc, cfg: cfg, verifier: verifier}, nil
}

// loginThrottle keeps a nil *throttle.Limiter from becoming a non-nil
// interface value.
func loginThrottle(l *throttle.Limiter) oauth.LoginThrottle {
	if l == nil {
		return nil
	}
	return l
}

// Run runs the background work — key-ring reload and scheduled rotation,
// expired-token cleanup — until ctx ends.
func (a *App) Run(ctx context.Context, cleanupEvery time.Duration) {
	go func() { _ = a.Keys.Run(ctx) }()
	if cleanupEvery <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(cleanupEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := a.Store.DeleteExpiredTokens(ctx, a.cfg.Now().Add(-time.Minute))
				if err != nil {
					a.cfg.Logger.Warn("token cleanup failed", "error", err)
				} else if n > 0 {
					a.cfg.Logger.Info("expired token rows deleted", "rows", n)
				}
			}
		}
	}()
}
