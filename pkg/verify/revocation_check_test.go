package verify

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/epitwin/epitwin/pkg/claims"
)

func TestRevocationCheck(t *testing.T) {
	keys := genKeys(t)
	k := keys["ES256"]
	as := newFakeAS(t, k)
	clk := newFakeClock()
	var (
		active atomic.Bool
		fail   atomic.Bool
		calls  atomic.Int64
	)
	active.Store(true)
	check := func(_ context.Context, raw string, tok *claims.AccessToken) (bool, error) {
		calls.Add(1)
		if raw == "" || tok == nil || tok.ID == "" {
			t.Error("check called without the token")
		}
		if fail.Load() {
			return false, errors.New("database down")
		}
		return active.Load(), nil
	}
	v := newTestVerifier(t, as, clk, WithRevocationCheck(check))
	tok := sign(t, k, goodClaims(as.issuer, clk.Now()), nil)
	cases := []struct {
		name   string
		active bool
		fail   bool
		status int
	}{
		{"ok", true, false, 0},
		{"ok-remembered", true, false, 0},
		{"fail-revoked-at-once", false, false, http.StatusUnauthorized},
		{"fail-unknown-is-closed", true, true, http.StatusServiceUnavailable},
		{"ok-again", true, false, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			active.Store(tc.active)
			fail.Store(tc.fail)
			_, err := v.Verify(context.Background(), tok)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if e := asError(t, err); e.Status != tc.status {
				t.Fatalf("status = %d, want %d", e.Status, tc.status)
			}
			if got := calls.Load(); got != int64(i+1) {
				t.Errorf("check called %d times, want %d (uncached)", got, i+1)
			}
		})
	}
	if as.introHits.Load() != 0 {
		t.Error("HTTP introspection used despite the in-process check")
	}
}
