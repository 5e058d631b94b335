// Package admin is authserver's administration API, mounted at /admin/:
// tenant admins manage their own tenant's users, sessions, clients and
// audit log; platform operators (admins of the reserved "platform" tenant)
// may do so in every tenant and alone manage tenants and signing keys.
//
// The HTTP layer only authenticates, decodes, and maps errors to RFC 9457
// problems; the rules (role ceilings, the last-admin guard, token
// revocation, the audit trail) live in package accounts.
package admin

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/verify"
)

// MaxBodyBytes caps every request body.
const MaxBodyBytes = 64 << 10

// DefaultSecretOverlap is how long a rotated client secret keeps working.
const DefaultSecretOverlap = 24 * time.Hour

// KeyAdmin is what the API needs from the signing key ring; *keys.Manager
// satisfies it.
type KeyAdmin interface {
	Rotate(ctx context.Context) (keys.SigningKey, error)
	Revoke(ctx context.Context, kid string) error
	List(ctx context.Context) ([]keys.KeyInfo, error)
}

var _ KeyAdmin = (*keys.Manager)(nil)

// Config wires the API.
type Config struct {
	Accounts *accounts.Service
	Store    *storage.Store
	Keys     KeyAdmin
	// Authenticate verifies the bearer token (audience "authserver",
	// signature, expiry, revocation), stores its claims with
	// verify.NewContext and answers RFC 6750 errors itself.
	Authenticate func(http.Handler) http.Handler
	// SecretOverlap is how long a rotated client secret keeps working
	// (default 24h; negative: the old secret stops at once).
	SecretOverlap time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// New returns the handler of every /admin/ route.
func New(cfg Config) http.Handler {
	if cfg.Authenticate == nil {
		panic("admin: Config.Authenticate is required")
	}
	if cfg.Accounts == nil {
		panic("admin: Config.Accounts is required")
	}
	if cfg.SecretOverlap == 0 {
		cfg.SecretOverlap = DefaultSecretOverlap
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{acc: cfg.Accounts, log: cfg.Logger}
	users := &usersHandler{acc: cfg.Accounts}
	sessions := &sessionsHandler{acc: cfg.Accounts}
	clients := &clientsHandler{acc: cfg.Accounts, overlap: max(cfg.SecretOverlap, 0)}
	audit := &auditHandler{acc: cfg.Accounts}
	platform := &platformHandler{acc: cfg.Accounts, keys: cfg.Keys}

	mux := http.NewServeMux()
	tenant := func(pattern string, h handlerFunc) { mux.Handle(pattern, a.tenantRoute(pattern, h)) }
	operator := func(pattern string, h handlerFunc) { mux.Handle(pattern, a.operatorRoute(pattern, h)) }

	tenant("POST /admin/tenants/{t}/users", users.create)
	tenant("GET /admin/tenants/{t}/users", users.list)
	tenant("GET /admin/tenants/{t}/users/{username}", users.get)
	tenant("PATCH /admin/tenants/{t}/users/{username}", users.update)
	tenant("POST /admin/tenants/{t}/users/{username}/password", users.resetPassword)
	tenant("DELETE /admin/tenants/{t}/users/{username}", users.delete)
	tenant("GET /admin/tenants/{t}/users/{username}/sessions", sessions.list)
	tenant("DELETE /admin/tenants/{t}/users/{username}/sessions", sessions.revokeAll)
	tenant("DELETE /admin/tenants/{t}/users/{username}/sessions/{id}", sessions.revoke)
	tenant("POST /admin/tenants/{t}/clients", clients.create)
	tenant("GET /admin/tenants/{t}/clients", clients.list)
	tenant("POST /admin/tenants/{t}/clients/{id}/secret", clients.rotateSecret)
	tenant("DELETE /admin/tenants/{t}/clients/{id}", clients.delete)
	tenant("GET /admin/tenants/{t}/audit", audit.list)
	operator("POST /admin/tenants", platform.createTenant)
	operator("GET /admin/tenants", platform.listTenants)
	operator("GET /admin/keys", platform.listKeys)
	operator("POST /admin/keys/rotate", platform.rotateKey)
	operator("POST /admin/keys/{kid}/revoke", platform.revokeKey)

	return cfg.Authenticate(a.withActor(mux))
}

// handlerFunc is one route; errors are written by the api as problems.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *call) error

// call is the authorized context of one request.
type call struct {
	actor  accounts.Actor
	tenant string // the {t} of the path; "" on operator routes
	acc    *accounts.Service
}

// api holds what every route shares.
type api struct {
	acc *accounts.Service
	log *slog.Logger
}

type actorKey struct{}

// withActor resolves the caller from the verified token, caps the body and
// answers unknown routes and methods with problems.
func (a *api) withActor(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := verify.FromContext(r.Context())
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeProblem(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		actor, err := a.acc.ActorFromToken(r.Context(), tok)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		r = r.WithContext(context.WithValue(r.Context(), actorKey{}, actor))
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// No route: ask the mux whether it is a 404 or a 405 and
			// answer with a problem instead of its plain text.
			rec := &discard{h: http.Header{}}
			h.ServeHTTP(rec, r)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.h.Get("Allow"))
				writeProblem(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
				return
			}
			writeProblem(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *api) tenantRoute(pattern string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, _ := r.Context().Value(actorKey{}).(accounts.Actor)
		t := r.PathValue("t")
		if err := a.acc.AuthorizeTenant(r.Context(), actor, t, pattern); err != nil {
			a.fail(w, r, err)
			return
		}
		if err := h(w, r, &call{actor: actor, tenant: t, acc: a.acc}); err != nil {
			a.fail(w, r, err)
		}
	})
}

func (a *api) operatorRoute(pattern string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, _ := r.Context().Value(actorKey{}).(accounts.Actor)
		if err := a.acc.AuthorizeOperator(r.Context(), actor, pattern); err != nil {
			a.fail(w, r, err)
			return
		}
		if err := h(w, r, &call{actor: actor, acc: a.acc}); err != nil {
			a.fail(w, r, err)
		}
	})
}

// discard is a ResponseWriter that only remembers the status and headers.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(status int)      { d.status = status }
