// Package keys manages the signing key ring of the authorization server: it
// generates ES256, RS256 and EdDSA keys, stores them encrypted at rest
// (AES-256-GCM under a key-encryption key), rotates and revokes them, serves
// the JSON Web Key Set of the published keys and provides a fosite
// jwt.Signer that issues and verifies RFC 9068 JWT access tokens.
//
// The key state is derived from the activation order of the keys, so several
// server instances sharing one database agree on which key signs without
// coordinating: the active key is the non-revoked key with the greatest
// activation time not in the future, keys activating in the future are
// published but do not sign yet, and a superseded key stays published until
// every token it may have signed has expired. The hot path (signing,
// validating, serving the JWKS) reads an immutable in-memory snapshot and
// never touches the database.
package keys
