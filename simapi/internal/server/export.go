package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/epitwin/epitwin/simapi/internal/store"
)

// exportHandler streams all of the caller's forecasts or observations as CSV
// or as a JSON array. It reads the rows in batches with the store's cursor
// and writes and flushes each batch as it goes, so memory stays bounded
// whatever the size of the export. Each batch is its own read, so an export
// running concurrently with writes is not a snapshot.
type exportHandler struct {
	store Store
	now   func() time.Time
	batch int
	log   *slog.Logger
}

// exportRow is one exported record: JSON-marshalable and a CSV record.
type exportRow interface{ record() []string }

type exportSource struct {
	header []string
	fetch  func(ctx context.Context, cursor string) ([]exportRow, string, error)
}

type exportForecast struct {
	ID             string    `json:"id"`
	CreatedAt      time.Time `json:"created_at"`
	CreatedBy      string    `json:"created_by"`
	ClientID       string    `json:"client_id"`
	Days           int       `json:"days"`
	R0             float64   `json:"r0"`
	PeakDay        int       `json:"peak_day"`
	PeakInfected   float64   `json:"peak_infected"`
	AttackRate     float64   `json:"attack_rate"`
	ComputeSeconds float64   `json:"compute_seconds"`
}

var forecastCSVHeader = []string{"id", "created_at", "created_by", "client_id", "days", "r0", "peak_day", "peak_infected", "attack_rate", "compute_seconds"}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func (f exportForecast) record() []string {
	return []string{f.ID, f.CreatedAt.Format(time.RFC3339Nano), f.CreatedBy, f.ClientID, strconv.Itoa(f.Days),
		ftoa(f.R0), strconv.Itoa(f.PeakDay), ftoa(f.PeakInfected), ftoa(f.AttackRate), ftoa(f.ComputeSeconds)}
}

type exportObservation struct {
	Date         string `json:"date"`
	Cases        int64  `json:"cases"`
	Deaths       *int64 `json:"deaths,omitempty"`
	Hospitalized *int64 `json:"hospitalized,omitempty"`
}

var observationCSVHeader = []string{"date", "cases", "deaths", "hospitalized"}

func optInt(p *int64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(*p, 10)
}

func (o exportObservation) record() []string {
	return []string{o.Date, strconv.FormatInt(o.Cases, 10), optInt(o.Deaths), optInt(o.Hospitalized)}
}

func (h *exportHandler) source(tenant, kind string) exportSource {
	if kind == "forecasts" {
		return exportSource{header: forecastCSVHeader, fetch: func(ctx context.Context, cursor string) ([]exportRow, string, error) {
			rows, next, err := h.store.ListForecasts(ctx, tenant, h.batch, cursor)
			out := make([]exportRow, len(rows))
			for i, f := range rows {
				out[i] = exportForecast{ID: f.ID, CreatedAt: f.CreatedAt.UTC(), CreatedBy: f.CreatedBy, ClientID: f.ClientID,
					Days: f.Days, R0: f.R0, PeakDay: f.PeakDay, PeakInfected: f.PeakInfected, AttackRate: f.AttackRate,
					ComputeSeconds: float64(f.ComputeNanos) / 1e9}
			}
			return out, next, err
		}}
	}
	return exportSource{header: observationCSVHeader, fetch: func(ctx context.Context, cursor string) ([]exportRow, string, error) {
		rows, next, err := h.store.ListObservations(ctx, tenant, store.ObservationFilter{}, h.batch, cursor)
		out := make([]exportRow, len(rows))
		for i, o := range rows {
			out[i] = exportObservation{Date: o.Date, Cases: o.Cases, Deaths: o.Deaths, Hospitalized: o.Hospitalized}
		}
		return out, next, err
	}}
}

func (h *exportHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, format := q.Get("kind"), q.Get("format")
	if kind != "forecasts" && kind != "observations" {
		badRequest(w, r, "kind", "kind must be forecasts or observations")
		return
	}
	if format != "csv" && format != "json" {
		badRequest(w, r, "format", "format must be csv or json")
		return
	}
	src := h.source(token(r).TenantID, kind)
	ctx := r.Context()
	// Read the first batch before committing to a 200.
	rows, next, err := src.fetch(ctx, "")
	if err != nil {
		storeError(h.log, w, r, err)
		return
	}
	hd := w.Header()
	if format == "csv" {
		hd.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		hd.Set("Content-Type", "application/json")
	}
	hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.%s"`, kind, h.now().UTC().Format("20060102T150405Z"), format))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(w)
		_ = cw.Write(src.header)
	} else {
		_, _ = w.Write([]byte("["))
	}
	first := true
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute)) // keep long exports alive, batch by batch
		for _, row := range rows {
			if cw != nil {
				_ = cw.Write(row.record())
				continue
			}
			b, err := json.Marshal(row)
			if err != nil {
				h.abort(r, fmt.Errorf("export: encode row: %w", err))
			}
			if !first {
				_, _ = w.Write([]byte(","))
			}
			first = false
			_, _ = w.Write(b)
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				h.abort(r, fmt.Errorf("export: write: %w", err))
			}
		}
		if err := rc.Flush(); err != nil {
			h.abort(r, fmt.Errorf("export: flush: %w", err))
		}
		if next == "" || ctx.Err() != nil {
			break
		}
		if rows, next, err = src.fetch(ctx, next); err != nil {
			h.abort(r, fmt.Errorf("export: read batch: %w", err))
		}
	}
	if ctx.Err() != nil {
		h.abort(r, fmt.Errorf("export: %w", ctx.Err()))
	}
	if cw == nil {
		_, _ = w.Write([]byte("]\n"))
	}
}

// abort logs err and cuts the connection: the 200 and part of the body are
// already sent, so the only honest signal left is an incomplete response.
func (h *exportHandler) abort(r *http.Request, err error) {
	h.log.WarnContext(r.Context(), "export aborted", "request_id", requestID(r.Context()), "error", err.Error())
	panic(http.ErrAbortHandler)
}
