package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
	Issuer string
	Now    func() time.Time
}

var _ oauth2.CoreStrategy = (*Strategy)(nil)

// AccessTokenSignature returns the JWS signature segment, the key under
// which the token's session is stored.
func (s *Strategy) AccessTokenSignature(_ context.Context, token string) string {
	i := strings.LastIndexByte(token, '.')
	if i < 0 || strings.Count(token, ".") != 2 {
		return ""
	}
	return token[i+1:]
}

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
	token, sig, err := s.Signer.Generate(ctx, mc, &jwt.Headers{})
	if err != nil {
		return "", "", err
	}
	sess.AccessTokenID = jti
	return token, sig, nil
}

// ValidateAccessToken checks the signature against the published keys (a
// revoked key fails here) and the time claims.
func (s *Strategy) ValidateAccessToken(ctx context.Context, _ fosite.Requester, token string) error {
	if _, err := s.Signer.Validate(ctx, token); err != nil {
		var ve *jwt.ValidationError
		if errors.As(err, &ve) && ve.Has(jwt.ValidationErrorExpired) {
			return fosite.ErrTokenExpired.WithWrap(err)
		}
		return fosite.ErrRequestUnauthorized.WithWrap(err)
	}
	return nil
}

// DecodeAccessToken returns the claims of a token that ValidateAccessToken
// accepted.
func (s *Strategy) DecodeAccessToken(ctx context.Context, token string) (jwt.MapClaims, error) {
	t, err := s.Signer.Decode(ctx, token)
	if err != nil {
		return nil, err
	}
	return t.Claims, nil
}
