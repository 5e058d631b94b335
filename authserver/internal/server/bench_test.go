package server_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// benchCost is the bcrypt cost of the password benchmarks: the server's
// default (12) unless AUTH_BENCH_BCRYPT_COST says otherwise.
func benchCost(b *testing.B) int {
	if v := os.Getenv("AUTH_BENCH_BCRYPT_COST"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	return 12
}

// postForm is the hot loop of the benchmarks: one keep-alive request.
func postForm(b *testing.B, c *http.Client, u, user, pass string, form url.Values) []byte {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return body
}

// onBenchDB runs a benchmark's env on PostgreSQL when
// AUTH_BENCH_POSTGRES_URL is set (the production database), otherwise on
// the embedded SQLite file.
func onBenchDB(o *envOptions) { o.postgres = os.Getenv("AUTH_BENCH_POSTGRES_URL") }

func BenchmarkClientCredentialsGrant(b *testing.B) {
	e := newEnv(b, onBenchDB)
	c := e.srv.Client()
	form := url.Values{"grant_type": {"client_credentials"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		postForm(b, c, e.tokenURL(), "svc", ccSecret, form)
	}
}

func BenchmarkRefreshGrant(b *testing.B) {
	e := newEnv(b, onBenchDB)
	c := e.srv.Client()
	rt := e.login("alice").RefreshToken
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := postForm(b, c, e.tokenURL(), "dash", dashSecrt, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		rt = extract(b, body, "refresh_token")
	}
}

func BenchmarkIntrospection(b *testing.B) {
	e := newEnv(b, onBenchDB)
	c := e.srv.Client()
	tok, err := e.ccConfig().Token(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	form := url.Values{"token": {tok.AccessToken}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := postForm(b, c, e.srv.URL+"/oauth2/introspect", "simapi-rs", rsSecret, form)
		if !strings.Contains(string(body), `"active":true`) {
			b.Fatalf("inactive: %s", body)
		}
	}
}

// BenchmarkPasswordGrant and BenchmarkBcryptCompare run at the same cost
// so their ratio shows how close the grant is to its hashing floor.
func BenchmarkPasswordGrant(b *testing.B) {
	cost := benchCost(b)
	e := newEnv(b, func(o *envOptions) { o.bcryptCost = cost })
	c := e.srv.Client()
	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {userPass}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		postForm(b, c, e.tokenURL(), "dash", dashSecrt, form)
	}
}

func BenchmarkBcryptCompare(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte(userPass), benchCost(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := bcrypt.CompareHashAndPassword(hash, []byte(userPass)); err != nil {
			b.Fatal(err)
		}
	}
}

func extract(b *testing.B, body []byte, key string) string {
	s := string(body)
	i := strings.Index(s, `"`+key+`":"`)
	if i < 0 {
		b.Fatalf("no %s in %s", key, body)
	}
	s = s[i+len(key)+4:]
	return s[:strings.IndexByte(s, '"')]
}
