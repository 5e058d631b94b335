package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// PasswordGrantHandler implements the resource owner password credentials
// grant (RFC 6749 §4.3) for tenant users. It replaces fosite's deprecated
// handler because the user must be looked up within the authenticated
// client's tenant, which fosite's storage interface cannot express.
type PasswordGrantHandler struct {
	*oauth2.HandleHelper
	RefreshTokenStrategy oauth2.RefreshTokenStrategy
	RefreshTokenStorage  oauth2.RefreshTokenStorage
	Users                UserLookup
	Passwords            *Passwords
	// Throttle may refuse a login before the password is checked (nil: no
	// throttling) and is told the outcome of each check.
	Throttle        LoginThrottle
	Audit           func(ctx context.Context, e *storage.AuditEvent)
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	Now             func() time.Time
}

// LoginThrottle limits password guessing per account and per client IP.
type LoginThrottle interface {
	// Allow returns how long the caller must wait (0 when allowed).
	Allow(ctx context.Context, tenantID, username string) (retryAfter time.Duration, err error)
	// Record reports the outcome of a password check.
	Record(ctx context.Context, tenantID, username string, success bool)
}

var _ fosite.TokenEndpointHandler = (*PasswordGrantHandler)(nil)

// ErrThrottled is returned (wrapped in an RFC 6749 error with status 429)
// when too many failed logins were seen for an account or an address.
var ErrThrottled = errors.New("too many failed login attempts")

// HandleTokenEndpointRequest authenticates the user and fills the session.
func (h *PasswordGrantHandler) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	client, ok := req.GetClient().(*storage.Client)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected client type")
	}
	if !client.GetGrantTypes().Has("password") {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not allowed to use the grant 'password'.")
	}
	if err := checkScopesAndAudience(client, req); err != nil {
		return err
	}
	username := req.GetRequestForm().Get("username")
	password := req.GetRequestForm().Get("password")
	if username == "" || password == "" {
		return fosite.ErrInvalidRequest.WithHint("The 'username' and 'password' parameters are required.")
	}
	delete(req.GetRequestForm(), "password")

	if h.Throttle != nil {
		wait, err := h.Throttle.Allow(ctx, client.TenantID, username)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if wait > 0 {
			h.audit(ctx, &storage.AuditEvent{Type: storage.EventLoginFailed, TenantID: client.TenantID, Subject: username,
				ClientID: client.ID, Outcome: storage.OutcomeFailure, Details: `{"reason":"throttled"}`})
			return &ThrottledError{RetryAfter: wait}
		}
	}

	user, err := h.Passwords.Authenticate(ctx, h.Users, client.TenantID, username, password)
	if h.Throttle != nil && (err == nil || errors.Is(err, ErrBadCredentials)) {
		h.Throttle.Record(ctx, client.TenantID, username, err == nil)
	}
	if errors.Is(err, ErrBadCredentials) {
		h.audit(ctx, &storage.AuditEvent{Type: storage.EventLoginFailed, TenantID: client.TenantID, Subject: username,
			ClientID: client.ID, Outcome: storage.OutcomeFailure, Details: `{"reason":"bad_credentials"}`})
		return fosite.ErrInvalidGrant.WithHint("Unable to authenticate the provided username and password credentials.")
	} else if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}

	sess, ok := req.GetSession().(*storage.Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected session type")
	}
	now := h.Now().UTC()
	sess.Subject = user.ID
	sess.UserID = user.ID
	sess.Username = user.Username
	sess.TenantID = user.TenantID
	sess.Role = user.Role
	// The family starts when the login request arrived, the time fosite
	// records as the request's RequestedAt.
	sess.AuthTime = req.GetRequestedAt().UTC()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(h.AccessTokenTTL).Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(h.RefreshTokenTTL).Round(time.Second))
	return nil
}

// PopulateTokenEndpointResponse issues the access token and, when the client
// may use the refresh grant, a refresh token.
func (h *PasswordGrantHandler) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	accessSig, err := h.IssueAccessToken(ctx, h.AccessTokenTTL, req, resp)
	if err != nil {
		return err
	}
	if !req.GetClient().GetGrantTypes().Has("refresh_token") {
		return nil
	}
	refresh, refreshSig, err := h.RefreshTokenStrategy.GenerateRefreshToken(ctx, req)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := h.RefreshTokenStorage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, req.Sanitize(nil)); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	resp.SetExtra("refresh_token", refresh)
	return nil
}

// CanSkipClientAuth is false: the client must always authenticate.
func (h *PasswordGrantHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// CanHandleTokenEndpointRequest reports grant_type=password.
func (h *PasswordGrantHandler) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	return req.GetGrantTypes().ExactOne("password")
}

func (h *PasswordGrantHandler) audit(ctx context.Context, e *storage.AuditEvent) {
	if h.Audit != nil {
		h.Audit(ctx, e)
	}
}

// ThrottledError is a login refused because of too many failures; the token
// endpoint answers it with 429 and Retry-After.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string { return ErrThrottled.Error() }

// Unwrap makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// checkScopesAndAudience refuses scopes and audiences the client may not
// have (RFC 6749 §3.3), with exact matching.
func checkScopesAndAudience(client fosite.Client, req fosite.AccessRequester) error {
	for _, s := range req.GetRequestedScopes() {
		if !fosite.ExactScopeStrategy(client.GetScopes(), s) {
			return fosite.ErrInvalidScope.WithHintf("The client is not allowed to request scope '%s'.", s)
		}
	}
	if err := fosite.ExactAudienceMatchingStrategy(client.GetAudience(), req.GetRequestedAudience()); err != nil {
		return err
	}
	return nil
}
