package keys

import (
	"slices"
	"strings"
	"time"
)

// SigningKey is the persisted form of one signing key (table signing_keys).
// The private key is stored only encrypted; all times are UTC.
type SigningKey struct {
	// KID is the random key identifier published as the JWK "kid".
	KID string `gorm:"column:kid;primaryKey;size:64" json:"kid"`
	// Alg is the JWS algorithm of the key: ES256, RS256 or EdDSA.
	Alg string `gorm:"column:alg;size:16;not null" json:"alg"`
	// PrivateKeyEnc is version || nonce || AES-256-GCM(PKCS#8 DER) under the
	// key-encryption key, with KID as additional authenticated data.
	PrivateKeyEnc []byte `gorm:"column:private_key_enc;not null" json:"-"`
	// PublicJWK is the JSON of the public JWK.
	PublicJWK string `gorm:"column:public_jwk;type:text;not null" json:"public_jwk"`
	// CreatedAt is when the key was generated.
	CreatedAt time.Time `gorm:"column:created_at;not null" json:"created_at"`
	// ActivatesAt is when the key starts signing; a future value makes it a
	// next key, published but not signing yet.
	ActivatesAt time.Time `gorm:"column:activates_at;not null" json:"activates_at"`
	// DeactivatedAt records when a newer key became active. It is
	// informative only: supersession is computed from ActivatesAt ordering.
	DeactivatedAt *time.Time `gorm:"column:deactivated_at" json:"deactivated_at,omitempty"`
	// RevokedAt is set when the key was revoked; a revoked key is neither
	// published nor accepted.
	RevokedAt *time.Time `gorm:"column:revoked_at" json:"revoked_at,omitempty"`
}

// TableName returns the table name of SigningKey for gorm.
func (SigningKey) TableName() string { return "signing_keys" }

// normalize converts all times to UTC after loading from the database.
func (k *SigningKey) normalize() {
	k.CreatedAt = k.CreatedAt.UTC()
	k.ActivatesAt = k.ActivatesAt.UTC()
	if k.DeactivatedAt != nil {
		t := k.DeactivatedAt.UTC()
		k.DeactivatedAt = &t
	}
	if k.RevokedAt != nil {
		t := k.RevokedAt.UTC()
		k.RevokedAt = &t
	}
}

// State is the computed lifecycle state of a signing key.
type State string

// Key states as reported by List.
const (
	// StateActive is the key signing new tokens.
	StateActive State = "active"
	// StateNext is a published key that starts signing at its ActivatesAt.
	StateNext State = "next"
	// StateRetired is a superseded key still published because tokens it
	// signed may still be valid.
	StateRetired State = "retired"
	// StateExpired is a superseded key whose tokens have all expired; it is
	// neither published nor accepted.
	StateExpired State = "expired"
	// StateRevoked is a revoked key; it is neither published nor accepted.
	StateRevoked State = "revoked"
)

// Published reports whether keys in state s appear in the JWKS and are
// accepted when validating tokens.
func (s State) Published() bool {
	return s == StateActive || s == StateNext || s == StateRetired
}

// KeyInfo describes a signing key without its key material, for listings.
type KeyInfo struct {
	// KID is the key identifier.
	KID string `json:"kid"`
	// Alg is the JWS algorithm.
	Alg string `json:"alg"`
	// State is the state computed at the time of the listing.
	State State `json:"state"`
	// CreatedAt is when the key was generated.
	CreatedAt time.Time `json:"created_at"`
	// ActivatesAt is when the key starts (or started) signing.
	ActivatesAt time.Time `json:"activates_at"`
	// SupersededAt is when a newer key became active, for retired and
	// expired keys.
	SupersededAt *time.Time `json:"superseded_at,omitempty"`
	// PublishedUntil is when a retired key leaves the JWKS.
	PublishedUntil *time.Time `json:"published_until,omitempty"`
	// DeactivatedAt is the informative deactivation time stored in the row.
	DeactivatedAt *time.Time `json:"deactivated_at,omitempty"`
	// RevokedAt is when the key was revoked.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// classified is the state of one key at a given instant.
type classified struct {
	state          State
	supersededAt   time.Time // zero unless retired or expired
	publishedUntil time.Time // zero unless retired or expired
}

// ringState is the classification of a whole key ring at one instant.
type ringState struct {
	states map[string]classified
	// active is the KID of the active key, "" if there is none.
	active string
	// nextChange is the earliest future instant at which some state
	// changes (a next key activates or a retired key expires); zero if none.
	nextChange time.Time
}

// sortKeys orders keys by activation, then creation, then KID, which is the
// order every instance uses to decide supersession.
func sortKeys(rows []SigningKey) {
	slices.SortFunc(rows, func(a, b SigningKey) int {
		if c := a.ActivatesAt.Compare(b.ActivatesAt); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.KID, b.KID)
	})
}

// classify computes the state of every key at now. rows must be sorted with
// sortKeys. grace is how long a superseded key stays published after its
// successor became active (maximum token lifetime plus clock skew).
//
// The active key is the non-revoked key with the greatest ActivatesAt not
// after now. A key is superseded at the activation time of the first later
// key that actually signed, that is one that was not revoked before its
// activation; revoking that successor later does not resurrect the old key
// unless it becomes the active key again by the rule above.
func classify(rows []SigningKey, now time.Time, grace time.Duration) ringState {
	rs := ringState{states: make(map[string]classified, len(rows))}
	activeIdx := -1
	for i := range rows {
		if rows[i].RevokedAt == nil && !rows[i].ActivatesAt.After(now) {
			activeIdx = i
		}
	}
	if activeIdx >= 0 {
		rs.active = rows[activeIdx].KID
	}
	noteChange := func(t time.Time) {
		if rs.nextChange.IsZero() || t.Before(rs.nextChange) {
			rs.nextChange = t
		}
	}
	for i := range rows {
		r := &rows[i]
		var c classified
		switch {
		case r.RevokedAt != nil:
			c.state = StateRevoked
		case r.ActivatesAt.After(now):
			c.state = StateNext
			noteChange(r.ActivatesAt)
		case i == activeIdx:
			c.state = StateActive
		default:
			c.supersededAt = supersededAt(rows, i, now)
			c.publishedUntil = c.supersededAt.Add(grace)
			if now.Before(c.publishedUntil) {
				c.state = StateRetired
				noteChange(c.publishedUntil)
			} else {
				c.state = StateExpired
			}
		}
		rs.states[r.KID] = c
	}
	return rs
}

// supersededAt returns when the first key after rows[i] that actually signed
// became active. The active key always qualifies, so a result exists for any
// non-revoked, non-active key activated before now.
func supersededAt(rows []SigningKey, i int, now time.Time) time.Time {
	for j := i + 1; j < len(rows); j++ {
		s := &rows[j]
		if s.ActivatesAt.After(now) {
			break
		}
		if s.RevokedAt == nil || s.RevokedAt.After(s.ActivatesAt) {
			return s.ActivatesAt
		}
	}
	return now
}
