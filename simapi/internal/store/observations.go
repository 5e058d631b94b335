package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Observation is one day of a tenant's surveillance data.
type Observation struct {
	Date         string // "2006-01-02"
	Cases        int64
	Deaths       *int64
	Hospitalized *int64
}

type observationRow struct {
	TenantID     string `gorm:"primaryKey"`
	Date         string `gorm:"primaryKey"`
	Cases        int64
	Deaths       *int64
	Hospitalized *int64
	UpdatedAt    time.Time
}

func (observationRow) TableName() string { return "observations" }

// ErrInvalid wraps a rejected value (for example a malformed date).
var ErrInvalid = errors.New("store: invalid value")

const upsertBatch = 500

// UpsertObservations stores obs for tenant in one transaction: either all
// rows are stored or none. A date that already exists is replaced; when obs
// names a date twice the later one wins. It returns the number of distinct
// dates stored.
func (s *Store) UpsertObservations(ctx context.Context, tenant string, obs []Observation) (int, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	idx := make(map[string]int, len(obs))
	rows := make([]observationRow, 0, len(obs))
	for _, o := range obs {
		if _, err := time.Parse(time.DateOnly, o.Date); err != nil {
			return 0, fmt.Errorf("%w: date %q", ErrInvalid, o.Date)
		}
		r := observationRow{TenantID: tenant, Date: o.Date, Cases: o.Cases, Deaths: o.Deaths, Hospitalized: o.Hospitalized, UpdatedAt: now}
		if i, ok := idx[o.Date]; ok {
			rows[i] = r
			continue
		}
		idx[o.Date] = len(rows)
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		if tenant == "" {
			return 0, ErrNoTenant
		}
		return 0, nil
	}
	err := s.tenantTx(ctx, tenant, func(tx *gorm.DB) error {
		return tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "tenant_id"}, {Name: "date"}},
			DoUpdates: clause.AssignmentColumns([]string{"cases", "deaths", "hospitalized", "updated_at"}),
		}).CreateInBatches(&rows, upsertBatch).Error
	})
	if err != nil {
		return 0, fmt.Errorf("store: upsert observations: %w", err)
	}
	return len(rows), nil
}

// ObservationFilter bounds a listing by date, both ends inclusive; "" means
// unbounded.
type ObservationFilter struct {
	From, To string
}

type observationCursor struct {
	K string `json:"k"`
	D string `json:"d"`
}

// ListObservations returns up to limit (default 50, at most MaxLimit) of
// tenant's observations in date order, starting after cursor. next is "" on
// the last page.
func (s *Store) ListObservations(ctx context.Context, tenant string, f ObservationFilter, limit int, cursor string) (items []Observation, next string, err error) {
	limit = clampLimit(limit)
	for _, d := range []string{f.From, f.To} {
		if d == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return nil, "", fmt.Errorf("%w: date %q", ErrInvalid, d)
		}
	}
	after := ""
	if cursor != "" {
		var c observationCursor
		if err := decodeCursor(cursor, &c); err != nil || c.K != "o" {
			return nil, "", ErrBadCursor
		}
		if _, err := time.Parse(time.DateOnly, c.D); err != nil {
			return nil, "", ErrBadCursor
		}
		after = c.D
	}
	var rows []observationRow
	err = s.tenantRead(ctx, tenant, func(tx *gorm.DB) error {
		q := tx.Select("date, cases, deaths, hospitalized").Where("tenant_id = ?", tenant)
		if f.From != "" {
			q = q.Where("date >= ?", f.From)
		}
		if f.To != "" {
			q = q.Where("date <= ?", f.To)
		}
		if after != "" {
			q = q.Where("date > ?", after)
		}
		return q.Order("date").Limit(limit + 1).Find(&rows).Error
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list observations: %w", err)
	}
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodeCursor(observationCursor{K: "o", D: rows[limit-1].Date})
	}
	items = make([]Observation, len(rows))
	for i, r := range rows {
		items[i] = Observation{Date: r.Date, Cases: r.Cases, Deaths: r.Deaths, Hospitalized: r.Hospitalized}
	}
	return items, next, nil
}
