// Package verify checks RFC 9068 JWT access tokens offline against the
// authorization server's published keys, optionally confirms through RFC 7662
// introspection that they have not been revoked, and offers the result to
// resource servers as net/http middleware that speaks RFC 6750.
//
// A Verifier discovers the authorization server through its RFC 8414
// metadata, keeps its JWKS fresh with a jwk.Cache, remembers verified tokens
// (keyed by the SHA-256 of the raw token, never past their exp) and, when
// introspection is enabled, remembers revocation answers for a short TTL.
// Every failure of a token itself is reported as a 401 invalid_token *Error;
// a Verifier that cannot reach what it needs fails closed with a 503.
package verify
