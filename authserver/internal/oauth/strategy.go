package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/jwt"

	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/claims"
)

// Strategy issues RFC 9068 JWT access tokens and opaque HMAC refresh
// tokens. It is the fosite CoreStrategy of the provider.
type Strategy struct {
	// HMAC issues and checks refresh tokens (and the unused authorize codes).
	*oauth2.HMACSHAStrategy
	// Signer signs with the key ring's active key and validates against
	// every published key.
	Signer jwt.Signer
	// Keys answers whether a key is still published.
	Keys   KeyRing
	Issuer string
	Now    func() time.Time
}

var _ oauth2.CoreStrategy = (*Strategy)(nil)

// AccessTokenSignature returns the key under which an access token's
// session is stored: the whole token, which storage hashes with SHA-256.
// Keying by the whole token (not only its signature segment) means a
// stored row proves that these exact bytes were issued here, which is what
// lets ValidateAccessToken skip a second signature check.
func (s *Strategy) AccessTokenSignature(_ context.Context, token string) string {
	if strings.Count(token, ".") != 2 || len(token) > maxAccessTokenBytes {
		return ""
	}
	return token
}

// maxAccessTokenBytes bounds what is hashed and looked up.
const maxAccessTokenBytes = 8192

// NewTokenID returns a random jti (128 bits, base64url).
func NewTokenID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// GenerateAccessToken builds every claim itself (fosite's JWT strategy keeps
// the first token's iat and never stores its jti) and signs it with the
// active key; the signer forces kid and typ "at+jwt" into the header.
func (s *Strategy) GenerateAccessToken(ctx context.Context, req fosite.Requester) (string, string, error) {
	sess, ok := req.GetSession().(*storage.Session)
	if !ok {
		return "", "", errors.New("session must be *storage.Session")
	}
	now := s.Now().UTC()
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		return "", "", errors.New("access token expiry not set")
	}
	jti := NewTokenID()
	aud := []string(req.GetGrantedAudience())
	if len(aud) == 0 {
		return "", "", errors.New("no audience granted")
	}
	mc := jwt.MapClaims{
		"iss":                s.Issuer,
		"sub":                sess.Subject,
		"aud":                aud,
		"exp":                exp.Unix(),
		"iat":                now.Unix(),
		"nbf":                now.Unix(),
		"jti":                jti,
		claims.ClaimClientID: req.GetClient().GetID(),
		claims.ClaimScope:    strings.Join(req.GetGrantedScopes(), " "),
		claims.ClaimTenantID: sess.TenantID,
		claims.ClaimRole:     sess.Role,
	}
	token, _, err := s.Signer.Generate(ctx, mc, &jwt.Headers{})
	if err != nil {
		return "", "", err
	}
	sess.AccessTokenID = jti
	return token, s.AccessTokenSignature(ctx, token), nil
}

// KeyRing is what validation needs from the signing keys.
type KeyRing interface {
	// Published reports whether kid is published and not revoked.
	Published(kid string) (alg string, ok bool)
}

// ValidateAccessToken decides whether a stored access token is still valid.
// fosite calls it only with the request found under this exact token (see
// AccessTokenSignature), so the bytes are known to be ours; what can have
// changed since issuance is the key (revoked or expired out of the JWKS)
// and the clock.
func (s *Strategy) ValidateAccessToken(_ context.Context, req fosite.Requester, token string) error {
	if req == nil {
		return fosite.ErrRequestUnauthorized
	}
	kid, err := headerKID(token)
	if err != nil {
		return fosite.ErrRequestUnauthorized.WithWrap(err)
	}
	if _, ok := s.Keys.Published(kid); !ok {
		return fosite.ErrRequestUnauthorized.WithHint("The token's signing key is no longer valid.")
	}
	exp := req.GetSession().GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() || !s.Now().Before(exp) {
		return fosite.ErrTokenExpired
	}
	return nil
}

// headerKID reads the kid of a compact JWS header.
func headerKID(token string) (string, error) {
	i := strings.IndexByte(token, '.')
	if i < 0 {
		return "", errors.New("not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(token[:i])
	if err != nil {
		return "", err
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil || h.KID == "" {
		return "", errors.New("no kid in header")
	}
	return h.KID, nil
}
