package verify

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/epitwin/epitwin/pkg/claims"
)

// maxNumericDate bounds exp, iat and nbf to values a float64 holds exactly.
const maxNumericDate = 1 << 53

// parseClaims decodes a verified payload into an AccessToken, insisting on
// the JSON types of RFC 7519 §4.1 and the claims RFC 9068 §2.2 requires:
// iss, aud, exp, iat, sub, jti and client_id, plus this profile's tenant_id
// and role. scope, when present, must be a string (RFC 9068 §2.2.3).
func parseClaims(payload []byte) (*claims.AccessToken, *Error) {
	m, err := strictObject(payload)
	if err != nil {
		return nil, invalidToken(reasonBadClaims, "claims are not a JSON object")
	}
	t := new(claims.AccessToken)
	strs := []struct {
		name     string
		dst      *string
		required bool
	}{
		{"iss", &t.Issuer, true},
		{"sub", &t.Subject, true},
		{"jti", &t.ID, true},
		{claims.ClaimClientID, &t.ClientID, true},
		{claims.ClaimTenantID, &t.TenantID, true},
		{claims.ClaimRole, &t.Role, true},
		{claims.ClaimScope, &t.Scope, false},
	}
	for _, f := range strs {
		raw, ok := m[f.name]
		if !ok {
			if f.required {
				return nil, invalidToken(reasonBadClaims, "missing claim "+f.name)
			}
			continue
		}
		s, ok := jsonString(raw)
		if !ok {
			return nil, invalidToken(reasonBadClaims, "claim "+f.name+" is not a string")
		}
		if f.required && s == "" {
			return nil, invalidToken(reasonBadClaims, "empty claim "+f.name)
		}
		*f.dst = s
	}
	aud, ok := m["aud"]
	if !ok {
		return nil, invalidToken(reasonBadClaims, "missing claim aud")
	}
	if t.Audience, ok = parseAudience(aud); !ok {
		return nil, invalidToken(reasonBadClaims, "claim aud is not a string or array of strings")
	}
	times := []struct {
		name     string
		dst      *time.Time
		required bool
	}{
		{"exp", &t.ExpiresAt, true},
		{"iat", &t.IssuedAt, true},
		{"nbf", &t.NotBefore, false},
	}
	for _, f := range times {
		raw, ok := m[f.name]
		if !ok {
			if f.required {
				return nil, invalidToken(reasonBadClaims, "missing claim "+f.name)
			}
			continue
		}
		ts, ok := numericDate(raw)
		if !ok {
			return nil, invalidToken(reasonBadClaims, "claim "+f.name+" is not a number")
		}
		*f.dst = ts
	}
	return t, nil
}

// parseAudience accepts the two forms of RFC 7519 §4.1.3: one string or a
// non-empty array of strings.
func parseAudience(raw json.RawMessage) ([]string, bool) {
	if s, ok := jsonString(raw); ok {
		return []string{s}, s != ""
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := jsonString(it)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// numericDate decodes a JSON number of seconds since the epoch
// (RFC 7519 §2 NumericDate), fractions allowed.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
