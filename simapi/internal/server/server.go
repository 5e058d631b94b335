// Package server is simapi's HTTP API: one route table, handlers as structs
// holding their dependencies, RFC 9457 problem bodies for every error that
// is not an RFC 6750 authentication error, request IDs, structured access
// logs and Prometheus request metrics.
//
// Every tenant-scoped handler takes the tenant from the verified access
// token in the request context (claims.TenantID) and from nowhere else.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/epitwin/epitwin/pkg/rbac"
	"github.com/epitwin/epitwin/pkg/verify"
	"github.com/epitwin/epitwin/simapi/internal/observations"
	"github.com/epitwin/epitwin/simapi/internal/store"
)

// Store is the persistence the handlers need; *store.Store implements it.
// Every method is scoped to the tenant it is given.
type Store interface {
	Ping(ctx context.Context) error
	CreateForecast(ctx context.Context, tenant string, f *store.Forecast) error
	GetForecast(ctx context.Context, tenant, id string) (*store.Forecast, error)
	ListForecasts(ctx context.Context, tenant string, limit int, cursor string) ([]store.ForecastSummary, string, error)
	UpsertObservations(ctx context.Context, tenant string, obs []store.Observation) (int, error)
	ListObservations(ctx context.Context, tenant string, f store.ObservationFilter, limit int, cursor string) ([]store.Observation, string, error)
	Usage(ctx context.Context, tenant string) ([]store.MonthUsage, error)
}

var _ Store = (*store.Store)(nil)

// Config holds the server's dependencies.
type Config struct {
	// Store is required.
	Store Store
	// Auth authenticates a request and, on success, calls the next handler
	// with the verified token in the context (verify.NewContext); on failure
	// it answers itself. In production it is (*verify.Verifier).Middleware;
	// tests and benchmarks inject their own. Required.
	Auth func(http.Handler) http.Handler
	// Ready reports whether the token verifier can verify (for /readyz);
	// nil means always ready.
	Ready func() bool
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the request metrics and is served on /metrics
	// (add the verifier's and the Go collectors to it too); nil creates a
	// private one.
	Registry *prometheus.Registry
	// Now is the clock for stored timestamps; nil means time.Now.
	Now func() time.Time
	// ObservationLimits bounds uploads; zero fields take the
	// observations package defaults.
	ObservationLimits observations.Limits
	// MaxSimulateBody bounds the POST /v1/simulate body; 0 means 64 KiB.
	MaxSimulateBody int64
	// ExportBatch is the number of rows an export reads per query; 0 means 500.
	ExportBatch int
}

// Server is the simapi HTTP handler.
type Server struct {
	log     *slog.Logger
	mux     *http.ServeMux
	known   map[string]bool // registered patterns: the route metric label
	latency *prometheus.HistogramVec
	handler http.Handler
}

// access says who may call a route.
type access struct {
	auth bool            // a verified token is required
	perm rbac.Permission // and, if set, this permission (role AND scope)
}

var (
	public   = access{}
	anyToken = access{auth: true}
)

func need(p rbac.Permission) access { return access{auth: true, perm: p} }

type route struct {
	pattern string
	access  access
	handler http.Handler
}

// New builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("server: Config.Store and Config.Auth are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.MaxSimulateBody <= 0 {
		cfg.MaxSimulateBody = 64 << 10
	}
	if cfg.ExportBatch <= 0 {
		cfg.ExportBatch = store.MaxLimit
	}
	s := &Server{log: cfg.Logger, mux: http.NewServeMux(), known: map[string]bool{}}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "simapi_http_request_duration_seconds",
		Help:    "Latency of HTTP requests by route pattern and status code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "status"})
	if err := cfg.Registry.Register(s.latency); err != nil {
		return nil, err
	}
	for _, rt := range s.routes(cfg) {
		h := rt.handler
		if rt.access.perm != "" {
			h = requireTenant(h)
			h = verify.Require(rt.access.perm)(h)
		}
		if rt.access.auth {
			h = cfg.Auth(s.principal(h))
		}
		s.mux.Handle(rt.pattern, h)
		s.known[rt.pattern] = true
	}
	s.handler = s.observe(s.recoverPanics(http.HandlerFunc(s.dispatch)))
	return s, nil
}

// routes is the whole API.
func (s *Server) routes(cfg Config) []route {
	health := &healthHandler{store: cfg.Store, ready: cfg.Ready}
	sim := &simulateHandler{store: cfg.Store, now: cfg.Now, maxBody: cfg.MaxSimulateBody, log: s.log}
	fc := &forecastHandler{store: cfg.Store, log: s.log}
	obs := &observationHandler{store: cfg.Store, limits: cfg.ObservationLimits, log: s.log}
	exp := &exportHandler{store: cfg.Store, now: cfg.Now, batch: cfg.ExportBatch, log: s.log}
	bill := &billingHandler{store: cfg.Store, log: s.log}
	metrics := promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})

	return []route{
		{"GET /healthz", public, http.HandlerFunc(health.healthz)},
		{"GET /readyz", public, http.HandlerFunc(health.readyz)},
		{"GET /metrics", public, metrics},
		{"GET /v1/me", anyToken, http.HandlerFunc(me)},
		{"POST /v1/simulate", need(rbac.RunSimulations), sim},
		{"GET /v1/forecasts", need(rbac.ViewForecasts), http.HandlerFunc(fc.list)},
		{"GET /v1/forecasts/{id}", need(rbac.ViewForecasts), http.HandlerFunc(fc.get)},
		{"GET /v1/forecasts/{id}/plot.svg", need(rbac.ViewForecasts), http.HandlerFunc(fc.plot)},
		{"POST /v1/observations", need(rbac.UploadObservations), http.HandlerFunc(obs.upload)},
		{"GET /v1/observations", need(rbac.ViewForecasts), http.HandlerFunc(obs.list)},
		{"GET /v1/export", need(rbac.ExportData), exp},
		{"GET /v1/billing/usage", need(rbac.ReadBilling), bill},
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }
