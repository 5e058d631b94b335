package oauth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/rbac"
)

// PolicyHandler runs after the grant handlers of every token request and
// applies EpiTwin's rules that fosite leaves open: who the token is for
// (tenant, role, subject), which scopes and audiences it carries, and
// whether a refresh may go ahead. It issues nothing itself.
type PolicyHandler struct {
	Store *storage.Store
	// Audit records refresh refusals.
	Audit func(ctx context.Context, e *storage.AuditEvent)
	// MaxFamilyLifetime, when positive, caps how long a login's refresh
	// family lives, however often it is refreshed: fosite renews the
	// refresh-token lifetime on every rotation.
	MaxFamilyLifetime time.Duration
	Now               func() time.Time
}

var _ fosite.TokenEndpointHandler = (*PolicyHandler)(nil)

// HandleTokenEndpointRequest completes the session and grants scopes and
// audiences.
func (h *PolicyHandler) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	client, ok := req.GetClient().(*storage.Client)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected client type")
	}
	sess, ok := req.GetSession().(*storage.Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected session type")
	}
	ar, ok := req.(*fosite.AccessRequest)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected request type")
	}
	switch {
	case req.GetGrantTypes().ExactOne("client_credentials"):
		if !client.GetGrantTypes().Has("client_credentials") {
			return fosite.ErrUnauthorizedClient.WithHint("The client is not allowed to use the grant 'client_credentials'.")
		}
		role, err := rbac.ParseRole(client.Role)
		if err != nil {
			return fosite.ErrUnauthorizedClient.WithHint("The client has no role configured for the grant 'client_credentials'.")
		}
		sess.Subject = client.ID
		sess.TenantID = client.TenantID
		sess.Role = string(role)
		sess.AuthTime = ar.RequestedAt.UTC()
		grantInitial(ar, client)
	case req.GetGrantTypes().ExactOne("password"):
		grantInitial(ar, client)
	case req.GetGrantTypes().ExactOne("refresh_token"):
		return h.refresh(ctx, ar, client, sess)
	default:
		return fosite.ErrUnknownRequest
	}
	return nil
}

// grantInitial grants the requested scopes (every scope the client may
// have when none were requested; the grant handlers have already refused
// any the client may not have) and the requested audiences (the default
// audience when none were requested). Scopes are not cut down to the role:
// a resource server applies role AND scope (pkg/rbac), so a scope the role
// cannot use grants nothing, and a later role change takes effect without
// re-issuing scopes.
func grantInitial(ar *fosite.AccessRequest, client *storage.Client) {
	requested := ar.GetRequestedScopes()
	if len(requested) == 0 {
		requested = client.GetScopes()
	}
	for _, s := range rbac.SortScopes(requested) {
		if !ar.GetGrantedScopes().Has(s) {
			ar.GrantScope(s)
		}
	}
	auds := ar.GetRequestedAudience()
	if len(auds) == 0 {
		if client.GetAudience().Has(claims.DefaultAudience) {
			auds = []string{claims.DefaultAudience}
		} else if a := client.GetAudience(); len(a) > 0 {
			auds = []string{a[0]}
		}
	}
	for _, a := range auds {
		ar.GrantAudience(a)
	}
}

// refresh applies the refresh rules: the user must still exist, be enabled
// and belong to the client's tenant; the current role is used (a role
// change takes effect on the next token); a requested scope may narrow the
// grant but never widen it (RFC 6749 §6).
func (h *PolicyHandler) refresh(ctx context.Context, ar *fosite.AccessRequest, client *storage.Client, sess *storage.Session) error {
	if h.MaxFamilyLifetime > 0 && !sess.AuthTime.IsZero() {
		end := sess.AuthTime.Add(h.MaxFamilyLifetime)
		if !h.Now().Before(end) {
			_ = h.Store.RevokeFamily(ctx, ar.GetID())
			return fosite.ErrInvalidGrant.WithHint("The login has reached its maximum lifetime; sign in again.")
		}
		// The new refresh token never outlives the family.
		if exp := sess.GetExpiresAt(fosite.RefreshToken); exp.IsZero() || exp.After(end) {
			sess.SetExpiresAt(fosite.RefreshToken, end)
		}
	}
	if sess.UserID != "" {
		u, err := h.Store.GetUser(ctx, sess.UserID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fosite.ErrServerError.WithWrap(err)
		}
		if u == nil || u.Disabled || u.TenantID != client.TenantID {
			// The account is gone or disabled: end the whole family too.
			_ = h.Store.RevokeFamily(ctx, ar.GetID())
			if h.Audit != nil {
				h.Audit(ctx, &storage.AuditEvent{Type: storage.EventRefreshRefused, TenantID: client.TenantID,
					Actor: sess.Subject, Subject: sess.Username, ClientID: client.ID,
					Outcome: storage.OutcomeFailure, Details: `{"reason":"user disabled or deleted"}`})
			}
			return fosite.ErrInvalidGrant.WithHint("The user account is disabled.")
		}
		sess.Role = u.Role
		sess.Username = u.Username
	} else {
		// Client-credentials families follow the client's current role.
		sess.Role = client.Role
	}
	granted := ar.GetGrantedScopes()
	if raw := strings.TrimSpace(ar.GetRequestForm().Get("scope")); raw != "" {
		var narrowed fosite.Arguments
		for _, s := range strings.Fields(raw) {
			if !granted.Has(s) {
				return fosite.ErrInvalidScope.WithHintf("The scope '%s' was not originally granted and cannot be added on refresh.", s)
			}
			if !narrowed.Has(s) {
				narrowed = append(narrowed, s)
			}
		}
		granted = narrowed
	}
	final := fosite.Arguments(rbac.SortScopes(granted))
	ar.GrantedScope = final
	ar.SetRequestedScopes(final)
	return nil
}

// PopulateTokenEndpointResponse does nothing: the grant handlers issue.
func (h *PolicyHandler) PopulateTokenEndpointResponse(context.Context, fosite.AccessRequester, fosite.AccessResponder) error {
	return nil
}

// CanSkipClientAuth is false.
func (h *PolicyHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest reports the three enabled grants.
func (h *PolicyHandler) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	g := req.GetGrantTypes()
	return g.ExactOne("password") || g.ExactOne("refresh_token") || g.ExactOne("client_credentials")
}
