package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	good := sign(f, e.keys["ES256"], e.claims(), nil)
	p := strings.Split(good, ".")
	for _, s := range []string{
		good, "", ".", "..", "a.b.c", p[0] + "." + p[1] + ".", p[0] + "=.x.y",
		rawToken(`{"alg":"none","typ":"at+jwt","kid":"ec-1"}`, `{}`, []byte("x")),
		rawToken(`{"alg":"ES256","typ":"at+jwt","kid":"ec-1","crit":["x"]}`, `{}`, []byte("x")),
		rawToken(`{"alg":"ES256","typ":"at+jwt","kid":"zz"}`, `{"exp":1}`, make([]byte, 64)),
		p[0] + "." + p[1] + "." + strings.Repeat("A", 86),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := e.v.Verify(context.Background(), s)
		if err == nil {
			if tok == nil {
				t.Fatal("nil token without error")
			}
			return
		}
		var ve *Error
		if !errors.As(err, &ve) || err != error(ve) {
			t.Fatalf("error %T is not *Error", err)
		}
		if ve.Status != 401 && ve.Status != 503 {
			t.Fatalf("status %d", ve.Status)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		rawToken(`{"alg":"ES256","typ":"at+jwt","kid":"k"}`, `{}`, []byte("s")),
		rawToken(`{"alg":"ES256","alg":"none"}`, `{}`, []byte("s")),
		rawToken(`{"alg":"ES256","typ":"at+jwt","kid":"k","cty":"JWT"}`, `{}`, []byte("s")),
		rawToken(`[1,2]`, `{}`, []byte("s")), "a.b.c", "a..c", "e30.e30.e30", "e30=.e30.e30",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, e := parseHeader(s)
		if e != nil {
			if e.Status != 401 || e.Code != CodeInvalidToken || e.Description == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if h.alg == "" || h.kid == "" || strings.EqualFold(h.alg, "none") {
			t.Fatalf("accepted header %+v", h)
		}
		if strings.Count(s, ".") != 2 || strings.ContainsAny(s, "=+/ ") {
			t.Fatalf("accepted malformed token %q", s)
		}
	})
}

func FuzzBearerHeader(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer", "Basic x", "Bearer a b", "Bearer ==", "Bearer a==", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, e := parseBearer([]string{s})
		if e != nil {
			if tok != "" || (e.Status != 400 && e.Status != 401) {
				t.Fatalf("bad result %q %+v", tok, e)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n,\"") || strings.HasPrefix(tok, "=") {
			t.Fatalf("accepted token %q from %q", tok, s)
		}
	})
}
