package keys

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KEKEnvVar is the environment variable holding the key-encryption key.
const KEKEnvVar = "AUTH_KEY_ENCRYPTION_KEY"

// kekFileName is the name of the generated key-encryption key file in the
// data directory.
const kekFileName = "kek"

// LoadKEK returns the 32-byte key-encryption key that protects the signing
// keys at rest. envValue is the content of AUTH_KEY_ENCRYPTION_KEY (standard
// or URL-safe base64, padded or not, of 32 bytes); when it is set it wins.
// When it is empty and required is false, the key is read from dataDir/kek,
// or generated there (base64, file mode 0600, directory mode 0700) on first
// use. When it is empty and required is true, LoadKEK fails: production
// deployments must provide the key explicitly.
func LoadKEK(envValue string, dataDir string, required bool) ([]byte, error) {
	if v := strings.TrimSpace(envValue); v != "" {
		kek, err := decodeKEK(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KEKEnvVar, err)
		}
		return kek, nil
	}
	if required {
		return nil, errors.New(KEKEnvVar + " is required (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)")
	}
	if dataDir == "" {
		return nil, errors.New("no data directory to keep the generated key-encryption key in; set " + KEKEnvVar)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dataDir, kekFileName)
	kek, err := readKEKFile(path)
	if err == nil {
		return kek, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createKEKFile(dataDir, path)
}

// decodeKEK decodes base64 (any of the four common alphabets/paddings) of
// exactly 32 bytes. The value is never included in errors.
func decodeKEK(v string) ([]byte, error) {
	encodings := []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	}
	for _, enc := range encodings {
		b, err := enc.DecodeString(v)
		if err != nil {
			continue
		}
		if len(b) != kekSize {
			return nil, fmt.Errorf("must be base64 of %d bytes, got %d bytes", kekSize, len(b))
		}
		return b, nil
	}
	return nil, errors.New("is not valid base64")
}

// readKEKFile reads and decodes an existing key file.
func readKEKFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key file: %w", err)
	}
	kek, err := decodeKEK(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("key-encryption key file %s: %w", path, err)
	}
	return kek, nil
}

// createKEKFile generates a key and publishes it at path atomically: the key
// is written to a temporary file that is then hard-linked into place, so a
// concurrent process either wins the race or reads the complete winner.
func createKEKFile(dir, path string) ([]byte, error) {
	kek := make([]byte, kekSize)
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("generate key-encryption key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".kek-*")
	if err != nil {
		return nil, fmt.Errorf("create key-encryption key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("chmod key-encryption key file: %w", err)
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(kek) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write key-encryption key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("sync key-encryption key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("close key-encryption key file: %w", err)
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKEKFile(path)
		}
		return nil, fmt.Errorf("install key-encryption key file: %w", err)
	}
	return kek, nil
}
