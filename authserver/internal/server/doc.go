// Package server is authserver's HTTP layer: one route table, thin
// adapters from the OAuth endpoints to fosite (token, introspection,
// revocation), discovery (RFC 8414 metadata, JWKS), health and metrics.
package server
