package storage

import (
	"context"
	"slices"
	"time"
)

// This file holds the queries of the admin API: paged user listings, user
// and client deletion, client secret rotation, the last-admin guard and the
// refresh families ("sessions") of a user.

// UserFilter selects one page of a tenant's users, ordered by username.
type UserFilter struct {
	TenantID string
	// Role, when set, keeps only users of that role.
	Role string
	// Disabled, when set, keeps only users whose flag has that value.
	Disabled *bool
	// AfterUsername pages forward: only usernames sorting after it.
	AfterUsername string
	// Limit is the page size; <= 0 means 50.
	Limit int
}

// ListUsersPage returns up to f.Limit users of f.TenantID matching f,
// ordered by username.
func (s *Store) ListUsersPage(ctx context.Context, f UserFilter) ([]User, error) {
	q := s.conn(ctx).Where("tenant_id = ?", f.TenantID)
	if f.Role != "" {
		q = q.Where("role = ?", f.Role)
	}
	if f.Disabled != nil {
		q = q.Where("disabled = ?", *f.Disabled)
	}
	if f.AfterUsername != "" {
		q = q.Where("username > ?", f.AfterUsername)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	var us []User
	return us, mapErr(q.Order("username").Limit(limit).Find(&us).Error)
}

// DeleteUser removes a user; ErrNotFound if there is none. Its token rows
// stay (revoke them first with RevokeUserTokens): introspection already
// answers inactive for a token whose user is gone.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	res := s.conn(ctx).Where("id = ?", id).Delete(&User{})
	if res.Error != nil {
		return mapErr(res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// CountEnabledAdmins returns how many enabled admins the tenant has. Call
// it inside InTx before demoting, disabling or deleting an admin: it locks
// the tenant so that two such changes in one tenant serialize and cannot
// both see "another admin is left". On SQLite the transaction already holds
// the database's write lock from BEGIN (_txlock=immediate); on PostgreSQL
// the tenant row is locked with SELECT ... FOR UPDATE until the transaction
// ends, and the count, a new statement under READ COMMITTED, sees every
// change committed before the lock was granted.
func (s *Store) CountEnabledAdmins(ctx context.Context, tenantID string) (int64, error) {
	if s.db.Dialect == DialectPostgres {
		var ids []string
		if err := s.conn(ctx).Raw(`SELECT id FROM tenants WHERE id = ? FOR UPDATE`, tenantID).Scan(&ids).Error; err != nil {
			return 0, mapErr(err)
		}
		if len(ids) == 0 {
			return 0, ErrNotFound
		}
	}
	var n int64
	err := s.conn(ctx).Model(&User{}).
		Where("tenant_id = ? AND role = ? AND disabled = ?", tenantID, "admin", false).
		Count(&n).Error
	return n, mapErr(err)
}

// ---- clients ----

// DeleteClient removes a client and, in the same transaction, revokes
// every token issued to it; ErrNotFound if there is none. The client cache
// entry is dropped; a caller running this inside its own transaction
// should call InvalidateClient again after the commit.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	defer s.InvalidateClient(id)
	return s.InTx(ctx, func(ctx context.Context) error {
		if _, err := s.RevokeClientTokens(ctx, id); err != nil {
			return err
		}
		res := s.conn(ctx).Where("id = ?", id).Delete(&Client{})
		if res.Error != nil {
			return mapErr(res.Error)
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// RevokeClientTokens revokes every access and refresh token issued to a
// client and returns how many refresh tokens were active.
func (s *Store) RevokeClientTokens(ctx context.Context, clientID string) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(ctx context.Context) error {
		res := s.conn(ctx).Model(&RefreshTokenRow{}).Where("client_id = ? AND active = ?", clientID, true).Update("active", false)
		if res.Error != nil {
			return mapErr(res.Error)
		}
		n = res.RowsAffected
		return mapErr(s.conn(ctx).Model(&AccessTokenRow{}).Where("client_id = ? AND active = ?", clientID, true).Update("active", false).Error)
	})
	return n, err
}

// SetClientSecret replaces a client's secret hash. rotatedHash, when not
// empty, stays accepted until rotatedExpiry (secret rotation with overlap);
// an empty rotatedHash clears any previous one. ErrNotFound if there is no
// such client. The client cache entry is dropped (see DeleteClient).
func (s *Store) SetClientSecret(ctx context.Context, id string, newHash, rotatedHash []byte, rotatedExpiry *time.Time) error {
	defer s.InvalidateClient(id)
	if len(rotatedHash) == 0 {
		rotatedHash, rotatedExpiry = nil, nil
	}
	if rotatedExpiry != nil {
		t := rotatedExpiry.UTC()
		rotatedExpiry = &t
	}
	res := s.conn(ctx).Model(&Client{}).Where("id = ?", id).Updates(map[string]any{
		"secret_hash":               newHash,
		"rotated_secret_hash":       rotatedHash,
		"rotated_secret_expires_at": rotatedExpiry,
		"updated_at":                s.now(),
	})
	if res.Error != nil {
		return mapErr(res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// ---- sessions ----

// RefreshFamily is one login of a user that can still be refreshed: the
// refresh tokens sharing a request id, of which one is active.
type RefreshFamily struct {
	// ID is the request id shared by the family's tokens.
	ID       string
	ClientID string
	UserID   string
	// CreatedAt is when the user logged in.
	CreatedAt time.Time
	// LastUsedAt is when the family's newest refresh token was issued
	// (the login or the latest rotation).
	LastUsedAt time.Time
	// ExpiresAt is when the newest refresh token expires.
	ExpiresAt time.Time
}

// ListRefreshFamilies returns the active, unexpired refresh families of a
// user, oldest login first.
func (s *Store) ListRefreshFamilies(ctx context.Context, userID string) ([]RefreshFamily, error) {
	return s.refreshFamilies(ctx, "user_id = ?", userID)
}

// GetRefreshFamily returns one active family of a user; ErrNotFound if the
// family does not exist, is not active or belongs to someone else.
func (s *Store) GetRefreshFamily(ctx context.Context, userID, requestID string) (*RefreshFamily, error) {
	fs, err := s.refreshFamilies(ctx, "user_id = ? AND request_id = ?", userID, requestID)
	if err != nil {
		return nil, err
	}
	if len(fs) == 0 {
		return nil, ErrNotFound
	}
	return &fs[0], nil
}

// refreshFamilies groups the active, unexpired refresh rows matching where
// by request id. Rows are grouped here rather than in SQL because SQLite
// returns aggregated timestamps as text.
func (s *Store) refreshFamilies(ctx context.Context, where string, args ...any) ([]RefreshFamily, error) {
	var rows []RefreshTokenRow
	err := s.conn(ctx).Select("request_id", "client_id", "user_id", "requested_at", "expires_at", "family_created_at").
		Where(where, args...).Where("active = ? AND expires_at > ?", true, s.now()).
		Find(&rows).Error
	if err != nil {
		return nil, mapErr(err)
	}
	byID := make(map[string]*RefreshFamily)
	var out []RefreshFamily
	var order []string
	for _, r := range rows {
		f, ok := byID[r.RequestID]
		if !ok {
			f = &RefreshFamily{ID: r.RequestID, ClientID: r.ClientID, UserID: r.UserID, CreatedAt: r.FamilyCreatedAt.UTC()}
			byID[r.RequestID] = f
			order = append(order, r.RequestID)
		}
		if r.RequestedAt.After(f.LastUsedAt) {
			f.LastUsedAt = r.RequestedAt.UTC()
		}
		if r.ExpiresAt.After(f.ExpiresAt) {
			f.ExpiresAt = r.ExpiresAt.UTC()
		}
		if fc := r.FamilyCreatedAt.UTC(); fc.Before(f.CreatedAt) {
			f.CreatedAt = fc
		}
	}
	for _, id := range order {
		out = append(out, *byID[id])
	}
	slices.SortStableFunc(out, func(a, b RefreshFamily) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}
