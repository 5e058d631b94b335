package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

// MaxFormBytes caps the body of every OAuth endpoint.
const MaxFormBytes = 64 << 10

// Keys is what the server needs from the signing key ring.
type Keys interface {
	JWKSHandler() http.Handler
	ActiveKID() (string, bool)
}

// Config wires the server.
type Config struct {
	Issuer   string
	Provider *oauth.Provider
	Store    *storage.Store
	Keys     Keys
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	// GrantTypes lists the grants advertised in the metadata.
	GrantTypes []string
	// Admin, when set, serves the /admin/ API.
	Admin http.Handler
	// Throttle, when set, throttles client-authentication failures.
	Throttle *throttle.Limiter
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client address (none: the TCP peer is the client).
	TrustedProxies TrustedProxies
}

// Server is authserver's HTTP handler.
type Server struct {
	cfg     Config
	metrics *metrics
	handler http.Handler
}

// New builds the route table.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, metrics: newMetrics(cfg.Registry)}

	guard := clientGuard{l: cfg.Throttle}
	token := &tokenHandler{p: cfg.Provider, store: cfg.Store, m: s.metrics, log: cfg.Logger, guard: guard}
	introspect := &introspectHandler{p: cfg.Provider, store: cfg.Store, m: s.metrics, log: cfg.Logger, now: cfg.Now, guard: guard}
	revoke := &revokeHandler{p: cfg.Provider, store: cfg.Store, m: s.metrics, log: cfg.Logger, guard: guard}
	meta := MetadataHandler(cfg.Issuer, cfg.GrantTypes)

	mux := http.NewServeMux()
	route := func(pattern string, h http.Handler) { mux.Handle(pattern, s.instrument(pattern, h)) }
	route("POST /oauth2/token", formOnly(token))
	route("POST /oauth2/introspect", formOnly(introspect))
	route("POST /oauth2/revoke", formOnly(revoke))
	for _, p := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
		route(p, methodNotAllowed("POST"))
	}
	route("GET /.well-known/oauth-authorization-server", meta)
	route("GET /.well-known/jwks.json", cfg.Keys.JWKSHandler())
	route("GET /healthz", http.HandlerFunc(s.healthz))
	route("GET /readyz", http.HandlerFunc(s.readyz))
	route("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	if cfg.Admin != nil {
		route("/admin/", cfg.Admin)
	}
	route("/", http.HandlerFunc(notFound))
	s.handler = s.withRequestInfo(mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.DB().Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database unreachable"})
		return
	}
	if _, ok := s.cfg.Keys.ActiveKID(); !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "no active signing key"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// methodNotAllowed answers 405 with the allowed method.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use "+allow, 0)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, http.StatusNotFound, "not found", "no such endpoint: "+r.URL.Path)
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// withRequestInfo assigns a request id, records the caller's address for
// the audit log, sets defensive headers and recovers from panics.
func (s *Server) withRequestInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		ip := s.cfg.TrustedProxies.clientIP(r)
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		ctx := storage.WithRequestInfo(r.Context(), storage.RequestInfo{IP: ip, RequestID: id})
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.cfg.Logger.ErrorContext(ctx, "panic in handler", "request_id", id, "path", r.URL.Path, "panic", p)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
			}
		}()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// statusRecorder remembers the status code for logs and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument logs every request (never its body or credentials) and
// records its latency by route.
func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		d := s.cfg.Now().Sub(start)
		s.metrics.latency.WithLabelValues(route, strconv.Itoa(rec.status)).Observe(d.Seconds())
		ri := storage.RequestInfoFrom(r.Context())
		s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", ri.RequestID), slog.String("method", r.Method),
			slog.String("route", route), slog.Int("status", rec.status),
			slog.Duration("duration", d), slog.String("remote_ip", ri.IP))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeProblem writes an RFC 9457 problem body (non-OAuth endpoints).
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}
