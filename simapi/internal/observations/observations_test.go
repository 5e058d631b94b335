package observations

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr(n int64) *int64 { return &n }

type parser func(io.Reader, Limits) ([]Observation, error)

func TestParseFiles(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		n      int    // number of observations on success
		line   int    // expected ParseError.Line on failure
		column string // expected ParseError.Column on failure
		fail   bool
	}{
		{name: "ok-csv", file: "good.csv", n: 3},
		{name: "ok-crlf-bom", file: "crlf_bom.csv", n: 2},
		{name: "ok-quoted", file: "quoted.csv", n: 2},
		{name: "ok-max-cases", file: "max_cases.csv", n: 1},
		{name: "fail-bad-date", file: "bad_date.csv", fail: true, line: 3, column: "date"},
		{name: "fail-bad-header", file: "bad_header.csv", fail: true, line: 1, column: "region"},
		{name: "fail-too-many-fields", file: "too_many_fields.csv", fail: true, line: 4},
		{name: "fail-too-few-fields", file: "too_few_fields.csv", fail: true, line: 3},
		{name: "fail-dup-header", file: "dup_header.csv", fail: true, line: 1, column: "date"},
		{name: "fail-missing-cases-column", file: "missing_cases_column.csv", fail: true, line: 1, column: "cases"},
		{name: "fail-dup-date", file: "dup_date.csv", fail: true, line: 4, column: "date"},
		{name: "fail-negative", file: "negative_cases.csv", fail: true, line: 2, column: "cases"},
		{name: "fail-signed", file: "signed_cases.csv", fail: true, line: 2, column: "cases"},
		{name: "fail-decimal", file: "decimal_cases.csv", fail: true, line: 2, column: "cases"},
		{name: "fail-empty-cases", file: "empty_cases.csv", fail: true, line: 2, column: "cases"},
		{name: "fail-bad-hospitalized", file: "bad_hospitalized.csv", fail: true, line: 2, column: "hospitalized"},
		{name: "fail-huge", file: "huge_cases.csv", fail: true, line: 2, column: "cases"},
		{name: "fail-early-date", file: "early_date.csv", fail: true, line: 2, column: "date"},
		{name: "fail-late-date", file: "late_date.csv", fail: true, line: 2, column: "date"},
		{name: "fail-short-date", file: "short_date.csv", fail: true, line: 2, column: "date"},
		{name: "fail-header-only", file: "header_only.csv", fail: true, line: 0},
		{name: "fail-empty-csv", file: "empty.csv", fail: true, line: 1},
		{name: "fail-bare-quote", file: "bare_quote.csv", fail: true, line: 3},
		{name: "ok-json", file: "good.json", n: 3},
		{name: "fail-float-cases", file: "float_cases.json", fail: true, line: 1, column: "cases"},
		{name: "fail-exp-cases", file: "exp_cases.json", fail: true, line: 1, column: "cases"},
		{name: "fail-string-cases", file: "string_cases.json", fail: true, line: 1, column: "cases"},
		{name: "fail-null-cases", file: "null_cases.json", fail: true, line: 1, column: "cases"},
		{name: "fail-negative-json", file: "negative_cases.json", fail: true, line: 2, column: "cases"},
		{name: "fail-unknown-field", file: "unknown_field.json", fail: true, line: 1, column: "region"},
		{name: "fail-dup-date-json", file: "dup_date.json", fail: true, line: 2, column: "date"},
		{name: "fail-dup-field", file: "dup_field.json", fail: true, line: 1, column: "cases"},
		{name: "fail-missing-date", file: "missing_date.json", fail: true, line: 1, column: "date"},
		{name: "fail-missing-cases", file: "missing_cases.json", fail: true, line: 1, column: "cases"},
		{name: "fail-bad-date-json", file: "bad_date.json", fail: true, line: 1, column: "date"},
		{name: "fail-number-date", file: "number_date.json", fail: true, line: 1, column: "date"},
		{name: "fail-negative-deaths", file: "negative_deaths.json", fail: true, line: 1, column: "deaths"},
		{name: "fail-not-array", file: "not_array.json", fail: true, line: 0},
		{name: "fail-trailing", file: "trailing.json", fail: true, line: 0},
		{name: "fail-truncated", file: "truncated.json", fail: true, line: 2},
		{name: "fail-empty-array", file: "empty_array.json", fail: true, line: 0},
		{name: "fail-not-object", file: "not_object.json", fail: true, line: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			parse := parser(ParseCSV)
			if strings.HasSuffix(tc.file, ".json") {
				parse = ParseJSON
			}
			obs, err := parse(bytes.NewReader(data), Limits{})
			if !tc.fail {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(obs) != tc.n {
					t.Fatalf("got %d observations, want %d", len(obs), tc.n)
				}
				checkRules(t, obs)
				return
			}
			if obs != nil {
				t.Fatalf("got %d observations along with an error", len(obs))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if pe.Line != tc.line || pe.Column != tc.column {
				t.Fatalf("got line %d column %q (%v), want line %d column %q", pe.Line, pe.Column, err, tc.line, tc.column)
			}
			if errors.Is(err, ErrTooLarge) {
				t.Fatalf("content error %v wraps ErrTooLarge", err)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	want := []Observation{
		{Date: "2024-01-01", Cases: 10, Deaths: ptr(0), Hospitalized: ptr(3)},
		{Date: "2024-01-02", Cases: 12, Hospitalized: ptr(4)},
		{Date: "2024-01-03", Cases: 0, Deaths: ptr(1)},
	}
	got, err := ParseCSV(strings.NewReader("date,cases,deaths,hospitalized\n2024-01-01,10,0,3\n2024-01-02,12,,4\n2024-01-03,0,1,\n"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("csv: got %+v, want %+v", got, want)
	}
	want[1].Deaths, want[1].Hospitalized = nil, nil
	want[2].Deaths, want[2].Hospitalized = nil, ptr(1e12)
	got, err = ParseJSON(strings.NewReader(`[{"date":"2024-01-01","cases":10,"deaths":0,"hospitalized":3},
		{"date":"2024-01-02","cases":12,"deaths":null},{"hospitalized":1000000000000,"cases":0,"date":"2024-01-03"}]`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("json: got %+v, want %+v", got, want)
	}
	got, err = ParseJSON(strings.NewReader("\ufeff[{\"date\":\"2020-03-01\",\"cases\":5}]\n"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Observation{{Date: "2020-03-01", Cases: 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("json bom: got %+v, want %+v", got, want)
	}
	got, err = ParseCSV(strings.NewReader("\ufeffCases , DATE\r\n5,2020-03-01\r\n\r\n"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Observation{{Date: "2020-03-01", Cases: 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bom: got %+v, want %+v", got, want)
	}
}

func TestParseErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  ParseError
		want string
	}{
		{"full", ParseError{Line: 3, Column: "cases", Reason: "not a non-negative integer"}, "line 3, column cases: not a non-negative integer"},
		{"line", ParseError{Line: 4, Reason: "wrong number of fields"}, "line 4: wrong number of fields"},
		{"whole", ParseError{Reason: "no data rows"}, "no data rows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// csvRows returns a CSV upload with n distinct dates.
func csvRows(n int) string {
	var b strings.Builder
	b.WriteString("date,cases\n")
	for i := range n {
		fmt.Fprintf(&b, "%04d-01-01,%d\n", 1900+i, i)
	}
	return b.String()
}

// jsonRows returns a JSON upload with n distinct dates.
func jsonRows(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"date":"%04d-01-01","cases":%d}`, 1900+i, i)
	}
	b.WriteString("]")
	return b.String()
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name    string
		parse   parser
		input   string
		lim     Limits
		tooLong bool
	}{
		{"ok-csv-max-rows", ParseCSV, csvRows(5), Limits{MaxRows: 5}, false},
		{"fail-csv-rows", ParseCSV, csvRows(6), Limits{MaxRows: 5}, true},
		{"ok-csv-max-bytes", ParseCSV, csvRows(5), Limits{MaxBytes: int64(len(csvRows(5)))}, false},
		{"fail-csv-bytes", ParseCSV, csvRows(5), Limits{MaxBytes: int64(len(csvRows(5))) - 1}, true},
		{"ok-json-max-rows", ParseJSON, jsonRows(5), Limits{MaxRows: 5}, false},
		{"fail-json-rows", ParseJSON, jsonRows(6), Limits{MaxRows: 5}, true},
		{"ok-json-max-bytes", ParseJSON, jsonRows(5), Limits{MaxBytes: int64(len(jsonRows(5)))}, false},
		{"fail-json-bytes", ParseJSON, jsonRows(5), Limits{MaxBytes: int64(len(jsonRows(5))) - 1}, true},
		{"ok-default-rows", ParseCSV, csvRows(201), Limits{}, false},
		{"fail-default-bytes", ParseJSON, "[" + strings.Repeat(" ", 1<<20) + "]", Limits{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs, err := tc.parse(strings.NewReader(tc.input), tc.lim)
			if !tc.tooLong {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if obs != nil || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %d observations, error %v; want ErrTooLarge", len(obs), err)
			}
		})
	}
}

func TestDefaultMaxRows(t *testing.T) {
	rows := func(n int) string {
		var b strings.Builder
		b.WriteString("date,cases\n")
		d := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range n {
			fmt.Fprintf(&b, "%s,%d\n", d.AddDate(0, 0, i).Format(time.DateOnly), i)
		}
		return b.String()
	}
	obs, err := ParseCSV(strings.NewReader(rows(DefaultMaxRows)), Limits{})
	if err != nil || len(obs) != DefaultMaxRows {
		t.Fatalf("got %d observations, error %v; want %d", len(obs), err, DefaultMaxRows)
	}
	if _, err := ParseCSV(strings.NewReader(rows(DefaultMaxRows+1)), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got error %v, want ErrTooLarge", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadError(t *testing.T) {
	for _, p := range []parser{ParseCSV, ParseJSON} {
		_, err := p(failingReader{}, Limits{})
		var pe *ParseError
		if err == nil || errors.As(err, &pe) || errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want a plain read error", err)
		}
	}
}

// checkRules verifies the invariants promised for successful parses.
func checkRules(t *testing.T, obs []Observation) {
	t.Helper()
	if len(obs) == 0 {
		t.Fatal("success with no observations")
	}
	seen := map[string]bool{}
	for i, o := range obs {
		if _, reason := parseDate(o.Date); reason != "" {
			t.Fatalf("observation %d: date %q: %s", i, o.Date, reason)
		}
		if seen[o.Date] {
			t.Fatalf("observation %d: duplicate date %s", i, o.Date)
		}
		seen[o.Date] = true
		for _, v := range []*int64{&o.Cases, o.Deaths, o.Hospitalized} {
			if v != nil && (*v < 0 || *v > MaxCount) {
				t.Fatalf("observation %d: count %d out of range", i, *v)
			}
		}
	}
}

// checkFailure verifies that a failed parse returns nothing and a useful error.
func checkFailure(t *testing.T, obs []Observation, err error) {
	t.Helper()
	if obs != nil {
		t.Fatalf("got %d observations along with error %v", len(obs), err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v (%T) is neither a *ParseError nor ErrTooLarge", err, err)
	}
}

func addSeeds(f *testing.F, ext string) {
	files, err := filepath.Glob(filepath.Join("testdata", "*."+ext))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzParseCSV(f *testing.F) {
	addSeeds(f, "csv")
	f.Fuzz(func(t *testing.T, data []byte) {
		obs, err := ParseCSV(bytes.NewReader(data), Limits{MaxRows: 100, MaxBytes: 4096})
		if err != nil {
			checkFailure(t, obs, err)
			return
		}
		checkRules(t, obs)
	})
}

func FuzzParseJSON(f *testing.F) {
	addSeeds(f, "json")
	f.Fuzz(func(t *testing.T, data []byte) {
		obs, err := ParseJSON(bytes.NewReader(data), Limits{MaxRows: 100, MaxBytes: 4096})
		if err != nil {
			checkFailure(t, obs, err)
			return
		}
		checkRules(t, obs)
	})
}
