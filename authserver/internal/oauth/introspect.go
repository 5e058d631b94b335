package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// Introspection outcomes other than active.
var (
	// ErrInactive means the token is unknown, expired, revoked, signed by a
	// revoked key, from a reused refresh family or of a disabled user.
	ErrInactive = errors.New("token inactive")
	// ErrUnavailable means the answer is unknown because storage failed.
	ErrUnavailable = errors.New("token state unavailable")
)

// Introspect decides whether token is active and returns its use and the
// stored request. It is the one place that rule lives: the RFC 7662
// endpoint and the admin API's revocation check both call it.
func (p *Provider) Introspect(ctx context.Context, token string, hint fosite.TokenUse, now time.Time) (fosite.TokenUse, fosite.AccessRequester, error) {
	use, ar, err := p.IntrospectToken(ctx, token, hint, &storage.Session{})
	if err != nil {
		// fosite folds storage failures into "unauthorized" but keeps them
		// as the cause: a storage outage must not read as "revoked".
		if errors.Is(err, storage.ErrUnavailable) {
			return "", nil, errors.Join(ErrUnavailable, err)
		}
		return "", nil, ErrInactive
	}
	sess, ok := ar.GetSession().(*storage.Session)
	if !ok || sess == nil {
		return "", nil, ErrInactive
	}
	if sess.UserID != "" {
		u, err := p.Store.GetUser(ctx, sess.UserID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", nil, errors.Join(ErrUnavailable, err)
		}
		if u == nil || u.Disabled || u.TenantID != sess.TenantID {
			return "", nil, ErrInactive
		}
	}
	if use == fosite.RefreshToken {
		exp := sess.GetExpiresAt(fosite.RefreshToken)
		if exp.IsZero() || !exp.After(now) {
			return "", nil, ErrInactive
		}
	}
	return use, ar, nil
}
