package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v3"
)

// Signing algorithms supported by the key ring, as JWS "alg" values.
const (
	// AlgES256 is ECDSA on P-256 with SHA-256, the default.
	AlgES256 = "ES256"
	// AlgRS256 is RSASSA-PKCS1-v1_5 with SHA-256 on a 3072-bit RSA key.
	AlgRS256 = "RS256"
	// AlgEdDSA is EdDSA on Ed25519.
	AlgEdDSA = "EdDSA"
)

const (
	// kekSize is the size in bytes of the key-encryption key (AES-256).
	kekSize = 32
	// rsaBits is the modulus size of generated RSA keys.
	rsaBits = 3072
	// minRSABits is the smallest RSA modulus accepted when loading a key.
	minRSABits = 2048
	// sealVersion prefixes every ciphertext so the format can evolve.
	sealVersion byte = 1
)

// keyMaterial is a decrypted signing key with its precomputed public JWK.
type keyMaterial struct {
	kid    string
	alg    string
	priv   crypto.Signer
	pub    crypto.PublicKey
	jwk    []byte // public JWK, JSON
	sealed []byte // ciphertext it was decrypted from, to reuse it across reloads
}

// validAlg reports whether alg is one of the supported signing algorithms.
func validAlg(alg string) bool {
	switch alg {
	case AlgES256, AlgRS256, AlgEdDSA:
		return true
	}
	return false
}

// newKID returns a random key identifier: 16 random bytes in hex. Hex
// (not base64url) so a kid never starts with '-' and is never mistaken for
// a flag by `authserver keys revoke KID`.
func newKID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate kid: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// generateKey creates a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate P-256 key: %w", err)
		}
		return k, nil
	case AlgRS256:
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		return k, nil
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
}

// checkKeyAlg verifies that priv is a key usable with alg.
func checkKeyAlg(priv any, alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		if k, ok := priv.(*ecdsa.PrivateKey); ok && k.Curve == elliptic.P256() {
			return k, nil
		}
	case AlgRS256:
		if k, ok := priv.(*rsa.PrivateKey); ok && k.N.BitLen() >= minRSABits {
			return k, nil
		}
	case AlgEdDSA:
		if k, ok := priv.(ed25519.PrivateKey); ok {
			return k, nil
		}
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	return nil, fmt.Errorf("private key of type %T does not match algorithm %s", priv, alg)
}

// publicJWK returns the JSON of the public JWK of priv.
func publicJWK(priv crypto.Signer, kid, alg string) ([]byte, error) {
	jwk := jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
	if !jwk.IsPublic() {
		return nil, errors.New("refusing to publish a private key")
	}
	b, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal public JWK: %w", err)
	}
	return b, nil
}

// newAEAD returns AES-256-GCM under kek.
func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != kekSize {
		return nil, fmt.Errorf("key-encryption key must be %d bytes, got %d", kekSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("init AES: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("init GCM: %w", err)
	}
	return aead, nil
}

// sealPrivateKey encrypts the PKCS#8 DER encoding of priv under kek with the
// kid as additional authenticated data. The result is
// version || nonce || ciphertext+tag.
func sealPrivateKey(kek []byte, kid string, priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal PKCS#8: %w", err)
	}
	defer clear(der)
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(der)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(out, out[1:], der, []byte(kid)), nil
}

// openPrivateKey reverses sealPrivateKey and checks the key matches alg.
func openPrivateKey(kek []byte, kid, alg string, sealed []byte) (crypto.Signer, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("decrypt key %s: malformed ciphertext", kid)
	}
	nonce := sealed[1 : 1+aead.NonceSize()]
	der, err := aead.Open(nil, nonce, sealed[1+aead.NonceSize():], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("decrypt key %s (wrong key-encryption key or tampered row): %w", kid, err)
	}
	defer clear(der)
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse key %s: %w", kid, err)
	}
	k, err := checkKeyAlg(priv, alg)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", kid, err)
	}
	return k, nil
}

// loadMaterial decrypts a stored key and precomputes its public JWK.
func loadMaterial(kek []byte, row *SigningKey) (*keyMaterial, error) {
	priv, err := openPrivateKey(kek, row.KID, row.Alg, row.PrivateKeyEnc)
	if err != nil {
		return nil, err
	}
	jwk, err := publicJWK(priv, row.KID, row.Alg)
	if err != nil {
		return nil, err
	}
	return &keyMaterial{
		kid:    row.KID,
		alg:    row.Alg,
		priv:   priv,
		pub:    priv.Public(),
		jwk:    jwk,
		sealed: row.PrivateKeyEnc,
	}, nil
}
