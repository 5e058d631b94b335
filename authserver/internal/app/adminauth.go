package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/server"
	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/verify"
)

// handlerTransport serves HTTP requests from an in-process handler, so the
// admin API's verifier reads this server's own metadata and JWKS without a
// network round trip (and without the issuer URL having to be reachable
// from inside the deployment).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// newAdminVerifier verifies access tokens for the admin API exactly as a
// resource server does (pkg/verify: typ, alg allow-list, kid from the JWKS,
// iss, aud "authserver", time claims, required claims), and checks
// revocation against storage on every request instead of by cached
// introspection, so disabling an admin takes effect at once.
func newAdminVerifier(ctx context.Context, issuer string, km *keys.Manager, p *oauth.Provider, now func() time.Time, log *slog.Logger) (*verify.Verifier, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/oauth-authorization-server", server.MetadataHandler(issuer, nil))
	mux.Handle("GET /.well-known/jwks.json", km.JWKSHandler())
	return verify.New(ctx, issuer, claims.AdminAudience,
		verify.WithHTTPClient(&http.Client{Transport: handlerTransport{mux}, Timeout: 5 * time.Second}),
		verify.WithLogger(log),
		verify.WithNow(now),
		// In process, refetching is cheap: refetch on every unknown kid, so a
		// token of a just-rotated key is never refused (a 1s floor did).
		verify.WithJWKSRefreshInterval(5*time.Second),
		verify.WithUnknownKIDRefetchInterval(0),
		verify.WithRevocationCheck(func(ctx context.Context, raw string, _ *claims.AccessToken) (bool, error) {
			_, _, err := p.Introspect(ctx, raw, fosite.AccessToken, now())
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, oauth.ErrInactive):
				return false, nil
			default:
				return false, err
			}
		}),
	)
}
