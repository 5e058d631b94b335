package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// Password length limits. bcrypt reads at most 72 bytes; longer passwords
// are refused rather than silently truncated.
const (
	MinPasswordLength = 12
	MaxPasswordBytes  = 72
)

// ErrBadCredentials is returned for an unknown user, a wrong password or a
// disabled account alike, so the answer does not reveal which.
var ErrBadCredentials = errors.New("invalid username or password")

// Passwords hashes and checks user passwords with bcrypt.
type Passwords struct {
	cost  int
	dummy []byte
}

// NewPasswords returns a bcrypt password checker at cost. It precomputes a
// dummy hash at the same cost so that an unknown user costs as much time as
// a wrong password.
func NewPasswords(cost int) (*Passwords, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("epitwin-dummy-password-for-timing"), cost)
	if err != nil {
		return nil, err
	}
	return &Passwords{cost: cost, dummy: dummy}, nil
}

// Cost returns the configured bcrypt cost.
func (p *Passwords) Cost() int { return p.cost }

// ValidatePolicy checks a new password against the length policy.
func ValidatePolicy(password string) error {
	switch {
	case len(password) < MinPasswordLength:
		return fmt.Errorf("password must be at least %d characters", MinPasswordLength)
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("password must be at most %d bytes", MaxPasswordBytes)
	}
	return nil
}

// Hash returns the bcrypt hash of a password that passed ValidatePolicy.
func (p *Passwords) Hash(password string) (string, error) {
	if err := ValidatePolicy(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), p.cost)
	return string(h), err
}

// UserLookup finds a user by tenant and username.
type UserLookup interface {
	GetUserByUsername(ctx context.Context, tenantID, username string) (*storage.User, error)
}

// Authenticate checks a tenant user's password. Every failure (unknown
// user, disabled user, wrong or over-long password) runs one bcrypt
// comparison and returns ErrBadCredentials, so neither the answer nor its
// timing tells them apart.
func (p *Passwords) Authenticate(ctx context.Context, users UserLookup, tenantID, username, password string) (*storage.User, error) {
	u, err := users.GetUserByUsername(ctx, tenantID, username)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	hash := p.dummy
	if u != nil {
		hash = []byte(u.PasswordHash)
	}
	pw := []byte(password)
	tooLong := len(pw) > MaxPasswordBytes
	if tooLong {
		pw = pw[:MaxPasswordBytes]
	}
	cmpErr := bcrypt.CompareHashAndPassword(hash, pw)
	ok := subtle.ConstantTimeEq(boolInt(cmpErr == nil), 1) == 1
	if u == nil || !ok || tooLong || u.Disabled {
		return nil, ErrBadCredentials
	}
	return u, nil
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
