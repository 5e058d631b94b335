package storage

import (
	"context"
	"errors"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/storage"
)

// RefreshGrantStore is the storage fosite's refresh-token grant runs on.
// On SQLite it is the Store itself. On PostgreSQL its transaction is
// deferred: the three writes of a refresh — retire the presented refresh
// token (and its access token), insert the new access token with its audit
// event, insert the new refresh token — are collected and sent at Commit as
// ONE statement. A single statement is atomic on its own, and its inserts
// are conditional on the retiring UPDATE having matched the still-active
// token, so of two concurrent refreshes exactly one writes anything; the
// other's Commit returns fosite.ErrNotFound, which fosite answers as a
// failed refresh. This turns seven round trips into one.
type RefreshGrantStore struct {
	*Store
}

var (
	_ oauth2.TokenRevocationStorage = (*RefreshGrantStore)(nil)
	_ storage.Transactional         = (*RefreshGrantStore)(nil)
)

// ForRefreshGrant returns the storage for fosite's refresh grant handler.
func (s *Store) ForRefreshGrant() *RefreshGrantStore { return &RefreshGrantStore{Store: s} }

type pendingKey struct{}

// pendingRefresh collects the writes of one refresh.
type pendingRefresh struct {
	rotate       bool
	requestID    string
	presentedSig string
	access       *TokenRow
	accessEvent  *AuditEvent
	refresh      *RefreshTokenRow
}

func pendingFrom(ctx context.Context) *pendingRefresh {
	p, _ := ctx.Value(pendingKey{}).(*pendingRefresh)
	return p
}

// BeginTX starts a deferred transaction on PostgreSQL, a real one otherwise.
func (s *RefreshGrantStore) BeginTX(ctx context.Context) (context.Context, error) {
	if s.db.Dialect != DialectPostgres {
		return s.Store.BeginTX(ctx)
	}
	return context.WithValue(ctx, pendingKey{}, &pendingRefresh{}), nil
}

// RotateRefreshToken records the rotation for Commit.
func (s *RefreshGrantStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	p := pendingFrom(ctx)
	if p == nil {
		return s.Store.RotateRefreshToken(ctx, requestID, signature)
	}
	p.rotate, p.requestID, p.presentedSig = true, requestID, HashSignature(signature)
	return nil
}

// CreateAccessTokenSession records the new access token for Commit.
func (s *RefreshGrantStore) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	p := pendingFrom(ctx)
	if p == nil {
		return s.Store.CreateAccessTokenSession(ctx, signature, req)
	}
	row, ev, err := s.accessRowAndEvent(ctx, signature, req)
	if err != nil {
		return err
	}
	p.access, p.accessEvent = &row, ev
	return nil
}

// CreateRefreshTokenSession records the new refresh token for Commit.
func (s *RefreshGrantStore) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, req fosite.Requester) error {
	p := pendingFrom(ctx)
	if p == nil {
		return s.Store.CreateRefreshTokenSession(ctx, signature, accessSignature, req)
	}
	row, err := s.refreshRow(signature, accessSignature, req)
	if err != nil {
		return err
	}
	p.refresh = row
	return nil
}

// Rollback drops a deferred transaction.
func (s *RefreshGrantStore) Rollback(ctx context.Context) error {
	if pendingFrom(ctx) != nil {
		return nil
	}
	return s.Store.Rollback(ctx)
}

// Commit writes a deferred refresh as one statement. Other writes made under
// a deferred transaction (fosite's reuse handling: revoke the family) were
// already applied one by one; they are idempotent deactivations.
func (s *RefreshGrantStore) Commit(ctx context.Context) error {
	p := pendingFrom(ctx)
	if p == nil {
		return s.Store.Commit(ctx)
	}
	if !p.rotate {
		return nil
	}
	if p.access == nil || p.accessEvent == nil || p.refresh == nil {
		return errors.New("storage: incomplete refresh: rotation without new tokens")
	}
	a, e, r := p.access, p.accessEvent, p.refresh
	var n int64
	err := s.db.Gorm.WithContext(ctx).Statement.ConnPool.QueryRowContext(ctx, refreshPG,
		s.now(), p.presentedSig, p.requestID,
		a.SignatureHash, a.RequestID, a.ClientID, a.TenantID, a.Subject, a.UserID, a.Active, a.RequestedAt, a.ExpiresAt, a.Data,
		e.Time, e.Type, e.TenantID, e.Actor, e.Subject, e.ClientID, e.IP, e.Outcome, e.RequestID, e.Details,
		r.SignatureHash, r.RequestID, r.ClientID, r.TenantID, r.Subject, r.UserID, r.Active, r.RequestedAt, r.ExpiresAt, r.Data, r.AccessSignatureHash, r.FamilyCreatedAt,
	).Scan(&n)
	switch {
	case isSerializationFailure(err) || isUniqueViolation(err):
		return fosite.ErrSerializationFailure
	case err != nil:
		return err
	case n == 0:
		// Another refresh of the same token won.
		return fosite.ErrNotFound
	}
	return nil
}

// refreshPG is the whole refresh grant as one statement (PostgreSQL).
var refreshPG = rebind(DialectPostgres, `WITH r AS (
  UPDATE refresh_tokens SET active = false, used_at = ?::timestamptz
  WHERE signature_hash = ? AND request_id = ? AND active = true
  RETURNING access_signature_hash),
old AS (UPDATE access_tokens SET active = false WHERE signature_hash = (SELECT access_signature_hash FROM r)),
t AS (INSERT INTO access_tokens (signature_hash, request_id, client_id, tenant_id, subject, user_id, active, requested_at, expires_at, data)
  SELECT ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::boolean, ?::timestamptz, ?::timestamptz, ?::text WHERE EXISTS (SELECT 1 FROM r)),
ev AS (INSERT INTO audit_events (time, type, tenant_id, actor, subject, client_id, ip, outcome, request_id, details)
  SELECT ?::timestamptz, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text WHERE EXISTS (SELECT 1 FROM r)),
nr AS (INSERT INTO refresh_tokens (signature_hash, request_id, client_id, tenant_id, subject, user_id, active, requested_at, expires_at, data, access_signature_hash, family_created_at)
  SELECT ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::boolean, ?::timestamptz, ?::timestamptz, ?::text, ?::text, ?::timestamptz WHERE EXISTS (SELECT 1 FROM r))
SELECT count(*) FROM r`)
