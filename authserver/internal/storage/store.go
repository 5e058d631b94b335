package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ory/fosite"
	"gorm.io/gorm"
)

// Store is the gorm-backed storage of authserver. It is safe for
// concurrent use. Methods run inside the transaction carried by ctx, if any
// (see BeginTX), so fosite's multi-step flows are atomic.
type Store struct {
	db      *DB
	now     func() time.Time
	clients *clientCache
}

// New returns a Store over an open, migrated database. now may be nil.
func New(db *DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: func() time.Time { return now().UTC() }, clients: &clientCache{m: map[string]clientEntry{}}}
}

// DB returns the underlying database.
func (s *Store) DB() *DB { return s.db }

type txKey struct{}

type txState struct {
	tx     *gorm.DB
	nested bool
}

// conn returns the transaction in ctx or the pool, bound to ctx.
func (s *Store) conn(ctx context.Context) *gorm.DB {
	if st, ok := ctx.Value(txKey{}).(*txState); ok {
		return st.tx
	}
	return s.db.Gorm.WithContext(ctx)
}

// BeginTX starts a transaction and returns a context carrying it
// (storage.Transactional). A BeginTX inside a transaction joins it: its
// Commit and Rollback are no-ops and the outer transaction decides.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if st, ok := ctx.Value(txKey{}).(*txState); ok {
		return context.WithValue(ctx, txKey{}, &txState{tx: st.tx, nested: true}), nil
	}
	tx := s.db.Gorm.WithContext(ctx).Begin()
	if tx.Error != nil {
		return ctx, mapErr(tx.Error)
	}
	return context.WithValue(ctx, txKey{}, &txState{tx: tx}), nil
}

// Commit commits the transaction started by BeginTX.
func (s *Store) Commit(ctx context.Context) error {
	st, ok := ctx.Value(txKey{}).(*txState)
	if !ok {
		return errors.New("commit: no transaction in context")
	}
	if st.nested {
		return nil
	}
	err := st.tx.Commit().Error
	if isSerializationFailure(err) {
		return fosite.ErrSerializationFailure
	}
	return mapErr(err)
}

// Rollback rolls back the transaction started by BeginTX.
func (s *Store) Rollback(ctx context.Context) error {
	st, ok := ctx.Value(txKey{}).(*txState)
	if !ok {
		return errors.New("rollback: no transaction in context")
	}
	if st.nested {
		return nil
	}
	err := st.tx.Rollback().Error
	if errors.Is(err, gorm.ErrInvalidTransaction) || errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// InTx runs fn in one transaction (joining one already in ctx).
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	ctx, err = s.BeginTX(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = s.Rollback(ctx)
			panic(p)
		}
	}()
	if err := fn(ctx); err != nil {
		_ = s.Rollback(ctx)
		return err
	}
	return s.Commit(ctx)
}

// mapErr turns driver errors into the package's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%w", ErrNotFound)
	case isUniqueViolation(err):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	default:
		return err
	}
}

// ---- tenants ----

// CreateTenant stores a new tenant; ErrConflict if the id is taken.
func (s *Store) CreateTenant(ctx context.Context, t *Tenant) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	return mapErr(s.conn(ctx).Create(t).Error)
}

// GetTenant returns one tenant or ErrNotFound.
func (s *Store) GetTenant(ctx context.Context, id string) (*Tenant, error) {
	var t Tenant
	if err := s.conn(ctx).Where("id = ?", id).Take(&t).Error; err != nil {
		return nil, mapErr(err)
	}
	return &t, nil
}

// ListTenants returns every tenant ordered by id.
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	var ts []Tenant
	return ts, mapErr(s.conn(ctx).Order("id").Find(&ts).Error)
}

// ---- users ----

// CreateUser stores a new user; ErrNotFound if the tenant does not exist,
// ErrConflict if the username is taken within the tenant.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		if _, err := s.GetTenant(ctx, u.TenantID); err != nil {
			return fmt.Errorf("tenant %q: %w", u.TenantID, err)
		}
		now := s.now()
		u.CreatedAt, u.UpdatedAt = now, now
		if u.PasswordChangedAt.IsZero() {
			u.PasswordChangedAt = now
		}
		return mapErr(s.conn(ctx).Create(u).Error)
	})
}

// GetUser returns a user by id or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (*User, error) {
	return s.readUser(ctx, id)
}

// GetUserByUsername returns a tenant's user by username or ErrNotFound.
func (s *Store) GetUserByUsername(ctx context.Context, tenantID, username string) (*User, error) {
	var u User
	if err := s.conn(ctx).Where("tenant_id = ? AND username = ?", tenantID, username).Take(&u).Error; err != nil {
		return nil, mapErr(err)
	}
	return &u, nil
}

// ListUsers returns a tenant's users ordered by username.
func (s *Store) ListUsers(ctx context.Context, tenantID string) ([]User, error) {
	var us []User
	return us, mapErr(s.conn(ctx).Where("tenant_id = ?", tenantID).Order("username").Find(&us).Error)
}

// UpdateUser saves a user's role, disabled flag and password hash.
func (s *Store) UpdateUser(ctx context.Context, u *User) error {
	u.UpdatedAt = s.now()
	res := s.conn(ctx).Model(&User{}).Where("id = ?", u.ID).Updates(map[string]any{
		"role": u.Role, "disabled": u.Disabled, "password_hash": u.PasswordHash,
		"password_changed_at": u.PasswordChangedAt, "updated_at": u.UpdatedAt,
	})
	if res.Error != nil {
		return mapErr(res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// ---- clients ----

// CreateClient stores a new client; ErrNotFound if the tenant does not
// exist, ErrConflict if the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		if _, err := s.GetTenant(ctx, c.TenantID); err != nil {
			return fmt.Errorf("tenant %q: %w", c.TenantID, err)
		}
		now := s.now()
		c.CreatedAt, c.UpdatedAt = now, now
		return mapErr(s.conn(ctx).Create(c).Error)
	})
}

// LookupClient returns a client record by id or ErrNotFound.
func (s *Store) LookupClient(ctx context.Context, id string) (*Client, error) {
	var c Client
	if err := s.conn(ctx).Where("id = ?", id).Take(&c).Error; err != nil {
		return nil, mapErr(err)
	}
	c.now = s.now
	return &c, nil
}

// ListClients returns a tenant's clients ordered by id.
func (s *Store) ListClients(ctx context.Context, tenantID string) ([]Client, error) {
	var cs []Client
	return cs, mapErr(s.conn(ctx).Where("tenant_id = ?", tenantID).Order("id").Find(&cs).Error)
}

// ---- audit ----

// RequestInfo is the caller's network identity, recorded in audit events.
type RequestInfo struct {
	IP        string
	RequestID string
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying the caller's request info.
func WithRequestInfo(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

// RequestInfoFrom returns the request info in ctx (zero if none).
func RequestInfoFrom(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return ri
}

// Audit event types.
const (
	EventTokenIssued      = "token.issued"
	EventLoginFailed      = "login.failed"
	EventClientAuthFailed = "client.auth_failed"
	EventTokenRevoked     = "token.revoked"
	EventRefreshReuse     = "refresh.reuse_detected"
	EventKeyCreated       = "key.created"
	EventKeyRotated       = "key.rotated"
	EventKeyRevoked       = "key.revoked"
	EventTenantCreated    = "tenant.created"
	EventUserCreated      = "user.created"
	EventClientCreated    = "client.created"
	EventRefreshRefused   = "refresh.refused"
	OutcomeSuccess        = "success"
	OutcomeFailure        = "failure"
)

// AppendAudit appends one event to the audit log. Time, IP and request id
// are filled in from the clock and ctx when empty.
func (s *Store) AppendAudit(ctx context.Context, e *AuditEvent) error {
	s.fillAudit(ctx, e)
	return mapErr(s.conn(ctx).Create(e).Error)
}

// fillAudit completes an event's time, caller and outcome.
func (s *Store) fillAudit(ctx context.Context, e *AuditEvent) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC() // SQLite compares times as text: store one zone
	ri := RequestInfoFrom(ctx)
	if e.IP == "" {
		e.IP = ri.IP
	}
	if e.RequestID == "" {
		e.RequestID = ri.RequestID
	}
	if e.Outcome == "" {
		e.Outcome = OutcomeSuccess
	}
}

// KeyAuditor returns the key ring's audit hook: key events recorded with
// actor as their actor and the kid as their subject.
func (s *Store) KeyAuditor(actor string) func(ctx context.Context, eventType, kid string) {
	return func(ctx context.Context, eventType, kid string) {
		_ = s.AppendAudit(ctx, &AuditEvent{Type: eventType, Actor: actor, Subject: kid})
	}
}

// AuditFilter selects audit events; zero fields do not filter.
type AuditFilter struct {
	TenantID string
	Actor    string
	Subject  string
	Type     string
	Since    time.Time
	Until    time.Time
	// AfterID pages forward: only events with a larger id.
	AfterID int64
	Limit   int
}

// ListAudit returns events matching f, oldest first.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	q := s.conn(ctx).Model(&AuditEvent{})
	if f.TenantID != "" {
		q = q.Where("tenant_id = ?", f.TenantID)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Subject != "" {
		q = q.Where("subject = ?", f.Subject)
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if !f.Since.IsZero() {
		q = q.Where("time >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q = q.Where("time < ?", f.Until.UTC())
	}
	if f.AfterID > 0 {
		q = q.Where("id > ?", f.AfterID)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var es []AuditEvent
	return es, mapErr(q.Order("id").Limit(limit).Find(&es).Error)
}

// DeleteExpiredTokens removes token sessions that expired before t, and
// returns how many rows went. Refresh rows are kept until they expire so
// that reuse of a rotated token is still detected.
func (s *Store) DeleteExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	for _, m := range []any{&AccessTokenRow{}, &RefreshTokenRow{}} {
		res := s.conn(ctx).Where("expires_at < ?", before.UTC()).Delete(m)
		if res.Error != nil {
			return n, mapErr(res.Error)
		}
		n += res.RowsAffected
	}
	return n, nil
}
