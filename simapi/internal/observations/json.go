package observations

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ParseJSON parses a JSON upload: a top-level array of objects with the
// fields "date" (string), "cases" (number) and optionally "deaths" and
// "hospitalized" (number or null). Unknown and repeated fields are rejected.
// Counts must be JSON numbers written as unsigned integers without fraction
// or exponent (1.5, 1e3, "3", -1 and, for cases, null are rejected), up to
// 1e12; a null or absent deaths or hospitalized means not reported. Dates
// follow the same rules as in [ParseCSV] and must be unique. At least one
// element is required. A leading UTF-8 byte order mark is ignored.
// Observations are returned in input order.
//
// In a returned *[ParseError], Line is the 1-based index of the offending
// array element (not a line of the text) and Column the field name; Line is 0
// for problems outside any element. Exceeding lim yields an error wrapping
// [ErrTooLarge]. Either all elements are returned or none.
func ParseJSON(r io.Reader, lim Limits) ([]Observation, error) {
	lim = lim.withDefaults()
	data, err := readLimited(r, lim.MaxBytes)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, []byte(utf8BOM))))
	elem := 0 // index of the element being parsed, 0 outside the array

	syntaxErr := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return &ParseError{Line: elem, Reason: "invalid JSON: " + err.Error()}
	}

	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxErr(err)
	}
	if tok != json.Delim('[') {
		return nil, &ParseError{Reason: "top-level value must be an array"}
	}
	var out []Observation
	seen := dedup{}
	for dec.More() {
		elem++
		if elem > lim.MaxRows {
			return nil, tooManyRows(lim.MaxRows)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErr(err)
		}
		if tok != json.Delim('{') {
			return nil, &ParseError{Line: elem, Reason: "element must be an object"}
		}
		var o Observation
		var has [4]bool // date, cases, deaths, hospitalized
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, syntaxErr(err)
			}
			key, _ := tok.(string) // object keys are always strings
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, syntaxErr(err)
			}
			var slot int
			switch key {
			case colDate:
				slot = 0
			case colCases:
				slot = 1
			case colDeaths:
				slot = 2
			case colHospitalized:
				slot = 3
			default:
				return nil, &ParseError{Line: elem, Column: clip(key), Reason: "unknown field"}
			}
			if has[slot] {
				return nil, &ParseError{Line: elem, Column: key, Reason: "duplicate field"}
			}
			has[slot] = true
			if pe := o.setJSON(key, raw); pe != nil {
				pe.Line = elem
				return nil, pe
			}
		}
		if _, err := dec.Token(); err != nil { // closing '}'
			return nil, syntaxErr(err)
		}
		switch {
		case !has[0]:
			return nil, &ParseError{Line: elem, Column: colDate, Reason: "required"}
		case !has[1]:
			return nil, &ParseError{Line: elem, Column: colCases, Reason: "required"}
		}
		if pe := seen.check(o.Date, elem); pe != nil {
			return nil, pe
		}
		out = append(out, o)
	}
	if _, err := dec.Token(); err != nil { // closing ']'
		return nil, syntaxErr(err)
	}
	elem = 0
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ParseError{Reason: "invalid JSON: unexpected data after the top-level array"}
	}
	if len(out) == 0 {
		return nil, &ParseError{Reason: "no observations"}
	}
	return out, nil
}

// setJSON validates the raw JSON value of field key and stores it in o. The
// returned ParseError has no line set.
func (o *Observation) setJSON(key string, raw json.RawMessage) *ParseError {
	fail := func(reason string) *ParseError {
		return &ParseError{Column: key, Reason: reason}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return fail("missing value")
	}
	isNull := string(raw) == "null"
	if key == colDate {
		var s string
		if isNull || raw[0] != '"' {
			return fail("not a string")
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fail("not a string")
		}
		d, reason := parseDate(s)
		if reason != "" {
			return fail(reason)
		}
		o.Date = d
		return nil
	}
	if isNull {
		if key == colCases {
			return fail("required")
		}
		return nil // not reported
	}
	// raw is a single valid JSON value without surrounding space; an
	// unsigned integer literal consists of digits only.
	n, reason := parseCount(string(raw))
	if reason != "" {
		return fail(reason)
	}
	switch key {
	case colCases:
		o.Cases = n
	case colDeaths:
		o.Deaths = &n
	case colHospitalized:
		o.Hospitalized = &n
	}
	return nil
}
