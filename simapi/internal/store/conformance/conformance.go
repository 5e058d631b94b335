// Package conformance is the behavioural test suite every store backend
// must pass. store's tests run it against SQLite always and against
// PostgreSQL when SIM_TEST_POSTGRES_URL is set.
//
// On SQLite tenant isolation rests on the application's tenant filter alone;
// the isolation tests here are what check it. On PostgreSQL row-level
// security backs the filter up (see store's RLS tests).
package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/epitwin/epitwin/simapi/internal/store"
)

// RunTests runs the suite. newStore must return a fresh, migrated store
// that no other test uses, and close it at the test's cleanup.
func RunTests(t *testing.T, newStore func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"MigrateIdempotent", testMigrateIdempotent},
		{"ForecastRoundTrip", testForecastRoundTrip},
		{"ForecastTenantIsolation", testForecastTenantIsolation},
		{"ForecastPagination", testForecastPagination},
		{"BadCursor", testBadCursor},
		{"EmptyTenant", testEmptyTenant},
		{"ObservationsUpsert", testObservationsUpsert},
		{"ObservationsAllOrNothing", testObservationsAllOrNothing},
		{"ObservationsListFilterAndPagination", testObservationsList},
		{"Usage", testUsage},
		{"ConcurrentWrites", testConcurrentWrites},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newForecast(days int, at time.Time, computeNs int64) *store.Forecast {
	params := fmt.Sprintf(`{"population":1000,"beta":0.3,"sigma":0.2,"gamma":0.1,"days":%d}`, days)
	result := fmt.Sprintf(`{"r0":3,"peak_day":%d,"peak_infected":12.5,"attack_rate":0.8,"series":[{"day":0,"s":999,"e":0,"i":1,"r":0,"new_infections":0}]}`, days/2)
	return &store.Forecast{
		ForecastSummary: store.ForecastSummary{
			CreatedAt: at, CreatedBy: "user-1", ClientID: "cli", ComputeNanos: computeNs,
			Days: days, R0: 3, PeakDay: days / 2, PeakInfected: 12.5, AttackRate: 0.8,
		},
		Params: json.RawMessage(params),
		Result: json.RawMessage(result),
	}
}

func jsonEqual(t *testing.T, got, want json.RawMessage) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored JSON invalid: %v: %s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON = %s, want %s", got, want)
	}
}

func testMigrateIdempotent(t *testing.T, s *store.Store) {
	c := ctx(t)
	if err := s.Migrate(c); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	applied, err := s.Applied(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != store.LatestVersion() {
		t.Fatalf("applied %d migrations, want %d", len(applied), store.LatestVersion())
	}
	for i, m := range applied {
		if m.Version != i+1 || m.AppliedAt.IsZero() {
			t.Errorf("migration row %d = %+v", i, m)
		}
	}
}

func testForecastRoundTrip(t *testing.T, s *store.Store) {
	c := ctx(t)
	at := time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.FixedZone("X", 3600))
	f := newForecast(30, at, 1500)
	if err := s.CreateForecast(c, "tenant-a", f); err != nil {
		t.Fatal(err)
	}
	if f.ID == "" || len(f.ID) != 36 {
		t.Fatalf("ID = %q, want a UUID", f.ID)
	}
	wantAt := at.UTC().Truncate(time.Microsecond)
	if !f.CreatedAt.Equal(wantAt) || f.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v UTC", f.CreatedAt, wantAt)
	}
	got, err := s.GetForecast(c, "tenant-a", f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ForecastSummary != f.ForecastSummary {
		t.Fatalf("summary = %+v, want %+v", got.ForecastSummary, f.ForecastSummary)
	}
	jsonEqual(t, got.Params, f.Params)
	jsonEqual(t, got.Result, f.Result)

	if _, err := s.GetForecast(c, "tenant-a", "no-such-id"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing id: err = %v, want ErrNotFound", err)
	}
	if err := s.CreateForecast(c, "tenant-a", &store.Forecast{Params: json.RawMessage(`{`), Result: json.RawMessage(`{}`)}); err == nil {
		t.Fatal("invalid JSON params accepted")
	}
}

func testForecastTenantIsolation(t *testing.T, s *store.Store) {
	c := ctx(t)
	fa := newForecast(10, time.Now(), 1)
	fb := newForecast(20, time.Now(), 1)
	if err := s.CreateForecast(c, "tenant-a", fa); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateForecast(c, "tenant-b", fb); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetForecast(c, "tenant-b", fa.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant-b reading tenant-a's forecast: err = %v, want ErrNotFound", err)
	}
	items, _, err := s.ListForecasts(c, "tenant-b", 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != fb.ID {
		t.Fatalf("tenant-b list = %+v, want only %s", items, fb.ID)
	}
	usage, err := s.Usage(c, "tenant-c")
	if err != nil {
		t.Fatal(err)
	}
	if len(usage) != 0 {
		t.Fatalf("tenant-c usage = %+v, want none", usage)
	}
}

func testForecastPagination(t *testing.T, s *store.Store) {
	c := ctx(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string // newest first
	// 5 distinct times plus 3 forecasts sharing one timestamp (tie on created_at).
	var created []*store.Forecast
	for i := 0; i < 5; i++ {
		f := newForecast(10+i, base.Add(time.Duration(i)*time.Second+time.Duration(i)*time.Microsecond), 1)
		if err := s.CreateForecast(c, "tenant-a", f); err != nil {
			t.Fatal(err)
		}
		created = append(created, f)
	}
	tie := base.Add(10 * time.Second)
	for i := 0; i < 3; i++ {
		f := newForecast(20+i, tie, 1)
		if err := s.CreateForecast(c, "tenant-a", f); err != nil {
			t.Fatal(err)
		}
		created = append(created, f)
	}
	if err := s.CreateForecast(c, "tenant-b", newForecast(99, tie, 1)); err != nil {
		t.Fatal(err)
	}
	// Expected order: created_at DESC, id DESC.
	sorted := append([]*store.Forecast(nil), created...)
	for i := 0; i < len(sorted); i++ {
		for j := i + 1; j < len(sorted); j++ {
			a, b := sorted[i], sorted[j]
			if b.CreatedAt.After(a.CreatedAt) || (b.CreatedAt.Equal(a.CreatedAt) && b.ID > a.ID) {
				sorted[i], sorted[j] = b, a
			}
		}
	}
	for _, f := range sorted {
		want = append(want, f.ID)
	}

	var got []string
	cursor := ""
	pages := 0
	for {
		items, next, err := s.ListForecasts(c, "tenant-a", 3, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(items) > 3 {
			t.Fatalf("page of %d items, limit 3", len(items))
		}
		for _, it := range items {
			got = append(got, it.ID)
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("pagination does not terminate")
		}
		cursor = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("walk = %v\nwant   %v", got, want)
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	// Default and clamped limits.
	items, next, err := s.ListForecasts(c, "tenant-a", 0, "")
	if err != nil || len(items) != 8 || next != "" {
		t.Fatalf("default limit: %d items, next %q, err %v", len(items), next, err)
	}
}

func testBadCursor(t *testing.T, s *store.Store) {
	c := ctx(t)
	for _, cur := range []string{"!!!", "bm90LWpzb24", "eyJrIjoieCJ9"} {
		if _, _, err := s.ListForecasts(c, "tenant-a", 10, cur); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("ListForecasts(cursor %q): err = %v, want ErrBadCursor", cur, err)
		}
		if _, _, err := s.ListObservations(c, "tenant-a", store.ObservationFilter{}, 10, cur); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("ListObservations(cursor %q): err = %v, want ErrBadCursor", cur, err)
		}
	}
	// A cursor of one listing is not valid for the other.
	for i := 0; i < 3; i++ {
		if _, err := s.UpsertObservations(c, "tenant-a", []store.Observation{{Date: fmt.Sprintf("2026-01-0%d", i+1), Cases: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	_, next, err := s.ListObservations(c, "tenant-a", store.ObservationFilter{}, 1, "")
	if err != nil || next == "" {
		t.Fatalf("next = %q, err %v", next, err)
	}
	if _, _, err := s.ListForecasts(c, "tenant-a", 10, next); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("observation cursor accepted by ListForecasts: err = %v", err)
	}
}

func testEmptyTenant(t *testing.T, s *store.Store) {
	c := ctx(t)
	if err := s.CreateForecast(c, "", newForecast(1, time.Now(), 1)); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("CreateForecast: err = %v, want ErrNoTenant", err)
	}
	if _, err := s.GetForecast(c, "", "x"); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("GetForecast: err = %v, want ErrNoTenant", err)
	}
	if _, _, err := s.ListForecasts(c, "", 1, ""); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("ListForecasts: err = %v, want ErrNoTenant", err)
	}
	if _, err := s.UpsertObservations(c, "", []store.Observation{{Date: "2026-01-01"}}); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("UpsertObservations: err = %v, want ErrNoTenant", err)
	}
	if _, err := s.Usage(c, ""); !errors.Is(err, store.ErrNoTenant) {
		t.Errorf("Usage: err = %v, want ErrNoTenant", err)
	}
}

func i64(v int64) *int64 { return &v }

func listAll(t *testing.T, s *store.Store, tenant string, f store.ObservationFilter) []store.Observation {
	t.Helper()
	items, next, err := s.ListObservations(ctx(t), tenant, f, store.MaxLimit, "")
	if err != nil {
		t.Fatal(err)
	}
	if next != "" {
		t.Fatal("unexpected second page")
	}
	return items
}

func testObservationsUpsert(t *testing.T, s *store.Store) {
	c := ctx(t)
	n, err := s.UpsertObservations(c, "tenant-a", []store.Observation{
		{Date: "2026-01-02", Cases: 5, Deaths: i64(1)},
		{Date: "2026-01-01", Cases: 3, Hospitalized: i64(2)},
		{Date: "2026-01-03", Cases: 1},
		{Date: "2026-01-03", Cases: 7}, // later duplicate wins
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("stored = %d, want 3", n)
	}
	if _, err := s.UpsertObservations(c, "tenant-b", []store.Observation{{Date: "2026-01-01", Cases: 100}}); err != nil {
		t.Fatal(err)
	}
	want := []store.Observation{
		{Date: "2026-01-01", Cases: 3, Hospitalized: i64(2)},
		{Date: "2026-01-02", Cases: 5, Deaths: i64(1)},
		{Date: "2026-01-03", Cases: 7},
	}
	if got := listAll(t, s, "tenant-a", store.ObservationFilter{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("list = %+v, want %+v", got, want)
	}
	// Re-upload replaces the whole row for that date, nullable fields included.
	if _, err := s.UpsertObservations(c, "tenant-a", []store.Observation{{Date: "2026-01-02", Cases: 6}}); err != nil {
		t.Fatal(err)
	}
	want[1] = store.Observation{Date: "2026-01-02", Cases: 6}
	if got := listAll(t, s, "tenant-a", store.ObservationFilter{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after replace: list = %+v, want %+v", got, want)
	}
	if got := listAll(t, s, "tenant-b", store.ObservationFilter{}); len(got) != 1 || got[0].Cases != 100 {
		t.Fatalf("tenant-b list = %+v", got)
	}
	if _, err := s.UpsertObservations(c, "tenant-a", []store.Observation{{Date: "2026-13-01", Cases: 1}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad date: err = %v, want ErrInvalid", err)
	}
}

func testObservationsAllOrNothing(t *testing.T, s *store.Store) {
	c := ctx(t)
	if _, err := s.UpsertObservations(c, "tenant-a", []store.Observation{{Date: "2026-02-01", Cases: 10}}); err != nil {
		t.Fatal(err)
	}
	// More rows than one insert batch, the bad one (violating the
	// cases >= 0 constraint) last, so earlier batches were already sent.
	var obs []store.Observation
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1200; i++ {
		obs = append(obs, store.Observation{Date: start.AddDate(0, 0, i).Format(time.DateOnly), Cases: int64(i)})
	}
	obs = append(obs, store.Observation{Date: "2026-02-01", Cases: 99})
	obs = append(obs, store.Observation{Date: "2026-02-02", Cases: -1})
	if _, err := s.UpsertObservations(c, "tenant-a", obs); err == nil {
		t.Fatal("negative cases accepted")
	}
	got := listAll(t, s, "tenant-a", store.ObservationFilter{})
	want := []store.Observation{{Date: "2026-02-01", Cases: 10}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after failed upload: %d rows (first %+v), want only the earlier row", len(got), got[:min(len(got), 2)])
	}
}

func testObservationsList(t *testing.T, s *store.Store) {
	c := ctx(t)
	var obs []store.Observation
	start := time.Date(2026, 1, 25, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 20; i++ { // 2026-01-25 .. 2026-02-13
		obs = append(obs, store.Observation{Date: start.AddDate(0, 0, i).Format(time.DateOnly), Cases: int64(i)})
	}
	if _, err := s.UpsertObservations(c, "tenant-a", obs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpsertObservations(c, "tenant-b", obs[:5]); err != nil {
		t.Fatal(err)
	}
	f := store.ObservationFilter{From: "2026-01-30", To: "2026-02-10"}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not terminate")
		}
		items, next, err := s.ListObservations(c, "tenant-a", f, 5, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range items {
			got = append(got, o.Date)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	var want []string
	for _, o := range obs {
		if o.Date >= f.From && o.Date <= f.To {
			want = append(want, o.Date)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("walk = %v\nwant   %v", got, want)
	}
	if got := listAll(t, s, "tenant-b", store.ObservationFilter{}); len(got) != 5 {
		t.Fatalf("tenant-b sees %d rows, want 5", len(got))
	}
	if _, _, err := s.ListObservations(c, "tenant-a", store.ObservationFilter{From: "yesterday"}, 5, ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad from: err = %v, want ErrInvalid", err)
	}
}

func testUsage(t *testing.T, s *store.Store) {
	c := ctx(t)
	for _, f := range []struct {
		tenant string
		at     time.Time
		ns     int64
	}{
		{"tenant-a", time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), 1_500_000_000},
		{"tenant-a", time.Date(2026, 12, 1, 0, 30, 0, 0, time.FixedZone("EST", -5*3600)), 250_000_000}, // 2026-12-01 05:30 UTC
		{"tenant-a", time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC), 250_000_000},
		{"tenant-b", time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), 9_000_000_000},
	} {
		if err := s.CreateForecast(c, f.tenant, newForecast(5, f.at, f.ns)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Usage(c, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.MonthUsage{
		{Month: "2026-11", Simulations: 1, ComputeSeconds: 1.5},
		{Month: "2026-12", Simulations: 2, ComputeSeconds: 0.5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("usage = %+v, want %+v", got, want)
	}
}

func testConcurrentWrites(t *testing.T, s *store.Store) {
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- s.CreateForecast(c, "tenant-a", newForecast(3, time.Now(), 1))
		}()
		go func() {
			defer wg.Done()
			_, err := s.UpsertObservations(c, "tenant-a", []store.Observation{{Date: fmt.Sprintf("2026-03-%02d", i+1), Cases: int64(i)}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	items, _, err := s.ListForecasts(c, "tenant-a", 100, "")
	if err != nil || len(items) != 20 {
		t.Fatalf("%d forecasts, err %v; want 20", len(items), err)
	}
}
