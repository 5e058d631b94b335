package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jsonSeg(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

func signES256(t *testing.T, key *ecdsa.PrivateKey, input string) string {
	t.Helper()
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return b64(sig)
}

func signHS256(secret []byte, input string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return b64(m.Sum(nil))
}

// publicJWK is the JWK of key's public half.
func publicJWK(t *testing.T, key *ecdsa.PrivateKey, kid string) map[string]any {
	t.Helper()
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	b := pub.Bytes() // 0x04 || x || y
	return map[string]any{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:65]), "kid": kid, "alg": "ES256", "use": "sig"}
}

// serverKey fetches the JWKS from authserver and returns the raw JSON of
// the key with the given kid and its public key in PEM and DER.
func serverKey(t *testing.T, p *pair, kid string) (jwkJSON, pemKey, derKey []byte) {
	t.Helper()
	resp, err := httpClient.Get(p.authURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, raw := range set.Keys {
		var k struct{ Kid, Kty, Crv, X, Y string }
		if err := json.Unmarshal(raw, &k); err != nil {
			t.Fatal(err)
		}
		if k.Kid != kid {
			continue
		}
		if k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("server key %s is %s/%s; the attack set assumes ES256", kid, k.Kty, k.Crv)
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		if err1 != nil || err2 != nil {
			t.Fatal("undecodable server JWK")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return raw, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), der
	}
	t.Fatalf("kid %s not in the JWKS", kid)
	return nil, nil, nil
}

func testAttacks(t *testing.T, p *pair) {
	real := p.login(t, userAdmin).AccessToken
	if r := p.get(t, "/v1/me", real); r.status != http.StatusOK {
		t.Fatalf("control: the genuine token is refused: %s", r)
	}
	parts := strings.Split(real, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d segments", len(parts))
	}
	realHdr, realPay, realSig := parts[0], parts[1], parts[2]
	realKid := kidOf(t, real)
	var realClaims map[string]any
	{
		b, err := base64.RawURLEncoding.DecodeString(realPay)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&realClaims); err != nil {
			t.Fatal(err)
		}
	}
	jwkJSON, pemKey, derKey := serverKey(t, p, realKid)

	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const attackerKid = "attacker-key-1"

	// A JWKS server of the attacker, for jku: it must never be asked.
	var jkuHits atomic.Int64
	jku := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jkuHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{publicJWK(t, attacker, attackerKid)}})
	}))
	t.Cleanup(jku.Close)

	now := time.Now().Unix()
	claims := func(mut func(c map[string]any)) map[string]any {
		c := maps.Clone(realClaims)
		c["iat"], c["nbf"], c["exp"] = now, now, now+600
		c["jti"] = "attack-" + randomString()[:12]
		if mut != nil {
			mut(c)
		}
		return c
	}
	header := func(alg, kid string, extra map[string]any) map[string]any {
		h := map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}
		maps.Copy(h, extra)
		return h
	}
	// signed builds header.claims signed by the attacker's key.
	signed := func(t *testing.T, h, c map[string]any) string {
		in := jsonSeg(t, h) + "." + jsonSeg(t, c)
		return in + "." + signES256(t, attacker, in)
	}
	hmacWith := func(t *testing.T, secret []byte) string {
		in := jsonSeg(t, header("HS256", realKid, nil)) + "." + realPay
		return in + "." + signHS256(secret, in)
	}
	none := func(t *testing.T, alg, sig string) string {
		return jsonSeg(t, map[string]any{"alg": alg, "typ": "at+jwt", "kid": realKid}) + "." + realPay + "." + sig
	}

	cases := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"alg-none", func(t *testing.T) string { return none(t, "none", realSig) }},
		{"alg-None", func(t *testing.T) string { return none(t, "None", realSig) }},
		{"alg-NONE", func(t *testing.T) string { return none(t, "NONE", realSig) }},
		{"alg-nOnE", func(t *testing.T) string { return none(t, "nOnE", realSig) }},
		{"alg-none-empty-sig", func(t *testing.T) string { return none(t, "none", "") }},
		{"alg-none-no-kid", func(t *testing.T) string {
			return jsonSeg(t, map[string]any{"alg": "none", "typ": "at+jwt"}) + "." + realPay + "."
		}},
		{"hs256-pubkey-pem", func(t *testing.T) string { return hmacWith(t, pemKey) }},
		{"hs256-pubkey-der", func(t *testing.T) string { return hmacWith(t, derKey) }},
		{"hs256-pubkey-jwk", func(t *testing.T) string { return hmacWith(t, jwkJSON) }},
		{"rs256-real-kid", func(t *testing.T) string {
			in := jsonSeg(t, header("RS256", realKid, nil)) + "." + realPay
			return in + "." + b64(make([]byte, 256))
		}},
		{"es384-real-kid", func(t *testing.T) string {
			in := jsonSeg(t, header("ES384", realKid, nil)) + "." + realPay
			return in + "." + realSig
		}},
		{"unknown-kid", func(t *testing.T) string { return signed(t, header("ES256", attackerKid, nil), claims(nil)) }},
		{"real-kid-foreign-signature", func(t *testing.T) string { return signed(t, header("ES256", realKid, nil), claims(nil)) }},
		{"jku-attacker-kid", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, map[string]any{"jku": jku.URL + "/jwks.json"}), claims(nil))
		}},
		{"jku-real-kid", func(t *testing.T) string {
			return signed(t, header("ES256", realKid, map[string]any{"jku": jku.URL + "/jwks.json"}), claims(nil))
		}},
		{"x5u-attacker", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, map[string]any{"x5u": jku.URL + "/cert.pem"}), claims(nil))
		}},
		{"jwk-embedded-attacker-kid", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, map[string]any{"jwk": publicJWK(t, attacker, attackerKid)}), claims(nil))
		}},
		{"jwk-embedded-real-kid", func(t *testing.T) string {
			return signed(t, header("ES256", realKid, map[string]any{"jwk": publicJWK(t, attacker, realKid)}), claims(nil))
		}},
		{"zero-signature", func(t *testing.T) string { return realHdr + "." + realPay + "." + b64(make([]byte, 64)) }},
		{"tampered-payload", func(t *testing.T) string {
			c := maps.Clone(realClaims)
			c["tenant_id"] = tenantB
			return realHdr + "." + jsonSeg(t, c) + "." + realSig
		}},
		{"truncated-signature", func(t *testing.T) string { return realHdr + "." + realPay + "." + realSig[:len(realSig)-4] }},
		{"expired", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) {
				c["iat"], c["nbf"], c["exp"] = now-7200, now-7200, now-3600
			}))
		}},
		{"future-nbf", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) { c["nbf"] = now + 3600 }))
		}},
		{"wrong-iss", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) { c["iss"] = "http://evil.example" }))
		}},
		{"wrong-aud", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) { c["aud"] = []string{"authserver"} }))
		}},
		{"wrong-typ-JWT", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, map[string]any{"typ": "JWT"}), claims(nil))
		}},
		{"wrong-typ-real-sig", func(t *testing.T) string {
			return jsonSeg(t, header("ES256", realKid, map[string]any{"typ": "JWT"})) + "." + realPay + "." + realSig
		}},
		{"wrong-aud-genuine", func(t *testing.T) string {
			// Genuinely signed by authserver, but for its own audience.
			tok, err := p.webConfig(webAOther).PasswordCredentialsToken(p.oauthCtx(), userAdmin.name, password)
			if err != nil {
				t.Fatalf("password grant at %s: %v", webAOther, err)
			}
			return tok.AccessToken
		}},
		{"missing-claims", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) {
				for _, k := range []string{"sub", "jti", "exp", "tenant_id", "role"} {
					delete(c, k)
				}
			}))
		}},
		{"crit-header", func(t *testing.T) string {
			return signed(t, header("ES256", realKid, map[string]any{"crit": []string{"exp"}}), claims(nil))
		}},
		{"oversized-20KB", func(t *testing.T) string {
			return signed(t, header("ES256", attackerKid, nil), claims(func(c map[string]any) { c["pad"] = strings.Repeat("A", 20<<10) }))
		}},
		{"garbled", func(t *testing.T) string { return "not-a-jwt" }},
		{"garbled-3-segments", func(t *testing.T) string { return "abc.def.ghi" }},
		{"empty-segments", func(t *testing.T) string { return ".." }},
		{"random-base64url", func(t *testing.T) string {
			return b64([]byte(randomString())) + "." + b64([]byte(randomString())) + "." + b64([]byte(randomString()))
		}},
		{"padded-base64", func(t *testing.T) string { return realHdr + "." + realPay + "." + realSig + "==" }},
		{"2-segments", func(t *testing.T) string { return realHdr + "." + realPay }},
		{"4-segments", func(t *testing.T) string { return real + "." + realSig }},
		{"5-segments-jwe-shape", func(t *testing.T) string {
			return realHdr + "." + realSig + "." + realSig + "." + realPay + "." + realSig
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token(t)
			if c.name == "oversized-20KB" && len(tok) < 20<<10 {
				t.Fatalf("token is only %d bytes", len(tok))
			}
			for _, path := range []string{"/v1/me", "/v1/forecasts"} {
				r := p.get(t, path, tok)
				if !isInvalidToken(r) {
					t.Errorf("GET %s: want 401 invalid_token, got %s", path, r)
				} else if path == "/v1/me" {
					t.Logf("%s", bytes.TrimSpace(r.body))
				}
			}
		})
	}
	if n := jkuHits.Load(); n != 0 {
		t.Errorf("simapi fetched the attacker's jku/x5u URL %d times", n)
	}

	// Not attacks on the token itself, but never a 500 or a pass either.
	t.Run("no-token", func(t *testing.T) {
		r := p.get(t, "/v1/me", "")
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") ||
			strings.Contains(r.header.Get("WWW-Authenticate"), "error=") {
			t.Errorf("want 401 with a bare Bearer challenge, got %s", r)
		}
	})
	t.Run("token-in-query", func(t *testing.T) {
		r := p.get(t, "/v1/me?access_token="+real, "")
		if r.status != http.StatusUnauthorized {
			t.Errorf("want 401 (query tokens are not accepted), got %s", r)
		}
	})
	t.Run("non-token68-characters", func(t *testing.T) {
		r := p.get(t, "/v1/me", "abc!def")
		if r.status != http.StatusBadRequest || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Errorf("want 400 invalid_request, got %s", r)
		}
	})
	// Control: the genuine token still works after the attack run.
	if r := p.get(t, "/v1/me", real); r.status != http.StatusOK {
		t.Errorf("genuine token refused after the attacks: %s", r)
	}
}
