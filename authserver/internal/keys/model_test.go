package keys

import (
	"context"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	ptr := func(min int) *time.Time { v := at(min); return &v }
	key := func(kid string, activates int, revoked *time.Time) SigningKey {
		return SigningKey{KID: kid, CreatedAt: at(activates), ActivatesAt: at(activates), RevokedAt: revoked}
	}
	const grace = 10 * time.Minute
	tests := []struct {
		name           string
		rows           []SigningKey
		now            int
		want           map[string]State
		wantSuperseded map[string]int
		wantNextChange int // minutes; -1 = none
	}{
		{name: "ok-single", rows: []SigningKey{key("a", 0, nil)}, now: 5,
			want: map[string]State{"a": StateActive}, wantNextChange: -1},
		{name: "ok-next", rows: []SigningKey{key("a", 0, nil), key("b", 10, nil)}, now: 5,
			want: map[string]State{"a": StateActive, "b": StateNext}, wantNextChange: 10},
		{name: "ok-retired", rows: []SigningKey{key("a", 0, nil), key("b", 10, nil)}, now: 15,
			want: map[string]State{"a": StateRetired, "b": StateActive}, wantSuperseded: map[string]int{"a": 10}, wantNextChange: 20},
		{name: "ok-expired", rows: []SigningKey{key("a", 0, nil), key("b", 10, nil)}, now: 20,
			want: map[string]State{"a": StateExpired, "b": StateActive}, wantNextChange: -1},
		{name: "ok-successor-revoked-after-activation",
			rows: []SigningKey{key("a", 0, nil), key("b", 10, ptr(12)), key("c", 12, nil)}, now: 15,
			want:           map[string]State{"a": StateRetired, "b": StateRevoked, "c": StateActive},
			wantSuperseded: map[string]int{"a": 10}, wantNextChange: 20},
		{name: "ok-successor-revoked-before-activation",
			rows: []SigningKey{key("a", 0, nil), key("b", 10, ptr(5)), key("c", 30, nil)}, now: 35,
			want:           map[string]State{"a": StateRetired, "b": StateRevoked, "c": StateActive},
			wantSuperseded: map[string]int{"a": 30}, wantNextChange: 40},
		{name: "ok-fallback-to-older-key",
			rows: []SigningKey{key("a", 0, nil), key("b", 10, ptr(12))}, now: 15,
			want: map[string]State{"a": StateActive, "b": StateRevoked}, wantNextChange: -1},
		{name: "ok-none-active", rows: []SigningKey{key("a", 0, ptr(1))}, now: 5,
			want: map[string]State{"a": StateRevoked}, wantNextChange: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sortKeys(tt.rows)
			rs := classify(tt.rows, at(tt.now), grace)
			for kid, want := range tt.want {
				if got := rs.states[kid].state; got != want {
					t.Errorf("state(%s) = %s, want %s", kid, got, want)
				}
				if want == StateActive && rs.active != kid {
					t.Errorf("active = %q, want %s", rs.active, kid)
				}
			}
			for kid, min := range tt.wantSuperseded {
				if got := rs.states[kid].supersededAt; !got.Equal(at(min)) {
					t.Errorf("supersededAt(%s) = %v, want %v", kid, got, at(min))
				}
			}
			if tt.wantNextChange < 0 {
				if !rs.nextChange.IsZero() {
					t.Errorf("nextChange = %v, want none", rs.nextChange)
				}
			} else if !rs.nextChange.Equal(at(tt.wantNextChange)) {
				t.Errorf("nextChange = %v, want %v", rs.nextChange, at(tt.wantNextChange))
			}
		})
	}
}

// TestRotateSameInstant rotates twice with a frozen clock: the newest key
// must win instead of the order depending on random kids.
func TestRotateSameInstant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock()
	m := startedManager(t, Config{Now: clock.Now})
	var last string
	for range 3 {
		k, err := m.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = k.KID
	}
	clock.Advance(time.Millisecond)
	if got, _ := m.ActiveKID(); got != last {
		t.Fatalf("active = %s, want the last rotated key %s", got, last)
	}
}
