package keys

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKEK(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xfb}, 32) // 0xfb makes std and url alphabets differ
	tests := []struct {
		name     string
		env      string
		required bool
		file     string // content of dataDir/kek written before the call
		want     []byte
		wantErr  string
	}{
		{name: "ok-env-std", env: base64.StdEncoding.EncodeToString(raw), want: raw},
		{name: "ok-env-url", env: base64.URLEncoding.EncodeToString(raw), want: raw},
		{name: "ok-env-raw-url", env: base64.RawURLEncoding.EncodeToString(raw), required: true, want: raw},
		{name: "ok-env-wins-over-file", env: base64.StdEncoding.EncodeToString(raw), file: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)), want: raw},
		{name: "ok-existing-file", file: base64.StdEncoding.EncodeToString(raw) + "\n", want: raw},
		{name: "fail-env-short", env: base64.StdEncoding.EncodeToString(raw[:16]), wantErr: "32 bytes, got 16"},
		{name: "fail-env-garbage", env: "not base64!!", wantErr: "not valid base64"},
		{name: "fail-required", required: true, wantErr: "AUTH_KEY_ENCRYPTION_KEY is required"},
		{name: "fail-bad-file", file: "xyz", wantErr: "key-encryption key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.file != "" {
				if err := os.WriteFile(filepath.Join(dir, "kek"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadKEK(tt.env, dir, tt.required)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if tt.env != "" && strings.Contains(err.Error(), tt.env) {
					t.Fatal("error leaks the key value")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, want %x", got, tt.want)
			}
		})
	}
}

func TestLoadKEKGeneratesFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadKEK("", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 32 {
		t.Fatalf("len = %d", len(first))
	}
	fi, err := os.Stat(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("kek file mode = %o, want 600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Fatalf("data dir mode = %o, want 700", perm)
	}
	second, err := LoadKEK("", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("second LoadKEK generated a new key instead of reusing the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir has %d entries, want only kek", len(entries))
	}
}
