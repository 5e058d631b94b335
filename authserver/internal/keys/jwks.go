package keys

import (
	"net/http"
	"strconv"
	"strings"
)

// JWKS returns the JSON Web Key Set of the published keys (active, next and
// retired keys whose tokens may still be valid) and its strong ETag. The
// returned body must not be modified.
func (m *Manager) JWKS() (body []byte, etag string) {
	s := m.current()
	return s.jwks, s.etag
}

// JWKSHandler serves the JWKS for GET and HEAD with Content-Type
// application/json, Cache-Control public max-age=JWKSMaxAge and an ETag, and
// answers a matching If-None-Match with 304 Not Modified. Before the key ring
// has been loaded it answers 503 so that no empty set gets cached.
func (m *Manager) JWKSHandler() http.Handler {
	cacheControl := "public, max-age=" + strconv.FormatInt(int64(m.cfg.JWKSMaxAge.Seconds()), 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s := m.current()
		if !s.loaded {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "signing keys not loaded", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", s.etag)
		if etagMatches(r.Header.Values("If-None-Match"), s.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(s.jwks)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(s.jwks)
		}
	})
}

// etagMatches implements the weak comparison of If-None-Match (RFC 9110
// section 13.1.2) against the current strong ETag.
func etagMatches(headers []string, etag string) bool {
	for _, h := range headers {
		for _, candidate := range strings.Split(h, ",") {
			c := strings.TrimSpace(candidate)
			if c == "*" {
				return true
			}
			c = strings.TrimPrefix(c, "W/")
			if c == etag {
				return true
			}
		}
	}
	return false
}
