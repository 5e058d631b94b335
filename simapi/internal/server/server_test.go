package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/rbac"
	"github.com/epitwin/epitwin/pkg/verify"
	"github.com/epitwin/epitwin/simapi/internal/observations"
	"github.com/epitwin/epitwin/simapi/internal/server"
	"github.com/epitwin/epitwin/simapi/internal/store"
	"github.com/epitwin/epitwin/simapi/internal/store/storetest"
)

// fakeAuth stands in for (*verify.Verifier).Middleware: "Bearer <name>"
// selects one of the tokens below; anything else is a 401.
type fakeAuth map[string]*claims.AccessToken

func (f fakeAuth) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok := f[name]
		if !ok || tok == nil {
			verify.WriteError(w, &verify.Error{Status: http.StatusUnauthorized, Code: verify.CodeInvalidToken})
			return
		}
		next.ServeHTTP(w, r.WithContext(verify.NewContext(r.Context(), tok)))
	})
}

func tok(sub, tenant string, role rbac.Role) *claims.AccessToken {
	return &claims.AccessToken{
		Issuer: "http://issuer", Subject: sub, Audience: []string{"simapi"}, ClientID: "cli-" + sub,
		TenantID: tenant, Role: string(role), Scope: strings.Join(rbac.RoleScopes(role), " "),
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

var tokens = fakeAuth{
	"admin-a":    tok("alice", "tenant-a", rbac.Admin),
	"manager-a":  tok("mary", "tenant-a", rbac.Manager),
	"readonly-a": tok("rob", "tenant-a", rbac.ReadOnly),
	"admin-b":    tok("bob", "tenant-b", rbac.Admin),
	"narrow-a": func() *claims.AccessToken {
		t := tok("nina", "tenant-a", rbac.Admin)
		t.Scope = "forecasts:read"
		return t
	}(),
	"notenant": tok("nobody", "", rbac.Admin),
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	store *store.Store
	logs  *syncBuffer
	reg   *prometheus.Registry
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, mod func(*server.Config)) *env {
	t.Helper()
	e := &env{t: t, store: storetest.SQLite(t), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	cfg := server.Config{
		Store:    e.store,
		Auth:     tokens.middleware,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, nil)),
		Registry: e.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) problem(t *testing.T) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p map[string]any
	r.json(t, &p)
	if p["type"] != "about:blank" || p["status"] != float64(r.status) || p["title"] == "" {
		t.Fatalf("bad problem body %s", r.body)
	}
	return p
}

func (e *env) do(method, path, token, contentType string, body []byte) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) get(path, token string) resp { return e.do("GET", path, token, "", nil) }

func expect(t *testing.T, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
}

const validParams = `{"population":10000,"initial_exposed":10,"initial_infected":5,"initial_recovered":0,"beta":0.4,"sigma":0.2,"gamma":0.1,"days":60}`

type simResult struct {
	ID           string  `json:"id"`
	R0           float64 `json:"r0"`
	PeakDay      int     `json:"peak_day"`
	PeakInfected float64 `json:"peak_infected"`
	AttackRate   float64 `json:"attack_rate"`
	Series       []struct {
		Day int     `json:"day"`
		S   float64 `json:"s"`
	} `json:"series"`
}

func (e *env) simulate(token string) simResult {
	e.t.Helper()
	r := e.do("POST", "/v1/simulate", token, "application/json", []byte(validParams))
	expect(e.t, r, http.StatusCreated)
	var out simResult
	r.json(e.t, &out)
	return out
}

func TestHealthAndReady(t *testing.T) {
	ready := false
	e := newEnv(t, func(c *server.Config) { c.Ready = func() bool { return ready } })
	expect(t, e.get("/healthz", ""), 200)
	r := e.get("/readyz", "")
	expect(t, r, 503)
	if p := r.problem(t); p["detail"] != "token verifier not ready" {
		t.Fatalf("readyz problem = %v", p)
	}
	ready = true
	expect(t, e.get("/readyz", ""), 200)
	e.store.Close()
	expect(t, e.get("/readyz", ""), 503)
}

func TestMe(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get("/v1/me", "narrow-a")
	expect(t, r, 200)
	var me map[string]any
	r.json(t, &me)
	want := map[string]any{
		"sub": "nina", "client_id": "cli-nina", "tenant_id": "tenant-a", "role": "admin",
		"scope": []any{"forecasts:read"}, "permissions": []any{"forecasts:read"}, "expires_at": "2030-01-01T00:00:00Z",
	}
	if fmt.Sprint(me) != fmt.Sprint(want) {
		t.Fatalf("me = %v\nwant %v", me, want)
	}
	r = e.get("/v1/me", "")
	expect(t, r, 401)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t, nil)
	// read-only may not simulate; a narrowed admin neither.
	for _, tk := range []string{"readonly-a", "narrow-a"} {
		r := e.do("POST", "/v1/simulate", tk, "application/json", []byte(validParams))
		expect(t, r, 403)
		if !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="simulations:run"`) {
			t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
		}
	}
	expect(t, e.get("/v1/billing/usage", "manager-a"), 403)
	expect(t, e.get("/v1/forecasts", "readonly-a"), 200)
	r := e.get("/v1/forecasts", "notenant")
	expect(t, r, 403)
	r.problem(t)
}

func TestSimulateAndForecasts(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/simulate", "admin-a", "application/json", []byte(validParams))
	expect(t, r, 201)
	var sr simResult
	r.json(t, &sr)
	if sr.ID == "" || sr.R0 != 4 || len(sr.Series) != 61 || sr.PeakDay <= 0 || sr.AttackRate <= 0 {
		t.Fatalf("simulate result = %+v", sr)
	}
	if loc := r.header.Get("Location"); loc != "/v1/forecasts/"+sr.ID {
		t.Fatalf("Location = %q", loc)
	}

	r = e.get("/v1/forecasts/"+sr.ID, "readonly-a")
	expect(t, r, 200)
	var detail struct {
		ID        string         `json:"id"`
		CreatedBy string         `json:"created_by"`
		ClientID  string         `json:"client_id"`
		Params    map[string]any `json:"params"`
		Result    simResult      `json:"result"`
	}
	r.json(t, &detail)
	if detail.ID != sr.ID || detail.CreatedBy != "alice" || detail.ClientID != "cli-alice" ||
		detail.Params["beta"] != 0.4 || detail.Result.PeakDay != sr.PeakDay || len(detail.Result.Series) != 61 {
		t.Fatalf("detail = %+v", detail)
	}

	r = e.get("/v1/forecasts", "readonly-a")
	expect(t, r, 200)
	var lst struct {
		Items []map[string]any `json:"items"`
		Next  *string          `json:"next_cursor"`
	}
	r.json(t, &lst)
	if len(lst.Items) != 1 || lst.Items[0]["id"] != sr.ID || lst.Items[0]["days"] != 60.0 || lst.Items[0]["created_by"] != "alice" || lst.Next != nil {
		t.Fatalf("list = %s", r.body)
	}
	for _, k := range []string{"created_at", "r0", "peak_day", "peak_infected", "attack_rate"} {
		if _, ok := lst.Items[0][k]; !ok {
			t.Errorf("list item lacks %q", k)
		}
	}

	r = e.get("/v1/forecasts/"+sr.ID+"/plot.svg", "readonly-a")
	expect(t, r, 200)
	if ct := r.header.Get("Content-Type"); ct != "image/svg+xml" || !bytes.Contains(r.body, []byte("<svg")) {
		t.Fatalf("plot: Content-Type %q body %.80s", ct, r.body)
	}

	expect(t, e.get("/v1/forecasts/does-not-exist", "admin-a"), 404)
}

func TestSimulateBadInput(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxSimulateBody = 4096 })
	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"negative beta", strings.Replace(validParams, `"beta":0.4`, `"beta":-1`, 1), 400, "beta"},
		{"zero days", strings.Replace(validParams, `"days":60`, `"days":0`, 1), 400, "days"},
		{"unknown field", strings.Replace(validParams, `"days":60`, `"days":60,"tenant_id":"tenant-b"`, 1), 400, "tenant_id"},
		{"wrong type", strings.Replace(validParams, `"gamma":0.1`, `"gamma":"fast"`, 1), 400, "gamma"},
		{"bad intervention", strings.Replace(validParams, `"days":60`, `"days":60,"interventions":[{"day":100,"beta_multiplier":0.5}]`, 1), 400, "interventions[0].day"},
		{"malformed", `{"population":`, 400, ""},
		{"empty", ``, 400, ""},
		{"trailing", validParams + `{}`, 400, ""},
		{"too large", `{"population":1` + strings.Repeat(" ", 5000) + `}`, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/simulate", "admin-a", "application/json", []byte(c.body))
			expect(t, r, c.status)
			p := r.problem(t)
			if c.field != "" && p["field"] != c.field {
				t.Fatalf("field = %v, want %q (body %s)", p["field"], c.field, r.body)
			}
		})
	}
	items, _, _ := e.store.ListForecasts(context.Background(), "tenant-a", 10, "")
	if len(items) != 0 {
		t.Fatalf("%d forecasts stored from bad input", len(items))
	}
}

func TestTenantIsolation(t *testing.T) { tenantIsolation(t, newEnv(t, nil)) }

// TestTenantIsolationPostgres repeats the isolation checks on PostgreSQL
// (with row-level security) when SIM_TEST_POSTGRES_URL is set.
func TestTenantIsolationPostgres(t *testing.T) {
	pg := storetest.Postgres(t)
	tenantIsolation(t, newEnv(t, func(c *server.Config) { c.Store = pg }))
}

func tenantIsolation(t *testing.T, e *env) {
	a := e.simulate("admin-a")
	b := e.simulate("admin-b")
	expect(t, e.do("POST", "/v1/observations", "admin-a", "text/csv", []byte("date,cases\n2026-01-01,5\n")), 200)

	for _, p := range []string{"/v1/forecasts/" + a.ID, "/v1/forecasts/" + a.ID + "/plot.svg"} {
		r := e.get(p, "admin-b")
		expect(t, r, 404) // never 403: the id's existence is not revealed
		r.problem(t)
	}
	r := e.get("/v1/forecasts", "admin-b")
	if bytes.Contains(r.body, []byte(a.ID)) || !bytes.Contains(r.body, []byte(b.ID)) {
		t.Fatalf("tenant-b list leaks or misses: %s", r.body)
	}
	r = e.get("/v1/observations", "admin-b")
	if string(bytes.TrimSpace(r.body)) != `{"items":[]}` {
		t.Fatalf("tenant-b observations = %s", r.body)
	}
	for _, q := range []string{"kind=forecasts&format=csv", "kind=forecasts&format=json", "kind=observations&format=csv"} {
		r = e.get("/v1/export?"+q, "admin-b")
		expect(t, r, 200)
		if bytes.Contains(r.body, []byte(a.ID)) || bytes.Contains(r.body, []byte("2026-01-01")) {
			t.Fatalf("export %s leaks tenant-a: %s", q, r.body)
		}
	}
	r = e.get("/v1/billing/usage", "admin-b")
	var u struct {
		Items []struct {
			Simulations int `json:"simulations"`
		} `json:"items"`
	}
	r.json(t, &u)
	if len(u.Items) != 1 || u.Items[0].Simulations != 1 {
		t.Fatalf("tenant-b usage = %s", r.body)
	}
	// Query parameters cannot choose the tenant.
	r = e.get("/v1/forecasts?tenant_id=tenant-a", "admin-b")
	if bytes.Contains(r.body, []byte(a.ID)) {
		t.Fatal("tenant_id query parameter honoured")
	}
}

type obsList struct {
	Items []observations.Observation `json:"items"`
	Next  string                     `json:"next_cursor"`
}

func (e *env) observations(token, query string) obsList {
	e.t.Helper()
	r := e.get("/v1/observations"+query, token)
	expect(e.t, r, 200)
	var l obsList
	r.json(e.t, &l)
	return l
}

func TestObservationsUpload(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.ObservationLimits = observations.Limits{MaxRows: 100, MaxBytes: 4096} })

	r := e.do("POST", "/v1/observations", "manager-a", "text/csv; charset=utf-8",
		[]byte("date,cases,deaths,hospitalized\n2026-01-01,10,1,\n2026-01-02,12,,3\n"))
	expect(t, r, 200)
	if strings.TrimSpace(string(r.body)) != `{"stored":2}` {
		t.Fatalf("body = %s", r.body)
	}
	r = e.do("POST", "/v1/observations", "manager-a", "application/json",
		[]byte(`[{"date":"2026-01-03","cases":7},{"date":"2026-01-02","cases":20,"deaths":2}]`))
	expect(t, r, 200)
	got := e.observations("readonly-a", "")
	if len(got.Items) != 3 || got.Items[1].Cases != 20 || got.Items[1].Hospitalized != nil || *got.Items[1].Deaths != 2 ||
		got.Items[0].Deaths == nil || *got.Items[0].Deaths != 1 {
		t.Fatalf("after JSON re-upload: %+v", got.Items)
	}

	// A bad row anywhere rejects the whole upload.
	r = e.do("POST", "/v1/observations", "manager-a", "text/csv", []byte("date,cases\n2026-02-01,1\n2026-02-02,lots\n"))
	expect(t, r, 400)
	p := r.problem(t)
	if p["line"] != 3.0 || p["column"] != "cases" {
		t.Fatalf("parse problem = %v", p)
	}
	r = e.do("POST", "/v1/observations", "manager-a", "application/json", []byte(`[{"date":"2026-02-01","cases":1},{"date":"2026-02-31","cases":1}]`))
	expect(t, r, 400)
	if p := r.problem(t); p["line"] != 2.0 || p["column"] != "date" {
		t.Fatalf("parse problem = %v", p)
	}
	if n := len(e.observations("readonly-a", "").Items); n != 3 {
		t.Fatalf("%d observations after rejected uploads, want 3", n)
	}

	r = e.do("POST", "/v1/observations", "manager-a", "application/xml", []byte(`<x/>`))
	expect(t, r, 415)
	r.problem(t)
	expect(t, e.do("POST", "/v1/observations", "manager-a", "", []byte(`[]`)), 415)

	big := "date,cases\n" + strings.Repeat("2026-01-01,1\n", 400)
	r = e.do("POST", "/v1/observations", "manager-a", "text/csv", []byte(big))
	expect(t, r, 413)
	r.problem(t)

	expect(t, e.do("POST", "/v1/observations", "readonly-a", "text/csv", []byte("date,cases\n2026-01-01,1\n")), 403)
}

func TestObservationsListFilter(t *testing.T) {
	e := newEnv(t, nil)
	var sb strings.Builder
	sb.WriteString("date,cases\n")
	for d := 1; d <= 28; d++ {
		fmt.Fprintf(&sb, "2026-02-%02d,%d\n", d, d)
	}
	expect(t, e.do("POST", "/v1/observations", "manager-a", "text/csv", []byte(sb.String())), 200)
	var dates []string
	q := "?from=2026-02-05&to=2026-02-20&limit=4"
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("no end")
		}
		l := e.observations("readonly-a", q)
		for _, o := range l.Items {
			dates = append(dates, o.Date)
		}
		if l.Next == "" {
			break
		}
		q = "?from=2026-02-05&to=2026-02-20&limit=4&cursor=" + l.Next
	}
	if len(dates) != 16 || dates[0] != "2026-02-05" || dates[15] != "2026-02-20" {
		t.Fatalf("dates = %v", dates)
	}
	for _, bad := range []struct{ q, field string }{
		{"?from=Feb", "from"}, {"?to=2026-2-1", "to"}, {"?limit=0", "limit"}, {"?limit=x", "limit"}, {"?cursor=zzz", "cursor"},
	} {
		r := e.get("/v1/observations"+bad.q, "readonly-a")
		expect(t, r, 400)
		if p := r.problem(t); p["field"] != bad.field {
			t.Errorf("%s: field = %v, want %s", bad.q, p["field"], bad.field)
		}
	}
}

func TestForecastPaginationWalk(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	e := newEnv(t, func(c *server.Config) {
		c.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(time.Second)
			return now
		}
	})
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append([]string{e.simulate("admin-a").ID}, ids...) // newest first
	}
	e.simulate("admin-b")
	var got []string
	path := "/v1/forecasts?limit=3"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("no end")
		}
		r := e.get(path, "readonly-a")
		expect(t, r, 200)
		var l struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			Next string `json:"next_cursor"`
		}
		r.json(t, &l)
		for _, it := range l.Items {
			got = append(got, it.ID)
		}
		if l.Next == "" {
			break
		}
		path = "/v1/forecasts?limit=3&cursor=" + l.Next
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("walk = %v\nwant   %v", got, ids)
	}
	// Limits above the maximum are clamped, not rejected.
	expect(t, e.get("/v1/forecasts?limit=100000", "readonly-a"), 200)
}

func TestExportStreaming(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.ExportBatch = 2 }) // several batches
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.simulate("admin-a").ID)
	}
	var sb strings.Builder
	sb.WriteString("date,cases,deaths\n")
	for d := 1; d <= 5; d++ {
		fmt.Fprintf(&sb, "2026-03-%02d,%d,%d\n", d, d*10, d)
	}
	expect(t, e.do("POST", "/v1/observations", "manager-a", "text/csv", []byte(sb.String())), 200)

	r := e.get("/v1/export?kind=forecasts&format=csv", "admin-a")
	expect(t, r, 200)
	if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="forecasts-`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Fatalf("Content-Disposition = %q", cd)
	}
	recs, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || recs[0][0] != "id" || recs[0][9] != "compute_seconds" {
		t.Fatalf("csv = %v", recs)
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		seen[rec[0]] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("export lacks %s", id)
		}
	}

	r = e.get("/v1/export?kind=forecasts&format=json", "admin-a")
	expect(t, r, 200)
	var fj []map[string]any
	r.json(t, &fj)
	if len(fj) != 5 || fj[0]["id"] == nil || fj[0]["r0"] != 4.0 {
		t.Fatalf("json export = %s", r.body)
	}

	r = e.get("/v1/export?kind=observations&format=json", "admin-a")
	expect(t, r, 200)
	var oj []observations.Observation
	r.json(t, &oj)
	if len(oj) != 5 || oj[4].Date != "2026-03-05" || oj[4].Cases != 50 || *oj[4].Deaths != 5 || oj[4].Hospitalized != nil {
		t.Fatalf("observations json = %s", r.body)
	}
	r = e.get("/v1/export?kind=observations&format=csv", "admin-a")
	recs, err = csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || len(recs) != 6 || strings.Join(recs[0], ",") != "date,cases,deaths,hospitalized" || strings.Join(recs[1], ",") != "2026-03-01,10,1," {
		t.Fatalf("observations csv = %v, %v", recs, err)
	}

	// An empty export is still well-formed.
	r = e.get("/v1/export?kind=observations&format=json", "admin-b")
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("empty export = %q", r.body)
	}

	for _, bad := range []struct{ q, field string }{{"kind=users&format=csv", "kind"}, {"kind=forecasts&format=xml", "format"}, {"", "kind"}} {
		r := e.get("/v1/export?"+bad.q, "admin-a")
		expect(t, r, 400)
		if p := r.problem(t); p["field"] != bad.field {
			t.Errorf("%s: field = %v", bad.q, p["field"])
		}
	}
	expect(t, e.get("/v1/export?kind=forecasts&format=csv", "readonly-a"), 403)
}

func TestBillingUsage(t *testing.T) {
	var mu sync.Mutex
	times := []time.Time{
		time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC),
	}
	e := newEnv(t, func(c *server.Config) {
		c.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			t := times[0]
			if len(times) > 1 {
				times = times[1:]
			}
			return t
		}
	})
	for i := 0; i < 3; i++ {
		e.simulate("admin-a")
	}
	r := e.get("/v1/billing/usage", "admin-a")
	expect(t, r, 200)
	var u struct {
		Items []struct {
			Month          string  `json:"month"`
			Simulations    int     `json:"simulations"`
			ComputeSeconds float64 `json:"compute_seconds"`
		} `json:"items"`
	}
	r.json(t, &u)
	if len(u.Items) != 2 || u.Items[0].Month != "2026-11" || u.Items[0].Simulations != 1 ||
		u.Items[1].Month != "2026-12" || u.Items[1].Simulations != 2 || u.Items[1].ComputeSeconds <= 0 {
		t.Fatalf("usage = %s", r.body)
	}
}

// panicStore panics on GetForecast.
type panicStore struct{ server.Store }

func (panicStore) GetForecast(context.Context, string, string) (*store.Forecast, error) {
	panic("secret internal state 0xdeadbeef")
}

func TestPanicIsGeneric500(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Store = panicStore{c.Store} })
	r := e.get("/v1/forecasts/x", "admin-a")
	expect(t, r, 500)
	p := r.problem(t)
	if _, ok := p["detail"]; ok || bytes.Contains(r.body, []byte("deadbeef")) {
		t.Fatalf("500 leaks details: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "secret internal state 0xdeadbeef") {
		t.Fatal("panic not logged")
	}
	expect(t, e.get("/healthz", ""), 200) // server still up
}

func TestRoutingProblemsAndLogs(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get("/v1/nope", "admin-a")
	expect(t, r, 404)
	r.problem(t)
	r = e.do("DELETE", "/v1/forecasts", "admin-a", "", nil)
	expect(t, r, 405)
	r.problem(t)
	if r.header.Get("Allow") == "" {
		t.Fatal("405 without Allow")
	}

	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer admin-a")
	req.Header.Set("X-Request-Id", "trace-123")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("X-Request-Id") != "trace-123" {
		t.Fatalf("X-Request-Id = %q", res.Header.Get("X-Request-Id"))
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"request_id":"trace-123"`) || !strings.Contains(logs, `"route":"GET /v1/me"`) || !strings.Contains(logs, `"tenant_id":"tenant-a"`) {
		t.Fatalf("access log lacks fields:\n%s", logs)
	}
	if strings.Contains(logs, "Bearer") || strings.Contains(logs, "admin-a") {
		t.Fatalf("logs contain the token:\n%s", logs)
	}

	r = e.get("/metrics", "")
	expect(t, r, 200)
	if !bytes.Contains(r.body, []byte(`simapi_http_request_duration_seconds_count{route="GET /v1/me",status="200"} 1`)) ||
		!bytes.Contains(r.body, []byte(`route="unmatched",status="404"`)) {
		t.Fatalf("metrics lack request histogram:\n%s", r.body)
	}
}

// benchGetForecast measures GET /v1/forecasts/{id} through a real HTTP
// transport with the given authenticator. auth must authenticate a request
// carrying "Authorization: Bearer " + bearer.
//
// Hook for the authenticated variant: once an authserver test fixture can
// mint tokens, add
//
//	func BenchmarkGetForecastAuthenticated(b *testing.B) {
//		v := ... // *verify.Verifier against a test issuer
//		benchGetForecast(b, v.Middleware, mintedToken)
//	}
func benchGetForecast(b *testing.B, auth func(http.Handler) http.Handler, bearer string) {
	st := storetest.SQLite(b)
	h, err := server.New(server.Config{Store: st, Auth: auth})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	f := &store.Forecast{Params: json.RawMessage(validParams), Result: json.RawMessage(`{"r0":4,"series":[]}`)}
	if err := st.CreateForecast(context.Background(), "tenant-a", f); err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/forecasts/"+f.ID, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	client := srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkGetForecast runs with authentication off: the authenticator just
// injects fixed claims.
func BenchmarkGetForecast(b *testing.B) {
	fixed := tok("alice", "tenant-a", rbac.Admin)
	noAuth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(verify.NewContext(r.Context(), fixed)))
		})
	}
	benchGetForecast(b, noAuth, "unused")
}

func TestTenantDataIsNotCached(t *testing.T) {
	st := storetest.SQLite(t)
	h, err := server.New(server.Config{Store: st, Auth: tokens.middleware})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/forecasts", nil)
	req.Header.Set("Authorization", "Bearer admin-a")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers = %v", res.Header)
	}
}
