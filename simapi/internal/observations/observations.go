package observations

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Default limits used when a [Limits] field is zero or negative.
const (
	// DefaultMaxRows is the default maximum number of observations.
	DefaultMaxRows = 10000
	// DefaultMaxBytes is the default maximum upload size (1 MiB).
	DefaultMaxBytes int64 = 1 << 20
	// MaxCount is the largest accepted count (10^12).
	MaxCount int64 = 1_000_000_000_000
	// MinDate and MaxDate bound accepted dates (inclusive).
	MinDate = "1900-01-01"
	// MaxDate is the latest accepted date (inclusive).
	MaxDate = "2100-12-31"
)

// ErrTooLarge is wrapped by the errors returned when an upload exceeds
// Limits.MaxBytes or Limits.MaxRows.
var ErrTooLarge = errors.New("upload too large")

// Observation is one day of surveillance counts.
type Observation struct {
	// Date is the calendar date in the form YYYY-MM-DD, between 1900-01-01
	// and 2100-12-31.
	Date string `json:"date"`
	// Cases is the number of reported cases, in [0, 1e12].
	Cases int64 `json:"cases"`
	// Deaths is the number of reported deaths, in [0, 1e12], or nil when
	// not reported.
	Deaths *int64 `json:"deaths,omitempty"`
	// Hospitalized is the number of hospitalized people, in [0, 1e12], or
	// nil when not reported.
	Hospitalized *int64 `json:"hospitalized,omitempty"`
}

// ParseError describes the first problem found in an upload.
//
// For CSV, Line is the 1-based physical line of the input (line 1 is the
// header) and Column is the header name of the offending column. For JSON,
// Line is the 1-based index of the offending element of the top-level array
// and Column is the field name. Line is 0 when the problem concerns the
// upload as a whole, and Column is empty when it concerns a whole line or
// element.
type ParseError struct {
	// Line is the CSV line or JSON array element index (both 1-based).
	Line int
	// Column is the CSV column or JSON field name, if any.
	Column string
	// Reason describes the problem.
	Reason string
}

// Error returns "line 3, column cases: <reason>", omitting the parts that are
// not set.
func (e *ParseError) Error() string {
	switch {
	case e.Line > 0 && e.Column != "":
		return fmt.Sprintf("line %d, column %s: %s", e.Line, e.Column, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	case e.Column != "":
		return fmt.Sprintf("column %s: %s", e.Column, e.Reason)
	default:
		return e.Reason
	}
}

// Limits bounds the size of an upload. A zero or negative field selects the
// corresponding default (DefaultMaxRows, DefaultMaxBytes).
type Limits struct {
	// MaxRows is the maximum number of observations (data rows or array
	// elements).
	MaxRows int
	// MaxBytes is the maximum number of bytes read from the input.
	MaxBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxRows <= 0 {
		l.MaxRows = DefaultMaxRows
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// readLimited reads all of r, failing with an error wrapping ErrTooLarge if
// it holds more than max bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read upload: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return data, nil
}

func tooManyRows(max int) error {
	return fmt.Errorf("%w: more than %d rows", ErrTooLarge, max)
}

// Column and field names.
const (
	colDate         = "date"
	colCases        = "cases"
	colDeaths       = "deaths"
	colHospitalized = "hospitalized"
)

// parseDate checks that s is a valid calendar date YYYY-MM-DD within
// [MinDate, MaxDate] and returns a reason when it is not.
func parseDate(s string) (string, string) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' || !allDigits(s[:4]) || !allDigits(s[5:7]) || !allDigits(s[8:]) {
		return "", "not a date in the form YYYY-MM-DD"
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return "", "not a valid calendar date"
	}
	if s < MinDate || s > MaxDate {
		return "", "date outside " + MinDate + " to " + MaxDate
	}
	return s, ""
}

// parseCount parses a count made only of ASCII digits, at most MaxCount, and
// returns a reason when it is not one.
func parseCount(s string) (int64, string) {
	if s == "" || !allDigits(s) {
		return 0, "not a non-negative integer"
	}
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	if len(s) > 13 {
		return 0, "exceeds " + strconv.FormatInt(MaxCount, 10)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxCount {
		return 0, "exceeds " + strconv.FormatInt(MaxCount, 10)
	}
	return n, ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// dedup tracks the line on which each date was first seen.
type dedup map[string]int

// check records date at line and returns a ParseError if it was seen before.
func (d dedup) check(date string, line int) *ParseError {
	if first, ok := d[date]; ok {
		return &ParseError{Line: line, Column: colDate, Reason: fmt.Sprintf("duplicate date %s (first on line %d)", date, first)}
	}
	d[date] = line
	return nil
}

// maxNameLen bounds how much of an unknown column or field name is echoed
// back in a ParseError.
const maxNameLen = 64

// clip shortens an untrusted name to at most maxNameLen runes.
func clip(name string) string {
	n := 0
	for i := range name {
		if n == maxNameLen {
			return name[:i] + "…"
		}
		n++
	}
	return name
}
