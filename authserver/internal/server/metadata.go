package server

import (
	"encoding/json"
	"net/http"

	"github.com/epitwin/epitwin/pkg/rbac"
)

// MetadataHandler serves RFC 8414 authorization server metadata.
func MetadataHandler(issuer string, grants []string) http.Handler {
	if len(grants) == 0 {
		grants = []string{"password", "refresh_token", "client_credentials"}
	}
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	body, _ := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"token_endpoint":                        issuer + "/oauth2/token",
		"jwks_uri":                              issuer + "/.well-known/jwks.json",
		"introspection_endpoint":                issuer + "/oauth2/introspect",
		"revocation_endpoint":                   issuer + "/oauth2/revoke",
		"grant_types_supported":                 grants,
		"response_types_supported":              []string{},
		"token_endpoint_auth_methods_supported": authMethods,
		"introspection_endpoint_auth_methods_supported": authMethods,
		"revocation_endpoint_auth_methods_supported":    authMethods,
		"scopes_supported":                          rbac.Scopes(),
		"access_token_signing_alg_values_supported": []string{"ES256", "RS256", "EdDSA"},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}
