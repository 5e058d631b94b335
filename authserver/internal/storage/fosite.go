package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/storage"
)

// Compile-time checks that Store is a complete fosite storage.
var (
	_ fosite.Storage                = (*Store)(nil)
	_ oauth2.CoreStorage            = (*Store)(nil)
	_ oauth2.TokenRevocationStorage = (*Store)(nil)
	_ storage.Transactional         = (*Store)(nil)
)

// storedRequest is the JSON kept in a token row: the parts of the fosite
// request needed to answer introspection and to refresh.
type storedRequest struct {
	ID                string    `json:"id"`
	RequestedAt       time.Time `json:"requested_at"`
	ClientID          string    `json:"client_id"`
	GrantType         string    `json:"grant_type,omitempty"`
	RequestedScope    []string  `json:"requested_scope"`
	GrantedScope      []string  `json:"granted_scope"`
	RequestedAudience []string  `json:"requested_audience"`
	GrantedAudience   []string  `json:"granted_audience"`
	Session           *Session  `json:"session"`
}

// HashSignature is the key under which a token signature is stored.
func HashSignature(signature string) string {
	sum := sha256.Sum256([]byte(signature))
	return hex.EncodeToString(sum[:])
}

func sessionOf(req fosite.Requester) (*Session, error) {
	s, ok := req.GetSession().(*Session)
	if !ok || s == nil {
		return nil, fmt.Errorf("session must be *storage.Session, got %T", req.GetSession())
	}
	return s, nil
}

func (s *Store) newRow(signature string, req fosite.Requester, tt fosite.TokenType) (TokenRow, error) {
	if signature == "" {
		return TokenRow{}, errors.New("empty token signature")
	}
	sess, err := sessionOf(req)
	if err != nil {
		return TokenRow{}, err
	}
	data, err := json.Marshal(storedRequest{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt().UTC(),
		ClientID:          req.GetClient().GetID(),
		GrantType:         req.GetRequestForm().Get("grant_type"),
		RequestedScope:    req.GetRequestedScopes(),
		GrantedScope:      req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Session:           sess,
	})
	if err != nil {
		return TokenRow{}, err
	}
	exp := sess.GetExpiresAt(tt)
	if exp.IsZero() {
		return TokenRow{}, fmt.Errorf("session has no %s expiry", tt)
	}
	return TokenRow{
		SignatureHash: HashSignature(signature),
		RequestID:     req.GetID(),
		ClientID:      req.GetClient().GetID(),
		TenantID:      sess.TenantID,
		Subject:       sess.Subject,
		UserID:        sess.UserID,
		Active:        true,
		RequestedAt:   req.GetRequestedAt().UTC(),
		ExpiresAt:     exp.UTC(),
		Data:          string(data),
	}, nil
}

// hydrate rebuilds a fosite request from a stored row. A client that no
// longer exists makes the token unknown.
func (s *Store) hydrate(ctx context.Context, row *TokenRow) (fosite.Requester, error) {
	var sr storedRequest
	if err := json.Unmarshal([]byte(row.Data), &sr); err != nil {
		return nil, fmt.Errorf("decode token session: %w", err)
	}
	client, err := s.cachedClient(ctx, sr.ClientID)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if sr.Session == nil {
		sr.Session = &Session{}
	}
	form := url.Values{}
	if sr.GrantType != "" {
		form.Set("grant_type", sr.GrantType)
	}
	return &fosite.Request{
		ID:                sr.ID,
		RequestedAt:       sr.RequestedAt,
		Client:            client,
		RequestedScope:    sr.RequestedScope,
		GrantedScope:      sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience,
		GrantedAudience:   sr.GrantedAudience,
		Form:              form,
		Session:           sr.Session,
	}, nil
}

// ---- authorize codes: the authorization-code grant is not enabled ----

// CreateAuthorizeCodeSession is not supported: no authorize endpoint exists.
func (s *Store) CreateAuthorizeCodeSession(context.Context, string, fosite.Requester) error {
	return fosite.ErrNotFound
}

// GetAuthorizeCodeSession always answers not found.
func (s *Store) GetAuthorizeCodeSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}

// InvalidateAuthorizeCodeSession always answers not found.
func (s *Store) InvalidateAuthorizeCodeSession(context.Context, string) error {
	return fosite.ErrNotFound
}

// ---- clients ----

// GetClient loads a client for fosite; unknown ids are fosite.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if id == "" {
		return nil, fosite.ErrNotFound
	}
	c, err := s.cachedClient(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ClientAssertionJWTValid accepts every jti: private_key_jwt client
// authentication is not offered, so no assertion ever reaches this.
func (s *Store) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT is a no-op for the same reason.
func (s *Store) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

// ---- access tokens ----

// accessRowAndEvent builds an access token row and its audit event.
func (s *Store) accessRowAndEvent(ctx context.Context, signature string, req fosite.Requester) (TokenRow, *AuditEvent, error) {
	row, err := s.newRow(signature, req, fosite.AccessToken)
	if err != nil {
		return TokenRow{}, nil, err
	}
	sess, _ := sessionOf(req)
	details, _ := json.Marshal(map[string]any{
		"grant_type": req.GetRequestForm().Get("grant_type"),
		"scope":      req.GetGrantedScopes(),
		"audience":   req.GetGrantedAudience(),
		"jti":        sess.AccessTokenID,
		"request_id": req.GetID(),
	})
	ev := &AuditEvent{
		Type: EventTokenIssued, TenantID: row.TenantID, Actor: row.Subject,
		Subject: sess.Username, ClientID: row.ClientID, Details: string(details),
	}
	s.fillAudit(ctx, ev)
	return row, ev, nil
}

// refreshRow builds a refresh token row linked to its access token.
func (s *Store) refreshRow(signature, accessSignature string, req fosite.Requester) (*RefreshTokenRow, error) {
	row, err := s.newRow(signature, req, fosite.RefreshToken)
	if err != nil {
		return nil, err
	}
	sess, _ := sessionOf(req)
	family := sess.AuthTime
	if family.IsZero() {
		family = s.now()
	}
	return &RefreshTokenRow{TokenRow: row, AccessSignatureHash: HashSignature(accessSignature), FamilyCreatedAt: family.UTC()}, nil
}

// CreateAccessTokenSession stores an issued access token and, in the same
// transaction, the "token issued" audit event.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	row, ev, err := s.accessRowAndEvent(ctx, signature, req)
	if err != nil {
		return err
	}
	if s.db.Dialect == DialectPostgres {
		// One statement, one round trip: the token row and its audit event
		// commit together or not at all.
		_, err := s.conn(ctx).Statement.ConnPool.ExecContext(ctx, insertAccessWithAuditPG,
			row.SignatureHash, row.RequestID, row.ClientID, row.TenantID, row.Subject, row.UserID, row.Active, row.RequestedAt, row.ExpiresAt, row.Data,
			ev.Time, ev.Type, ev.TenantID, ev.Actor, ev.Subject, ev.ClientID, ev.IP, ev.Outcome, ev.RequestID, ev.Details)
		if isUniqueViolation(err) || isSerializationFailure(err) {
			return fosite.ErrSerializationFailure
		}
		return err
	}
	return s.InTx(ctx, func(ctx context.Context) error {
		if err := s.conn(ctx).Create(&AccessTokenRow{TokenRow: row}).Error; err != nil {
			if isUniqueViolation(err) || isSerializationFailure(err) {
				return fosite.ErrSerializationFailure
			}
			return err
		}
		return s.AppendAudit(ctx, ev)
	})
}

// GetAccessTokenSession returns the stored request of an access token;
// fosite.ErrNotFound if unknown, the request and fosite.ErrInactiveToken if
// it was revoked.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	return s.getTokenSession(ctx, "access_tokens", signature)
}

// getTokenSession reads a token row and rebuilds its request: the request
// and fosite.ErrInactiveToken for an inactive row, fosite.ErrNotFound for
// none.
func (s *Store) getTokenSession(ctx context.Context, table, signature string) (fosite.Requester, error) {
	if signature == "" {
		return nil, fosite.ErrNotFound
	}
	row, err := s.readTokenRow(ctx, table, HashSignature(signature))
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	req, err := s.hydrate(ctx, row)
	if err != nil {
		return nil, err
	}
	if !row.Active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// DeleteAccessTokenSession revokes one access token. The row stays,
// inactive, until it expires.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.deactivate(ctx, &AccessTokenRow{}, "signature_hash = ?", HashSignature(signature))
}

// RevokeAccessToken revokes every access token of a request family.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.deactivate(ctx, &AccessTokenRow{}, "request_id = ?", requestID)
}

// deactivate marks the active rows of model that match where inactive.
// Revocations are idempotent, and concurrent revocations of one family
// (several replays of a used refresh token at once) can deadlock on
// PostgreSQL, so outside a transaction a deadlock or serialization failure
// is simply retried; inside one, where the transaction is already lost, it
// is reported as fosite.ErrSerializationFailure.
func (s *Store) deactivate(ctx context.Context, model any, where string, arg any) error {
	_, inTx := ctx.Value(txKey{}).(*txState)
	for attempt := 1; ; attempt++ {
		err := s.conn(ctx).Model(model).Where(where+" AND active = ?", arg, true).Update("active", false).Error
		if !isSerializationFailure(err) {
			return err
		}
		if inTx || attempt == 5 {
			return fosite.ErrSerializationFailure
		}
	}
}

// ---- refresh tokens ----

// CreateRefreshTokenSession stores an issued refresh token, linked to the
// access token issued with it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, req fosite.Requester) error {
	row, err := s.refreshRow(signature, accessSignature, req)
	if err != nil {
		return err
	}
	err = s.conn(ctx).Create(row).Error
	if isUniqueViolation(err) || isSerializationFailure(err) {
		return fosite.ErrSerializationFailure
	}
	return err
}

// GetRefreshTokenSession returns the stored request of a refresh token;
// fosite.ErrNotFound if unknown, and the request together with
// fosite.ErrInactiveToken if it was already used or revoked, which is what
// makes fosite treat a second use as reuse (RFC 6819 §5.2.2.3).
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	return s.getTokenSession(ctx, "refresh_tokens", signature)
}

// DeleteRefreshTokenSession revokes one refresh token; it succeeds when the
// token is already inactive or gone.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.deactivate(ctx, &RefreshTokenRow{}, "signature_hash = ?", HashSignature(signature))
}

// RevokeRefreshToken revokes every refresh token of a request family.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.deactivate(ctx, &RefreshTokenRow{}, "request_id = ?", requestID)
}

// RotateRefreshToken marks the presented refresh token used, and the access
// token issued with it inactive. The update is guarded on the presented
// signature still being active, so of two concurrent refreshes of one token
// exactly one succeeds; the other gets fosite.ErrNotFound and its
// transaction rolls back. (On PostgreSQL the refresh grant goes through
// RefreshGrantStore, which writes the whole refresh as one statement.)
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	hash := HashSignature(signature)
	now := s.now()
	res := s.conn(ctx).Model(&RefreshTokenRow{}).
		Where("signature_hash = ? AND request_id = ? AND active = ?", hash, requestID, true).
		Updates(map[string]any{"active": false, "used_at": now})
	if res.Error != nil {
		if isSerializationFailure(res.Error) {
			return fosite.ErrSerializationFailure
		}
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fosite.ErrNotFound
	}
	err := s.conn(ctx).Model(&AccessTokenRow{}).
		Where("signature_hash IN (?)", s.conn(ctx).Model(&RefreshTokenRow{}).Select("access_signature_hash").Where("signature_hash = ?", hash)).
		Update("active", false).Error
	if isSerializationFailure(err) {
		return fosite.ErrSerializationFailure
	}
	return err
}

// RevokeFamily revokes every refresh and access token descended from the
// same login (request id) and returns nil when there were none.
func (s *Store) RevokeFamily(ctx context.Context, requestID string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		if err := s.RevokeRefreshToken(ctx, requestID); err != nil {
			return err
		}
		return s.RevokeAccessToken(ctx, requestID)
	})
}

// RevokeUserTokens revokes every token of a user (sign out everywhere) and
// returns how many refresh families were active.
func (s *Store) RevokeUserTokens(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(ctx context.Context) error {
		res := s.conn(ctx).Model(&RefreshTokenRow{}).Where("user_id = ? AND active = ?", userID, true).Update("active", false)
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		return s.conn(ctx).Model(&AccessTokenRow{}).Where("user_id = ? AND active = ?", userID, true).Update("active", false).Error
	})
	return n, err
}

// insertAccessWithAuditPG writes an access token row and its audit event in
// one statement (PostgreSQL).
var insertAccessWithAuditPG = rebind(DialectPostgres, `WITH t AS (
INSERT INTO access_tokens (signature_hash, request_id, client_id, tenant_id, subject, user_id, active, requested_at, expires_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?))
INSERT INTO audit_events (time, type, tenant_id, actor, subject, client_id, ip, outcome, request_id, details)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
