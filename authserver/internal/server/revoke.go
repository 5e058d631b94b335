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

// revokeHandler is POST /oauth2/revoke (RFC 7009). fosite's handler answers
// 200 without revoking both when another client's token is presented and
// when storage fails, so ownership and errors are handled here.
type revokeHandler struct {
	p     *oauth.Provider
	store *storage.Store
	m     *metrics
	log   *slog.Logger
	guard clientGuard
}

func (h *revokeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client, ok := authenticateClient(w, r, h.p, h.store, h.m, h.guard, "revoke")
	if !ok {
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		h.m.failures.WithLabelValues("revoke", "invalid_request").Inc()
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the 'token' parameter is required", 0)
		return
	}
	hint := r.PostForm.Get("token_type_hint")
	order := []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken}
	if hint == "refresh_token" {
		order = []fosite.TokenType{fosite.RefreshToken, fosite.AccessToken}
	}
	for _, tt := range order {
		var (
			req fosite.Requester
			sig string
			err error
		)
		switch tt {
		case fosite.AccessToken:
			sig = h.p.Strategy.AccessTokenSignature(ctx, token)
			req, err = h.store.GetAccessTokenSession(ctx, sig, nil)
		case fosite.RefreshToken:
			sig = h.p.Strategy.RefreshTokenSignature(ctx, token)
			req, err = h.store.GetRefreshTokenSession(ctx, sig, nil)
		}
		if errors.Is(err, fosite.ErrNotFound) {
			continue
		}
		if err != nil && !errors.Is(err, fosite.ErrInactiveToken) {
			h.unavailable(w, r, err)
			return
		}
		// RFC 7009 §2.1: the token must have been issued to this client.
		if req.GetClient().GetID() != client.ID {
			h.m.failures.WithLabelValues("revoke", "unauthorized_client").Inc()
			writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", "the token was not issued to this client", 0)
			return
		}
		if tt == fosite.AccessToken {
			err = h.store.DeleteAccessTokenSession(ctx, sig)
		} else {
			// Revoking a refresh token ends its whole family (RFC 7009 §2.1).
			err = h.store.RevokeFamily(ctx, req.GetID())
		}
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		sess, _ := req.GetSession().(*storage.Session)
		ev := &storage.AuditEvent{Type: storage.EventTokenRevoked, ClientID: client.ID, TenantID: client.TenantID,
			Actor: client.ID, Details: `{"token_type":"` + string(tt) + `"}`}
		if sess != nil {
			ev.Subject = sess.Subject
		}
		_ = h.store.AppendAudit(ctx, ev)
		h.m.revocations.WithLabelValues(string(tt)).Inc()
		break
	}
	// RFC 7009 §2.2: 200 whether or not the token was known.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (h *revokeHandler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "revocation failed", "error", err)
	// RFC 7009 §2.2.1: 503 when the server cannot revoke right now.
	writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later", 5*time.Second)
}
