package accounts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/claims"
	"github.com/epitwin/epitwin/pkg/rbac"
)

// PlatformTenant is the reserved tenant of the platform operators: an admin
// of this tenant may act in every tenant and alone manages tenants and keys.
const PlatformTenant = "platform"

// Audit event types of the admin API. Authorization refusals (403, and the
// 404 that hides another tenant) are recorded as EventAdminDenied with the
// intended action in the details; every other failure under the action's
// own type with outcome failure.
const (
	EventAdminUserCreated    = "admin.user.created"
	EventAdminUserUpdated    = "admin.user.updated"
	EventAdminUserDeleted    = "admin.user.deleted"
	EventAdminPasswordReset  = "admin.user.password_reset"
	EventAdminSessionsRevoke = "admin.sessions.revoked"
	EventAdminClientCreated  = "admin.client.created"
	EventAdminClientRotated  = "admin.client.secret_rotated"
	EventAdminClientDeleted  = "admin.client.deleted"
	EventAdminTenantCreated  = "admin.tenant.created"
	EventAdminKeyRotated     = "admin.key.rotated"
	EventAdminKeyRevoked     = "admin.key.revoked"
	EventAdminDenied         = "admin.denied"
)

// Paging limits of the admin listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Actor is the caller of an admin action, taken from its verified token.
type Actor struct {
	// Subject is the token's sub: a user id, or a client id for a
	// client-credentials token.
	Subject string
	// Username is the user's name when the subject is a user.
	Username string
	TenantID string
	ClientID string
	Role     rbac.Role
	Scopes   []string
	// gone is set when the token names a user that is disabled or deleted.
	gone bool
}

// CanManage reports whether the actor holds users:manage (role and scope).
func (a Actor) CanManage() bool { return !a.gone && rbac.Has(a.Role, a.Scopes, rbac.ManageUsers) }

// IsOperator reports whether the actor is a platform operator.
func (a Actor) IsOperator() bool { return a.TenantID == PlatformTenant && a.CanManage() }

// ActorFromToken builds the actor of a verified access token, looking up
// the user's name. A token whose user is disabled or deleted yields an
// actor that may do nothing.
func (s *Service) ActorFromToken(ctx context.Context, tok *claims.AccessToken) (Actor, error) {
	a := Actor{Subject: tok.Subject, TenantID: tok.TenantID, ClientID: tok.ClientID,
		Role: rbac.Role(tok.Role), Scopes: tok.Scopes()}
	if tok.Subject == "" {
		a.gone = true
		return a, nil
	}
	u, err := s.Store.GetUser(ctx, tok.Subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Only people administer: a client-credentials token (whose
		// subject is its client) may not, whatever role the client
		// carries, so an admin cannot leave behind a service account that
		// outlives them and escapes the last-admin rule.
		a.gone = true
	case err != nil:
		return a, err
	default:
		a.Username = u.Username
		a.gone = u.Disabled || u.TenantID != tok.TenantID
	}
	return a, nil
}

// ---- authorization and audit ----

// AuthorizeTenant checks that a may administer tenant: it must hold
// users:manage, and be the tenant's own admin or an operator. Another
// tenant, like a tenant that does not exist, is NotFound, so that tenant
// ids cannot be probed. Refusals are recorded as EventAdminDenied under
// the caller's own tenant; action names what was attempted.
func (s *Service) AuthorizeTenant(ctx context.Context, a Actor, tenant, action string) error {
	if !a.CanManage() {
		return s.deny(ctx, a, action, tenant, &Error{Kind: Forbidden, Msg: "the token does not grant " + string(rbac.ManageUsers)})
	}
	if tenant != a.TenantID {
		if !a.IsOperator() {
			return s.deny(ctx, a, action, tenant, &Error{Kind: NotFound, Msg: "tenant not found"})
		}
		if _, err := s.Store.GetTenant(ctx, tenant); err != nil {
			return s.deny(ctx, a, action, tenant, fromStorage(err, "tenant"))
		}
	}
	return nil
}

// AuthorizeOperator checks that a is a platform operator.
func (s *Service) AuthorizeOperator(ctx context.Context, a Actor, action string) error {
	if !a.CanManage() {
		return s.deny(ctx, a, action, "", &Error{Kind: Forbidden, Msg: "the token does not grant " + string(rbac.ManageUsers)})
	}
	if !a.IsOperator() {
		return s.deny(ctx, a, action, "", &Error{Kind: Forbidden, Msg: "only platform operators may do this"})
	}
	return nil
}

func (s *Service) deny(ctx context.Context, a Actor, action, target string, err error) error {
	d := map[string]any{"action": action, "reason": safeMessage(err)}
	if target != "" {
		d["target_tenant"] = target
	}
	s.append(ctx, a, EventAdminDenied, a.TenantID, target, d, storage.OutcomeFailure)
	return err
}

// Record appends the audit event of an admin action and returns err: a
// success when err is nil; when err is Forbidden an EventAdminDenied
// naming typ; otherwise a failure of typ with the error's safe message.
func (s *Service) Record(ctx context.Context, a Actor, typ, tenant, subject string, details map[string]any, err error) error {
	if err == nil {
		s.append(ctx, a, typ, tenant, subject, details, storage.OutcomeSuccess)
		return nil
	}
	d := map[string]any{}
	for k, v := range details {
		d[k] = v
	}
	d["error"] = safeMessage(err)
	if isKind(err, Forbidden) {
		d["action"] = typ
		typ = EventAdminDenied
	}
	s.append(ctx, a, typ, tenant, subject, d, storage.OutcomeFailure)
	return err
}

// record is Record for use inside a transaction, where a failing append
// must fail the change it records.
func (s *Service) recordTx(ctx context.Context, a Actor, typ, tenant, subject string, details map[string]any) error {
	return s.Store.AppendAudit(ctx, s.event(a, typ, tenant, subject, details, storage.OutcomeSuccess))
}

func (s *Service) append(ctx context.Context, a Actor, typ, tenant, subject string, details map[string]any, outcome string) {
	_ = s.Store.AppendAudit(ctx, s.event(a, typ, tenant, subject, details, outcome))
}

func (s *Service) event(a Actor, typ, tenant, subject string, details map[string]any, outcome string) *storage.AuditEvent {
	d := map[string]any{}
	for k, v := range details {
		d[k] = v
	}
	if a.Username != "" {
		d["actor_username"] = a.Username
	}
	if a.TenantID != tenant {
		d["actor_tenant"] = a.TenantID
	}
	b, _ := json.Marshal(d)
	return &storage.AuditEvent{Type: typ, TenantID: tenant, Actor: truncate(a.Subject, 200),
		Subject: truncate(subject, 200), ClientID: truncate(a.ClientID, 128), Outcome: outcome, Details: string(b)}
}

// change runs fn in one transaction and records its audit event: inside
// the transaction on success (the change and its record commit together),
// after the rollback on failure.
func (s *Service) change(ctx context.Context, a Actor, typ, tenant, subject string, fn func(ctx context.Context, details map[string]any) error) error {
	details := map[string]any{}
	err := s.Store.InTx(ctx, func(ctx context.Context) error {
		if err := fn(ctx, details); err != nil {
			return err
		}
		return s.recordTx(ctx, a, typ, tenant, subject, details)
	})
	if err != nil {
		return s.Record(ctx, a, typ, tenant, subject, details, err)
	}
	return nil
}

// safeMessage is what a caller (and the audit log) may see of an error.
func safeMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return "internal error"
}

func isKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

func forbidden(format string, a ...any) error {
	return &Error{Kind: Forbidden, Msg: fmt.Sprintf(format, a...)}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// inTenant guards every domain method: the actor acts in its own tenant
// unless it is an operator. The HTTP layer checked (and recorded) this
// already through AuthorizeTenant.
func inTenant(a Actor, tenant string) error {
	if !a.CanManage() {
		return forbidden("the token does not grant %s", rbac.ManageUsers)
	}
	if tenant != a.TenantID && !a.IsOperator() {
		return &Error{Kind: NotFound, Msg: "tenant not found"}
	}
	return nil
}

// checkRoleCeiling refuses to grant (or to act on) a role above the actor's.
func checkRoleCeiling(a Actor, r rbac.Role, what string) error {
	if !a.Role.AtLeast(r) {
		return forbidden("%s: role %s is above your own role %s", what, r, a.Role)
	}
	return nil
}

// checkScopeCeiling refuses to give a client scopes the actor's role
// cannot use.
func checkScopeCeiling(a Actor, scopes []string) error {
	allowed := rbac.RoleScopes(a.Role)
	for _, sc := range scopes {
		if !slices.Contains(allowed, sc) {
			return forbidden("scopes: your role %s cannot use scope %s", a.Role, sc)
		}
	}
	return nil
}

// ---- paging ----

// Page asks for one page of a listing.
type Page struct {
	// Limit is the page size: 0 means DefaultPageSize, at most MaxPageSize.
	Limit int
	// Cursor is the NextCursor of the previous page ("" for the first).
	Cursor string
}

func (p Page) limit() (int, error) {
	switch {
	case p.Limit == 0:
		return DefaultPageSize, nil
	case p.Limit < 0 || p.Limit > MaxPageSize:
		return 0, invalid("limit must be between 1 and %d", MaxPageSize)
	}
	return p.Limit, nil
}

const userCursorPrefix = "u1:"

func encodeUserCursor(username string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(userCursorPrefix + username))
}

func decodeUserCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), userCursorPrefix) || len(b) == len(userCursorPrefix) {
		return "", invalid("cursor is invalid")
	}
	return strings.TrimPrefix(string(b), userCursorPrefix), nil
}

// ---- tenants ----

// CreateTenantAs creates a tenant; operators only.
func (s *Service) CreateTenantAs(ctx context.Context, a Actor, id, name string) (*storage.Tenant, error) {
	if !a.IsOperator() {
		return nil, s.Record(ctx, a, EventAdminTenantCreated, a.TenantID, id, nil, forbidden("only platform operators may create tenants"))
	}
	t, err := s.createTenant(ctx, a.Subject, id, name, "")
	if err != nil {
		return nil, s.Record(ctx, a, EventAdminTenantCreated, a.TenantID, id, map[string]any{"name": name}, err)
	}
	s.Record(ctx, a, EventAdminTenantCreated, id, id, map[string]any{"name": t.Name}, nil)
	return t, nil
}

// ListTenants returns every tenant; operators only.
func (s *Service) ListTenants(ctx context.Context, a Actor) ([]storage.Tenant, error) {
	if !a.IsOperator() {
		return nil, forbidden("only platform operators may list tenants")
	}
	return s.Store.ListTenants(ctx)
}

// ---- users ----

// CreateUserAs creates a user in tenant on behalf of an admin, who may not
// grant a role above their own.
func (s *Service) CreateUserAs(ctx context.Context, a Actor, in CreateUserInput) (*storage.User, error) {
	details := map[string]any{"role": in.Role}
	fail := func(err error) (*storage.User, error) {
		return nil, s.Record(ctx, a, EventAdminUserCreated, in.TenantID, in.Username, details, err)
	}
	if err := inTenant(a, in.TenantID); err != nil {
		return fail(err)
	}
	role, err := rbac.ParseRole(in.Role)
	if err != nil {
		return fail(invalid("role: %v", err))
	}
	if err := checkRoleCeiling(a, role, "role"); err != nil {
		return fail(err)
	}
	u, err := s.createUser(ctx, a.Subject, in, "")
	if err != nil {
		return fail(err)
	}
	details["user_id"] = u.ID
	s.Record(ctx, a, EventAdminUserCreated, in.TenantID, u.Username, details, nil)
	return u, nil
}

// UserFilter narrows a user listing; zero fields do not filter.
type UserFilter struct {
	Role     string
	Disabled *bool
}

// UserPage is one page of users.
type UserPage struct {
	Items      []storage.User
	NextCursor string
}

// ListUsers returns one page of a tenant's users, ordered by username.
func (s *Service) ListUsers(ctx context.Context, a Actor, tenant string, f UserFilter, p Page) (UserPage, error) {
	if err := inTenant(a, tenant); err != nil {
		return UserPage{}, err
	}
	limit, err := p.limit()
	if err != nil {
		return UserPage{}, err
	}
	if f.Role != "" {
		if _, err := rbac.ParseRole(f.Role); err != nil {
			return UserPage{}, invalid("role: %v", err)
		}
	}
	after, err := decodeUserCursor(p.Cursor)
	if err != nil {
		return UserPage{}, err
	}
	us, err := s.Store.ListUsersPage(ctx, storage.UserFilter{TenantID: tenant, Role: f.Role, Disabled: f.Disabled,
		AfterUsername: after, Limit: limit + 1})
	if err != nil {
		return UserPage{}, err
	}
	page := UserPage{Items: us}
	if len(us) > limit {
		page.Items = us[:limit]
		page.NextCursor = encodeUserCursor(us[limit-1].Username)
	}
	return page, nil
}

// GetUser returns a tenant's user by username.
func (s *Service) GetUser(ctx context.Context, a Actor, tenant, username string) (*storage.User, error) {
	if err := inTenant(a, tenant); err != nil {
		return nil, err
	}
	u, err := s.Store.GetUserByUsername(ctx, tenant, username)
	return u, fromStorage(err, "user")
}

// UpdateUserInput changes a user; nil fields stay as they are.
type UpdateUserInput struct {
	Role     *string
	Disabled *bool
}

// UpdateUser changes a user's role and/or disabled flag. A role change or
// disabling revokes all the user's tokens (the new role applies from the
// next login). Demoting or disabling the tenant's last enabled admin is a
// Conflict; the check and the change run in one transaction.
func (s *Service) UpdateUser(ctx context.Context, a Actor, tenant, username string, in UpdateUserInput) (*storage.User, error) {
	var out *storage.User
	err := s.change(ctx, a, EventAdminUserUpdated, tenant, username, func(ctx context.Context, d map[string]any) error {
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		if in.Role == nil && in.Disabled == nil {
			return invalid("nothing to update: set role and/or disabled")
		}
		u, err := s.Store.GetUserByUsername(ctx, tenant, username)
		if err != nil {
			return fromStorage(err, "user")
		}
		d["user_id"] = u.ID
		if err := checkRoleCeiling(a, rbac.Role(u.Role), "user"); err != nil {
			return err
		}
		role, disabled := rbac.Role(u.Role), u.Disabled
		if in.Role != nil {
			if role, err = rbac.ParseRole(*in.Role); err != nil {
				return invalid("role: %v", err)
			}
			if err := checkRoleCeiling(a, role, "role"); err != nil {
				return err
			}
		}
		if in.Disabled != nil {
			disabled = *in.Disabled
		}
		if role != rbac.Role(u.Role) {
			d["role"] = map[string]string{"from": u.Role, "to": string(role)}
		}
		if disabled != u.Disabled {
			d["disabled"] = disabled
		}
		wasAdmin := rbac.Role(u.Role) == rbac.Admin && !u.Disabled
		if wasAdmin && (role != rbac.Admin || disabled) {
			if err := s.requireAnotherAdmin(ctx, tenant); err != nil {
				return err
			}
		}
		revoke := role != rbac.Role(u.Role) || (disabled && !u.Disabled)
		u.Role, u.Disabled = string(role), disabled
		if err := s.Store.UpdateUser(ctx, u); err != nil {
			return fromStorage(err, "user")
		}
		if revoke {
			n, err := s.Store.RevokeUserTokens(ctx, u.ID)
			if err != nil {
				return err
			}
			d["sessions_revoked"] = n
		}
		out = u
		return nil
	})
	return out, err
}

// requireAnotherAdmin is the last-admin guard; run it inside the
// transaction that demotes, disables or deletes an enabled admin.
func (s *Service) requireAnotherAdmin(ctx context.Context, tenant string) error {
	n, err := s.Store.CountEnabledAdmins(ctx, tenant)
	if err != nil {
		return fromStorage(err, "tenant")
	}
	if n <= 1 {
		return &Error{Kind: Conflict, Msg: "this is the tenant's last enabled admin: promote another admin first"}
	}
	return nil
}

// ResetPassword sets a new password (checked against the password policy)
// and revokes all the user's tokens.
func (s *Service) ResetPassword(ctx context.Context, a Actor, tenant, username, password string) error {
	if err := inTenant(a, tenant); err != nil {
		return s.Record(ctx, a, EventAdminPasswordReset, tenant, username, nil, err)
	}
	// Hash outside the transaction: bcrypt is slow and SQLite's write
	// lock is held from BEGIN.
	hash, err := s.hashPassword(password, username)
	if err != nil {
		return s.Record(ctx, a, EventAdminPasswordReset, tenant, username, nil, err)
	}
	return s.change(ctx, a, EventAdminPasswordReset, tenant, username, func(ctx context.Context, d map[string]any) error {
		u, err := s.Store.GetUserByUsername(ctx, tenant, username)
		if err != nil {
			return fromStorage(err, "user")
		}
		d["user_id"] = u.ID
		if err := checkRoleCeiling(a, rbac.Role(u.Role), "user"); err != nil {
			return err
		}
		u.PasswordHash = hash
		u.PasswordChangedAt = s.now()
		if err := s.Store.UpdateUser(ctx, u); err != nil {
			return fromStorage(err, "user")
		}
		n, err := s.Store.RevokeUserTokens(ctx, u.ID)
		d["sessions_revoked"] = n
		return err
	})
}

// DeleteUser deletes a user and revokes all their tokens; deleting the
// tenant's last enabled admin is a Conflict.
func (s *Service) DeleteUser(ctx context.Context, a Actor, tenant, username string) error {
	return s.change(ctx, a, EventAdminUserDeleted, tenant, username, func(ctx context.Context, d map[string]any) error {
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		u, err := s.Store.GetUserByUsername(ctx, tenant, username)
		if err != nil {
			return fromStorage(err, "user")
		}
		d["user_id"] = u.ID
		if err := checkRoleCeiling(a, rbac.Role(u.Role), "user"); err != nil {
			return err
		}
		if rbac.Role(u.Role) == rbac.Admin && !u.Disabled {
			if err := s.requireAnotherAdmin(ctx, tenant); err != nil {
				return err
			}
		}
		n, err := s.Store.RevokeUserTokens(ctx, u.ID)
		if err != nil {
			return err
		}
		d["sessions_revoked"] = n
		return fromStorage(s.Store.DeleteUser(ctx, u.ID), "user")
	})
}

// ---- sessions ----

// ListSessions returns the user's active refresh families.
func (s *Service) ListSessions(ctx context.Context, a Actor, tenant, username string) ([]storage.RefreshFamily, error) {
	if err := inTenant(a, tenant); err != nil {
		return nil, err
	}
	u, err := s.Store.GetUserByUsername(ctx, tenant, username)
	if err != nil {
		return nil, fromStorage(err, "user")
	}
	return s.Store.ListRefreshFamilies(ctx, u.ID)
}

// RevokeSession revokes one refresh family of the user (its refresh and
// access tokens); NotFound unless it is an active family of that user.
func (s *Service) RevokeSession(ctx context.Context, a Actor, tenant, username, id string) error {
	return s.change(ctx, a, EventAdminSessionsRevoke, tenant, username, func(ctx context.Context, d map[string]any) error {
		d["session"] = id
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		u, err := s.Store.GetUserByUsername(ctx, tenant, username)
		if err != nil {
			return fromStorage(err, "user")
		}
		if err := checkRoleCeiling(a, rbac.Role(u.Role), "user"); err != nil {
			return err
		}
		if _, err := s.Store.GetRefreshFamily(ctx, u.ID, id); err != nil {
			return fromStorage(err, "session")
		}
		return s.Store.RevokeFamily(ctx, id)
	})
}

// RevokeAllSessions signs the user out everywhere: every refresh family
// and access token is revoked. It returns how many families were active.
func (s *Service) RevokeAllSessions(ctx context.Context, a Actor, tenant, username string) (int64, error) {
	var n int64
	err := s.change(ctx, a, EventAdminSessionsRevoke, tenant, username, func(ctx context.Context, d map[string]any) error {
		d["session"] = "all"
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		u, err := s.Store.GetUserByUsername(ctx, tenant, username)
		if err != nil {
			return fromStorage(err, "user")
		}
		if err := checkRoleCeiling(a, rbac.Role(u.Role), "user"); err != nil {
			return err
		}
		n, err = s.Store.RevokeUserTokens(ctx, u.ID)
		d["sessions_revoked"] = n
		return err
	})
	return n, err
}

// ---- clients ----

// CreateClientAs creates a client in in.TenantID on behalf of an admin,
// who may not give it a role above their own or scopes their role cannot
// use; only operators may create resource servers (Introspect).
func (s *Service) CreateClientAs(ctx context.Context, a Actor, in CreateClientInput) (*storage.Client, string, error) {
	details := map[string]any{"grants": in.Grants, "scopes": in.Scopes, "audiences": in.Audiences, "role": in.Role, "introspect": in.Introspect}
	fail := func(err error) (*storage.Client, string, error) {
		return nil, "", s.Record(ctx, a, EventAdminClientCreated, in.TenantID, in.ID, details, err)
	}
	if err := inTenant(a, in.TenantID); err != nil {
		return fail(err)
	}
	if in.Secret != "" {
		return fail(invalid("client_secret: secrets are generated by the server"))
	}
	if in.Introspect && !a.IsOperator() {
		return fail(forbidden("only platform operators may create resource-server (introspect) clients"))
	}
	if in.Role != "" {
		r, err := rbac.ParseRole(in.Role)
		if err != nil {
			return fail(invalid("role: %v", err))
		}
		if err := checkRoleCeiling(a, r, "role"); err != nil {
			return fail(err)
		}
	}
	scopes, err := rbac.ParseScopes(strings.Join(in.Scopes, " "))
	if err != nil {
		return fail(invalid("scopes: %v", err))
	}
	if err := checkScopeCeiling(a, scopes); err != nil {
		return fail(err)
	}
	c, secret, err := s.createClient(ctx, a.Subject, in, "")
	if err != nil {
		return fail(err)
	}
	s.Record(ctx, a, EventAdminClientCreated, in.TenantID, c.ID, map[string]any{"grants": c.GetGrantTypes(),
		"scopes": c.GetScopes(), "audiences": c.GetAudience(), "role": c.Role, "introspect": c.Introspect}, nil)
	return c, secret, nil
}

// ListClients returns a tenant's clients ordered by id.
func (s *Service) ListClients(ctx context.Context, a Actor, tenant string) ([]storage.Client, error) {
	if err := inTenant(a, tenant); err != nil {
		return nil, err
	}
	return s.Store.ListClients(ctx, tenant)
}

// tenantClient loads a client of tenant that a may manage.
func (s *Service) tenantClient(ctx context.Context, a Actor, tenant, id string) (*storage.Client, error) {
	c, err := s.Store.LookupClient(ctx, id)
	if err != nil {
		return nil, fromStorage(err, "client")
	}
	if c.TenantID != tenant {
		return nil, &Error{Kind: NotFound, Msg: "client not found"}
	}
	if c.Introspect && !a.IsOperator() {
		return nil, forbidden("only platform operators may manage resource-server (introspect) clients")
	}
	if c.Role != "" {
		if err := checkRoleCeiling(a, rbac.Role(c.Role), "client"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// RotateClientSecret gives a client a new secret and returns it (shown
// this once). The previous secret keeps working for overlap, then stops; a
// secret still in its overlap from an earlier rotation stops at once.
func (s *Service) RotateClientSecret(ctx context.Context, a Actor, tenant, id string, overlap time.Duration) (*storage.Client, string, error) {
	if s.Secrets == nil {
		return nil, "", errors.New("accounts: no secret hasher configured")
	}
	secret, err := oauth.GenerateSecret()
	if err != nil {
		return nil, "", err
	}
	hash, err := s.Secrets.Hash(ctx, []byte(secret))
	if err != nil {
		return nil, "", err
	}
	var out *storage.Client
	err = s.change(ctx, a, EventAdminClientRotated, tenant, id, func(ctx context.Context, d map[string]any) error {
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		c, err := s.tenantClient(ctx, a, tenant, id)
		if err != nil {
			return err
		}
		var rotated []byte
		var until *time.Time
		if overlap > 0 {
			t := s.now().Add(overlap).UTC()
			rotated, until = c.SecretHash, &t
			d["previous_secret_valid_until"] = t.Format(time.RFC3339)
		}
		if err := s.Store.SetClientSecret(ctx, c.ID, hash, rotated, until); err != nil {
			return fromStorage(err, "client")
		}
		out, err = s.Store.LookupClient(ctx, c.ID)
		return err
	})
	// Drop the cached record again now that the change is committed, so
	// that no reader re-cached the old secret in between.
	s.Store.InvalidateClient(id)
	if err != nil {
		return nil, "", err
	}
	return out, secret, nil
}

// DeleteClient deletes a client and revokes every token issued to it.
func (s *Service) DeleteClient(ctx context.Context, a Actor, tenant, id string) error {
	defer s.Store.InvalidateClient(id) // again, after the commit
	return s.change(ctx, a, EventAdminClientDeleted, tenant, id, func(ctx context.Context, d map[string]any) error {
		if err := inTenant(a, tenant); err != nil {
			return err
		}
		c, err := s.tenantClient(ctx, a, tenant, id)
		if err != nil {
			return err
		}
		return fromStorage(s.Store.DeleteClient(ctx, c.ID), "client")
	})
}

// ---- audit ----

// AuditFilter narrows an audit listing; zero fields do not filter.
type AuditFilter struct {
	Actor   string
	Subject string
	Type    string
	Since   time.Time
	Until   time.Time
}

// AuditPage is one page of audit events, oldest first.
type AuditPage struct {
	Items      []storage.AuditEvent
	NextCursor string
}

// ListAudit returns one page of a tenant's audit events. The cursor is the
// id of the last event of the previous page.
func (s *Service) ListAudit(ctx context.Context, a Actor, tenant string, f AuditFilter, p Page) (AuditPage, error) {
	if err := inTenant(a, tenant); err != nil {
		return AuditPage{}, err
	}
	limit, err := p.limit()
	if err != nil {
		return AuditPage{}, err
	}
	var after int64
	if p.Cursor != "" {
		if after, err = strconv.ParseInt(p.Cursor, 10, 64); err != nil || after < 0 {
			return AuditPage{}, invalid("cursor is invalid")
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return AuditPage{}, invalid("since must be before until")
	}
	es, err := s.Store.ListAudit(ctx, storage.AuditFilter{TenantID: tenant, Actor: f.Actor, Subject: f.Subject,
		Type: f.Type, Since: f.Since, Until: f.Until, AfterID: after, Limit: limit + 1})
	if err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{Items: es}
	if len(es) > limit {
		page.Items = es[:limit]
		page.NextCursor = strconv.FormatInt(es[limit-1].ID, 10)
	}
	return page, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}
