package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/jwt"
)

// signRaw signs claims with km's private key and exactly the given header
// (alg is added from km).
func signRaw(t testing.TB, km *keyMaterial, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	extra := map[jose.HeaderKey]any{}
	for k, v := range header {
		extra[jose.HeaderKey(k)] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(km.alg), Key: km.priv}, &jose.SignerOptions{ExtraHeaders: extra})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken assembles header.payload.signature from JSON parts.
func rawToken(t testing.TB, header map[string]any, claims jwt.MapClaims, sign func(signingInput string) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(input))
}

func TestAlgorithms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		alg     string
		keyType any
		kty     string
	}{
		{name: "ok-es256", alg: AlgES256, keyType: &ecdsa.PublicKey{}, kty: "EC"},
		{name: "ok-rs256", alg: AlgRS256, keyType: &rsa.PublicKey{}, kty: "RSA"},
		{name: "ok-eddsa", alg: AlgEdDSA, keyType: ed25519.PublicKey{}, kty: "OKP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			m := startedManager(t, Config{Alg: tt.alg})
			tok, sig, err := m.Signer().Generate(ctx, testClaims(), &jwt.Headers{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Signer().Validate(ctx, tok)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got != sig {
				t.Fatalf("Validate signature %q != Generate signature %q", got, sig)
			}
			decoded, err := m.Signer().Decode(ctx, tok)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !decoded.Valid() || decoded.Header["alg"] != tt.alg || decoded.Claims["sub"] != "user-1" {
				t.Fatalf("decoded = %+v", decoded)
			}
			kid, _ := m.ActiveKID()
			pub, alg, ok := m.KeyForKID(kid)
			if !ok || alg != tt.alg {
				t.Fatalf("KeyForKID = %T, %s, %v", pub, alg, ok)
			}
			if want, got := typeOf(tt.keyType), typeOf(pub); want != got {
				t.Fatalf("public key type %s, want %s", got, want)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			body, _ := m.JWKS()
			if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("JWKS %s: %v", body, err)
			}
			k := set.Keys[0]
			if k["kty"] != tt.kty || k["alg"] != tt.alg || k["use"] != "sig" || k["kid"] != kid {
				t.Fatalf("JWK = %v", k)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Fatalf("JWKS leaks private parameter %q", private)
				}
			}
		})
	}
}

func typeOf(v any) string {
	switch v.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa"
	case *rsa.PublicKey:
		return "rsa"
	case ed25519.PublicKey:
		return "ed25519"
	default:
		return "other"
	}
}

func TestGenerateOverridesHeader(t *testing.T) {
	t.Parallel()
	m := startedManager(t, Config{})
	header := &jwt.Headers{Extra: map[string]any{
		"kid": "attacker", "alg": "none", "typ": "JWT", "jku": "https://evil.example/jwks",
		"jwk": map[string]any{"kty": "oct"}, "x5u": "https://evil.example/x5u", "custom": "kept",
	}}
	tok, _, err := m.Signer().Generate(context.Background(), testClaims(), header)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	kid, _ := m.ActiveKID()
	want := map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt", "custom": "kept"}
	if len(h) != len(want) {
		t.Fatalf("header = %v, want %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Fatalf("header[%s] = %v, want %v (header %v)", k, h[k], v, h)
		}
	}
	if _, _, err := m.Signer().Generate(context.Background(), nil, header); err == nil {
		t.Fatal("nil claims accepted")
	}
	if _, _, err := m.Signer().Generate(context.Background(), testClaims(), nil); err != nil {
		t.Fatalf("nil header: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	m := startedManager(t, Config{})
	kid, _ := m.ActiveKID()
	active := m.snapshot().active
	outsider, err := generateKey(AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	outsiderKM := &keyMaterial{kid: "outsider", alg: AlgES256, priv: outsider, pub: outsider.Public()}
	stolenKID := &keyMaterial{kid: kid, alg: AlgES256, priv: outsider, pub: outsider.Public()}
	jwkJSON := active.jwk
	hs256 := func(secret []byte) func(string) []byte {
		return func(in string) []byte {
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(in))
			return mac.Sum(nil)
		}
	}
	expired := testClaims()
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	notYet := testClaims()
	notYet["nbf"] = time.Now().Add(time.Hour).Unix()
	valid := mustSign(t, m)
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  uint32
	}{
		{name: "ok", token: valid},
		{name: "fail-alg-none", want: jwt.ValidationErrorUnverifiable | jwt.ValidationErrorSignatureInvalid | jwt.ValidationErrorMalformed,
			token: rawToken(t, map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"}, testClaims(), func(string) []byte { return nil })},
		{name: "fail-alg-hs256-public-key-as-secret", want: jwt.ValidationErrorSignatureInvalid,
			token: rawToken(t, map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}, testClaims(), hs256(jwkJSON))},
		{name: "fail-alg-rs256-header", want: jwt.ValidationErrorSignatureInvalid,
			token: rawToken(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}, testClaims(), func(string) []byte { return []byte("sig") })},
		{name: "fail-unknown-kid", want: jwt.ValidationErrorUnverifiable,
			token: signRaw(t, outsiderKM, map[string]any{"kid": "outsider", "typ": "at+jwt"}, testClaims())},
		{name: "fail-other-key-same-kid", want: jwt.ValidationErrorSignatureInvalid,
			token: signRaw(t, stolenKID, map[string]any{"kid": kid, "typ": "at+jwt"}, testClaims())},
		{name: "fail-no-kid", want: jwt.ValidationErrorUnverifiable,
			token: signRaw(t, active, map[string]any{"typ": "at+jwt"}, testClaims())},
		{name: "fail-typ-jwt", want: jwt.ValidationErrorUnverifiable,
			token: signRaw(t, active, map[string]any{"kid": kid, "typ": "JWT"}, testClaims())},
		{name: "ok-typ-application", token: signRaw(t, active, map[string]any{"kid": kid, "typ": "application/AT+JWT"}, testClaims())},
		{name: "fail-expired", want: jwt.ValidationErrorExpired,
			token: signRaw(t, active, map[string]any{"kid": kid, "typ": "at+jwt"}, expired)},
		{name: "fail-not-yet-valid", want: jwt.ValidationErrorNotValidYet,
			token: signRaw(t, active, map[string]any{"kid": kid, "typ": "at+jwt"}, notYet)},
		{name: "fail-tampered-payload", want: jwt.ValidationErrorSignatureInvalid,
			token: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2]},
		{name: "fail-garbled", want: jwt.ValidationErrorMalformed, token: "a.b.c"},
		{name: "fail-empty", want: jwt.ValidationErrorMalformed, token: ""},
		{name: "fail-two-segments", want: jwt.ValidationErrorMalformed, token: parts[0] + "." + parts[1]},
		{name: "fail-json-serialization", want: jwt.ValidationErrorMalformed,
			token: `{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sig, err := m.Signer().Validate(context.Background(), tt.token)
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if want := tt.token[strings.LastIndex(tt.token, ".")+1:]; sig != want {
					t.Fatalf("signature = %q, want %q", sig, want)
				}
				return
			}
			var ve *jwt.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v (%T), want *jwt.ValidationError", err, err)
			}
			if !ve.Has(tt.want) {
				t.Fatalf("error kinds %b, want one of %b (%v)", ve.Errors, tt.want, err)
			}
			if sig != "" {
				t.Fatal("signature returned for an invalid token")
			}
		})
	}
}

// TestFositeErrorMapping checks that fosite's JWT strategy maps the
// signer's errors to the RFC errors it maps DefaultSigner's to.
func TestFositeErrorMapping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := startedManager(t, Config{})
	strategy := &oauth2.DefaultJWTStrategy{Signer: m.Signer()}
	revokedKID, _ := m.ActiveKID()
	revokedTok := mustSign(t, m)
	if err := m.Revoke(ctx, revokedKID); err != nil {
		t.Fatal(err)
	}
	kid, _ := m.ActiveKID()
	expired := testClaims()
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	expiredTok := signRaw(t, m.snapshot().active, map[string]any{"kid": kid, "typ": "at+jwt"}, expired)
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{name: "ok", token: mustSign(t, m)},
		{name: "fail-expired", token: expiredTok, want: fosite.ErrTokenExpired},
		{name: "fail-revoked", token: revokedTok, want: fosite.ErrTokenSignatureMismatch},
		{name: "fail-malformed", token: "x.y.z", want: fosite.ErrInvalidTokenFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := strategy.ValidateAccessToken(ctx, nil, tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateAccessToken: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignerHelpers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startedManager(t, Config{}).Signer()
	tests := []struct {
		name    string
		token   string
		want    string
		wantErr bool
	}{
		{name: "ok", token: "a.b.c", want: "c"},
		{name: "ok-empty-signature", token: "a.b.", want: ""},
		{name: "fail-two-parts", token: "a.b", wantErr: true},
		{name: "fail-four-parts", token: "a.b.c.d", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GetSignature(ctx, tt.token)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("GetSignature = %q, %v", got, err)
			}
		})
	}
	h, err := s.Hash(ctx, []byte("abc"))
	sum := sha256.Sum256([]byte("abc"))
	if err != nil || string(h) != string(sum[:]) {
		t.Fatalf("Hash = %x, %v", h, err)
	}
	if n := s.GetSigningMethodLength(ctx); n != 32 {
		t.Fatalf("GetSigningMethodLength = %d", n)
	}
}
