package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The reads on every token request and introspection bypass gorm's
// reflection and statement building: fixed SQL, explicit columns, scanned
// straight into the row. They still run inside the transaction in ctx.

// rebind turns ? placeholders into PostgreSQL's $n.
func rebind(dialect, q string) string {
	if dialect != DialectPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

const tokenColumns = `signature_hash, request_id, client_id, tenant_id, subject, user_id, active, requested_at, expires_at, data`

// readTokenRow reads one access_tokens or refresh_tokens row by hash.
func (s *Store) readTokenRow(ctx context.Context, table, hash string) (*TokenRow, error) {
	q := rebind(s.db.Dialect, `SELECT `+tokenColumns+` FROM `+table+` WHERE signature_hash = ?`)
	var r TokenRow
	err := s.conn(ctx).Statement.ConnPool.QueryRowContext(ctx, q, hash).Scan(
		&r.SignatureHash, &r.RequestID, &r.ClientID, &r.TenantID, &r.Subject, &r.UserID,
		&r.Active, &r.RequestedAt, &r.ExpiresAt, &r.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &r, nil
}

// readUser reads one user by id.
func (s *Store) readUser(ctx context.Context, id string) (*User, error) {
	q := rebind(s.db.Dialect, `SELECT id, tenant_id, username, password_hash, role, disabled, created_at, updated_at, password_changed_at FROM users WHERE id = ?`)
	var u User
	err := s.conn(ctx).Statement.ConnPool.QueryRowContext(ctx, q, id).Scan(
		&u.ID, &u.TenantID, &u.Username, &u.PasswordHash, &u.Role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.PasswordChangedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &u, nil
}
