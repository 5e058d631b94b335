package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// tokenHeader is the part of the JOSE header a Verifier acts on. Key-carrying
// parameters (jwk, jku, x5u, x5c) are never read: keys come only from the
// authorization server's JWKS (RFC 8725 §3.10 on trusting header URLs).
type tokenHeader struct {
	alg string
	kid string
	typ string
}

// parseHeader runs every check that needs no key, on the raw compact
// serialization, so that malformed or hostile tokens are turned away before
// any cryptography or third-party parsing:
//   - exactly three non-empty segments (a JWS, not a JWE or an unsigned JWT);
//   - each segment strict unpadded base64url (RFC 7515 §2): no '=', '+' or
//     '/', and canonical trailing bits, so a signature cannot be malleated;
//   - the header a JSON object without duplicate names (RFC 7515 §5.2);
//   - alg a string and not "none" in any letter case (RFC 8725 §3.1/§3.2);
//   - typ "at+jwt" or "application/at+jwt", case-insensitively
//     (RFC 9068 §4 and RFC 8725 §3.11 explicit typing);
//   - no crit (we understand no extensions, RFC 7515 §4.1.11), no b64
//     (RFC 7797), no cty (nested JWTs are not access tokens, RFC 8725 §2.8);
//   - kid a non-empty string, to select the key from the JWKS.
func parseHeader(raw string) (tokenHeader, *Error) {
	var h tokenHeader
	if raw == "" {
		return h, invalidToken(reasonMalformed, "missing token")
	}
	if strings.Count(raw, ".") != 2 {
		return h, invalidToken(reasonMalformed, "token must have three segments")
	}
	first := strings.IndexByte(raw, '.')
	second := first + 1 + strings.IndexByte(raw[first+1:], '.')
	segs := [3]string{raw[:first], raw[first+1 : second], raw[second+1:]}
	var hdr []byte
	for i, s := range segs {
		if s == "" {
			return h, invalidToken(reasonMalformed, "empty token segment")
		}
		for j := 0; j < len(s); j++ {
			switch c := s[j]; {
			case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c == '=':
				return h, invalidToken(reasonMalformed, "padded base64 segment")
			case c == '+' || c == '/':
				return h, invalidToken(reasonMalformed, "non-url-safe base64 segment")
			default:
				return h, invalidToken(reasonMalformed, "invalid character in token")
			}
		}
		dec, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			return h, invalidToken(reasonMalformed, "invalid base64 segment")
		}
		if i == 0 {
			hdr = dec
		}
	}
	fields, err := strictObject(hdr)
	if err != nil {
		return h, invalidToken(reasonMalformed, "header is not a JSON object")
	}
	for _, name := range []string{"crit", "b64", "cty"} {
		if _, ok := fields[name]; ok {
			desc := name + " header not supported"
			if name == "cty" {
				desc = "nested token not supported"
			}
			return h, invalidToken(reasonBadHeader, desc)
		}
	}
	alg, ok := jsonString(fields["alg"])
	if !ok || alg == "" {
		return h, invalidToken(reasonBadHeader, "missing alg")
	}
	if strings.EqualFold(alg, "none") {
		return h, invalidToken(reasonAlgNotAllowed, "unsigned token")
	}
	typ, ok := jsonString(fields["typ"])
	if !ok || !(strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")) {
		return h, invalidToken(reasonBadHeader, "wrong token type")
	}
	kid, ok := jsonString(fields["kid"])
	if !ok || kid == "" {
		return h, invalidToken(reasonBadHeader, "missing kid")
	}
	h.alg, h.typ, h.kid = alg, typ, kid
	return h, nil
}

// strictObject decodes a JSON object into its members, rejecting anything
// that is not exactly one object, and duplicate member names, which
// different parsers resolve differently (RFC 7515 §5.2, RFC 8259 §4).
func strictObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a json object")
	}
	m := make(map[string]json.RawMessage, 8)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object member name is not a string")
		}
		if _, dup := m[name]; dup {
			return nil, errors.New("duplicate member " + name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		m[name] = raw
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after json object")
	}
	return m, nil
}

// jsonString decodes raw if, and only if, it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
