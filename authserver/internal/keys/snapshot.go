package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// snapshot is an immutable view of the key ring at one instant. The hot
// path only reads snapshots; Reload replaces them and current() re-derives
// them from memory when a time boundary (activation, expiry) has passed.
type snapshot struct {
	loaded bool
	// rows are all keys (without relying on their private key bytes),
	// sorted by activation.
	rows []SigningKey
	// mat holds the decrypted keys that were published when loaded.
	mat map[string]*keyMaterial
	// ring is the classification at the time the snapshot was derived.
	ring ringState
	// active signs new tokens; nil if no key is active.
	active *keyMaterial
	// published are the keys in the JWKS and accepted by the signer.
	published map[string]*keyMaterial
	jwks      []byte
	etag      string
}

// emptyJWKS is the key set before the first successful load.
const emptyJWKS = `{"keys":[]}`

// emptySnapshot is returned before the first Reload.
func emptySnapshot() *snapshot {
	body := []byte(emptyJWKS)
	return &snapshot{published: map[string]*keyMaterial{}, jwks: body, etag: etagOf(body)}
}

// activeKID returns the kid of the active key or "".
func (s *snapshot) activeKID() string {
	if s.active == nil {
		return ""
	}
	return s.active.kid
}

// buildSnapshot classifies rows at now and precomputes the signing key, the
// accepted keys and the JWKS document.
func buildSnapshot(rows []SigningKey, mat map[string]*keyMaterial, now time.Time, grace time.Duration) (*snapshot, error) {
	rs := classify(rows, now, grace)
	s := &snapshot{
		loaded:    true,
		rows:      rows,
		mat:       mat,
		ring:      rs,
		published: make(map[string]*keyMaterial, len(mat)),
	}
	// JWKS order: newest activation first (next keys, active, retired), so
	// the document is deterministic and its ETag stable.
	body := make([]byte, 0, 256*len(mat)+16)
	body = append(body, `{"keys":[`...)
	first := true
	for i := len(rows) - 1; i >= 0; i-- {
		kid := rows[i].KID
		if !rs.states[kid].state.Published() {
			continue
		}
		km, ok := mat[kid]
		if !ok {
			return nil, fmt.Errorf("published key %s was not loaded", kid)
		}
		s.published[kid] = km
		if kid == rs.active {
			s.active = km
		}
		if !first {
			body = append(body, ',')
		}
		first = false
		body = append(body, km.jwk...)
	}
	body = append(body, "]}"...)
	s.jwks = body
	s.etag = etagOf(body)
	return s, nil
}

// etagOf returns the strong ETag of a JWKS body.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// snapshot returns the last stored snapshot without re-deriving it.
func (m *Manager) snapshot() *snapshot {
	if s := m.snap.Load(); s != nil {
		return s
	}
	return emptySnapshot()
}

// current returns the snapshot valid now. When a next key has activated or a
// retired key has expired since the snapshot was derived, it re-derives the
// snapshot from memory (no database access) and publishes it with a
// compare-and-swap, so every instance switches keys at the same instant.
func (m *Manager) current() *snapshot {
	s := m.snap.Load()
	if s == nil {
		return emptySnapshot()
	}
	if s.ring.nextChange.IsZero() {
		return s
	}
	now := m.now()
	if now.Before(s.ring.nextChange) {
		return s
	}
	ns, err := buildSnapshot(s.rows, s.mat, now, m.grace)
	if err != nil {
		// Cannot happen: keys only leave the published set over time.
		m.log.Error("re-derive signing key snapshot", "err", err)
		return s
	}
	m.snap.CompareAndSwap(s, ns)
	return ns
}
