// Package pkg is the root of the code shared by authserver and simapi:
// the token claims (claims), the roles, permissions and scopes (rbac) and the
// resource-server verifier (verify). Neither server imports the other.
package pkg
