package keys

import (
	"bytes"
	"context"
	"crypto"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	otherKEK := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name    string
		alg     string
		mutate  func(sealed []byte) (kek []byte, kid, alg string, out []byte)
		wantErr string
	}{
		{name: "ok-es256", alg: AlgES256},
		{name: "ok-rs256", alg: AlgRS256},
		{name: "ok-eddsa", alg: AlgEdDSA},
		{name: "fail-other-kid", alg: AlgES256, wantErr: "decrypt key other",
			mutate: func(s []byte) ([]byte, string, string, []byte) { return testKEK(), "other", AlgES256, s }},
		{name: "fail-other-kek", alg: AlgES256, wantErr: "wrong key-encryption key",
			mutate: func(s []byte) ([]byte, string, string, []byte) { return otherKEK, "kid-1", AlgES256, s }},
		{name: "fail-flipped-bit", alg: AlgES256, wantErr: "decrypt key",
			mutate: func(s []byte) ([]byte, string, string, []byte) {
				s = bytes.Clone(s)
				s[len(s)-1] ^= 1
				return testKEK(), "kid-1", AlgES256, s
			}},
		{name: "fail-truncated", alg: AlgES256, wantErr: "malformed",
			mutate: func(s []byte) ([]byte, string, string, []byte) { return testKEK(), "kid-1", AlgES256, s[:10] }},
		{name: "fail-version", alg: AlgES256, wantErr: "malformed",
			mutate: func(s []byte) ([]byte, string, string, []byte) {
				s = bytes.Clone(s)
				s[0] = 9
				return testKEK(), "kid-1", AlgES256, s
			}},
		{name: "fail-alg-mismatch", alg: AlgEdDSA, wantErr: "does not match algorithm",
			mutate: func(s []byte) ([]byte, string, string, []byte) { return testKEK(), "kid-1", AlgES256, s }},
		{name: "fail-short-kek", alg: AlgES256, wantErr: "must be 32 bytes",
			mutate: func(s []byte) ([]byte, string, string, []byte) { return []byte("short"), "kid-1", AlgES256, s }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			priv, err := generateKey(tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := sealPrivateKey(testKEK(), "kid-1", priv)
			if err != nil {
				t.Fatal(err)
			}
			kek, kid, alg, in := testKEK(), "kid-1", tt.alg, sealed
			if tt.mutate != nil {
				kek, kid, alg, in = tt.mutate(sealed)
			}
			got, err := openPrivateKey(kek, kid, alg, in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			type equaler interface{ Equal(crypto.PrivateKey) bool }
			if !got.(equaler).Equal(priv) {
				t.Fatal("round trip changed the key")
			}
		})
	}
}

func TestSealNonceIsRandom(t *testing.T) {
	t.Parallel()
	priv, err := generateKey(AlgEdDSA)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := sealPrivateKey(testKEK(), "k", priv)
	b, _ := sealPrivateKey(testKEK(), "k", priv)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same key are identical")
	}
}

// TestCiphertextSwapRejected moves a ciphertext to another row: the kid AAD
// must make decryption fail.
func TestCiphertextSwapRejected(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		ctx := context.Background()
		db := d.open(t)
		m := newTestManager(t, db, Config{})
		if err := m.EnsureActive(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := m.ActiveKID()
		second, err := m.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var row SigningKey
		if err := db.First(&row, "kid = ?", first).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Model(&SigningKey{}).Where("kid = ?", second.KID).
			Update("private_key_enc", row.PrivateKeyEnc).Error; err != nil {
			t.Fatal(err)
		}
		fresh := newTestManager(t, d.open(t), Config{})
		err = fresh.Reload(ctx)
		if err == nil || !strings.Contains(err.Error(), second.KID) {
			t.Fatalf("Reload err = %v, want decryption failure for %s", err, second.KID)
		}
		if _, ok := fresh.ActiveKID(); ok {
			t.Fatal("a failed first Reload must leave no active key")
		}
		// The running instance reports the error and keeps its last good
		// snapshot (it reuses decrypted keys only for unchanged ciphertexts).
		if err := m.Reload(ctx); err == nil || !strings.Contains(err.Error(), second.KID) {
			t.Fatalf("Reload err = %v, want decryption failure for %s", err, second.KID)
		}
		if kid, _ := m.ActiveKID(); kid != second.KID {
			t.Fatalf("active = %s, want last good %s", kid, second.KID)
		}
	})
}

func TestWrongKEKRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newSQLiteDB(t)
	m := newTestManager(t, d.open(t), Config{})
	if err := m.EnsureActive(ctx); err != nil {
		t.Fatal(err)
	}
	other := newTestManager(t, d.open(t), Config{KEK: bytes.Repeat([]byte{1}, 32)})
	if err := other.Reload(ctx); err == nil || !strings.Contains(err.Error(), "wrong key-encryption key") {
		t.Fatalf("Reload err = %v, want wrong key-encryption key", err)
	}
}
