package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/keys"
)

// httpError is a failure found by the HTTP layer itself (bad body, bad
// query parameter).
type httpError struct {
	status int
	detail string
}

func (e *httpError) Error() string { return e.detail }

func badRequest(format string, a ...any) error {
	return &httpError{status: http.StatusBadRequest, detail: fmt.Sprintf(format, a...)}
}

// fail writes err as a problem. Domain errors carry a message safe to
// show; anything else is logged and answered with a bare 500.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var de *accounts.Error
	switch {
	case errors.As(err, &he):
		writeProblem(w, he.status, he.detail)
	case errors.As(err, &de):
		status := http.StatusInternalServerError
		switch de.Kind {
		case accounts.Invalid:
			status = http.StatusBadRequest
		case accounts.NotFound:
			status = http.StatusNotFound
		case accounts.Conflict:
			status = http.StatusConflict
		case accounts.Forbidden:
			status = http.StatusForbidden
		}
		writeProblem(w, status, de.Msg)
	case errors.Is(err, keys.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "signing key not found")
	default:
		a.log.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeProblem(w, http.StatusInternalServerError, "the request could not be completed")
	}
}

// writeProblem writes an RFC 9457 problem body.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

// writeJSON writes a response body. Responses may carry secrets, so none
// is cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a request body holding exactly one JSON object with no
// unknown fields into v.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &httpError{status: http.StatusUnsupportedMediaType, detail: "the body must be application/json"}
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return badRequest("the body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return &httpError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("the body must be at most %d bytes", mbe.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("the body must be a JSON object")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the body is not valid JSON")
	case errors.As(err, &ute):
		if ute.Field == "" {
			return badRequest("the body must be a JSON object")
		}
		return badRequest("field %q must be %s", ute.Field, jsonType(ute.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badRequest("the body is not a valid JSON object")
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array of strings"
	default:
		return "of another type"
	}
}

// required names the first empty required field.
func required(fields ...[2]string) error {
	for _, f := range fields {
		if strings.TrimSpace(f[1]) == "" {
			return badRequest("field %q is required", f[0])
		}
	}
	return nil
}

// pageParams reads ?limit= and ?cursor=.
func pageParams(r *http.Request) (accounts.Page, error) {
	q := r.URL.Query()
	p := accounts.Page{Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > accounts.MaxPageSize {
			return p, badRequest("query parameter \"limit\" must be an integer between 1 and %d", accounts.MaxPageSize)
		}
		p.Limit = n
	}
	return p, nil
}

func timeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequest("query parameter %q must be an RFC 3339 time", name)
	}
	return t, nil
}

// record writes the audit event of an action refused by the HTTP layer
// (bad body) and returns err.
func (c *call) record(ctx context.Context, typ, subject string, err error) error {
	tenant := c.tenant
	if tenant == "" {
		tenant = accounts.PlatformTenant
	}
	var he *httpError
	if errors.As(err, &he) {
		_ = c.acc.Record(ctx, c.actor, typ, tenant, subject,
			map[string]any{"status": he.status}, &accounts.Error{Kind: accounts.Invalid, Msg: he.detail})
	}
	return err
}
