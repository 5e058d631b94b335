package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/epitwin/epitwin/pkg/rbac"
	"github.com/epitwin/epitwin/simapi/internal/observations"
	"github.com/epitwin/epitwin/simapi/internal/plot"
	"github.com/epitwin/epitwin/simapi/internal/sim"
	"github.com/epitwin/epitwin/simapi/internal/store"
)

// ---- health ----

type healthHandler struct {
	store Store
	ready func() bool
}

func (h *healthHandler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *healthHandler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := h.store.Ping(ctx); err != nil {
		writeProblem(w, r, problem{Status: http.StatusServiceUnavailable, Detail: "database unavailable"})
		return
	}
	if !h.ready() {
		writeProblem(w, r, problem{Status: http.StatusServiceUnavailable, Detail: "token verifier not ready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ---- me ----

type meResponse struct {
	Sub         string   `json:"sub"`
	ClientID    string   `json:"client_id"`
	TenantID    string   `json:"tenant_id"`
	Role        string   `json:"role"`
	Scope       []string `json:"scope"`
	Permissions []string `json:"permissions"`
	ExpiresAt   string   `json:"expires_at"`
}

func me(w http.ResponseWriter, r *http.Request) {
	tok := token(r)
	scopes := tok.Scopes()
	perms := []string{}
	for _, p := range rbac.Effective(rbac.Role(tok.Role), scopes) {
		perms = append(perms, string(p))
	}
	if scopes == nil {
		scopes = []string{}
	}
	exp := ""
	if !tok.ExpiresAt.IsZero() {
		exp = tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, meResponse{
		Sub: tok.Subject, ClientID: tok.ClientID, TenantID: tok.TenantID, Role: tok.Role,
		Scope: scopes, Permissions: perms, ExpiresAt: exp,
	})
}

// ---- simulate ----

type simulateHandler struct {
	store   Store
	now     func() time.Time
	maxBody int64
	log     *slog.Logger
}

type simulateResponse struct {
	ID string `json:"id"`
	sim.Result
}

func (h *simulateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p sim.Params
	if !decodeJSONBody(w, r, h.maxBody, &p) {
		return
	}
	start := time.Now()
	res, err := sim.RunSEIR(p) // validates p first
	elapsed := time.Since(start)
	if err != nil {
		var fe *sim.FieldError
		if errors.As(err, &fe) {
			badRequest(w, r, fe.Field, fe.Error())
			return
		}
		internalError(h.log, w, r, fmt.Errorf("simulate: %w", err))
		return
	}
	params, err1 := json.Marshal(p)
	result, err2 := json.Marshal(res)
	if err := errors.Join(err1, err2); err != nil {
		internalError(h.log, w, r, fmt.Errorf("encode forecast: %w", err))
		return
	}
	tok := token(r)
	f := &store.Forecast{
		ForecastSummary: store.ForecastSummary{
			CreatedAt: h.now(), CreatedBy: tok.Subject, ClientID: tok.ClientID,
			ComputeNanos: elapsed.Nanoseconds(), Days: p.Days, R0: res.R0, PeakDay: res.PeakDay,
			PeakInfected: res.PeakInfected, AttackRate: res.AttackRate,
		},
		Params: params, Result: result,
	}
	if err := h.store.CreateForecast(r.Context(), tok.TenantID, f); err != nil {
		storeError(h.log, w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/forecasts/"+f.ID)
	writeJSON(w, http.StatusCreated, simulateResponse{ID: f.ID, Result: res})
}

// decodeJSONBody decodes exactly one JSON value of at most max bytes into v,
// rejecting unknown fields. On failure it answers 400 (naming the field when
// it can) or 413 and returns false.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("trailing data")
			var mbe *http.MaxBytesError
			if errors.As(err2, &mbe) {
				err = err2
			}
		}
	}
	if err == nil {
		return true
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, r, problem{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("request body exceeds %d bytes", max)})
	case errors.Is(err, io.EOF):
		badRequest(w, r, "", "empty request body")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		badRequest(w, r, "", "malformed JSON")
	case errors.As(err, &te):
		badRequest(w, r, te.Field, fmt.Sprintf("field %s must be %s", te.Field, jsonKind(te.Type.Kind().String())))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		badRequest(w, r, name, fmt.Sprintf("unknown field %q", name))
	case err.Error() == "trailing data":
		badRequest(w, r, "", "request body must hold a single JSON object")
	default:
		badRequest(w, r, "", "invalid JSON body")
	}
	return false
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "float64":
		return "a number"
	case "slice":
		return "an array"
	case "struct":
		return "an object"
	}
	return "a " + k
}

// ---- forecasts ----

type forecastHandler struct {
	store Store
	log   *slog.Logger
}

type forecastItem struct {
	ID           string    `json:"id"`
	CreatedAt    time.Time `json:"created_at"`
	CreatedBy    string    `json:"created_by"`
	R0           float64   `json:"r0"`
	PeakDay      int       `json:"peak_day"`
	PeakInfected float64   `json:"peak_infected"`
	AttackRate   float64   `json:"attack_rate"`
	Days         int       `json:"days"`
}

func toItem(f store.ForecastSummary) forecastItem {
	return forecastItem{ID: f.ID, CreatedAt: f.CreatedAt.UTC(), CreatedBy: f.CreatedBy, R0: f.R0,
		PeakDay: f.PeakDay, PeakInfected: f.PeakInfected, AttackRate: f.AttackRate, Days: f.Days}
}

func (h *forecastHandler) list(w http.ResponseWriter, r *http.Request) {
	limit, cursor, ok := page(w, r)
	if !ok {
		return
	}
	rows, next, err := h.store.ListForecasts(r.Context(), token(r).TenantID, limit, cursor)
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	out := list[forecastItem]{Items: make([]forecastItem, len(rows)), NextCursor: next}
	for i, f := range rows {
		out.Items[i] = toItem(f)
	}
	writeJSON(w, http.StatusOK, out)
}

type forecastDetail struct {
	ID             string          `json:"id"`
	CreatedAt      time.Time       `json:"created_at"`
	CreatedBy      string          `json:"created_by"`
	ClientID       string          `json:"client_id"`
	ComputeSeconds float64         `json:"compute_seconds"`
	Params         json.RawMessage `json:"params"`
	Result         json.RawMessage `json:"result"`
}

func (h *forecastHandler) get(w http.ResponseWriter, r *http.Request) {
	f, err := h.store.GetForecast(r.Context(), token(r).TenantID, r.PathValue("id"))
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, forecastDetail{
		ID: f.ID, CreatedAt: f.CreatedAt.UTC(), CreatedBy: f.CreatedBy, ClientID: f.ClientID,
		ComputeSeconds: float64(f.ComputeNanos) / 1e9, Params: f.Params, Result: f.Result,
	})
}

func (h *forecastHandler) plot(w http.ResponseWriter, r *http.Request) {
	f, err := h.store.GetForecast(r.Context(), token(r).TenantID, r.PathValue("id"))
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	var p sim.Params
	var res sim.Result
	if err := errors.Join(json.Unmarshal(f.Params, &p), json.Unmarshal(f.Result, &res)); err != nil {
		internalError(h.log, w, r, fmt.Errorf("decode stored forecast %s: %w", f.ID, err))
		return
	}
	var buf bytes.Buffer
	if err := plot.SEIR(&buf, "SEIR forecast "+f.ID, res.Series, p.Population); err != nil {
		internalError(h.log, w, r, fmt.Errorf("plot forecast %s: %w", f.ID, err))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "image/svg+xml")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = buf.WriteTo(w)
}

// ---- observations ----

type observationHandler struct {
	store  Store
	limits observations.Limits
	log    *slog.Logger
}

type storedResponse struct {
	Stored int `json:"stored"`
}

func (h *observationHandler) upload(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var parse func(io.Reader, observations.Limits) ([]observations.Observation, error)
	switch {
	case err == nil && mt == "application/json":
		parse = observations.ParseJSON
	case err == nil && mt == "text/csv":
		parse = observations.ParseCSV
	default:
		writeProblem(w, r, problem{Status: http.StatusUnsupportedMediaType,
			Detail: "Content-Type must be application/json or text/csv"})
		return
	}
	obs, err := parse(r.Body, h.limits)
	if err != nil {
		var pe *observations.ParseError
		switch {
		case errors.Is(err, observations.ErrTooLarge):
			writeProblem(w, r, problem{Status: http.StatusRequestEntityTooLarge, Detail: err.Error()})
		case errors.As(err, &pe):
			line, col := pe.Line, pe.Column
			writeProblem(w, r, problem{Status: http.StatusBadRequest, Detail: pe.Error(), Field: col, Line: &line, Column: &col})
		default:
			// A read error: the client went away or sent a broken body.
			writeProblem(w, r, problem{Status: http.StatusBadRequest, Detail: "could not read the request body"})
		}
		return
	}
	rows := make([]store.Observation, len(obs))
	for i, o := range obs {
		rows[i] = store.Observation{Date: o.Date, Cases: o.Cases, Deaths: o.Deaths, Hospitalized: o.Hospitalized}
	}
	n, err := h.store.UpsertObservations(r.Context(), token(r).TenantID, rows)
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, storedResponse{Stored: n})
}

func toObservation(o store.Observation) observations.Observation {
	return observations.Observation{Date: o.Date, Cases: o.Cases, Deaths: o.Deaths, Hospitalized: o.Hospitalized}
}

func (h *observationHandler) list(w http.ResponseWriter, r *http.Request) {
	limit, cursor, ok := page(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := store.ObservationFilter{From: q.Get("from"), To: q.Get("to")}
	for _, p := range []struct{ name, v string }{{"from", f.From}, {"to", f.To}} {
		if _, err := time.Parse(time.DateOnly, p.v); p.v != "" && err != nil {
			badRequest(w, r, p.name, p.name+" must be a date YYYY-MM-DD")
			return
		}
	}
	rows, next, err := h.store.ListObservations(r.Context(), token(r).TenantID, f, limit, cursor)
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	out := list[observations.Observation]{Items: make([]observations.Observation, len(rows)), NextCursor: next}
	for i, o := range rows {
		out.Items[i] = toObservation(o)
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- billing ----

type billingHandler struct {
	store Store
	log   *slog.Logger
}

type monthUsage struct {
	Month          string  `json:"month"`
	Simulations    int64   `json:"simulations"`
	ComputeSeconds float64 `json:"compute_seconds"`
}

func (h *billingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	usage, err := h.store.Usage(r.Context(), token(r).TenantID)
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	out := list[monthUsage]{Items: make([]monthUsage, len(usage))}
	for i, u := range usage {
		out.Items[i] = monthUsage{Month: u.Month, Simulations: u.Simulations, ComputeSeconds: u.ComputeSeconds}
	}
	writeJSON(w, http.StatusOK, out)
}
