package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// introspectHandler is POST /oauth2/introspect (RFC 7662). fosite's own
// handler lets any client introspect any token and reports refresh-token
// expiry wrongly, so the response is written here from the stored request.
type introspectHandler struct {
	p     *oauth.Provider
	store *storage.Store
	m     *metrics
	log   *slog.Logger
	guard clientGuard
	now   func() time.Time
}

func (h *introspectHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client, ok := authenticateClient(w, r, h.p, h.store, h.m, h.guard, "introspect")
	if !ok {
		return
	}
	// RFC 7662 §2.1/§4: only protected resources may introspect.
	if !client.Introspect {
		h.m.failures.WithLabelValues("introspect", "invalid_client").Inc()
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "this client is not allowed to introspect tokens", 0)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		h.m.failures.WithLabelValues("introspect", "invalid_request").Inc()
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the 'token' parameter is required", 0)
		return
	}
	if len(token) > 8192 {
		h.inactive(w)
		return
	}
	hint := fosite.AccessToken
	if r.PostForm.Get("token_type_hint") == "refresh_token" {
		hint = fosite.RefreshToken
	}
	use, ar, err := h.p.Introspect(ctx, token, hint, h.now())
	if errors.Is(err, oauth.ErrUnavailable) {
		h.log.ErrorContext(ctx, "introspection: storage unavailable", "error", err)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later", 5*time.Second)
		return
	}
	if err != nil {
		h.inactive(w)
		return
	}
	sess := ar.GetSession().(*storage.Session)
	// RFC 7662 §4: a resource server learns only about tokens meant for it.
	if !intersects(ar.GetGrantedAudience(), client.GetAudience()) {
		h.inactive(w)
		return
	}
	out := map[string]any{
		"active":    true,
		"iss":       h.p.Strategy.Issuer,
		"client_id": ar.GetClient().GetID(),
		"sub":       sess.Subject,
		"aud":       []string(ar.GetGrantedAudience()),
		"scope":     strings.Join(ar.GetGrantedScopes(), " "),
		"tenant_id": sess.TenantID,
		"role":      sess.Role,
	}
	if sess.Username != "" {
		out["username"] = sess.Username
	}
	switch use {
	case fosite.AccessToken:
		// Introspect has just verified this exact string; read its claims
		// without checking the signature a second time.
		mc, err := payloadClaims(token)
		if err != nil {
			h.inactive(w)
			return
		}
		for _, k := range []string{"sub", "client_id", "scope", "exp", "iat", "nbf", "jti", "tenant_id", "role", "iss", "aud"} {
			if v, ok := mc[k]; ok {
				out[k] = v
			}
		}
		out["token_type"] = "Bearer"
		out["token_use"] = "access_token"
	case fosite.RefreshToken:
		out["exp"] = sess.GetExpiresAt(fosite.RefreshToken).Unix()
		out["iat"] = ar.GetRequestedAt().Unix()
		out["token_type"] = "refresh_token"
		out["token_use"] = "refresh_token"
	}
	h.m.introspect.WithLabelValues("true").Inc()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func (h *introspectHandler) inactive(w http.ResponseWriter) {
	h.m.introspect.WithLabelValues("false").Inc()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]bool{"active": false})
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// authenticateClient authenticates the calling client with
// client_secret_basic or client_secret_post and answers 401 on failure.
func authenticateClient(w http.ResponseWriter, r *http.Request, p *oauth.Provider, store *storage.Store, m *metrics, guard clientGuard, endpoint string) (*storage.Client, bool) {
	ctx := r.Context()
	if wait := guard.wait(r); wait > 0 {
		throttled(w, r, store, m, endpoint, wait)
		return nil, false
	}
	fc, err := p.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.ErrorField == fosite.ErrServerError.ErrorField {
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later", 5*time.Second)
			return nil, false
		}
		authFailed(r, store, guard, endpoint)
		m.failures.WithLabelValues(endpoint, "invalid_client").Inc()
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed", 0)
		return nil, false
	}
	guard.succeeded(r)
	c, ok := fc.(*storage.Client)
	if !ok {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed", 0)
		return nil, false
	}
	return c, true
}

// payloadClaims decodes a JWS payload that was already verified.
func payloadClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}
