// Package conformance is the behavioural test suite every backend of
// authserver's storage must pass (after Dex's storage/conformance). Backends
// call RunTests from their own _test.go with a constructor of fresh stores.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// RunTests runs the suite. newStore must return a new, migrated, empty store
// that no other test uses; it is called once per subtest, and subtests run
// in parallel.
func RunTests(t *testing.T, newStore func(t *testing.T) *storage.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *storage.Store)
	}{
		{"tenants", testTenants},
		{"users", testUsers},
		{"clients", testClients},
		{"access", testAccessTokens},
		{"refresh", testRefreshTokens},
		{"rotate-race", testRotateRace},
		{"revoke", testRevoke},
		{"tx", testTransactions},
		{"authorize", testAuthorizeCodes},
		{"audit", testAudit},
		{"audit-append-only", testAuditAppendOnly},
		{"expired", testDeleteExpired},
		{"migrate", testMigrate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// ---- helpers ----

func randID(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want errors.Is(err, %v)", what, err, target)
	}
}

// fixture is one tenant with a client and a user.
type fixture struct {
	s      *storage.Store
	tenant *storage.Tenant
	client *storage.Client
	user   *storage.User
}

func newFixture(t *testing.T, s *storage.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{s: s}
	f.tenant = &storage.Tenant{ID: randID("t-"), Name: "Health Dept"}
	must(t, s.CreateTenant(ctx, f.tenant), "create tenant")
	f.client = &storage.Client{
		ID: randID("c-"), TenantID: f.tenant.ID, SecretHash: []byte("hash-1"),
		GrantTypes: "password refresh_token", Scopes: "openid offline sim:read",
		Audiences: "simapi", Role: "",
	}
	must(t, s.CreateClient(ctx, f.client), "create client")
	f.user = f.newUser(t, "alice")
	return f
}

func (f *fixture) newUser(t *testing.T, username string) *storage.User {
	t.Helper()
	u := &storage.User{
		ID: randID("u-"), TenantID: f.tenant.ID, Username: username,
		PasswordHash: "$2a$10$x", Role: "analyst",
	}
	must(t, f.s.CreateUser(context.Background(), u), "create user "+username)
	return u
}

// request builds a password-grant request for u as fosite's handlers do.
func (f *fixture) request(u *storage.User, requestID string, accessExp, refreshExp time.Time) *fosite.Request {
	now := time.Now().UTC()
	exp := map[fosite.TokenType]time.Time{}
	if !accessExp.IsZero() {
		exp[fosite.AccessToken] = accessExp
	}
	if !refreshExp.IsZero() {
		exp[fosite.RefreshToken] = refreshExp
	}
	return &fosite.Request{
		ID:                requestID,
		RequestedAt:       now.Add(-time.Second),
		Client:            f.client,
		RequestedScope:    fosite.Arguments{"openid", "sim:read"},
		GrantedScope:      fosite.Arguments{"openid", "sim:read"},
		RequestedAudience: fosite.Arguments{"simapi"},
		GrantedAudience:   fosite.Arguments{"simapi"},
		Form:              url.Values{"grant_type": {"password"}},
		Session: &storage.Session{
			Subject: u.ID, Username: u.Username, UserID: u.ID, TenantID: u.TenantID,
			Role: u.Role, AuthTime: now.Add(-time.Minute), AccessTokenID: randID("jti-"),
			ExpiresAt: exp,
		},
	}
}

// defaultRequest is f.request for f.user with expiries an hour and a day out.
func (f *fixture) defaultRequest() *fosite.Request {
	now := time.Now().UTC()
	return f.request(f.user, randID("req-"), now.Add(time.Hour), now.Add(24*time.Hour))
}

// checkRequest compares a stored request with the one it was created from.
func checkRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("request is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	if !got.GetRequestedAt().Equal(want.RequestedAt) {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), want.RequestedAt)
	}
	if got.GetClient() == nil || got.GetClient().GetID() != want.Client.GetID() {
		t.Errorf("client = %v, want %q", got.GetClient(), want.Client.GetID())
	}
	if !slices.Equal(got.GetGrantedScopes(), want.GrantedScope) {
		t.Errorf("granted scopes = %v, want %v", got.GetGrantedScopes(), want.GrantedScope)
	}
	if !slices.Equal(got.GetGrantedAudience(), want.GrantedAudience) {
		t.Errorf("granted audience = %v, want %v", got.GetGrantedAudience(), want.GrantedAudience)
	}
	if !slices.Equal(got.GetRequestedScopes(), want.RequestedScope) {
		t.Errorf("requested scopes = %v, want %v", got.GetRequestedScopes(), want.RequestedScope)
	}
	if g, w := got.GetRequestForm().Get("grant_type"), want.Form.Get("grant_type"); g != w {
		t.Errorf("grant_type = %q, want %q", g, w)
	}
	gs, ok := got.GetSession().(*storage.Session)
	if !ok {
		t.Fatalf("session is %T, want *storage.Session", got.GetSession())
	}
	ws := want.Session.(*storage.Session)
	if gs.Subject != ws.Subject || gs.Username != ws.Username || gs.UserID != ws.UserID ||
		gs.TenantID != ws.TenantID || gs.Role != ws.Role || gs.AccessTokenID != ws.AccessTokenID {
		t.Errorf("session = %+v, want %+v", gs, ws)
	}
	if !gs.AuthTime.Equal(ws.AuthTime) {
		t.Errorf("session AuthTime = %v, want %v", gs.AuthTime, ws.AuthTime)
	}
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken} {
		if !gs.GetExpiresAt(tt).Equal(ws.GetExpiresAt(tt)) {
			t.Errorf("session %s expiry = %v, want %v", tt, gs.GetExpiresAt(tt), ws.GetExpiresAt(tt))
		}
	}
}

// rawRows returns every row of table, each column rendered as a string.
func rawRows(t *testing.T, s *storage.Store, table string) []map[string]string {
	t.Helper()
	var rows []map[string]any
	must(t, s.DB().Gorm.Table(table).Find(&rows).Error, "select "+table)
	out := make([]map[string]string, 0, len(rows))
	for _, r := range rows {
		m := make(map[string]string, len(r))
		for k, v := range r {
			switch v := v.(type) {
			case []byte:
				m[k] = string(v)
			case nil:
				m[k] = ""
			default:
				m[k] = fmt.Sprint(v)
			}
		}
		out = append(out, m)
	}
	return out
}

// assertNotStored fails if any column of any row of table contains secret.
func assertNotStored(t *testing.T, s *storage.Store, table string, secrets ...string) {
	t.Helper()
	for _, row := range rawRows(t, s, table) {
		for col, v := range row {
			for _, sec := range secrets {
				if strings.Contains(v, sec) {
					t.Errorf("%s.%s contains the raw token signature %q", table, col, sec)
				}
			}
		}
	}
}

func countRows(t *testing.T, s *storage.Store, table, where string, args ...any) int64 {
	t.Helper()
	var n int64
	q := s.DB().Gorm.Table(table)
	if where != "" {
		q = q.Where(where, args...)
	}
	must(t, q.Count(&n).Error, "count "+table)
	return n
}

// accessState returns nil if the access token is active, else the error.
func accessState(t *testing.T, s *storage.Store, sig string) error {
	t.Helper()
	req, err := s.GetAccessTokenSession(context.Background(), sig, &storage.Session{})
	if errors.Is(err, fosite.ErrInactiveToken) && req == nil {
		t.Errorf("GetAccessTokenSession: inactive token returned no request")
	}
	return err
}

// refreshState returns nil if the refresh token is active, else the error.
func refreshState(t *testing.T, s *storage.Store, sig string) error {
	t.Helper()
	req, err := s.GetRefreshTokenSession(context.Background(), sig, &storage.Session{})
	if errors.Is(err, fosite.ErrInactiveToken) && req == nil {
		t.Errorf("GetRefreshTokenSession: inactive token returned no request")
	}
	return err
}

func wantActive(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: want active, got %v", what, err)
	}
}

func wantInactive(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("%s: want fosite.ErrInactiveToken, got %v", what, err)
	}
}

// issue stores an access token and a refresh token for req, as the
// password grant does, and returns their signatures.
func issue(t *testing.T, s *storage.Store, req *fosite.Request) (access, refresh string) {
	t.Helper()
	ctx := context.Background()
	access, refresh = randID("at-sig-"), randID("rt-sig-")
	must(t, s.CreateAccessTokenSession(ctx, access, req), "create access token")
	must(t, s.CreateRefreshTokenSession(ctx, refresh, access, req), "create refresh token")
	return access, refresh
}

// ---- tenants ----

func testTenants(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	for _, id := range []string{"b-tenant", "c-tenant", "a-tenant"} {
		must(t, s.CreateTenant(ctx, &storage.Tenant{ID: id, Name: "Tenant " + id}), "create "+id)
	}
	got, err := s.GetTenant(ctx, "b-tenant")
	must(t, err, "get")
	if got.ID != "b-tenant" || got.Name != "Tenant b-tenant" || got.CreatedAt.IsZero() {
		t.Errorf("GetTenant = %+v", got)
	}

	err = s.CreateTenant(ctx, &storage.Tenant{ID: "b-tenant", Name: "again"})
	wantErr(t, err, storage.ErrConflict, "duplicate tenant")

	_, err = s.GetTenant(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound, "unknown tenant")

	list, err := s.ListTenants(ctx)
	must(t, err, "list")
	var ids []string
	for _, tn := range list {
		ids = append(ids, tn.ID)
	}
	if want := []string{"a-tenant", "b-tenant", "c-tenant"}; !slices.Equal(ids, want) {
		t.Errorf("ListTenants = %v, want %v", ids, want)
	}
	if got, _ := s.GetTenant(ctx, "b-tenant"); got == nil || got.Name != "Tenant b-tenant" {
		t.Errorf("duplicate create changed the tenant: %+v", got)
	}
}

// ---- users ----

func testUsers(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	for _, id := range []string{"ta", "tb"} {
		must(t, s.CreateTenant(ctx, &storage.Tenant{ID: id, Name: id}), "create tenant")
	}
	newUser := func(id, tenant, username string) *storage.User {
		return &storage.User{ID: id, TenantID: tenant, Username: username, PasswordHash: "h-" + id, Role: "viewer"}
	}

	err := s.CreateUser(ctx, newUser("u0", "missing", "alice"))
	wantErr(t, err, storage.ErrNotFound, "user in unknown tenant")

	ua := newUser("u1", "ta", "alice")
	must(t, s.CreateUser(ctx, ua), "create alice@ta")
	if ua.CreatedAt.IsZero() || ua.UpdatedAt.IsZero() || ua.PasswordChangedAt.IsZero() {
		t.Errorf("CreateUser did not fill timestamps: %+v", ua)
	}
	must(t, s.CreateUser(ctx, newUser("u2", "ta", "bob")), "create bob@ta")
	must(t, s.CreateUser(ctx, newUser("u3", "tb", "alice")), "create alice@tb (same username, other tenant)")
	err = s.CreateUser(ctx, newUser("u4", "ta", "alice"))
	wantErr(t, err, storage.ErrConflict, "duplicate username in tenant")
	err = s.CreateUser(ctx, newUser("u1", "tb", "carol"))
	wantErr(t, err, storage.ErrConflict, "duplicate user id")

	lookups := []struct {
		tenant, username, wantID string
	}{
		{"ta", "alice", "u1"},
		{"tb", "alice", "u3"},
		{"ta", "bob", "u2"},
		{"tb", "bob", ""},
		{"tc", "alice", ""},
		{"ta", "ALICE", ""},
	}
	for _, l := range lookups {
		u, err := s.GetUserByUsername(ctx, l.tenant, l.username)
		if l.wantID == "" {
			wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetUserByUsername(%s, %s)", l.tenant, l.username))
			continue
		}
		if err != nil || u.ID != l.wantID {
			t.Errorf("GetUserByUsername(%s, %s) = %v, %v; want %s", l.tenant, l.username, u, err, l.wantID)
		}
	}

	list, err := s.ListUsers(ctx, "ta")
	must(t, err, "list users")
	var names []string
	for _, u := range list {
		names = append(names, u.Username)
	}
	if want := []string{"alice", "bob"}; !slices.Equal(names, want) {
		t.Errorf("ListUsers(ta) = %v, want %v", names, want)
	}

	changed := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	ua.Role, ua.Disabled, ua.PasswordHash, ua.PasswordChangedAt = "admin", true, "h-new", changed
	must(t, s.UpdateUser(ctx, ua), "update")
	got, err := s.GetUser(ctx, "u1")
	must(t, err, "get after update")
	if got.Role != "admin" || !got.Disabled || got.PasswordHash != "h-new" || !got.PasswordChangedAt.Equal(changed) ||
		got.Username != "alice" || got.TenantID != "ta" {
		t.Errorf("after UpdateUser: %+v", got)
	}
	if other, _ := s.GetUser(ctx, "u3"); other == nil || other.Role != "viewer" || other.Disabled {
		t.Errorf("UpdateUser touched another user: %+v", other)
	}

	err = s.UpdateUser(ctx, newUser("nobody", "ta", "nobody"))
	wantErr(t, err, storage.ErrNotFound, "update unknown user")
	_, err = s.GetUser(ctx, "nobody")
	wantErr(t, err, storage.ErrNotFound, "get unknown user")
}

// ---- clients ----

func testClients(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	must(t, s.CreateTenant(ctx, &storage.Tenant{ID: "ta", Name: "A"}), "create tenant")
	now := time.Now().UTC()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	clients := []*storage.Client{
		{ID: "web", TenantID: "ta", SecretHash: []byte("cur"), GrantTypes: "password  refresh_token",
			Scopes: "openid offline sim:read", Audiences: "simapi  other", Role: "", Introspect: true},
		{ID: "svc", TenantID: "ta", SecretHash: []byte("cur2"), GrantTypes: "client_credentials",
			Scopes: "sim:read", Audiences: "", Role: "service"},
		{ID: "rot-open", TenantID: "ta", SecretHash: []byte("new"), RotatedSecretHash: []byte("old"),
			RotatedSecretExpiresAt: &future, GrantTypes: "client_credentials", Scopes: "", Audiences: ""},
		{ID: "rot-over", TenantID: "ta", SecretHash: []byte("new"), RotatedSecretHash: []byte("old"),
			RotatedSecretExpiresAt: &past, GrantTypes: "client_credentials", Scopes: "", Audiences: ""},
		{ID: "rot-noexp", TenantID: "ta", SecretHash: []byte("new"), RotatedSecretHash: []byte("old"),
			GrantTypes: "client_credentials", Scopes: "", Audiences: ""},
	}
	for _, c := range clients {
		must(t, s.CreateClient(ctx, c), "create client "+c.ID)
	}
	err := s.CreateClient(ctx, &storage.Client{ID: "x", TenantID: "missing", SecretHash: []byte("h")})
	wantErr(t, err, storage.ErrNotFound, "client in unknown tenant")
	err = s.CreateClient(ctx, &storage.Client{ID: "web", TenantID: "ta", SecretHash: []byte("h")})
	wantErr(t, err, storage.ErrConflict, "duplicate client")

	rec, err := s.LookupClient(ctx, "web")
	must(t, err, "lookup")
	if rec.TenantID != "ta" || string(rec.SecretHash) != "cur" || !rec.Introspect || rec.CreatedAt.IsZero() {
		t.Errorf("LookupClient = %+v", rec)
	}
	_, err = s.LookupClient(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound, "lookup unknown")

	list, err := s.ListClients(ctx, "ta")
	must(t, err, "list clients")
	if len(list) != len(clients) || list[0].ID != "rot-noexp" {
		t.Errorf("ListClients: %d clients, first %q", len(list), list[0].ID)
	}

	fc, err := s.GetClient(ctx, "web")
	must(t, err, "GetClient")
	if fc.GetID() != "web" || string(fc.GetHashedSecret()) != "cur" || fc.IsPublic() {
		t.Errorf("GetClient: id %q secret %q public %v", fc.GetID(), fc.GetHashedSecret(), fc.IsPublic())
	}
	lists := []struct {
		name      string
		got, want fosite.Arguments
	}{
		{"grant types", fc.GetGrantTypes(), fosite.Arguments{"password", "refresh_token"}},
		{"scopes", fc.GetScopes(), fosite.Arguments{"openid", "offline", "sim:read"}},
		{"audience", fc.GetAudience(), fosite.Arguments{"simapi", "other"}},
	}
	for _, l := range lists {
		if !slices.Equal(l.got, l.want) {
			t.Errorf("%s = %q, want %q", l.name, l.got, l.want)
		}
	}
	if svc, err := s.GetClient(ctx, "svc"); err != nil || len(svc.GetAudience()) != 0 {
		t.Errorf("GetClient(svc) audience = %v, %v; want empty", svc, err)
	}

	for _, id := range []string{"nope", ""} {
		c, err := s.GetClient(ctx, id)
		if !errors.Is(err, fosite.ErrNotFound) || c != nil {
			t.Errorf("GetClient(%q) = %v, %v; want nil, fosite.ErrNotFound", id, c, err)
		}
	}

	rotations := []struct {
		id   string
		want [][]byte
	}{
		{"web", nil},
		{"rot-open", [][]byte{[]byte("old")}},
		{"rot-over", nil},
		{"rot-noexp", nil},
	}
	for _, r := range rotations {
		c, err := s.GetClient(ctx, r.id)
		must(t, err, "GetClient "+r.id)
		rc, ok := c.(fosite.ClientWithSecretRotation)
		if !ok {
			t.Fatalf("GetClient(%s) is %T, not a fosite.ClientWithSecretRotation", r.id, c)
		}
		if got := rc.GetRotatedHashes(); !slices.EqualFunc(got, r.want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("%s: GetRotatedHashes = %q, want %q", r.id, got, r.want)
		}
	}
}

// ---- access tokens ----

func testAccessTokens(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := storage.WithRequestInfo(context.Background(), storage.RequestInfo{IP: "198.51.100.9", RequestID: "http-req-1"})
	req := f.defaultRequest()
	sig := randID("at-raw-signature-")
	must(t, s.CreateAccessTokenSession(ctx, sig, req), "create")

	got, err := s.GetAccessTokenSession(ctx, sig, &storage.Session{})
	must(t, err, "get")
	checkRequest(t, got, req)

	// Stored under the hash of the signature, never the signature itself.
	if n := countRows(t, s, "access_tokens", "signature_hash = ?", storage.HashSignature(sig)); n != 1 {
		t.Errorf("rows keyed by HashSignature(sig) = %d, want 1", n)
	}
	assertNotStored(t, s, "access_tokens", sig)
	assertNotStored(t, s, "audit_events", sig)

	for _, sig := range []string{"", "unknown-signature"} {
		_, err := s.GetAccessTokenSession(ctx, sig, &storage.Session{})
		wantErr(t, err, fosite.ErrNotFound, fmt.Sprintf("GetAccessTokenSession(%q)", sig))
	}

	// The audit event is written with the token.
	evs, err := s.ListAudit(ctx, storage.AuditFilter{Type: storage.EventTokenIssued})
	must(t, err, "list audit")
	if len(evs) != 1 {
		t.Fatalf("token.issued events = %d, want 1", len(evs))
	}
	ev, sess := evs[0], req.Session.(*storage.Session)
	if ev.TenantID != f.tenant.ID || ev.Actor != sess.Subject || ev.Subject != sess.Username ||
		ev.ClientID != f.client.ID || ev.Outcome != storage.OutcomeSuccess ||
		ev.IP != "198.51.100.9" || ev.RequestID != "http-req-1" ||
		!strings.Contains(ev.Details, req.ID) || !strings.Contains(ev.Details, sess.AccessTokenID) {
		t.Errorf("token.issued event = %+v", ev)
	}

	// ... in the same transaction: a rolled-back issue leaves neither.
	txCtx, err := s.BeginTX(ctx)
	must(t, err, "begin")
	sig2 := randID("at-")
	must(t, s.CreateAccessTokenSession(txCtx, sig2, f.defaultRequest()), "create in tx")
	must(t, s.Rollback(txCtx), "rollback")
	_, err = s.GetAccessTokenSession(ctx, sig2, &storage.Session{})
	wantErr(t, err, fosite.ErrNotFound, "access token after rollback")
	if n := countRows(t, s, "audit_events", "type = ?", storage.EventTokenIssued); n != 1 {
		t.Errorf("token.issued events after rollback = %d, want 1", n)
	}

	// A duplicate signature fails without a second audit event.
	err = s.CreateAccessTokenSession(ctx, sig, f.defaultRequest())
	wantErr(t, err, fosite.ErrSerializationFailure, "duplicate access signature")
	if n := countRows(t, s, "audit_events", "type = ?", storage.EventTokenIssued); n != 1 {
		t.Errorf("token.issued events after failed insert = %d, want 1", n)
	}

	// Invalid input.
	noExp := f.request(f.user, randID("req-"), time.Time{}, time.Now().Add(time.Hour))
	if err := s.CreateAccessTokenSession(ctx, randID("at-"), noExp); err == nil {
		t.Error("CreateAccessTokenSession without an access expiry succeeded")
	}
	if err := s.CreateAccessTokenSession(ctx, "", f.defaultRequest()); err == nil {
		t.Error("CreateAccessTokenSession with an empty signature succeeded")
	}
	bad := f.defaultRequest()
	bad.Session = &fosite.DefaultSession{ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: time.Now().Add(time.Hour)}}
	if err := s.CreateAccessTokenSession(ctx, randID("at-"), bad); err == nil {
		t.Error("CreateAccessTokenSession with a foreign session type succeeded")
	}

	// Delete: the request comes back with ErrInactiveToken.
	must(t, s.DeleteAccessTokenSession(ctx, sig), "delete")
	got, err = s.GetAccessTokenSession(ctx, sig, &storage.Session{})
	wantErr(t, err, fosite.ErrInactiveToken, "get deleted")
	checkRequest(t, got, req)
	must(t, s.DeleteAccessTokenSession(ctx, "unknown"), "delete unknown access token")

	// RevokeAccessToken deactivates every token of the request family.
	fam := f.defaultRequest()
	a1, a2, other := randID("at-"), randID("at-"), randID("at-")
	must(t, s.CreateAccessTokenSession(ctx, a1, fam), "create a1")
	must(t, s.CreateAccessTokenSession(ctx, a2, fam), "create a2")
	must(t, s.CreateAccessTokenSession(ctx, other, f.defaultRequest()), "create other")
	must(t, s.RevokeAccessToken(ctx, fam.ID), "revoke family")
	wantInactive(t, accessState(t, s, a1), "a1")
	wantInactive(t, accessState(t, s, a2), "a2")
	wantActive(t, accessState(t, s, other), "other family")
	must(t, s.RevokeAccessToken(ctx, "no-such-request"), "revoke unknown request")
}

// ---- refresh tokens ----

func testRefreshTokens(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	req := f.defaultRequest()
	access, refresh := issue(t, s, req)

	got, err := s.GetRefreshTokenSession(ctx, refresh, &storage.Session{})
	must(t, err, "get")
	checkRequest(t, got, req)
	if n := countRows(t, s, "refresh_tokens", "signature_hash = ? AND access_signature_hash = ?",
		storage.HashSignature(refresh), storage.HashSignature(access)); n != 1 {
		t.Errorf("refresh rows keyed by the signature hashes = %d, want 1", n)
	}
	assertNotStored(t, s, "refresh_tokens", refresh, access)

	for _, sig := range []string{"", "unknown-signature"} {
		_, err := s.GetRefreshTokenSession(ctx, sig, &storage.Session{})
		wantErr(t, err, fosite.ErrNotFound, fmt.Sprintf("GetRefreshTokenSession(%q)", sig))
	}

	err = s.CreateRefreshTokenSession(ctx, refresh, access, f.defaultRequest())
	wantErr(t, err, fosite.ErrSerializationFailure, "duplicate refresh signature")
	noExp := f.request(f.user, randID("req-"), time.Now().Add(time.Hour), time.Time{})
	if err := s.CreateRefreshTokenSession(ctx, randID("rt-"), randID("at-"), noExp); err == nil {
		t.Error("CreateRefreshTokenSession without a refresh expiry succeeded")
	}

	// Rotation guards: wrong request id, unknown signature.
	wantErr(t, s.RotateRefreshToken(ctx, "other-request", refresh), fosite.ErrNotFound, "rotate with another request id")
	wantErr(t, s.RotateRefreshToken(ctx, req.ID, "unknown"), fosite.ErrNotFound, "rotate unknown")
	wantActive(t, refreshState(t, s, refresh), "refresh after refused rotations")

	// Rotate: old refresh and its access token become inactive.
	must(t, s.RotateRefreshToken(ctx, req.ID, refresh), "rotate")
	got, err = s.GetRefreshTokenSession(ctx, refresh, &storage.Session{})
	wantErr(t, err, fosite.ErrInactiveToken, "get rotated")
	checkRequest(t, got, req)
	wantInactive(t, accessState(t, s, access), "access token of rotated refresh")
	if n := countRows(t, s, "refresh_tokens", "signature_hash = ? AND used_at IS NOT NULL", storage.HashSignature(refresh)); n != 1 {
		t.Errorf("rotated refresh token has no used_at")
	}
	wantErr(t, s.RotateRefreshToken(ctx, req.ID, refresh), fosite.ErrNotFound, "rotate twice")

	// Only the linked access token is deactivated by a rotation.
	req2 := f.defaultRequest()
	a2, r2 := issue(t, s, req2)
	a2b := randID("at-")
	must(t, s.CreateAccessTokenSession(ctx, a2b, req2), "second access token of family")
	must(t, s.RotateRefreshToken(ctx, req2.ID, r2), "rotate r2")
	wantInactive(t, accessState(t, s, a2), "linked access token")
	wantActive(t, accessState(t, s, a2b), "unlinked access token of the same family")

	// Delete.
	must(t, s.DeleteRefreshTokenSession(ctx, "unknown-signature"), "delete unknown refresh token")
	_, r3 := issue(t, s, f.defaultRequest())
	must(t, s.DeleteRefreshTokenSession(ctx, r3), "delete")
	wantInactive(t, refreshState(t, s, r3), "deleted refresh")
	must(t, s.DeleteRefreshTokenSession(ctx, r3), "delete twice")
}

func testRevoke(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	bob := f.newUser(t, "bob")

	t.Run("refresh-family", func(t *testing.T) {
		fam := f.defaultRequest()
		_, r1 := issue(t, s, fam)
		_, r2 := issue(t, s, fam)
		_, other := issue(t, s, f.defaultRequest())
		must(t, s.RevokeRefreshToken(ctx, fam.ID), "revoke")
		wantInactive(t, refreshState(t, s, r1), "r1")
		wantInactive(t, refreshState(t, s, r2), "r2")
		wantActive(t, refreshState(t, s, other), "other family")
		must(t, s.RevokeRefreshToken(ctx, "no-such-request"), "revoke unknown request")
	})

	t.Run("family", func(t *testing.T) {
		fam := f.defaultRequest()
		a1, r1 := issue(t, s, fam)
		a2, r2 := issue(t, s, fam)
		oa, or := issue(t, s, f.defaultRequest())
		must(t, s.RevokeFamily(ctx, fam.ID), "revoke family")
		for _, sig := range []string{a1, a2} {
			wantInactive(t, accessState(t, s, sig), "family access token")
		}
		for _, sig := range []string{r1, r2} {
			wantInactive(t, refreshState(t, s, sig), "family refresh token")
		}
		wantActive(t, accessState(t, s, oa), "other access token")
		wantActive(t, refreshState(t, s, or), "other refresh token")
		must(t, s.RevokeFamily(ctx, "no-such-request"), "revoke unknown family")
	})

	t.Run("user", func(t *testing.T) {
		u := f.newUser(t, "carol")
		now := time.Now().UTC()
		a1, r1 := issue(t, s, f.request(u, randID("req-"), now.Add(time.Hour), now.Add(24*time.Hour)))
		a2, r2 := issue(t, s, f.request(u, randID("req-"), now.Add(time.Hour), now.Add(24*time.Hour)))
		used := f.request(u, randID("req-"), now.Add(time.Hour), now.Add(24*time.Hour))
		_, r3 := issue(t, s, used)
		must(t, s.RotateRefreshToken(ctx, used.ID, r3), "rotate r3")
		ba, br := issue(t, s, f.request(bob, randID("req-"), now.Add(time.Hour), now.Add(24*time.Hour)))

		n, err := s.RevokeUserTokens(ctx, u.ID)
		must(t, err, "revoke user tokens")
		if n != 2 {
			t.Errorf("RevokeUserTokens = %d, want 2 active families", n)
		}
		for _, sig := range []string{a1, a2} {
			wantInactive(t, accessState(t, s, sig), "user access token")
		}
		for _, sig := range []string{r1, r2, r3} {
			wantInactive(t, refreshState(t, s, sig), "user refresh token")
		}
		wantActive(t, accessState(t, s, ba), "other user's access token")
		wantActive(t, refreshState(t, s, br), "other user's refresh token")

		n, err = s.RevokeUserTokens(ctx, u.ID)
		if err != nil || n != 0 {
			t.Errorf("second RevokeUserTokens = %d, %v; want 0, nil", n, err)
		}
	})
}

// testRotateRace refreshes one token from several transactions at once, as
// concurrent requests do through fosite's refresh handler: exactly one wins.
func testRotateRace(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	req := f.defaultRequest()
	_, refresh := issue(t, s, req)

	const workers = 8
	errs := make([]error, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-start
			errs[i] = refreshInTx(ctx, s, req, refresh)
		})
	}
	close(start)
	wg.Wait()

	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, fosite.ErrNotFound), errors.Is(err, fosite.ErrSerializationFailure):
		default:
			t.Errorf("worker %d: unexpected error %v", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent rotations succeeded, want exactly 1 (errors: %v)", wins, workers, errs)
	}
	wantInactive(t, refreshState(t, s, refresh), "rotated token")
	if n := countRows(t, s, "refresh_tokens", "request_id = ? AND active = ?", req.ID, true); n != 1 {
		t.Errorf("active refresh tokens in the family = %d, want 1", n)
	}
	if n := countRows(t, s, "access_tokens", "request_id = ? AND active = ?", req.ID, true); n != 1 {
		t.Errorf("active access tokens in the family = %d, want 1", n)
	}
}

// refreshInTx is the storage side of fosite's refresh_token grant.
func refreshInTx(ctx context.Context, s *storage.Store, req *fosite.Request, signature string) (err error) {
	ctx, err = s.BeginTX(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if rerr := s.Rollback(ctx); rerr != nil {
				err = fmt.Errorf("%w (rollback: %v)", err, rerr)
			}
		}
	}()
	if err := s.RotateRefreshToken(ctx, req.ID, signature); err != nil {
		return err
	}
	next := *req
	next.Session = req.Session.Clone()
	access, refresh := randID("at-"), randID("rt-")
	if err := s.CreateAccessTokenSession(ctx, access, &next); err != nil {
		return err
	}
	if err := s.CreateRefreshTokenSession(ctx, refresh, access, &next); err != nil {
		return err
	}
	return s.Commit(ctx)
}

// ---- transactions ----

func testTransactions(t *testing.T, s *storage.Store) {
	bg := context.Background()
	exists := func(t *testing.T, id string) bool {
		t.Helper()
		_, err := s.GetTenant(bg, id)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get tenant: %v", err)
		}
		return err == nil
	}
	create := func(t *testing.T, ctx context.Context, id string) {
		t.Helper()
		must(t, s.CreateTenant(ctx, &storage.Tenant{ID: id, Name: id}), "create "+id)
	}

	t.Run("rollback", func(t *testing.T) {
		ctx, err := s.BeginTX(bg)
		must(t, err, "begin")
		create(t, ctx, "rolled-back")
		if _, err := s.GetTenant(ctx, "rolled-back"); err != nil {
			t.Errorf("tenant not visible inside its transaction: %v", err)
		}
		must(t, s.Rollback(ctx), "rollback")
		if exists(t, "rolled-back") {
			t.Error("Rollback did not undo CreateTenant")
		}
	})
	t.Run("commit", func(t *testing.T) {
		ctx, err := s.BeginTX(bg)
		must(t, err, "begin")
		create(t, ctx, "committed")
		must(t, s.Commit(ctx), "commit")
		if !exists(t, "committed") {
			t.Error("Commit lost CreateTenant")
		}
	})
	t.Run("nested-joins", func(t *testing.T) {
		outer, err := s.BeginTX(bg)
		must(t, err, "begin outer")
		inner, err := s.BeginTX(outer)
		must(t, err, "begin inner")
		create(t, inner, "nested")
		must(t, s.Commit(inner), "commit inner")
		if _, err := s.GetTenant(outer, "nested"); err != nil {
			t.Errorf("inner write not visible in the outer transaction: %v", err)
		}
		must(t, s.Rollback(outer), "rollback outer")
		if exists(t, "nested") {
			t.Error("outer Rollback did not undo the inner (joined) transaction's write")
		}

		outer, err = s.BeginTX(bg)
		must(t, err, "begin outer 2")
		inner, err = s.BeginTX(outer)
		must(t, err, "begin inner 2")
		create(t, inner, "nested-kept")
		must(t, s.Rollback(inner), "rollback inner (no-op)")
		must(t, s.Commit(outer), "commit outer")
		if !exists(t, "nested-kept") {
			t.Error("inner Rollback of a joined transaction undid the outer transaction")
		}
	})
	t.Run("intx", func(t *testing.T) {
		must(t, s.InTx(bg, func(ctx context.Context) error {
			create(t, ctx, "intx-ok")
			return nil
		}), "InTx")
		if !exists(t, "intx-ok") {
			t.Error("InTx did not commit")
		}

		boom := errors.New("boom")
		err := s.InTx(bg, func(ctx context.Context) error {
			create(t, ctx, "intx-err")
			return boom
		})
		wantErr(t, err, boom, "InTx error")
		if exists(t, "intx-err") {
			t.Error("InTx committed despite fn's error")
		}

		func() {
			defer func() {
				if recover() == nil {
					t.Error("InTx swallowed a panic")
				}
			}()
			_ = s.InTx(bg, func(ctx context.Context) error {
				create(t, ctx, "intx-panic")
				panic("boom")
			})
		}()
		if exists(t, "intx-panic") {
			t.Error("InTx committed despite a panic")
		}

		// Joining: an InTx inside a transaction is undone with it.
		outer, err := s.BeginTX(bg)
		must(t, err, "begin")
		must(t, s.InTx(outer, func(ctx context.Context) error {
			create(t, ctx, "intx-joined")
			return nil
		}), "joined InTx")
		must(t, s.Rollback(outer), "rollback")
		if exists(t, "intx-joined") {
			t.Error("InTx inside a transaction committed on its own")
		}
	})
	t.Run("no-tx", func(t *testing.T) {
		if err := s.Commit(bg); err == nil {
			t.Error("Commit without a transaction succeeded")
		}
		if err := s.Rollback(bg); err == nil {
			t.Error("Rollback without a transaction succeeded")
		}
	})
}

// ---- authorize codes ----

func testAuthorizeCodes(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	wantErr(t, s.CreateAuthorizeCodeSession(ctx, "code", f.defaultRequest()), fosite.ErrNotFound, "CreateAuthorizeCodeSession")
	_, err := s.GetAuthorizeCodeSession(ctx, "code", &storage.Session{})
	wantErr(t, err, fosite.ErrNotFound, "GetAuthorizeCodeSession")
	wantErr(t, s.InvalidateAuthorizeCodeSession(ctx, "code"), fosite.ErrNotFound, "InvalidateAuthorizeCodeSession")
}

// ---- audit ----

func testAudit(t *testing.T, s *storage.Store) {
	ctx := storage.WithRequestInfo(context.Background(), storage.RequestInfo{IP: "203.0.113.7", RequestID: "rid-1"})

	// Defaults from the clock and ctx.
	before := time.Now().Add(-time.Second)
	e := &storage.AuditEvent{Type: storage.EventLoginFailed, TenantID: "ta", Actor: "alice"}
	must(t, s.AppendAudit(ctx, e), "append")
	if e.ID <= 0 || e.Time.Before(before) || e.Time.After(time.Now().Add(time.Second)) ||
		e.Outcome != storage.OutcomeSuccess || e.IP != "203.0.113.7" || e.RequestID != "rid-1" {
		t.Errorf("AppendAudit defaults: %+v", e)
	}
	e2 := &storage.AuditEvent{Type: storage.EventLoginFailed, Outcome: storage.OutcomeFailure, IP: "192.0.2.1", RequestID: "own"}
	must(t, s.AppendAudit(ctx, e2), "append explicit")
	if e2.Outcome != storage.OutcomeFailure || e2.IP != "192.0.2.1" || e2.RequestID != "own" {
		t.Errorf("AppendAudit overwrote explicit fields: %+v", e2)
	}
	if e2.ID <= e.ID {
		t.Errorf("ids not increasing: %d then %d", e.ID, e2.ID)
	}
	stored, err := s.ListAudit(ctx, storage.AuditFilter{Actor: "alice"})
	must(t, err, "list")
	// PostgreSQL keeps microseconds.
	if len(stored) != 1 || stored[0].ID != e.ID || stored[0].IP != e.IP || stored[0].RequestID != e.RequestID ||
		stored[0].Time.Sub(e.Time).Abs() >= time.Microsecond {
		t.Errorf("stored event = %+v, want %+v", stored, e)
	}

	// A fixed timeline for the filters; Details labels each event.
	t0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	plus5 := time.FixedZone("UTC+5", 5*3600)
	timeline := []storage.AuditEvent{
		{Details: "e1", Time: t0, TenantID: "ta", Actor: "alice", Subject: "s1", Type: "x.one"},
		{Details: "e2", Time: t0.Add(1 * time.Minute), TenantID: "ta", Actor: "bob", Subject: "s2", Type: "x.two"},
		{Details: "e3", Time: t0.Add(2 * time.Minute), TenantID: "tb", Actor: "alice", Subject: "s1", Type: "x.two"},
		{Details: "e4", Time: t0.Add(3*time.Minute + 500*time.Millisecond), TenantID: "tb", Actor: "carol", Subject: "s3", Type: "x.one"},
		// The same instant as t0+4m, written in another zone.
		{Details: "e5", Time: t0.Add(4 * time.Minute).In(plus5), TenantID: "ta", Actor: "carol", Subject: "s1", Type: "x.one"},
	}
	for i := range timeline {
		must(t, s.AppendAudit(ctx, &timeline[i]), "append "+timeline[i].Details)
	}
	cases := []struct {
		name string
		f    storage.AuditFilter
		want []string
	}{
		{"all", storage.AuditFilter{Since: t0}, []string{"e1", "e2", "e3", "e4", "e5"}},
		{"tenant", storage.AuditFilter{Since: t0, TenantID: "ta"}, []string{"e1", "e2", "e5"}},
		{"actor", storage.AuditFilter{Since: t0, Actor: "alice"}, []string{"e1", "e3"}},
		{"subject", storage.AuditFilter{Subject: "s1"}, []string{"e1", "e3", "e5"}},
		{"type", storage.AuditFilter{Type: "x.two"}, []string{"e2", "e3"}},
		{"tenant+type", storage.AuditFilter{TenantID: "tb", Type: "x.one"}, []string{"e4"}},
		{"since inclusive", storage.AuditFilter{Since: t0.Add(2 * time.Minute)}, []string{"e3", "e4", "e5"}},
		{"until exclusive", storage.AuditFilter{Since: t0, Until: t0.Add(2 * time.Minute)}, []string{"e1", "e2"}},
		{"sub-second", storage.AuditFilter{Since: t0.Add(3*time.Minute + 400*time.Millisecond), Until: t0.Add(3*time.Minute + 600*time.Millisecond)}, []string{"e4"}},
		{"since in other zone", storage.AuditFilter{Since: t0.Add(3 * time.Minute).In(plus5)}, []string{"e4", "e5"}},
		{"until excludes zoned event", storage.AuditFilter{Since: t0, Until: t0.Add(4 * time.Minute)}, []string{"e1", "e2", "e3", "e4"}},
		{"window with zoned event", storage.AuditFilter{Since: t0.Add(4 * time.Minute), Until: t0.Add(5 * time.Minute)}, []string{"e5"}},
		{"no match", storage.AuditFilter{Actor: "nobody"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.ListAudit(ctx, tc.f)
			must(t, err, "list")
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Details)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListAudit(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}

	// Paging with AfterID walks all events in id order.
	all, err := s.ListAudit(ctx, storage.AuditFilter{})
	must(t, err, "list all")
	if len(all) != 2+len(timeline) {
		t.Fatalf("ListAudit({}) = %d events, want %d", len(all), 2+len(timeline))
	}
	var paged []int64
	var after int64
	for pages := 0; ; pages++ {
		if pages > len(all) {
			t.Fatal("paging does not terminate")
		}
		page, err := s.ListAudit(ctx, storage.AuditFilter{AfterID: after, Limit: 3})
		must(t, err, "page")
		if len(page) > 3 {
			t.Fatalf("page of %d events, limit 3", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			paged = append(paged, ev.ID)
		}
		after = page[len(page)-1].ID
	}
	var ids []int64
	for _, ev := range all {
		ids = append(ids, ev.ID)
	}
	if !slices.Equal(paged, ids) || !slices.IsSorted(ids) {
		t.Errorf("paged ids %v, all ids %v (want equal and ascending)", paged, ids)
	}
}

func testAuditAppendOnly(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	must(t, s.AppendAudit(ctx, &storage.AuditEvent{Type: "orig", Actor: "a"}), "append")
	db := s.DB().Gorm
	stmts := []string{
		`UPDATE audit_events SET type = 'x'`,
		`DELETE FROM audit_events`,
	}
	if s.DB().Dialect == storage.DialectPostgres {
		stmts = append(stmts, `TRUNCATE audit_events`)
	}
	for _, stmt := range stmts {
		if err := db.Exec(stmt).Error; err == nil {
			t.Errorf("%s succeeded on the append-only audit log", stmt)
		}
	}
	evs, err := s.ListAudit(ctx, storage.AuditFilter{})
	must(t, err, "list")
	if len(evs) != 1 || evs[0].Type != "orig" {
		t.Errorf("audit log changed: %+v", evs)
	}
	// Appending still works after the refused statements.
	must(t, s.AppendAudit(ctx, &storage.AuditEvent{Type: "next"}), "append after refusal")
}

// ---- expiry ----

func testDeleteExpired(t *testing.T, s *storage.Store) {
	f := newFixture(t, s)
	ctx := context.Background()
	cut := time.Now().UTC().Truncate(time.Second)
	past, future := cut.Add(-time.Hour), cut.Add(time.Hour)

	// Access expired, refresh live (the usual state of a session).
	reqA := f.request(f.user, randID("req-"), past, future)
	aExpired, rLive := issue(t, s, reqA)
	// Both expired.
	reqB := f.request(f.user, randID("req-"), past, past)
	aExpired2, rExpired := issue(t, s, reqB)
	// Both live; the refresh token rotated (inactive but kept for reuse detection).
	reqC := f.request(f.user, randID("req-"), future, future)
	aLive, rRotated := issue(t, s, reqC)
	must(t, s.RotateRefreshToken(ctx, reqC.ID, rRotated), "rotate")
	// Expiring exactly at the cut-off is not yet expired.
	reqD := f.request(f.user, randID("req-"), cut, cut)
	aEdge, rEdge := issue(t, s, reqD)

	n, err := s.DeleteExpiredTokens(ctx, cut)
	must(t, err, "delete expired")
	if n != 3 {
		t.Errorf("DeleteExpiredTokens = %d, want 3", n)
	}
	for _, sig := range []string{aExpired, aExpired2} {
		_, err := s.GetAccessTokenSession(ctx, sig, &storage.Session{})
		wantErr(t, err, fosite.ErrNotFound, "expired access token")
	}
	_, err = s.GetRefreshTokenSession(ctx, rExpired, &storage.Session{})
	wantErr(t, err, fosite.ErrNotFound, "expired refresh token")
	wantActive(t, refreshState(t, s, rLive), "live refresh token")
	// Deactivated by the rotation, but kept: inactive, not unknown.
	wantInactive(t, accessState(t, s, aLive), "unexpired access token of the rotated refresh token")
	wantInactive(t, refreshState(t, s, rRotated), "rotated, unexpired refresh token")
	wantActive(t, accessState(t, s, aEdge), "access token expiring at the cut-off")
	wantActive(t, refreshState(t, s, rEdge), "refresh token expiring at the cut-off")

	n, err = s.DeleteExpiredTokens(ctx, cut)
	if err != nil || n != 0 {
		t.Errorf("second DeleteExpiredTokens = %d, %v; want 0, nil", n, err)
	}
	if c := countRows(t, s, "audit_events", ""); c == 0 {
		t.Error("DeleteExpiredTokens must not touch the audit log")
	}
}

// ---- migrations ----

func testMigrate(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	for i := range 2 {
		n, err := s.DB().Migrate(ctx)
		if err != nil || n != 0 {
			t.Errorf("Migrate #%d on a migrated database = %d, %v; want 0, nil", i+1, n, err)
		}
	}
	v, err := s.DB().Version(ctx)
	must(t, err, "version")
	if v != storage.SchemaVersion() {
		t.Errorf("Version = %d, want SchemaVersion %d", v, storage.SchemaVersion())
	}
	if n := countRows(t, s, "schema_migrations", ""); n != int64(storage.SchemaVersion()) {
		t.Errorf("schema_migrations rows = %d, want %d", n, storage.SchemaVersion())
	}
	// The store works after the no-op migrations.
	must(t, s.CreateTenant(ctx, &storage.Tenant{ID: "after-migrate", Name: "x"}), "create after migrate")
}
