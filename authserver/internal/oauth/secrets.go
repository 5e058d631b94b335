package oauth

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ory/fosite"
)

// MinClientSecretLength is the shortest client secret accepted when an
// operator supplies one instead of letting the server generate it.
const MinClientSecretLength = 32

// ErrSecretMismatch is returned when a client secret does not match.
var ErrSecretMismatch = errors.New("client secret mismatch")

// SecretHasher stores client secrets as HMAC-SHA256 under a server key and
// compares them in constant time. Secrets are generated with 256 bits of
// entropy, so a fast keyed hash is as safe as bcrypt for them and keeps
// client authentication (and with it introspection) cheap; the key means a
// stolen database alone does not allow offline guessing.
type SecretHasher struct {
	key []byte
}

var _ fosite.Hasher = (*SecretHasher)(nil)

// NewSecretHasher returns a hasher keyed with key (at least 32 bytes).
func NewSecretHasher(key []byte) (*SecretHasher, error) {
	if len(key) < 32 {
		return nil, errors.New("client secret key must be at least 32 bytes")
	}
	return &SecretHasher{key: append([]byte(nil), key...)}, nil
}

// Hash returns the keyed hash of a secret.
func (h *SecretHasher) Hash(_ context.Context, secret []byte) ([]byte, error) {
	m := hmac.New(sha256.New, h.key)
	m.Write(secret)
	return m.Sum(nil), nil
}

// Compare returns nil when secret hashes to hash, in constant time.
func (h *SecretHasher) Compare(ctx context.Context, hash, secret []byte) error {
	want, _ := h.Hash(ctx, secret)
	if !hmac.Equal(want, hash) {
		return ErrSecretMismatch
	}
	return nil
}

// GenerateSecret returns a new client secret: 32 random bytes, base64url.
func GenerateSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidateSuppliedSecret refuses operator-supplied secrets that are too short.
func ValidateSuppliedSecret(s string) error {
	if len(s) < MinClientSecretLength {
		return fmt.Errorf("client secret must be at least %d characters", MinClientSecretLength)
	}
	if len(s) > 512 {
		return errors.New("client secret must be at most 512 characters")
	}
	return nil
}

// DeriveKey derives an independent 32-byte key for purpose from the master
// key-encryption key (HKDF-SHA256), so one configured secret protects the
// signing keys, the client-secret hashes and the refresh-token HMAC without
// reusing key material across them.
func DeriveKey(master []byte, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, "epitwin-authserver/"+purpose, 32)
}
