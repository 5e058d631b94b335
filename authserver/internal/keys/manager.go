package keys

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// Errors returned by the Manager.
var (
	// ErrNotFound is returned when no key has the requested kid.
	ErrNotFound = errors.New("signing key not found")
	// ErrNoActiveKey is returned when signing is attempted while no key is
	// active (before EnsureActive, or when the key ring was not loaded).
	ErrNoActiveKey = errors.New("no active signing key")
)

// Audit event types passed to Config.Audit.
const (
	// AuditKeyCreated is emitted when a key is generated that does not sign
	// at once: the first key (EnsureActive) or a scheduled next key.
	AuditKeyCreated = "key.created"
	// AuditKeyRotated is emitted with the kid of a key that became the
	// active key through Rotate or as the replacement of a revoked key.
	AuditKeyRotated = "key.rotated"
	// AuditKeyRevoked is emitted with the kid of a revoked key.
	AuditKeyRevoked = "key.revoked"
)

// Defaults applied by NewManager to zero Config fields.
const (
	// DefaultJWKSMaxAge is the default Cache-Control max-age of the JWKS.
	DefaultJWKSMaxAge = 300 * time.Second
	// DefaultReloadInterval is the default period of Run's database reload.
	DefaultReloadInterval = 5 * time.Second
	// ClockSkew is added to MaxTokenTTL to decide how long a superseded key
	// stays published.
	ClockSkew = 60 * time.Second
)

// Config configures a Manager.
type Config struct {
	// KEK is the 32-byte key-encryption key (see LoadKEK). Required.
	KEK []byte
	// Alg is the algorithm of newly generated keys: ES256 (default), RS256
	// or EdDSA. Existing keys keep their algorithm.
	Alg string
	// MaxTokenTTL is the longest lifetime of a token signed by the ring; a
	// superseded key stays published for MaxTokenTTL + ClockSkew. Required.
	MaxTokenTTL time.Duration
	// RotationPeriod is how long a key signs before Run replaces it; 0
	// disables scheduled rotation.
	RotationPeriod time.Duration
	// PrePublish is how long a scheduled next key is published before it
	// starts signing. Defaults to 2 × JWKSMaxAge; must be shorter than
	// RotationPeriod when rotation is enabled.
	PrePublish time.Duration
	// JWKSMaxAge is the Cache-Control max-age of the JWKS response.
	// Defaults to DefaultJWKSMaxAge.
	JWKSMaxAge time.Duration
	// ReloadInterval is how often Run re-reads the key ring from the
	// database. Defaults to DefaultReloadInterval.
	ReloadInterval time.Duration
	// Audit, when set, is called after a key is created, rotated in or
	// revoked, with one of the Audit* event types.
	Audit func(ctx context.Context, eventType, kid string)
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives operational messages; key material is never logged.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// Manager owns the signing key ring: persistence, rotation, revocation and
// the in-memory snapshot used by the signer and the JWKS endpoint. It is safe
// for concurrent use.
type Manager struct {
	db     *gorm.DB
	cfg    Config
	grace  time.Duration
	log    *slog.Logger
	snap   atomic.Pointer[snapshot]
	loadMu sync.Mutex // serializes Reload so an older read never wins
}

// NewManager validates cfg, applies its defaults and returns a Manager. It
// does not touch the database; call EnsureActive (or Reload) before use.
func NewManager(db *gorm.DB, cfg Config) (*Manager, error) {
	if db == nil {
		return nil, errors.New("keys: nil database")
	}
	if len(cfg.KEK) != kekSize {
		return nil, fmt.Errorf("keys: key-encryption key must be %d bytes, got %d", kekSize, len(cfg.KEK))
	}
	if cfg.Alg == "" {
		cfg.Alg = AlgES256
	}
	if !validAlg(cfg.Alg) {
		return nil, fmt.Errorf("keys: unsupported signing algorithm %q (want %s, %s or %s)", cfg.Alg, AlgES256, AlgRS256, AlgEdDSA)
	}
	if cfg.MaxTokenTTL <= 0 {
		return nil, errors.New("keys: MaxTokenTTL must be positive")
	}
	if cfg.JWKSMaxAge <= 0 {
		cfg.JWKSMaxAge = DefaultJWKSMaxAge
	}
	if cfg.PrePublish <= 0 {
		cfg.PrePublish = 2 * cfg.JWKSMaxAge
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = DefaultReloadInterval
	}
	if cfg.RotationPeriod < 0 {
		return nil, errors.New("keys: RotationPeriod must not be negative")
	}
	if cfg.RotationPeriod > 0 && cfg.PrePublish >= cfg.RotationPeriod {
		return nil, fmt.Errorf("keys: PrePublish (%s) must be shorter than RotationPeriod (%s)", cfg.PrePublish, cfg.RotationPeriod)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.KEK = bytes.Clone(cfg.KEK)
	return &Manager{
		db:    db,
		cfg:   cfg,
		grace: cfg.MaxTokenTTL + ClockSkew,
		log:   cfg.Logger.With("component", "keys"),
	}, nil
}

// now returns the current time in UTC with the microsecond precision that
// both SQLite and PostgreSQL preserve.
func (m *Manager) now() time.Time {
	return m.cfg.Now().UTC().Truncate(time.Microsecond)
}

// audit calls the audit hook, if any.
func (m *Manager) audit(ctx context.Context, eventType, kid string) {
	if m.cfg.Audit != nil {
		m.cfg.Audit(ctx, eventType, kid)
	}
}

// EnsureActive loads the key ring and, when no key is active, creates one
// that signs at once. Concurrent callers on other instances are serialized
// through a database transaction, so at most one of them creates the key.
func (m *Manager) EnsureActive(ctx context.Context) error {
	if err := m.Reload(ctx); err != nil {
		return err
	}
	if m.snapshot().active != nil {
		return nil
	}
	var created *SigningKey
	err := m.inLockedTx(ctx, func(tx *gorm.DB, rows []SigningKey, now time.Time) error {
		if classify(rows, now, m.grace).active != "" {
			return nil
		}
		k, err := m.newKey(now, now)
		if err != nil {
			return err
		}
		if err := tx.Create(k).Error; err != nil {
			return fmt.Errorf("keys: insert signing key: %w", err)
		}
		created = k
		return nil
	})
	if err != nil {
		return err
	}
	if created != nil {
		m.log.InfoContext(ctx, "signing key created", "kid", created.KID, "alg", created.Alg, "state", StateActive)
		m.audit(ctx, AuditKeyCreated, created.KID)
	}
	return m.Reload(ctx)
}

// Rotate creates a key that is active at once (a microsecond after the
// current key's activation if that is not in the past, so back-to-back
// rotations stay ordered); the previous active key
// becomes retired (DeactivatedAt is set) and stays published until the tokens
// it signed have expired. Other instances pick the new key up at their next
// Reload. Resource servers that cached the JWKS learn the new kid only when
// they refetch it; scheduled rotation (Run) avoids that by pre-publishing.
func (m *Manager) Rotate(ctx context.Context) (SigningKey, error) {
	var created *SigningKey
	var previous string
	err := m.inLockedTx(ctx, func(tx *gorm.DB, rows []SigningKey, now time.Time) error {
		previous = classify(rows, now, m.grace).active
		k, err := m.newKey(now, activationAfter(rows, now, ""))
		if err != nil {
			return err
		}
		if err := tx.Create(k).Error; err != nil {
			return fmt.Errorf("keys: insert signing key: %w", err)
		}
		if previous != "" {
			if err := markDeactivated(tx, previous, now); err != nil {
				return err
			}
		}
		created = k
		return nil
	})
	if err != nil {
		return SigningKey{}, err
	}
	m.log.InfoContext(ctx, "signing key rotated", "kid", created.KID, "alg", created.Alg, "previous_kid", previous)
	m.audit(ctx, AuditKeyRotated, created.KID)
	if err := m.Reload(ctx); err != nil {
		return *created, err
	}
	return *created, nil
}

// Revoke revokes the key kid: it leaves the JWKS at once and every token it
// signed is rejected from this instance's next snapshot on (other instances
// follow at their next Reload). Revoking the active key activates a
// replacement in the same transaction: the earliest next key if one is
// already published, else a newly generated key. Revoking an already revoked
// key is a no-op. Unknown kids yield ErrNotFound.
func (m *Manager) Revoke(ctx context.Context, kid string) error {
	var (
		revoked     bool
		replacement string
		generated   bool
	)
	err := m.inLockedTx(ctx, func(tx *gorm.DB, rows []SigningKey, now time.Time) error {
		idx := -1
		for i := range rows {
			if rows[i].KID == kid {
				idx = i
			}
		}
		if idx < 0 {
			return fmt.Errorf("keys: revoke %q: %w", kid, ErrNotFound)
		}
		if rows[idx].RevokedAt != nil {
			return nil
		}
		before := classify(rows, now, m.grace)
		res := tx.Model(&SigningKey{}).Where("kid = ? AND revoked_at IS NULL", kid).Update("revoked_at", now)
		if res.Error != nil {
			return fmt.Errorf("keys: revoke %q: %w", kid, res.Error)
		}
		revoked = true
		if before.active != kid {
			return nil
		}
		if err := markDeactivated(tx, kid, now); err != nil {
			return err
		}
		// Promote the earliest next key: resource servers may already have
		// it cached. Rows are sorted, so the first next key is the earliest.
		for i := range rows {
			if rows[i].RevokedAt == nil && rows[i].ActivatesAt.After(now) {
				at := activationAfter(rows, now, kid)
				res := tx.Model(&SigningKey{}).Where("kid = ?", rows[i].KID).Update("activates_at", at)
				if res.Error != nil {
					return fmt.Errorf("keys: promote next key: %w", res.Error)
				}
				replacement = rows[i].KID
				return nil
			}
		}
		k, err := m.newKey(now, activationAfter(rows, now, kid))
		if err != nil {
			return err
		}
		if err := tx.Create(k).Error; err != nil {
			return fmt.Errorf("keys: insert replacement key: %w", err)
		}
		replacement, generated = k.KID, true
		return nil
	})
	if err != nil {
		return err
	}
	if revoked {
		m.log.WarnContext(ctx, "signing key revoked", "kid", kid)
		m.audit(ctx, AuditKeyRevoked, kid)
	}
	if replacement != "" {
		m.log.InfoContext(ctx, "signing key rotated after revocation", "kid", replacement, "generated", generated, "revoked_kid", kid)
		m.audit(ctx, AuditKeyRotated, replacement)
	}
	return m.Reload(ctx)
}

// RotateIfDue performs one step of scheduled rotation: when RotationPeriod
// is set, a key is active, it has been active for at least RotationPeriod -
// PrePublish and no next key exists, it creates a next key that activates
// PrePublish from now, and reports it. The check is repeated inside a
// locking transaction, so several instances never create two next keys.
// Run calls it on every tick.
func (m *Manager) RotateIfDue(ctx context.Context) (SigningKey, bool, error) {
	if m.cfg.RotationPeriod <= 0 {
		return SigningKey{}, false, nil
	}
	due := func(rows []SigningKey, now time.Time) bool {
		rs := classify(rows, now, m.grace)
		if rs.active == "" {
			return false
		}
		for i := range rows {
			switch rs.states[rows[i].KID].state {
			case StateNext:
				return false
			case StateActive:
				if now.Sub(rows[i].ActivatesAt) < m.cfg.RotationPeriod-m.cfg.PrePublish {
					return false
				}
			}
		}
		return true
	}
	// Cheap pre-check on the snapshot before taking the database lock.
	if s := m.snapshot(); s.loaded && !due(s.rows, m.now()) {
		return SigningKey{}, false, nil
	}
	var created *SigningKey
	err := m.inLockedTx(ctx, func(tx *gorm.DB, rows []SigningKey, now time.Time) error {
		if !due(rows, now) {
			return nil
		}
		k, err := m.newKey(now, now.Add(m.cfg.PrePublish))
		if err != nil {
			return err
		}
		if err := tx.Create(k).Error; err != nil {
			return fmt.Errorf("keys: insert next key: %w", err)
		}
		created = k
		return nil
	})
	if err != nil || created == nil {
		return SigningKey{}, false, err
	}
	m.log.InfoContext(ctx, "next signing key created", "kid", created.KID, "alg", created.Alg, "activates_at", created.ActivatesAt)
	m.audit(ctx, AuditKeyCreated, created.KID)
	if err := m.Reload(ctx); err != nil {
		return *created, true, err
	}
	return *created, true, nil
}

// List returns every key in activation order with its state computed now.
func (m *Manager) List(ctx context.Context) ([]KeyInfo, error) {
	rows, err := loadRows(m.db.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	rs := classify(rows, m.now(), m.grace)
	out := make([]KeyInfo, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		c := rs.states[r.KID]
		info := KeyInfo{
			KID:           r.KID,
			Alg:           r.Alg,
			State:         c.state,
			CreatedAt:     r.CreatedAt,
			ActivatesAt:   r.ActivatesAt,
			DeactivatedAt: r.DeactivatedAt,
			RevokedAt:     r.RevokedAt,
		}
		if !c.supersededAt.IsZero() {
			s, p := c.supersededAt, c.publishedUntil
			info.SupersededAt, info.PublishedUntil = &s, &p
		}
		out = append(out, info)
	}
	return out, nil
}

// Reload reads every key from the database, decrypts the published ones and
// atomically replaces the in-memory snapshot. On error the previous snapshot
// stays in use; a published key that cannot be decrypted (wrong
// key-encryption key, tampered row) is an error.
func (m *Manager) Reload(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	rows, err := loadRows(m.db.WithContext(ctx))
	if err != nil {
		return err
	}
	now := m.now()
	rs := classify(rows, now, m.grace)
	prev := m.snap.Load()
	mat := make(map[string]*keyMaterial, len(rows))
	for i := range rows {
		r := &rows[i]
		if !rs.states[r.KID].state.Published() {
			continue
		}
		if prev != nil {
			if km, ok := prev.mat[r.KID]; ok && km.alg == r.Alg && bytes.Equal(km.sealed, r.PrivateKeyEnc) {
				mat[r.KID] = km
				continue
			}
		}
		km, err := loadMaterial(m.cfg.KEK, r)
		if err != nil {
			return fmt.Errorf("keys: reload: %w", err)
		}
		mat[r.KID] = km
	}
	s, err := buildSnapshot(rows, mat, now, m.grace)
	if err != nil {
		return fmt.Errorf("keys: reload: %w", err)
	}
	if prev != nil && prev.loaded && prev.activeKID() != s.activeKID() {
		m.log.InfoContext(ctx, "active signing key changed", "kid", s.activeKID(), "previous_kid", prev.activeKID())
	}
	m.snap.Store(s)
	return nil
}

// Run reloads the key ring every ReloadInterval, recreates an active key if
// none is usable, marks superseded keys as deactivated and, when
// RotationPeriod is set, schedules rotations (see RotateIfDue). Errors are
// logged and retried at the next tick. It returns when ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.ReloadInterval)
	defer t.Stop()
	for {
		m.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick performs one iteration of Run: reload, ensure an active key, record
// deactivation times and scheduled rotation.
func (m *Manager) Tick(ctx context.Context) {
	if err := m.Reload(ctx); err != nil {
		m.log.ErrorContext(ctx, "reload signing keys", "err", err)
		return
	}
	if m.snapshot().active == nil {
		if err := m.EnsureActive(ctx); err != nil {
			m.log.ErrorContext(ctx, "ensure active signing key", "err", err)
			return
		}
	}
	m.recordDeactivations(ctx)
	if _, _, err := m.RotateIfDue(ctx); err != nil {
		m.log.ErrorContext(ctx, "scheduled signing key rotation", "err", err)
	}
}

// recordDeactivations fills the informative DeactivatedAt of keys that were
// superseded by a scheduled rotation.
func (m *Manager) recordDeactivations(ctx context.Context) {
	s := m.snapshot()
	for i := range s.rows {
		r := &s.rows[i]
		if r.DeactivatedAt != nil || r.RevokedAt != nil {
			continue
		}
		c := s.ring.states[r.KID]
		if c.supersededAt.IsZero() {
			continue
		}
		err := m.db.WithContext(ctx).Model(&SigningKey{}).
			Where("kid = ? AND deactivated_at IS NULL", r.KID).
			Update("deactivated_at", c.supersededAt).Error
		if err != nil {
			m.log.WarnContext(ctx, "record key deactivation", "kid", r.KID, "err", err)
		}
	}
}

// ActiveKID returns the kid of the key currently signing, if any.
func (m *Manager) ActiveKID() (string, bool) {
	s := m.current()
	if s.active == nil {
		return "", false
	}
	return s.active.kid, true
}

// KeyForKID returns the public key and algorithm of a published, non-revoked
// key, for verifiers other than Signer.
func (m *Manager) KeyForKID(kid string) (crypto.PublicKey, string, bool) {
	km, ok := m.current().published[kid]
	if !ok {
		return nil, "", false
	}
	return km.pub, km.alg, true
}

// newKey generates a key and its encrypted row.
func (m *Manager) newKey(now, activatesAt time.Time) (*SigningKey, error) {
	kid, err := newKID()
	if err != nil {
		return nil, err
	}
	priv, err := generateKey(m.cfg.Alg)
	if err != nil {
		return nil, err
	}
	sealed, err := sealPrivateKey(m.cfg.KEK, kid, priv)
	if err != nil {
		return nil, err
	}
	jwk, err := publicJWK(priv, kid, m.cfg.Alg)
	if err != nil {
		return nil, err
	}
	return &SigningKey{
		KID:           kid,
		Alg:           m.cfg.Alg,
		PrivateKeyEnc: sealed,
		PublicJWK:     string(jwk),
		CreatedAt:     now,
		ActivatesAt:   activatesAt,
	}, nil
}

// inLockedTx runs fn in a transaction that excludes concurrent writers of
// the key table, with the rows as read inside the transaction and the
// current time taken after the lock was acquired. On PostgreSQL the table is
// locked in SHARE ROW EXCLUSIVE mode (readers are not blocked); on SQLite
// the DSN should use _txlock=immediate so the transaction takes the write
// lock when it begins (with a deferred transaction a concurrent writer makes
// the commit fail with SQLITE_BUSY instead, which is still safe).
func (m *Manager) inLockedTx(ctx context.Context, fn func(tx *gorm.DB, rows []SigningKey, now time.Time) error) error {
	return m.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE").Error; err != nil {
				return fmt.Errorf("keys: lock signing_keys: %w", err)
			}
		}
		rows, err := loadRows(tx)
		if err != nil {
			return err
		}
		return fn(tx, rows, m.now())
	})
}

// loadRows reads all keys, normalized to UTC and sorted by activation.
func loadRows(db *gorm.DB) ([]SigningKey, error) {
	var rows []SigningKey
	if err := db.Order("activates_at, created_at, kid").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("keys: load signing keys: %w", err)
	}
	for i := range rows {
		rows[i].normalize()
	}
	sortKeys(rows)
	return rows, nil
}

// activationWindow bounds how far in the future a key's activation may be
// and still be treated as "already activated" by activationAfter.
const activationWindow = time.Second

// activationAfter returns the activation time for a key that must become
// the active key now: now, or just after the latest activation among the
// non-revoked keys (other than exclude) activating no later than
// activationWindow from now, when that is not before now. Without this, two
// keys activated in the same microsecond (frozen clocks, back-to-back
// rotations) would be ordered by their random kids, and a key created on an
// instance whose clock lags slightly would sort before the key it replaces.
// The new key may therefore start signing up to about a second late; a
// scheduled next key further in the future is left after it.
func activationAfter(rows []SigningKey, now time.Time, exclude string) time.Time {
	t := now
	limit := now.Add(activationWindow)
	for i := range rows {
		r := &rows[i]
		if r.RevokedAt != nil || r.KID == exclude || r.ActivatesAt.After(limit) {
			continue
		}
		if !r.ActivatesAt.Before(t) {
			t = r.ActivatesAt.Add(time.Microsecond)
		}
	}
	return t
}

// markDeactivated sets DeactivatedAt of kid unless already set.
func markDeactivated(tx *gorm.DB, kid string, now time.Time) error {
	err := tx.Model(&SigningKey{}).Where("kid = ? AND deactivated_at IS NULL", kid).Update("deactivated_at", now).Error
	if err != nil {
		return fmt.Errorf("keys: mark %q deactivated: %w", kid, err)
	}
	return nil
}
