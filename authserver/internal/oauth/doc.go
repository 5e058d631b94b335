// Package oauth composes authserver's OAuth 2.0 provider on fosite: the
// password, refresh-token and client-credentials grants, RFC 9068 JWT access
// tokens signed by the key ring, opaque HMAC refresh tokens, keyed-hash
// client secrets and bcrypt user passwords. It has no HTTP routing of its
// own; package server adapts it to the wire.
package oauth
