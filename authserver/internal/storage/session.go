package storage

import (
	"time"

	"github.com/ory/fosite"
)

// Session is what authserver keeps with every token: who the token is for
// and, for tokens issued to a user, which user. It implements fosite.Session.
type Session struct {
	// Subject is the token's sub: the user id, or the client id for the
	// client-credentials grant.
	Subject  string `json:"sub"`
	Username string `json:"username,omitempty"`
	// UserID is empty for client-credentials tokens.
	UserID   string `json:"user_id,omitempty"`
	TenantID string `json:"tenant_id"`
	Role     string `json:"role"`
	// AuthTime is when the user logged in; it is kept across refreshes.
	AuthTime time.Time `json:"auth_time"`
	// AccessTokenID is the jti of the newest access token, for the audit log.
	AccessTokenID string                         `json:"jti,omitempty"`
	ExpiresAt     map[fosite.TokenType]time.Time `json:"expires_at"`
}

var _ fosite.Session = (*Session)(nil)

// SetExpiresAt sets the expiry of one token type.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = make(map[fosite.TokenType]time.Time)
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt returns the expiry of one token type (zero when unset).
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	if s == nil || s.ExpiresAt == nil {
		return time.Time{}
	}
	return s.ExpiresAt[key]
}

// GetUsername returns the user's login name.
func (s *Session) GetUsername() string {
	if s == nil {
		return ""
	}
	return s.Username
}

// GetSubject returns the token subject.
func (s *Session) GetSubject() string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// SetSubject sets the token subject.
func (s *Session) SetSubject(sub string) { s.Subject = sub }

// Clone returns a deep copy.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.ExpiresAt = make(map[fosite.TokenType]time.Time, len(s.ExpiresAt))
	for k, v := range s.ExpiresAt {
		c.ExpiresAt[k] = v
	}
	return &c
}
