package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/verify"
)

// reqState is per-request bookkeeping shared by the outer middleware and the
// inner handlers (the request is copied on the way in, so it is held by
// pointer in the context).
type reqState struct {
	id     string
	route  string
	sub    string
	tenant string
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// requestID returns the request's ID (X-Request-Id).
func requestID(ctx context.Context) string { return stateOf(ctx).id }

// logger returns the server logger annotated with the request ID.
func (s *Server) logger(ctx context.Context) *slog.Logger {
	return s.log.With("request_id", requestID(ctx))
}

// validRequestID accepts a client-supplied X-Request-Id only if it is short
// and made of safe characters, so that it can be logged and echoed as is.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and size of a response. It unwraps for
// http.ResponseController, so flushes and deadlines reach the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe assigns the request ID, and after the request records the latency
// metric and writes one access-log line. It never logs headers, so tokens
// never reach the logs; it logs the path without the query string.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := &reqState{id: r.Header.Get("X-Request-Id"), route: "unmatched"}
		if !validRequestID(st.id) {
			st.id = newRequestID()
		}
		w.Header().Set("X-Request-Id", st.id)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			// Tenant data: no shared or browser cache may keep a copy.
			w.Header().Set("Cache-Control", "no-store")
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if p := recover(); p != nil {
				// Only http.ErrAbortHandler gets here (recoverPanics handles
				// the rest): the handler aborted a streamed response.
				status = 0
				defer panic(p)
			}
			d := time.Since(start)
			s.latency.WithLabelValues(st.route, strconv.Itoa(status)).Observe(d.Seconds())
			attrs := []any{
				"request_id", st.id, "method", r.Method, "path", r.URL.Path, "route", st.route,
				"status", status, "bytes", sw.bytes, "duration_ms", float64(d.Microseconds()) / 1000,
				"remote", r.RemoteAddr,
			}
			if st.sub != "" {
				attrs = append(attrs, "sub", st.sub, "tenant_id", st.tenant)
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", argsToAttrs(attrs)...)
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

func argsToAttrs(kv []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.Any(kv[i].(string), kv[i+1]))
	}
	return out
}

// recoverPanics turns a panic into a logged error and a generic 500 problem
// (if nothing was written yet). http.ErrAbortHandler passes through: it is
// how a handler aborts a response it already started.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.logger(r.Context()).Error("panic serving request",
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()), "route", stateOf(r.Context()).route)
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				panic(http.ErrAbortHandler) // headers already sent: cut the connection
			}
			writeProblem(w, r, problem{Status: http.StatusInternalServerError})
		}()
		next.ServeHTTP(w, r)
	})
}

// dispatch routes through the mux, answering unknown paths (404) and
// known paths with the wrong method (405, with Allow) with problem bodies
// instead of the mux's plain-text ones.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	if s.known[pattern] {
		stateOf(r.Context()).route = pattern
		s.mux.ServeHTTP(w, r)
		return
	}
	// Let the mux decide (404, 405 or a redirect to the clean path) into a
	// scratch writer, then answer with a problem of the same status.
	cw := &captureWriter{header: http.Header{}}
	s.mux.ServeHTTP(cw, r)
	for _, k := range []string{"Allow", "Location"} {
		if v := cw.header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	if cw.status == 0 {
		cw.status = http.StatusNotFound
	}
	writeProblem(w, r, problem{Status: cw.status})
}

type captureWriter struct {
	header http.Header
	status int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return len(p), nil
}
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

// principal runs after authentication: it fails closed if the
// authenticator let a request through without a token, and records the
// caller for the access log.
func (s *Server) principal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := verify.FromContext(r.Context())
		if !ok {
			verify.WriteError(w, &verify.Error{Status: http.StatusUnauthorized})
			return
		}
		st := stateOf(r.Context())
		st.sub, st.tenant = tok.Subject, tok.TenantID
		next.ServeHTTP(w, r)
	})
}

// requireTenant rejects tokens that carry no tenant: tenant-scoped routes
// could not scope them.
func requireTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := verify.FromContext(r.Context()); !ok || tok.TenantID == "" {
			writeProblem(w, r, problem{Status: http.StatusForbidden, Detail: "the access token names no tenant"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// token returns the verified token; the route wrappers guarantee it exists.
func token(r *http.Request) *claims.AccessToken {
	tok, _ := verify.FromContext(r.Context())
	if tok == nil {
		return &claims.AccessToken{}
	}
	return tok
}
