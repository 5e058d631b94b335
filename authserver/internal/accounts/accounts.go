// Package accounts is the domain logic of tenants, users and OAuth clients:
// validation, hashing and the audit trail of every change. The CLI and the
// admin API both go through it, so they enforce the same rules.
package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/rbac"
)

// Kind classifies a domain error; only the HTTP layer maps it to a status.
type Kind int

// The kinds of Error.
const (
	Invalid Kind = iota + 1
	NotFound
	Conflict
	Forbidden
)

// Error is a domain error whose message is safe to show to the caller.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func invalid(format string, a ...any) error {
	return &Error{Kind: Invalid, Msg: fmt.Sprintf(format, a...)}
}

// fromStorage turns storage sentinels into domain errors.
func fromStorage(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound):
		return &Error{Kind: NotFound, Msg: what + " not found", Err: err}
	case errors.Is(err, storage.ErrConflict):
		return &Error{Kind: Conflict, Msg: what + " already exists", Err: err}
	default:
		return err
	}
}

// GrantTypes are the grants a client may be allowed.
var GrantTypes = []string{"password", "refresh_token", "client_credentials"}

var (
	tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,63}$`)
	usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)
	clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	audiencePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

// Service changes accounts and records each change in the audit log.
type Service struct {
	Store     *storage.Store
	Passwords *oauth.Passwords
	// Secrets hashes client secrets; required only to create clients.
	Secrets *oauth.SecretHasher
	Now     func() time.Time
}

// audit records a successful change; an empty typ records nothing (the
// admin API records its own, richer events).
func (s *Service) audit(ctx context.Context, actor, typ, tenant, subject string, details map[string]any) {
	if typ == "" {
		return
	}
	d := ""
	if details != nil {
		b, _ := json.Marshal(details)
		d = string(b)
	}
	_ = s.Store.AppendAudit(ctx, &storage.AuditEvent{Type: typ, TenantID: tenant, Actor: actor, Subject: subject, Details: d})
}

// CreateTenant creates a tenant.
func (s *Service) CreateTenant(ctx context.Context, actor, id, name string) (*storage.Tenant, error) {
	return s.createTenant(ctx, actor, id, name, storage.EventTenantCreated)
}

func (s *Service) createTenant(ctx context.Context, actor, id, name, event string) (*storage.Tenant, error) {
	if !tenantIDPattern.MatchString(id) {
		return nil, invalid("tenant id must be 2-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return nil, invalid("tenant name must be 1-200 characters")
	}
	t := &storage.Tenant{ID: id, Name: name}
	if err := s.Store.CreateTenant(ctx, t); err != nil {
		return nil, fromStorage(err, "tenant")
	}
	s.audit(ctx, actor, event, id, id, map[string]any{"name": name})
	return t, nil
}

// CreateUserInput is a new user.
type CreateUserInput struct {
	TenantID string
	Username string
	Password string
	Role     string
}

// CreateUser validates and creates a user with a bcrypt-hashed password.
func (s *Service) CreateUser(ctx context.Context, actor string, in CreateUserInput) (*storage.User, error) {
	return s.createUser(ctx, actor, in, storage.EventUserCreated)
}

func (s *Service) createUser(ctx context.Context, actor string, in CreateUserInput, event string) (*storage.User, error) {
	if !usernamePattern.MatchString(in.Username) {
		return nil, invalid("username must be 1-128 characters of letters, digits and . _ @ + -")
	}
	role, err := rbac.ParseRole(in.Role)
	if err != nil {
		return nil, invalid("%v", err)
	}
	hash, err := s.hashPassword(in.Password, in.Username)
	if err != nil {
		return nil, err
	}
	u := &storage.User{ID: newID(), TenantID: in.TenantID, Username: in.Username, PasswordHash: hash, Role: string(role)}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fromStorage(err, "tenant")
		}
		return nil, fromStorage(err, "user")
	}
	s.audit(ctx, actor, event, in.TenantID, in.Username, map[string]any{"role": role, "user_id": u.ID})
	return u, nil
}

// CreateClientInput is a new OAuth client.
type CreateClientInput struct {
	TenantID   string
	ID         string
	Grants     []string
	Scopes     []string
	Audiences  []string
	Role       string
	Introspect bool
	// Secret, when set, is used instead of a generated one (at least
	// oauth.MinClientSecretLength characters).
	Secret string
}

// CreateClient validates and creates a client and returns it with its
// secret, which is shown this once and stored only as a keyed hash.
func (s *Service) CreateClient(ctx context.Context, actor string, in CreateClientInput) (*storage.Client, string, error) {
	return s.createClient(ctx, actor, in, storage.EventClientCreated)
}

func (s *Service) createClient(ctx context.Context, actor string, in CreateClientInput, event string) (*storage.Client, string, error) {
	if s.Secrets == nil {
		return nil, "", errors.New("accounts: no secret hasher configured")
	}
	if !clientIDPattern.MatchString(in.ID) {
		return nil, "", invalid("client id must be 1-128 characters of letters, digits and . _ -")
	}
	grants := dedupe(in.Grants)
	for _, g := range grants {
		if !slices.Contains(GrantTypes, g) {
			return nil, "", invalid("unknown grant %q (want password, refresh_token or client_credentials)", g)
		}
	}
	if len(grants) == 0 && !in.Introspect {
		return nil, "", invalid("a client needs at least one grant, or --introspect for a resource server")
	}
	scopes, err := rbac.ParseScopes(strings.Join(in.Scopes, " "))
	if err != nil {
		return nil, "", invalid("%v", err)
	}
	if len(scopes) == 0 && len(grants) > 0 {
		return nil, "", invalid("a client with grants needs at least one scope")
	}
	auds := dedupe(in.Audiences)
	if len(auds) == 0 {
		return nil, "", invalid("a client needs at least one audience")
	}
	for _, a := range auds {
		if !audiencePattern.MatchString(a) {
			return nil, "", invalid("invalid audience %q", a)
		}
	}
	role := ""
	if in.Role != "" {
		r, err := rbac.ParseRole(in.Role)
		if err != nil {
			return nil, "", invalid("%v", err)
		}
		role = string(r)
	}
	if slices.Contains(grants, "client_credentials") && role == "" {
		return nil, "", invalid("the client_credentials grant needs --role: the role its tokens carry")
	}
	secret := in.Secret
	if secret == "" {
		if secret, err = oauth.GenerateSecret(); err != nil {
			return nil, "", err
		}
	} else if err := oauth.ValidateSuppliedSecret(secret); err != nil {
		return nil, "", invalid("%v", err)
	}
	hash, err := s.Secrets.Hash(ctx, []byte(secret))
	if err != nil {
		return nil, "", err
	}
	c := &storage.Client{
		ID: in.ID, TenantID: in.TenantID, SecretHash: hash,
		GrantTypes: strings.Join(grants, " "), Scopes: strings.Join(rbac.SortScopes(scopes), " "),
		Audiences: strings.Join(auds, " "), Role: role, Introspect: in.Introspect,
	}
	if err := s.Store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, "", fromStorage(err, "tenant")
		}
		return nil, "", fromStorage(err, "client")
	}
	s.audit(ctx, actor, event, in.TenantID, in.ID, map[string]any{
		"grants": grants, "scopes": scopes, "audiences": auds, "role": role, "introspect": in.Introspect})
	return c, secret, nil
}

func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// newID returns a random UUID-shaped identifier (version 4).
func newID() string {
	var u [16]byte
	randRead(u[:])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
