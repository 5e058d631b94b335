package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/fosite/token/jwt"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// Config is what the provider needs.
type Config struct {
	Issuer          string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// MaxRefreshFamilyLifetime caps a login's refresh family (0: none).
	MaxRefreshFamilyLifetime time.Duration
	Store                    *storage.Store
	Signer                   jwt.Signer
	Keys                     KeyRing
	// MasterKey is the key-encryption key; the refresh-token HMAC key and
	// the client-secret hash key are derived from it.
	MasterKey []byte
	Passwords *Passwords
	Throttle  LoginThrottle
	Now       func() time.Time
}

// Provider is the composed fosite provider plus the parts the HTTP layer
// uses directly.
type Provider struct {
	*fosite.Fosite
	Strategy     *Strategy
	Store        *storage.Store
	SecretHasher *SecretHasher
	Passwords    *Passwords
	Config       *fosite.Config
}

// NewProvider composes fosite with exactly the handlers EpiTwin enables:
// refresh-token and client-credentials grants (fosite's), the password grant
// (ours, tenant-aware), the policy handler, storage-backed introspection and
// revocation. The stateless JWT introspector is deliberately absent: it
// would report revoked tokens as active.
func NewProvider(cfg Config) (*Provider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Store == nil || cfg.Signer == nil || cfg.Keys == nil || cfg.Passwords == nil {
		return nil, errors.New("oauth: store, signer, keys and passwords are required")
	}
	hmacKey, err := DeriveKey(cfg.MasterKey, "refresh-token-hmac")
	if err != nil {
		return nil, err
	}
	secretKey, err := DeriveKey(cfg.MasterKey, "client-secret-hash")
	if err != nil {
		return nil, err
	}
	hasher, err := NewSecretHasher(secretKey)
	if err != nil {
		return nil, err
	}
	fc := &fosite.Config{
		AccessTokenLifespan:  cfg.AccessTokenTTL,
		RefreshTokenLifespan: cfg.RefreshTokenTTL,
		AccessTokenIssuer:    cfg.Issuer,
		TokenURL:             cfg.Issuer + "/oauth2/token",
		GlobalSecret:         hmacKey,
		ClientSecretsHasher:  hasher,
		ScopeStrategy:        fosite.ExactScopeStrategy,
		// Exact audience matching: "simapi" must not match "simapi-evil".
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		// Non-nil and empty: issue a refresh token whenever the client may
		// refresh, without requiring an "offline" scope.
		RefreshTokenScopes:         []string{},
		JWTScopeClaimKey:           jwt.JWTScopeFieldString,
		SendDebugMessagesToClients: false,
	}
	strategy := &Strategy{
		HMACSHAStrategy: oauth2.NewHMACSHAStrategy(&hmac.HMACStrategy{Config: fc}, fc),
		Signer:          cfg.Signer,
		Keys:            cfg.Keys,
		Issuer:          cfg.Issuer,
		Now:             cfg.Now,
	}
	provider := compose.Compose(fc, cfg.Store, strategy,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	audit := func(ctx context.Context, e *storage.AuditEvent) {
		_ = cfg.Store.AppendAudit(ctx, e)
	}
	// fosite's refresh handler, on the storage that writes a whole refresh
	// in one statement on PostgreSQL (see storage.RefreshGrantStore).
	fc.TokenEndpointHandlers.Append(&oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy:    strategy,
		RefreshTokenStrategy:   strategy,
		TokenRevocationStorage: cfg.Store.ForRefreshGrant(),
		Config:                 fc,
	})
	fc.TokenEndpointHandlers.Append(&PasswordGrantHandler{
		HandleHelper: &oauth2.HandleHelper{
			AccessTokenStrategy: strategy,
			AccessTokenStorage:  cfg.Store,
			Config:              fc,
		},
		RefreshTokenStrategy: strategy,
		RefreshTokenStorage:  cfg.Store,
		Users:                cfg.Store,
		Passwords:            cfg.Passwords,
		Throttle:             cfg.Throttle,
		Audit:                audit,
		AccessTokenTTL:       cfg.AccessTokenTTL,
		RefreshTokenTTL:      cfg.RefreshTokenTTL,
		Now:                  cfg.Now,
	})
	// The policy handler must run after every grant handler.
	fc.TokenEndpointHandlers.Append(&PolicyHandler{Store: cfg.Store, Audit: audit, MaxFamilyLifetime: cfg.MaxRefreshFamilyLifetime, Now: cfg.Now})
	f, ok := provider.(*fosite.Fosite)
	if !ok {
		return nil, errors.New("oauth: unexpected fosite provider type")
	}
	return &Provider{
		Fosite:       f,
		Strategy:     strategy,
		Store:        cfg.Store,
		SecretHasher: hasher,
		Passwords:    cfg.Passwords,
		Config:       fc,
	}, nil
}
