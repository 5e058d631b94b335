package server

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// oauthError is the RFC 6749 §5.2 error body.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError writes an RFC 6749 §5.2 error. invalid_client gets a
// WWW-Authenticate challenge (§5.2: "MUST include"). retryAfter > 0 adds
// Retry-After.
func writeOAuthError(w http.ResponseWriter, status int, code, desc string, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="authserver", charset="UTF-8"`)
	}
	if retryAfter > 0 {
		// Round up: a client waiting exactly Retry-After must get through.
		secs := int((retryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(oauthError{Code: code, Description: desc})
}

// formOnly enforces what every OAuth endpoint accepts: a POST body of
// application/x-www-form-urlencoded (RFC 6749 §3.2, RFC 7662 §2.1,
// RFC 7009 §2.1), at most MaxFormBytes, with no parameter repeated
// (RFC 6749 §3.2). The parsed form is left in r.PostForm.
func formOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded", 0)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeOAuthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large", 0)
				return
			}
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the request body is not a valid form", 0)
			return
		}
		if len(r.URL.RawQuery) > 0 {
			// Credentials and tokens belong in the body, never in the URL
			// where proxies log them.
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "query parameters are not accepted on this endpoint", 0)
			return
		}
		if k, dup := repeated(r.PostForm); dup {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the parameter '"+k+"' is repeated", 0)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func repeated(v url.Values) (string, bool) {
	for k, vs := range v {
		// "audience" may name several audiences by repetition.
		if len(vs) > 1 && k != "audience" {
			return k, true
		}
	}
	return "", false
}
