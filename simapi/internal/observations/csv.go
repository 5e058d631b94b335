package observations

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// utf8BOM is the byte order mark some spreadsheet programs prepend.
const utf8BOM = "\ufeff"

// ParseCSV parses a comma-separated upload.
//
// The first line is a header naming the columns, in any order: "date" and
// "cases" are required, "deaths" and "hospitalized" optional, and any other
// or repeated name is an error on the header line (line 1 unless blank
// lines precede it). Header names and cells are trimmed
// of surrounding spaces and header names are matched case-insensitively. A
// leading UTF-8 byte order mark, CRLF line endings, quoted fields and blank
// lines are tolerated. Every row must have as many fields as the header.
// Dates must be valid calendar dates YYYY-MM-DD between 1900-01-01 and
// 2100-12-31 and unique within the upload. Counts are unsigned decimal
// integers up to 1e12; an empty deaths or hospitalized cell means not
// reported, an empty cases cell is an error. At least one data row is
// required. Observations are returned in input order.
//
// Problems in the content are reported as a *[ParseError]; exceeding lim
// yields an error wrapping [ErrTooLarge]. Either all rows are returned or
// none.
func ParseCSV(r io.Reader, lim Limits) ([]Observation, error) {
	lim = lim.withDefaults()
	data, err := readLimited(r, lim.MaxBytes)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, []byte(utf8BOM))

	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1 // checked below to report our own error
	cr.ReuseRecord = true

	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &ParseError{Line: 1, Reason: "missing header row"}
	}
	if err != nil {
		return nil, csvError(err)
	}
	hl, _ := cr.FieldPos(0) // 1 unless blank lines precede the header
	idx := map[string]int{colDate: -1, colCases: -1, colDeaths: -1, colHospitalized: -1}
	for i, raw := range header {
		name := strings.ToLower(strings.TrimSpace(raw))
		prev, known := idx[name]
		switch {
		case name == "":
			return nil, &ParseError{Line: hl, Reason: "empty column name"}
		case !known:
			return nil, &ParseError{Line: hl, Column: clip(name), Reason: "unknown column"}
		case prev >= 0:
			return nil, &ParseError{Line: hl, Column: name, Reason: "duplicate column"}
		}
		idx[name] = i
	}
	for _, req := range []string{colDate, colCases} {
		if idx[req] < 0 {
			return nil, &ParseError{Line: hl, Column: req, Reason: "missing required column"}
		}
	}
	nfields := len(header)

	var out []Observation
	seen := dedup{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(out) >= lim.MaxRows {
			return nil, tooManyRows(lim.MaxRows)
		}
		if len(rec) != nfields {
			return nil, &ParseError{Line: line, Reason: fmt.Sprintf("wrong number of fields: got %d, header has %d", len(rec), nfields)}
		}
		cell := func(name string) (string, int) {
			i := idx[name]
			if i < 0 {
				return "", -1
			}
			l, _ := cr.FieldPos(i)
			return strings.TrimSpace(rec[i]), l
		}

		var o Observation
		v, l := cell(colDate)
		date, reason := parseDate(v)
		if reason != "" {
			return nil, &ParseError{Line: l, Column: colDate, Reason: reason}
		}
		o.Date = date
		v, l = cell(colCases)
		if v == "" {
			return nil, &ParseError{Line: l, Column: colCases, Reason: "required"}
		}
		n, reason := parseCount(v)
		if reason != "" {
			return nil, &ParseError{Line: l, Column: colCases, Reason: reason}
		}
		o.Cases = n
		for _, opt := range []struct {
			name string
			dst  **int64
		}{{colDeaths, &o.Deaths}, {colHospitalized, &o.Hospitalized}} {
			v, l := cell(opt.name)
			if v == "" {
				continue
			}
			n, reason := parseCount(v)
			if reason != "" {
				return nil, &ParseError{Line: l, Column: opt.name, Reason: reason}
			}
			*opt.dst = &n
		}
		if pe := seen.check(o.Date, line); pe != nil {
			return nil, pe
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, &ParseError{Reason: "no data rows"}
	}
	return out, nil
}

// csvError converts an error from encoding/csv into a ParseError.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &ParseError{Line: pe.Line, Reason: "malformed CSV: " + pe.Err.Error()}
	}
	return &ParseError{Reason: "malformed CSV: " + err.Error()}
}
