package verify

import (
	"context"
	"net/http"
	"strings"

	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/rbac"
)

// ctxKey is the context key of the verified token.
type ctxKey struct{}

// NewContext returns a copy of ctx carrying t.
func NewContext(ctx context.Context, t *claims.AccessToken) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the verified token the middleware stored in ctx.
func FromContext(ctx context.Context) (*claims.AccessToken, bool) {
	t, ok := ctx.Value(ctxKey{}).(*claims.AccessToken)
	return t, ok && t != nil
}

// errNoBearer marks a request without bearer credentials: RFC 6750 §3.1
// says such a response carries a challenge but no error code.
func errNoBearer() *Error { return &Error{Status: http.StatusUnauthorized, reason: reasonMalformed} }

func invalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc, reason: reasonMalformed}
}

// parseBearer extracts the token from the Authorization header values
// (RFC 6750 §2.1: "Bearer" 1*SP b64token). No header, or another scheme, is
// "no credentials"; anything else that is not exactly one well-formed
// bearer credential is an invalid_request.
func parseBearer(values []string) (string, *Error) {
	switch len(values) {
	case 0:
		return "", errNoBearer()
	case 1:
	default:
		return "", invalidRequest("multiple authorization headers")
	}
	h := strings.TrimSpace(values[0])
	if h == "" {
		return "", errNoBearer()
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errNoBearer()
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" {
		return "", invalidRequest("missing bearer token")
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	i := 0
	for ; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return "", invalidRequest("malformed bearer token")
	}
	for j := i; j < len(tok); j++ {
		if tok[j] != '=' {
			return "", invalidRequest("malformed bearer token")
		}
	}
	return tok, nil
}

// Middleware authenticates each request by its "Authorization: Bearer"
// header (RFC 6750 §2.1), stores the verified token in the request context
// for FromContext, and answers failures itself with RFC 6750 §3 responses:
// 401 with a bare challenge when there is no token, 400 invalid_request for
// a malformed header, 401 invalid_token for a bad token and 503 with
// Retry-After when the Verifier cannot decide. Tokens in the query string
// or form body (RFC 6750 §2.2, §2.3) are not accepted.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, e := parseBearer(r.Header.Values("Authorization"))
		if e != nil {
			inc(v.m.outcomes, e.reason)
			writeError(w, e, v.audience, "")
			return
		}
		tok, err := v.Verify(r.Context(), raw)
		if err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), tok)))
	})
}

// Require returns middleware that lets a request through only if the token
// in its context holds permission p: its role allows p and its scopes name
// p (rbac.Has; scopes only narrow a role). Without a token it answers 401;
// without the permission 403 insufficient_scope naming the permission in the
// challenge's scope attribute and in the JSON body (RFC 6750 §3.1).
func Require(p rbac.Permission) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tok, ok := FromContext(r.Context())
			if !ok {
				writeError(w, errNoBearer(), "", "")
				return
			}
			if !rbac.Has(rbac.Role(tok.Role), tok.Scopes(), p) {
				desc := "missing permission " + string(p)
				if !rbac.Allow(rbac.Role(tok.Role), p) {
					desc = "role " + tok.Role + " does not grant permission " + string(p)
				}
				writeError(w, &Error{Status: http.StatusForbidden, Code: CodeInsufficientScope, Description: desc}, "", string(p))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
