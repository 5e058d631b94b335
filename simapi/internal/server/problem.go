package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/epitwin/epitwin/simapi/internal/store"
)

// problem is an RFC 9457 problem detail, with extension members naming the
// offending input.
type problem struct {
	Type      string  `json:"type"`
	Title     string  `json:"title"`
	Status    int     `json:"status"`
	Detail    string  `json:"detail,omitempty"`
	Field     string  `json:"field,omitempty"`
	Line      *int    `json:"line,omitempty"`
	Column    *string `json:"column,omitempty"`
	RequestID string  `json:"request_id,omitempty"`
}

// writeProblem writes p as application/problem+json. Type defaults to
// about:blank and Title to the status text.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.RequestID = requestID(r.Context())
	h := w.Header()
	h.Del("Content-Disposition")
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func badRequest(w http.ResponseWriter, r *http.Request, field, detail string) {
	writeProblem(w, r, problem{Status: http.StatusBadRequest, Field: field, Detail: detail})
}

// internalError logs err and answers a 500 without details.
func internalError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()), "error", err.Error())
	writeProblem(w, r, problem{Status: http.StatusInternalServerError})
}

// storeError maps the store's sentinel errors to problems; anything else is
// a 500.
func storeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, problem{Status: http.StatusNotFound})
	case errors.Is(err, store.ErrBadCursor):
		badRequest(w, r, "cursor", "invalid pagination cursor")
	case errors.Is(err, store.ErrInvalid):
		writeProblem(w, r, problem{Status: http.StatusBadRequest, Detail: "invalid value"})
	default:
		internalError(log, w, r, err)
	}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"type":"about:blank","title":"Internal Server Error","status":500}` + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// page reads ?limit= (default 50, values above 500 are clamped) and
// ?cursor=; it answers 400 itself and returns ok=false on bad input.
func page(w http.ResponseWriter, r *http.Request) (limit int, cursor string, ok bool) {
	q := r.URL.Query()
	limit = 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			badRequest(w, r, "limit", "limit must be a positive integer")
			return 0, "", false
		}
		limit = min(n, store.MaxLimit)
	}
	return limit, q.Get("cursor"), true
}

// list is the envelope of every listing.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}
