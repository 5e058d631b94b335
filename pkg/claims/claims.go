// Package claims defines the JWT access-token profile (RFC 9068) that
// authserver issues and every resource server verifies: the header type, the
// claim names and the Go shape of a verified token.
package claims

import (
	"strings"
	"time"
)

// TokenType is the JOSE "typ" header of an access token (RFC 9068 §2.1).
const TokenType = "at+jwt"

// DefaultAudience is the audience granted when a token request names none.
const DefaultAudience = "simapi"

// AdminAudience is the audience of tokens for authserver's own admin API.
const AdminAudience = "authserver"

// Claim names beyond the registered ones (RFC 7519 §4.1, RFC 9068 §2.2).
const (
	ClaimClientID = "client_id"
	ClaimScope    = "scope"
	ClaimTenantID = "tenant_id"
	ClaimRole     = "role"
)

// AccessToken is the verified content of an access token.
type AccessToken struct {
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	Audience  []string  `json:"aud"`
	ExpiresAt time.Time `json:"exp"`
	IssuedAt  time.Time `json:"iat"`
	NotBefore time.Time `json:"nbf"`
	ID        string    `json:"jti"`
	ClientID  string    `json:"client_id"`
	Scope     string    `json:"scope"`
	TenantID  string    `json:"tenant_id"`
	Role      string    `json:"role"`
	KeyID     string    `json:"-"`
}

// Scopes returns the token's space-separated scope as a slice.
func (t *AccessToken) Scopes() []string { return strings.Fields(t.Scope) }

// HasAudience reports whether aud is among the token's audiences.
func (t *AccessToken) HasAudience(aud string) bool {
	for _, a := range t.Audience {
		if a == aud {
			return true
		}
	}
	return false
}
