package server

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// supportedGrants are the grant types the token endpoint serves.
var supportedGrants = map[string]bool{"password": true, "refresh_token": true, "client_credentials": true}

// tokenHandler is POST /oauth2/token (RFC 6749 §3.2), a thin adapter over
// fosite's NewAccessRequest / NewAccessResponse.
type tokenHandler struct {
	p     *oauth.Provider
	store *storage.Store
	m     *metrics
	log   *slog.Logger
	guard clientGuard
}

func (h *tokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	grant := r.PostForm.Get("grant_type")
	if grant == "" {
		h.fail(w, http.StatusBadRequest, "invalid_request", "the 'grant_type' parameter is required", 0)
		return
	}
	if !supportedGrants[grant] {
		// fosite answers invalid_request here; RFC 6749 §5.2 wants this.
		h.fail(w, http.StatusBadRequest, "unsupported_grant_type", "the grant type '"+grant+"' is not supported", 0)
		return
	}
	if r.PostForm.Get("client_assertion") != "" || r.PostForm.Get("client_assertion_type") != "" {
		h.fail(w, http.StatusBadRequest, "invalid_request", "client assertions are not supported; use client_secret_basic or client_secret_post", 0)
		return
	}

	if _, _, basic := r.BasicAuth(); !basic && r.PostForm.Get("client_id") == "" {
		// RFC 6749 §5.2: no client authentication included is invalid_client.
		h.fail(w, http.StatusUnauthorized, "invalid_client", "client authentication is required (client_secret_basic or client_secret_post)", 0)
		return
	}
	if wait := h.guard.wait(r); wait > 0 {
		throttled(w, r, h.store, h.m, "token", wait)
		return
	}
	ar, err := h.p.NewAccessRequest(ctx, r, &storage.Session{})
	if err != nil {
		h.accessError(w, r, grant, err)
		return
	}
	resp, err := h.p.NewAccessResponse(ctx, ar)
	if err != nil {
		h.accessError(w, r, grant, err)
		return
	}
	h.guard.succeeded(r)
	h.m.issued.WithLabelValues(grant).Inc()
	h.p.WriteAccessResponse(ctx, w, ar, resp)
}

// accessError maps a fosite error to the wire, adds what fosite leaves out
// (WWW-Authenticate, 429) and records the security events.
func (h *tokenHandler) accessError(w http.ResponseWriter, r *http.Request, grant string, err error) {
	ctx := r.Context()
	var te *oauth.ThrottledError
	if errors.As(err, &te) {
		h.m.failures.WithLabelValues("token", "throttled").Inc()
		writeOAuthError(w, http.StatusTooManyRequests, "invalid_grant", "too many failed login attempts; retry later", te.RetryAfter)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if grant == "refresh_token" && rfc.ErrorField == fosite.ErrInvalidRequest.ErrorField &&
		(errors.Is(err, fosite.ErrNotFound) || errors.Is(err, fosite.ErrSerializationFailure)) {
		// A concurrent refresh of the same token won. fosite's hint says
		// "retry", but presenting this token again would be reuse and end
		// the family: say what happened instead.
		h.fail(w, http.StatusBadRequest, "invalid_grant", "the refresh token was just used by a concurrent request; use the tokens that request received", 0)
		return
	}
	switch rfc.ErrorField {
	case fosite.ErrInvalidClient.ErrorField:
		authFailed(r, h.store, h.guard, "token")
	case fosite.ErrInvalidGrant.ErrorField:
		if grant == "refresh_token" && errors.Is(err, fosite.ErrInactiveToken) {
			client := claimedClient(r)
			h.log.WarnContext(ctx, "refresh token reuse detected; family revoked", "client_id", client)
			_ = h.store.AppendAudit(ctx, &storage.AuditEvent{Type: storage.EventRefreshReuse, ClientID: truncate(client, 128),
				Outcome: storage.OutcomeFailure, Details: `{"action":"family revoked"}`})
		}
	case fosite.ErrServerError.ErrorField:
		h.log.ErrorContext(ctx, "token endpoint error", "grant_type", grant, "error", rfc.WithExposeDebug(true).GetDescription(), "cause", errString(rfc.Cause()))
	}
	h.m.failures.WithLabelValues("token", rfc.ErrorField).Inc()
	if rfc.CodeField == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="authserver", charset="UTF-8"`)
	}
	h.p.WriteAccessError(ctx, w, nil, rfc)
}

func (h *tokenHandler) fail(w http.ResponseWriter, status int, code, desc string, retryAfter time.Duration) {
	h.m.failures.WithLabelValues("token", code).Inc()
	writeOAuthError(w, status, code, desc, retryAfter)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
