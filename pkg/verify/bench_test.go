package verify

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// nopWriter is a ResponseWriter that discards everything, so the benchmarks
// measure the middleware and not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func benchHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := FromContext(r.Context()); !ok && r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
}

func runBench(b *testing.B, h http.Handler, headers [][]string) {
	b.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header["Authorization"] = headers[i%len(headers)]
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddlewareCold verifies a distinct ES256 token every iteration:
// header parse, signature check, claims parse, cache insert.
func BenchmarkMiddlewareCold(b *testing.B) {
	e := newEnv(b)
	headers := make([][]string, b.N)
	for i := range headers {
		headers[i] = []string{"Bearer " + sign(b, e.keys["ES256"], e.claims(), nil)}
	}
	h := e.v.Middleware(benchHandler())
	runBench(b, h, headers)
}

// BenchmarkMiddlewareWarm verifies the same token every iteration: hash,
// cache lookup, exp compare.
func BenchmarkMiddlewareWarm(b *testing.B) {
	e := newEnv(b)
	headers := [][]string{{"Bearer " + sign(b, e.keys["ES256"], e.claims(), nil)}}
	h := e.v.Middleware(benchHandler())
	runBench(b, h, headers)
}

// BenchmarkMiddlewareNoAuth is the baseline: the same handler, no middleware.
func BenchmarkMiddlewareNoAuth(b *testing.B) {
	headers := [][]string{{"Bearer x"}}
	runBench(b, benchHandler(), headers)
}
