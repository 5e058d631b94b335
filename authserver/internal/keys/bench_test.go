package keys

import (
	"context"
	"strings"
	"testing"

	"github.com/ory/fosite/token/jwt"
)

func BenchmarkSignerGenerate(b *testing.B) {
	s := startedManager(b, Config{Alg: AlgES256}).Signer()
	ctx := context.Background()
	claims := testClaims()
	header := &jwt.Headers{}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Generate(ctx, claims, header); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignerValidate(b *testing.B) {
	m := startedManager(b, Config{Alg: AlgES256})
	s := m.Signer()
	ctx := context.Background()
	tok := mustSign(b, m)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzSignerValidate(f *testing.F) {
	m := startedManager(f, Config{})
	s := m.Signer()
	valid := mustSign(f, m)
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		valid,
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		"." + parts[1] + "." + parts[2],
		"eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.AAAA",
		`{"protected":"e30","payload":"e30","signature":""}`,
		"a.b.c",
		"",
		"...",
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token string) {
		sig, err := s.Validate(ctx, token)
		if err == nil && token != valid && !strings.HasSuffix(token, "."+sig) {
			t.Fatalf("accepted %q with signature %q", token, sig)
		}
		_, _ = s.Decode(ctx, token)
	})
}
