// Package rbac holds EpiTwin's authorization model as data: the four roles,
// the six permissions, the OAuth scopes that name them, and the matrix that
// says which role holds which permission. Scopes can only narrow a role: the
// effective permission set is the role's AND the token's scopes.
package rbac

import (
	"fmt"
	"sort"
	"strings"
)

// Role is a user's (or a client-credentials client's) role within a tenant.
type Role string

// The roles, lowest first. A higher role holds every permission of a lower one.
const (
	ReadOnly Role = "read-only"
	Analyst  Role = "analyst"
	Manager  Role = "manager"
	Admin    Role = "admin"
)

// Roles lists every role from the lowest to the highest.
var Roles = []Role{ReadOnly, Analyst, Manager, Admin}

// Permission is one action of the product. Each permission is requested as
// the OAuth scope of the same name.
type Permission string

// The permissions; their string values are the OAuth scopes.
const (
	ViewForecasts      Permission = "forecasts:read"
	RunSimulations     Permission = "simulations:run"
	ExportData         Permission = "data:export"
	UploadObservations Permission = "observations:write"
	ManageUsers        Permission = "users:manage"
	ReadBilling        Permission = "billing:read"
)

// Permissions lists every permission in a stable order.
var Permissions = []Permission{ViewForecasts, RunSimulations, ExportData, UploadObservations, ManageUsers, ReadBilling}

// minRole is the matrix: the lowest role that holds each permission.
var minRole = map[Permission]Role{
	ViewForecasts:      ReadOnly,
	RunSimulations:     Analyst,
	ExportData:         Analyst,
	UploadObservations: Manager,
	ManageUsers:        Admin,
	ReadBilling:        Admin,
}

// Scopes returns every scope the system knows, in a stable order.
func Scopes() []string {
	out := make([]string, len(Permissions))
	for i, p := range Permissions {
		out[i] = string(p)
	}
	return out
}

// IsScope reports whether s is one of the known scopes.
func IsScope(s string) bool {
	_, ok := minRole[Permission(s)]
	return ok
}

// ParseScopes splits a space-separated scope string (RFC 6749 §3.3) and
// rejects unknown or duplicate scopes.
func ParseScopes(s string) ([]string, error) {
	fields := strings.Fields(s)
	seen := make(map[string]bool, len(fields))
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if !IsScope(f) {
			return nil, fmt.Errorf("unknown scope %q", f)
		}
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
	}
	return out, nil
}

// rank orders roles; an unknown role ranks below every known one.
func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i
		}
	}
	return -1
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool { return r.rank() >= 0 }

// AtLeast reports whether r is the same as or higher than o. An unknown role
// is never at least anything.
func (r Role) AtLeast(o Role) bool { return r.Valid() && o.Valid() && r.rank() >= o.rank() }

// ParseRole returns the role named s, or an error naming the valid roles.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (want one of read-only, analyst, manager, admin)", s)
	}
	return r, nil
}

// Allow reports whether role r holds permission p by the matrix alone.
func Allow(r Role, p Permission) bool {
	min, ok := minRole[p]
	return ok && r.AtLeast(min)
}

// RoleScopes returns the scopes role r may ever hold, in a stable order.
func RoleScopes(r Role) []string {
	var out []string
	for _, p := range Permissions {
		if Allow(r, p) {
			out = append(out, string(p))
		}
	}
	return out
}

// Effective returns the permissions a token carries: those its role allows
// AND its scopes name. Scopes can only narrow a role, never widen it.
func Effective(r Role, scopes []string) []Permission {
	granted := make(map[string]bool, len(scopes))
	for _, s := range scopes {
		granted[s] = true
	}
	var out []Permission
	for _, p := range Permissions {
		if Allow(r, p) && granted[string(p)] {
			out = append(out, p)
		}
	}
	return out
}

// Has reports whether a token with role r and the given scopes may perform p.
func Has(r Role, scopes []string, p Permission) bool {
	if !Allow(r, p) {
		return false
	}
	for _, s := range scopes {
		if s == string(p) {
			return true
		}
	}
	return false
}

// SortScopes returns the scopes sorted in the canonical order of Permissions,
// unknown ones last in lexical order.
func SortScopes(scopes []string) []string {
	idx := func(s string) int {
		for i, p := range Permissions {
			if string(p) == s {
				return i
			}
		}
		return len(Permissions)
	}
	out := append([]string(nil), scopes...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := idx(out[i]), idx(out[j])
		if a != b {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}
