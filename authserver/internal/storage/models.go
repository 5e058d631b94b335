package storage

import (
	"strings"
	"time"

	"github.com/ory/fosite"
)

// Tenant is a customer organisation (a health department). Every user and
// client belongs to exactly one tenant.
type Tenant struct {
	ID        string    `gorm:"primaryKey;size:64" json:"id"`
	Name      string    `gorm:"size:200;not null" json:"name"`
	CreatedAt time.Time `gorm:"not null" json:"created_at"`
}

// TableName fixes the table name.
func (Tenant) TableName() string { return "tenants" }

// User is a tenant's staff account, used with the password grant. The
// username is unique within its tenant only.
type User struct {
	ID                string    `gorm:"primaryKey;size:36"`
	TenantID          string    `gorm:"size:64;not null;uniqueIndex:ux_users_tenant_username,priority:1"`
	Username          string    `gorm:"size:128;not null;uniqueIndex:ux_users_tenant_username,priority:2"`
	PasswordHash      string    `gorm:"size:100;not null"`
	Role              string    `gorm:"size:16;not null"`
	Disabled          bool      `gorm:"not null;default:false"`
	CreatedAt         time.Time `gorm:"not null"`
	UpdatedAt         time.Time `gorm:"not null"`
	PasswordChangedAt time.Time `gorm:"not null"`
}

// TableName fixes the table name.
func (User) TableName() string { return "users" }

// Client is a registered OAuth client. Its secret is stored only as a keyed
// hash. It implements fosite.Client and fosite.ClientWithSecretRotation.
type Client struct {
	ID         string `gorm:"primaryKey;size:128"`
	TenantID   string `gorm:"size:64;not null;index"`
	SecretHash []byte `gorm:"not null"`
	// RotatedSecretHash is the previous secret, accepted until
	// RotatedSecretExpiresAt (secret rotation with overlap).
	RotatedSecretHash      []byte
	RotatedSecretExpiresAt *time.Time
	// GrantTypes, Scopes and Audiences are space-separated lists.
	GrantTypes string `gorm:"size:200;not null"`
	Scopes     string `gorm:"size:500;not null"`
	Audiences  string `gorm:"size:500;not null"`
	// Role is carried by client-credentials tokens; empty if the client
	// may not use that grant.
	Role string `gorm:"size:16;not null"`
	// Introspect marks a resource server allowed to call introspection.
	Introspect bool      `gorm:"not null;default:false"`
	CreatedAt  time.Time `gorm:"not null"`
	UpdatedAt  time.Time `gorm:"not null"`

	// now is the clock used by GetRotatedHashes; set by the store.
	now func() time.Time `gorm:"-"`
}

// TableName fixes the table name.
func (Client) TableName() string { return "clients" }

var (
	_ fosite.Client                   = (*Client)(nil)
	_ fosite.ClientWithSecretRotation = (*Client)(nil)
)

// GetID returns the client id.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret returns the keyed hash of the current secret.
func (c *Client) GetHashedSecret() []byte { return c.SecretHash }

// GetRotatedHashes returns the previous secret's hash while its overlap lasts.
func (c *Client) GetRotatedHashes() [][]byte {
	if len(c.RotatedSecretHash) == 0 || c.RotatedSecretExpiresAt == nil {
		return nil
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if !now().Before(*c.RotatedSecretExpiresAt) {
		return nil
	}
	return [][]byte{c.RotatedSecretHash}
}

// GetRedirectURIs returns nothing: no redirect-based grant is enabled.
func (c *Client) GetRedirectURIs() []string { return nil }

// GetGrantTypes returns the grants the client may use.
func (c *Client) GetGrantTypes() fosite.Arguments { return strings.Fields(c.GrantTypes) }

// GetResponseTypes returns nothing: no authorize endpoint exists.
func (c *Client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{} }

// GetScopes returns the scopes the client may be granted.
func (c *Client) GetScopes() fosite.Arguments { return strings.Fields(c.Scopes) }

// IsPublic is always false: every client authenticates with a secret.
func (c *Client) IsPublic() bool { return false }

// GetAudience returns the audiences the client may request.
func (c *Client) GetAudience() fosite.Arguments { return strings.Fields(c.Audiences) }

// TokenRow is the shape shared by access and refresh token sessions. The
// primary key is SHA-256 of the key fosite gives (the whole access token;
// the HMAC signature of a refresh token), never a usable token.
type TokenRow struct {
	SignatureHash string    `gorm:"primaryKey;size:64"`
	RequestID     string    `gorm:"size:64;not null;index"`
	ClientID      string    `gorm:"size:128;not null;index"`
	TenantID      string    `gorm:"size:64;not null;index"`
	Subject       string    `gorm:"size:200;not null"`
	UserID        string    `gorm:"size:36;not null;index"`
	Active        bool      `gorm:"not null"`
	RequestedAt   time.Time `gorm:"not null"`
	ExpiresAt     time.Time `gorm:"not null;index"`
	// Data is the JSON of the stored request (scopes, audiences, session).
	Data string `gorm:"type:text;not null"`
}

// AccessTokenRow is an issued access token. The JWT is self-contained; the
// row exists so introspection can answer "revoked".
type AccessTokenRow struct {
	TokenRow `gorm:"embedded"`
}

// TableName fixes the table name.
func (AccessTokenRow) TableName() string { return "access_tokens" }

// RefreshTokenRow is an issued refresh token. Rotated rows stay, inactive,
// until they expire, so that presenting one again is detected as reuse.
type RefreshTokenRow struct {
	TokenRow            `gorm:"embedded"`
	AccessSignatureHash string     `gorm:"size:64;not null"`
	UsedAt              *time.Time // set when rotated
	FamilyCreatedAt     time.Time  `gorm:"not null"`
}

// TableName fixes the table name.
func (RefreshTokenRow) TableName() string { return "refresh_tokens" }

// AuditEvent is one entry of the append-only security log.
type AuditEvent struct {
	ID        int64     `gorm:"primaryKey;autoIncrement" json:"id"`
	Time      time.Time `gorm:"not null;index" json:"time"`
	Type      string    `gorm:"size:64;not null;index" json:"type"`
	TenantID  string    `gorm:"size:64;not null;index" json:"tenant_id,omitempty"`
	Actor     string    `gorm:"size:200;not null" json:"actor,omitempty"`
	Subject   string    `gorm:"size:200;not null" json:"subject,omitempty"`
	ClientID  string    `gorm:"size:128;not null" json:"client_id,omitempty"`
	IP        string    `gorm:"size:64;not null" json:"ip,omitempty"`
	Outcome   string    `gorm:"size:16;not null" json:"outcome"`
	RequestID string    `gorm:"size:64;not null" json:"request_id,omitempty"`
	Details   string    `gorm:"type:text;not null" json:"details,omitempty"`
}

// TableName fixes the table name.
func (AuditEvent) TableName() string { return "audit_events" }

// schemaMigration records one applied migration.
type schemaMigration struct {
	Version   int       `gorm:"primaryKey;autoIncrement:false"`
	Name      string    `gorm:"size:200;not null"`
	AppliedAt time.Time `gorm:"not null"`
}

func (schemaMigration) TableName() string { return "schema_migrations" }
