package verify

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error codes of RFC 6750 §3.1, plus temporarily_unavailable (RFC 6749
// §4.1.2.1) for a Verifier that cannot currently decide.
const (
	CodeInvalidToken           = "invalid_token"
	CodeInvalidRequest         = "invalid_request"
	CodeInsufficientScope      = "insufficient_scope"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
)

// Error is the failure of a verification, shaped for an RFC 6750 response:
// Status is the HTTP status, Code the RFC 6750 error code (empty when the
// request carried no token at all), Description a short human-readable
// reason that never contains the token, and RetryAfter, for 503s, how long
// the client should wait.
type Error struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration

	reason string // metrics label
	realm  string // WWW-Authenticate realm, set by the Verifier
	cause  error  // underlying error, never shown to clients
}

// Error returns the code and description.
func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = "unauthorized"
	}
	if e.Description == "" {
		return "verify: " + code
	}
	return "verify: " + code + ": " + e.Description
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// invalidToken is a 401 for a token that failed a check (RFC 6750 §3.1).
func invalidToken(reason, desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc, reason: reason}
}

// unavailable is a 503 for a Verifier that cannot decide right now; it fails
// closed rather than letting an unchecked token through.
func unavailable(desc string, retry time.Duration, cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
		Description: desc, RetryAfter: retry, reason: reasonUnavailable, cause: cause}
}

// WriteError writes err as an RFC 6750 §3 response: the WWW-Authenticate
// challenge, a JSON body {"error":..., "error_description":...}, and for a
// 503 a Retry-After header. An error that is not an *Error is written as a
// 500 without details.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) || e == nil {
		e = &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "internal error"}
	}
	writeError(w, e, e.realm, "")
}

// writeError writes e with the given realm and, for insufficient_scope, the
// scope the request lacked.
func writeError(w http.ResponseWriter, e *Error, realm, scope string) {
	h := w.Header()
	status := e.Status
	if status == 0 {
		status = http.StatusUnauthorized
	}
	// RFC 6750 §3: 401 and 403 carry a Bearer challenge; a request without
	// any token gets a challenge with no error attribute (§3.1).
	if status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusBadRequest {
		var b strings.Builder
		b.WriteString("Bearer")
		sep := " "
		attr := func(k, v string) {
			if v == "" {
				return
			}
			b.WriteString(sep)
			b.WriteString(k)
			b.WriteString(`="`)
			b.WriteString(quoteSafe(v))
			b.WriteString(`"`)
			sep = ", "
		}
		attr("realm", realm)
		attr("error", e.Code)
		attr("error_description", e.Description)
		attr("scope", scope)
		h.Set("WWW-Authenticate", b.String())
	}
	if status == http.StatusServiceUnavailable || e.RetryAfter > 0 {
		secs := int64(math.Ceil(e.RetryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	body := struct {
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description,omitempty"`
		Scope       string `json:"scope,omitempty"`
	}{e.Code, e.Description, scope}
	buf, _ := json.Marshal(body)
	w.WriteHeader(status)
	_, _ = w.Write(append(buf, '\n'))
}

// quoteSafe keeps only the characters RFC 6750 §3 allows inside the
// error_description and scope quoted strings (%x20-21 / %x23-5B / %x5D-7E).
func quoteSafe(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b = append(b, c)
		}
	}
	return string(b)
}
