package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// ForecastSummary is the listing view of a stored forecast.
type ForecastSummary struct {
	ID           string
	CreatedAt    time.Time
	CreatedBy    string
	ClientID     string
	ComputeNanos int64
	Days         int
	R0           float64
	PeakDay      int
	PeakInfected float64
	AttackRate   float64
}

// Forecast is a stored simulation: its summary plus the parameters and the
// full result, both as JSON documents.
type Forecast struct {
	ForecastSummary
	Params json.RawMessage
	Result json.RawMessage
}

// forecastRow maps the forecasts table.
type forecastRow struct {
	ID           string `gorm:"primaryKey"`
	TenantID     string
	CreatedBy    string
	ClientID     string
	CreatedAt    time.Time
	ComputeNs    int64
	Days         int
	R0           float64 `gorm:"column:r0"`
	PeakDay      int
	PeakInfected float64
	AttackRate   float64
	Params       string
	Result       string
}

func (forecastRow) TableName() string { return "forecasts" }

func (r *forecastRow) summary() ForecastSummary {
	return ForecastSummary{
		ID: r.ID, CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy, ClientID: r.ClientID,
		ComputeNanos: r.ComputeNs, Days: r.Days, R0: r.R0, PeakDay: r.PeakDay,
		PeakInfected: r.PeakInfected, AttackRate: r.AttackRate,
	}
}

const summaryColumns = "id, created_by, client_id, created_at, compute_ns, days, r0, peak_day, peak_infected, attack_rate"

// CreateForecast stores f for tenant. An empty f.ID gets a NewID and a zero
// f.CreatedAt the current time; CreatedAt is kept in UTC at microsecond
// precision (what PostgreSQL stores), and f is updated with both.
func (s *Store) CreateForecast(ctx context.Context, tenant string, f *Forecast) error {
	if f.ID == "" {
		f.ID = NewID()
	}
	if f.CreatedAt.IsZero() {
		f.CreatedAt = time.Now()
	}
	f.CreatedAt = f.CreatedAt.UTC().Truncate(time.Microsecond)
	if !json.Valid(f.Params) || !json.Valid(f.Result) {
		return errors.New("store: forecast params and result must be JSON")
	}
	row := forecastRow{
		ID: f.ID, TenantID: tenant, CreatedBy: f.CreatedBy, ClientID: f.ClientID,
		CreatedAt: f.CreatedAt, ComputeNs: f.ComputeNanos, Days: f.Days, R0: f.R0,
		PeakDay: f.PeakDay, PeakInfected: f.PeakInfected, AttackRate: f.AttackRate,
		Params: string(f.Params), Result: string(f.Result),
	}
	err := s.tenantTx(ctx, tenant, func(tx *gorm.DB) error { return tx.Create(&row).Error })
	if err != nil {
		return fmt.Errorf("store: create forecast: %w", err)
	}
	return nil
}

// GetForecast returns tenant's forecast id, or ErrNotFound (also when id
// belongs to another tenant).
func (s *Store) GetForecast(ctx context.Context, tenant, id string) (*Forecast, error) {
	var row forecastRow
	err := s.tenantRead(ctx, tenant, func(tx *gorm.DB) error {
		return tx.Where("tenant_id = ? AND id = ?", tenant, id).Take(&row).Error
	})
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get forecast: %w", err)
	}
	return &Forecast{ForecastSummary: row.summary(), Params: json.RawMessage(row.Params), Result: json.RawMessage(row.Result)}, nil
}

type forecastCursor struct {
	K  string    `json:"k"`
	T  time.Time `json:"t"`
	ID string    `json:"i"`
}

// ListForecasts returns up to limit (default 50, at most MaxLimit) of
// tenant's forecasts, newest first (ties broken by id), starting after
// cursor ("" for the first page). next is "" on the last page.
func (s *Store) ListForecasts(ctx context.Context, tenant string, limit int, cursor string) (items []ForecastSummary, next string, err error) {
	limit = clampLimit(limit)
	var after *forecastCursor
	if cursor != "" {
		var c forecastCursor
		if err := decodeCursor(cursor, &c); err != nil || c.K != "f" || c.ID == "" {
			return nil, "", ErrBadCursor
		}
		c.T = c.T.UTC()
		after = &c
	}
	var rows []forecastRow
	err = s.tenantRead(ctx, tenant, func(tx *gorm.DB) error {
		q := tx.Select(summaryColumns).Where("tenant_id = ?", tenant)
		if after != nil {
			q = q.Where("(created_at < ? OR (created_at = ? AND id < ?))", after.T, after.T, after.ID)
		}
		return q.Order("created_at DESC, id DESC").Limit(limit + 1).Find(&rows).Error
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list forecasts: %w", err)
	}
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = encodeCursor(forecastCursor{K: "f", T: last.CreatedAt.UTC(), ID: last.ID})
	}
	items = make([]ForecastSummary, len(rows))
	for i := range rows {
		items[i] = rows[i].summary()
	}
	return items, next, nil
}

// MonthUsage is one month of a tenant's simulation usage.
type MonthUsage struct {
	Month          string // "2006-01", UTC
	Simulations    int64
	ComputeSeconds float64
}

// Usage returns tenant's simulations and compute time per UTC month,
// oldest month first.
func (s *Store) Usage(ctx context.Context, tenant string) ([]MonthUsage, error) {
	// Times are stored in UTC; on SQLite as "YYYY-MM-DD HH:MM:SS...", so the
	// month is the first seven characters.
	month := "substr(created_at, 1, 7)"
	if s.dialect == Postgres {
		month = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')"
	}
	var out []MonthUsage
	err := s.tenantRead(ctx, tenant, func(tx *gorm.DB) error {
		rows, err := tx.Raw(`SELECT `+month+` AS month, count(*), COALESCE(sum(compute_ns), 0)
			FROM forecasts WHERE tenant_id = ? GROUP BY 1 ORDER BY 1`, tenant).Rows()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u MonthUsage
			var ns int64
			if err := rows.Scan(&u.Month, &u.Simulations, &ns); err != nil {
				return err
			}
			u.ComputeSeconds = float64(ns) / 1e9
			out = append(out, u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	return out, nil
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, v any) error {
	if len(s) > 512 {
		return ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
