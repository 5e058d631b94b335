package keys

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite/token/jwt"
)

func TestNewManagerConfig(t *testing.T) {
	t.Parallel()
	db := newSQLiteDB(t).open(t)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		check   func(t *testing.T, m *Manager)
	}{
		{name: "ok-defaults", cfg: Config{KEK: testKEK(), MaxTokenTTL: time.Hour}, check: func(t *testing.T, m *Manager) {
			if m.cfg.Alg != AlgES256 || m.cfg.JWKSMaxAge != 300*time.Second || m.cfg.PrePublish != 600*time.Second || m.cfg.ReloadInterval != 5*time.Second {
				t.Fatalf("defaults not applied: %+v", m.cfg)
			}
		}},
		{name: "ok-rotation", cfg: Config{KEK: testKEK(), MaxTokenTTL: time.Hour, RotationPeriod: 24 * time.Hour, Alg: AlgEdDSA}},
		{name: "fail-kek", cfg: Config{KEK: []byte("short"), MaxTokenTTL: time.Hour}, wantErr: "must be 32 bytes"},
		{name: "fail-alg", cfg: Config{KEK: testKEK(), MaxTokenTTL: time.Hour, Alg: "HS256"}, wantErr: "unsupported signing algorithm"},
		{name: "fail-ttl", cfg: Config{KEK: testKEK()}, wantErr: "MaxTokenTTL"},
		{name: "fail-prepublish", cfg: Config{KEK: testKEK(), MaxTokenTTL: time.Hour, RotationPeriod: 10 * time.Minute}, wantErr: "PrePublish"},
		{name: "fail-negative-period", cfg: Config{KEK: testKEK(), MaxTokenTTL: time.Hour, RotationPeriod: -time.Hour}, wantErr: "RotationPeriod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewManager(db, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
	if _, err := NewManager(nil, Config{KEK: testKEK(), MaxTokenTTL: time.Hour}); err == nil {
		t.Fatal("nil db accepted")
	}
}

func TestEnsureActive(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		ctx := context.Background()
		audit := &auditLog{}
		m := newTestManager(t, d.open(t), Config{Audit: audit.record})
		if _, _, err := m.Signer().Generate(ctx, testClaims(), &jwt.Headers{}); !errors.Is(err, ErrNoActiveKey) {
			t.Fatalf("Generate before load: err = %v, want ErrNoActiveKey", err)
		}
		if err := m.EnsureActive(ctx); err != nil {
			t.Fatal(err)
		}
		kid, ok := m.ActiveKID()
		if !ok {
			t.Fatal("no active key after EnsureActive")
		}
		if err := m.EnsureActive(ctx); err != nil {
			t.Fatal(err)
		}
		if again, _ := m.ActiveKID(); again != kid {
			t.Fatalf("second EnsureActive replaced the key: %s -> %s", kid, again)
		}
		if got := audit.list(); !slices.Equal(got, []string{"key.created " + kid}) {
			t.Fatalf("audit = %v", got)
		}
		// The row is stored as specified.
		var row SigningKey
		if err := d.open(t).First(&row, "kid = ?", kid).Error; err != nil {
			t.Fatal(err)
		}
		if row.Alg != AlgES256 || len(row.PrivateKeyEnc) == 0 || !strings.Contains(row.PublicJWK, `"kid":"`+kid+`"`) || strings.Contains(row.PublicJWK, `"d"`) {
			t.Fatalf("unexpected row: alg=%s jwk=%s", row.Alg, row.PublicJWK)
		}
	})
}

func TestRotate(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		ctx := context.Background()
		audit := &auditLog{}
		m := newTestManager(t, d.open(t), Config{Audit: audit.record})
		if err := m.EnsureActive(ctx); err != nil {
			t.Fatal(err)
		}
		oldKID, _ := m.ActiveKID()
		oldToken := mustSign(t, m)

		rotated, err := m.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rotated.KID == oldKID {
			t.Fatal("Rotate returned the old key")
		}
		tests := []struct {
			name  string
			token string
			kid   string
		}{
			{name: "ok-old-token", token: oldToken, kid: oldKID},
			{name: "ok-new-token", token: mustSign(t, m), kid: rotated.KID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := headerKID(t, tt.token); got != tt.kid {
					t.Fatalf("kid = %s, want %s", got, tt.kid)
				}
				if _, err := m.Signer().Validate(ctx, tt.token); err != nil {
					t.Fatalf("Validate: %v", err)
				}
			})
		}
		kids := jwksKIDs(t, m)
		if !slices.Equal(kids, []string{rotated.KID, oldKID}) {
			t.Fatalf("JWKS kids = %v", kids)
		}
		st := states(t, m)
		if st[oldKID] != StateRetired || st[rotated.KID] != StateActive {
			t.Fatalf("states = %v", st)
		}
		infos, _ := m.List(ctx)
		for _, i := range infos {
			if i.KID == oldKID && (i.DeactivatedAt == nil || i.SupersededAt == nil || i.PublishedUntil == nil) {
				t.Fatalf("retired key info incomplete: %+v", i)
			}
		}
		want := []string{"key.created " + oldKID, "key.rotated " + rotated.KID}
		if got := audit.list(); !slices.Equal(got, want) {
			t.Fatalf("audit = %v, want %v", got, want)
		}
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		tests := []struct {
			name string
			// setup prepares the ring and returns the kid to revoke.
			setup      func(t *testing.T, m *Manager) string
			wantErr    error
			wantActive func(before, revoked string) bool
		}{
			{name: "ok-active", setup: func(t *testing.T, m *Manager) string {
				kid, _ := m.ActiveKID()
				return kid
			}},
			{name: "ok-retired", setup: func(t *testing.T, m *Manager) string {
				kid, _ := m.ActiveKID()
				if _, err := m.Rotate(context.Background()); err != nil {
					t.Fatal(err)
				}
				return kid
			}},
			{name: "ok-active-promotes-next", setup: func(t *testing.T, m *Manager) string {
				kid, _ := m.ActiveKID()
				m.cfg.RotationPeriod = time.Hour
				m.cfg.PrePublish = time.Hour - time.Nanosecond
				time.Sleep(time.Millisecond) // the active key must be older than 1ns
				next, created, err := m.RotateIfDue(context.Background())
				if err != nil || !created {
					t.Fatalf("RotateIfDue = %v, %v", created, err)
				}
				t.Cleanup(func() {
					if got, _ := m.ActiveKID(); got != next.KID {
						t.Errorf("active = %s, want promoted next key %s", got, next.KID)
					}
				})
				return kid
			}},
			{name: "fail-unknown", wantErr: ErrNotFound, setup: func(*testing.T, *Manager) string { return "nope" }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				db := d.open(t)
				if err := db.Where("1 = 1").Delete(&SigningKey{}).Error; err != nil {
					t.Fatal(err)
				}
				audit := &auditLog{}
				m := newTestManager(t, db, Config{Audit: audit.record})
				if err := m.EnsureActive(ctx); err != nil {
					t.Fatal(err)
				}
				kid := tt.setup(t, m)
				var token string
				if kid != "nope" {
					token = signWithKID(t, m, kid)
				}
				activeBefore, _ := m.ActiveKID()
				err := m.Revoke(ctx, kid)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(jwksKIDs(t, m), kid) {
					t.Fatal("revoked key still in JWKS")
				}
				if _, _, ok := m.KeyForKID(kid); ok {
					t.Fatal("KeyForKID returns a revoked key")
				}
				_, err = m.Signer().Validate(ctx, token)
				var ve *jwt.ValidationError
				if !errors.As(err, &ve) || !ve.Has(jwt.ValidationErrorUnverifiable) {
					t.Fatalf("Validate of revoked-key token: err = %v, want unverifiable ValidationError", err)
				}
				active, ok := m.ActiveKID()
				if !ok || active == kid {
					t.Fatalf("active = %q, %v after revoke", active, ok)
				}
				if kid != activeBefore && active != activeBefore {
					t.Fatalf("revoking a non-active key changed the active key %s -> %s", activeBefore, active)
				}
				fresh := mustSign(t, m)
				if _, err := m.Signer().Validate(ctx, fresh); err != nil {
					t.Fatalf("token of the replacement key: %v", err)
				}
				if st := states(t, m); st[kid] != StateRevoked || st[active] != StateActive {
					t.Fatalf("states = %v", st)
				}
				if !slices.Contains(audit.list(), "key.revoked "+kid) {
					t.Fatalf("audit = %v", audit.list())
				}
				if kid == activeBefore && !slices.Contains(audit.list(), "key.rotated "+active) {
					t.Fatalf("audit = %v, want key.rotated for the replacement", audit.list())
				}
				// Revoking twice is a no-op.
				if err := m.Revoke(ctx, kid); err != nil {
					t.Fatalf("second Revoke: %v", err)
				}
			})
		}
	})
}

// signWithKID signs a token with the decrypted key kid of m's snapshot,
// whatever its state, as a compromised key holder could.
func signWithKID(t testing.TB, m *Manager, kid string) string {
	t.Helper()
	km, ok := m.snapshot().mat[kid]
	if !ok {
		t.Fatalf("key %s not loaded", kid)
	}
	return signRaw(t, km, map[string]any{"kid": kid, "typ": AccessTokenType}, testClaims())
}

func TestScheduledRotation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		ctx := context.Background()
		clock := newFakeClock()
		audit := &auditLog{}
		cfg := Config{
			Now:            clock.Now,
			MaxTokenTTL:    15 * time.Minute,
			RotationPeriod: time.Hour,
			PrePublish:     10 * time.Minute,
			Audit:          audit.record,
		}
		m := newTestManager(t, d.open(t), cfg)
		m.Tick(ctx) // creates the first key
		a, ok := m.ActiveKID()
		if !ok {
			t.Fatal("Tick did not create a key")
		}

		steps := []struct {
			name       string
			advance    time.Duration
			tick       bool
			wantActive string // "a" or "b"
			wantJWKS   []string
			wantStates map[string]State
		}{
			{name: "ok-before-due", advance: 49 * time.Minute, tick: true, wantActive: "a", wantJWKS: []string{"a"},
				wantStates: map[string]State{"a": StateActive}},
			{name: "ok-next-published", advance: time.Minute, tick: true, wantActive: "a", wantJWKS: []string{"b", "a"},
				wantStates: map[string]State{"a": StateActive, "b": StateNext}},
			{name: "ok-still-next", advance: 9 * time.Minute, tick: true, wantActive: "a", wantJWKS: []string{"b", "a"},
				wantStates: map[string]State{"a": StateActive, "b": StateNext}},
			// No Tick: the snapshot switches on its own at ActivatesAt.
			{name: "ok-next-activates", advance: time.Minute, wantActive: "b", wantJWKS: []string{"b", "a"},
				wantStates: map[string]State{"a": StateRetired, "b": StateActive}},
			{name: "ok-retired-within-grace", advance: 15 * time.Minute, tick: true, wantActive: "b", wantJWKS: []string{"b", "a"},
				wantStates: map[string]State{"a": StateRetired, "b": StateActive}},
			{name: "ok-retired-expires", advance: time.Minute, wantActive: "b", wantJWKS: []string{"b"},
				wantStates: map[string]State{"a": StateExpired, "b": StateActive}},
		}
		names := map[string]string{"a": a}
		var tokenA string
		for _, st := range steps {
			clock.Advance(st.advance)
			if st.tick {
				m.Tick(ctx)
			}
			if _, ok := names["b"]; !ok {
				for kid, s := range states(t, m) {
					if kid != a && s == StateNext {
						names["b"] = kid
					}
				}
			}
			active, _ := m.ActiveKID()
			if active != names[st.wantActive] {
				t.Fatalf("%s: active = %s, want %s (%s)", st.name, active, st.wantActive, names[st.wantActive])
			}
			token := mustSign(t, m)
			if headerKID(t, token) != active {
				t.Fatalf("%s: token signed by %s, want %s", st.name, headerKID(t, token), active)
			}
			if active == a {
				tokenA = token
			}
			var wantJWKS []string
			for _, n := range st.wantJWKS {
				wantJWKS = append(wantJWKS, names[n])
			}
			if got := jwksKIDs(t, m); !slices.Equal(got, wantJWKS) {
				t.Fatalf("%s: JWKS = %v, want %v", st.name, got, wantJWKS)
			}
			got := states(t, m)
			for n, want := range st.wantStates {
				if got[names[n]] != want {
					t.Fatalf("%s: state of %s = %s, want %s", st.name, n, got[names[n]], want)
				}
			}
			_, err := m.Signer().Validate(ctx, tokenA)
			if published := slices.Contains(st.wantJWKS, "a"); published != (err == nil) {
				t.Fatalf("%s: Validate(token of a) err = %v, a published = %v", st.name, err, published)
			}
		}
		// Tick recorded the informative deactivation time of a.
		infos, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range infos {
			if i.KID == a && (i.DeactivatedAt == nil || !i.DeactivatedAt.Equal(*i.SupersededAt)) {
				t.Fatalf("DeactivatedAt of a = %v, superseded at %v", i.DeactivatedAt, i.SupersededAt)
			}
		}
		want := []string{"key.created " + a, "key.created " + names["b"]}
		if got := audit.list(); !slices.Equal(got, want) {
			t.Fatalf("audit = %v, want %v", got, want)
		}
	})
}

func TestTwoInstances(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, d testDB) {
		ctx := context.Background()
		clock := newFakeClock()
		cfg := Config{Now: clock.Now, RotationPeriod: time.Hour, PrePublish: 10 * time.Minute}
		m1 := newTestManager(t, d.open(t), cfg)
		m2 := newTestManager(t, d.open(t), cfg)

		t.Run("ok-concurrent-ensure-active", func(t *testing.T) {
			var wg sync.WaitGroup
			for _, m := range []*Manager{m1, m2} {
				wg.Go(func() {
					if err := m.EnsureActive(ctx); err != nil {
						t.Errorf("EnsureActive: %v", err)
					}
				})
			}
			wg.Wait()
			if err := m1.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(states(t, m1)); n != 1 {
				t.Fatalf("%d keys created, want 1", n)
			}
			k1, _ := m1.ActiveKID()
			k2, _ := m2.ActiveKID()
			if k1 != k2 {
				t.Fatalf("instances disagree: %s vs %s", k1, k2)
			}
		})

		t.Run("ok-rotate-seen-after-reload", func(t *testing.T) {
			before, _ := m2.ActiveKID()
			tok2 := mustSign(t, m2)
			rotated, err := m1.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The clock is frozen: the new key activates one microsecond
			// after the old one so that the order is well defined.
			clock.Advance(time.Second)
			if got, _ := m1.ActiveKID(); got != rotated.KID {
				t.Fatalf("m1 active = %s, want %s", got, rotated.KID)
			}
			if got, _ := m2.ActiveKID(); got != before {
				t.Fatalf("m2 changed key before Reload: %s", got)
			}
			tok1 := mustSign(t, m1)
			if _, err := m2.Signer().Validate(ctx, tok1); err == nil {
				t.Fatal("m2 accepted a key it has not loaded yet")
			}
			if err := m2.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if got, _ := m2.ActiveKID(); got != rotated.KID {
				t.Fatalf("m2 active = %s, want %s", got, rotated.KID)
			}
			for name, tc := range map[string]struct {
				m   *Manager
				tok string
			}{"m1-validates-m2": {m1, tok2}, "m2-validates-m1": {m2, tok1}} {
				if _, err := tc.m.Signer().Validate(ctx, tc.tok); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			body1, etag1 := m1.JWKS()
			body2, etag2 := m2.JWKS()
			if etag1 != etag2 || string(body1) != string(body2) {
				t.Fatal("instances publish different JWKS")
			}
		})

		t.Run("ok-revoke-seen-after-reload", func(t *testing.T) {
			kid, _ := m1.ActiveKID()
			tok := mustSign(t, m2)
			if err := m1.Revoke(ctx, kid); err != nil {
				t.Fatal(err)
			}
			if err := m2.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := m2.Signer().Validate(ctx, tok); err == nil {
				t.Fatal("m2 accepts a revoked key after Reload")
			}
			k1, _ := m1.ActiveKID()
			k2, _ := m2.ActiveKID()
			if k1 != k2 || k1 == kid {
				t.Fatalf("active keys %s / %s after revoking %s", k1, k2, kid)
			}
		})

		t.Run("ok-single-next-key", func(t *testing.T) {
			clock.Advance(55 * time.Minute)
			var created atomic.Int32
			var wg sync.WaitGroup
			for range 4 {
				for _, m := range []*Manager{m1, m2} {
					wg.Go(func() {
						_, ok, err := m.RotateIfDue(ctx)
						if err != nil {
							t.Errorf("RotateIfDue: %v", err)
						}
						if ok {
							created.Add(1)
						}
					})
				}
			}
			wg.Wait()
			if n := created.Load(); n != 1 {
				t.Fatalf("%d next keys created, want 1", n)
			}
			next := 0
			for _, s := range states(t, m1) {
				if s == StateNext {
					next++
				}
			}
			if next != 1 {
				t.Fatalf("%d next keys in the ring, want 1", next)
			}
		})
	})
}

// TestRotationUnderLoad signs and validates continuously while keys rotate
// and snapshots reload: no request may fail.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newSQLiteDB(t)
	m := newTestManager(t, d.open(t), Config{})
	other := newTestManager(t, d.open(t), Config{})
	if err := m.EnsureActive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops, failures atomic.Int64
	for range 4 {
		wg.Go(func() {
			s := m.Signer()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, _, err := s.Generate(ctx, testClaims(), &jwt.Headers{})
				if err == nil {
					_, err = s.Validate(ctx, tok)
				}
				if err != nil {
					failures.Add(1)
					t.Errorf("request failed during rotation: %v", err)
					return
				}
				ops.Add(1)
			}
		})
	}
	for range 5 {
		if _, err := other.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || ops.Load() == 0 {
		t.Fatalf("ops = %d, failures = %d", ops.Load(), failures.Load())
	}
	if n := len(jwksKIDs(t, m)); n != 6 {
		t.Fatalf("JWKS has %d keys, want 6 (1 active + 5 retired)", n)
	}
}

func TestRunPicksUpChanges(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newSQLiteDB(t)
	m := newTestManager(t, d.open(t), Config{ReloadInterval: 20 * time.Millisecond})
	cli := newTestManager(t, d.open(t), Config{})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("first key", func() bool { _, ok := m.ActiveKID(); return ok })
	rotated, err := cli.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor("rotation", func() bool { kid, _ := m.ActiveKID(); return kid == rotated.KID })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
}
