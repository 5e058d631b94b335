package throttle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// fakeClock is the injected clock: tests never sleep.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// backend builds a Limiter for cfg on one storage backend.
type backend struct {
	name string
	new  func(t *testing.T, cfg Config) *Limiter
}

const redisEnv = "AUTH_TEST_REDIS_URL"

func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T, cfg Config) *Limiter { return New(cfg) }},
		{"redis", func(t *testing.T, cfg Config) *Limiter {
			cfg.Redis, cfg.KeyPrefix = testRedis(t)
			// A Redis error would silently fall back to the in-process
			// state and hide a broken backend: fail on any log record.
			cfg.Logger = slog.New(failHandler{t})
			return New(cfg)
		}},
	}
}

// testRedis connects to AUTH_TEST_REDIS_URL (skipping the test when unset)
// and returns a unique key prefix whose keys are deleted after the test.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv(redisEnv)
	if url == "" {
		t.Skipf("%s not set: skipping the Redis backend (set e.g. %s=redis://127.0.0.1:6379/0)", redisEnv, redisEnv)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s: %v", redisEnv, err)
	}
	rdb := redis.NewClient(opts)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v", url, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "epitwin:throttle:test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan %s*: %v", prefix, err)
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

func reqCtx(ip string) context.Context {
	if ip == "" {
		return context.Background()
	}
	return storage.WithRequestInfo(context.Background(), storage.RequestInfo{IP: ip})
}

// step is one action of a scenario.
type step struct {
	op   string // "fail", "ok" (password check outcome), "advance", "expect"
	user string
	ip   string
	n    int           // fail: how many times (default 1)
	d    time.Duration // advance: by how much; expect: the wanted Allow result
}

func fail(user, ip string) step         { return step{op: "fail", user: user, ip: ip, n: 1} }
func failN(n int, user, ip string) step { return step{op: "fail", user: user, ip: ip, n: n} }
func succeed(user, ip string) step      { return step{op: "ok", user: user, ip: ip} }
func advance(d time.Duration) step      { return step{op: "advance", d: d} }
func expect(user, ip string, d time.Duration) step {
	return step{op: "expect", user: user, ip: ip, d: d}
}

const (
	ipA = "192.0.2.1"
	ipB = "192.0.2.2"
)

var scenarios = []struct {
	name  string
	cfg   Config
	steps []step
}{
	{
		name: "free failures pass with defaults",
		steps: []step{
			expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, time.Second), // 5th failure: 1s × 2^0
			expect("alice", ipB, time.Second), // the account is locked from anywhere
			expect("bob", ipA, 0),             // the IP is not
			advance(400 * time.Millisecond), expect("alice", ipA, 600*time.Millisecond),
			advance(600 * time.Millisecond), expect("alice", ipA, 0),
		},
	},
	{
		name: "exponential growth",
		cfg:  Config{FreeFailures: 3, MaxDelay: time.Hour},
		steps: []step{
			failN(2, "alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 1*time.Second),
			advance(time.Second), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, 2*time.Second),
			advance(2 * time.Second),
			fail("alice", ipA), expect("alice", ipA, 4*time.Second),
			advance(4 * time.Second),
			fail("alice", ipA), expect("alice", ipA, 8*time.Second),
			// A failure recorded during a lock (generic Fail callers may not
			// check first) extends the lock, never shortens it.
			advance(time.Second),
			fail("alice", ipA), expect("alice", ipA, 16*time.Second),
		},
	},
	{
		name: "capped at MaxDelay",
		cfg:  Config{FreeFailures: 1, BaseDelay: time.Second, MaxDelay: 10 * time.Second},
		steps: []step{
			fail("alice", ipA), expect("alice", ipA, 1*time.Second),
			fail("alice", ipA), expect("alice", ipA, 2*time.Second),
			fail("alice", ipA), expect("alice", ipA, 4*time.Second),
			fail("alice", ipA), expect("alice", ipA, 8*time.Second),
			fail("alice", ipA), expect("alice", ipA, 10*time.Second),
			failN(100, "alice", ipA), expect("alice", ipA, 10*time.Second),
		},
	},
	{
		name: "default cap is 15m",
		steps: []step{
			failN(50, "alice", ipA), expect("alice", ipA, 15*time.Minute),
		},
	},
	{
		name: "success resets the account",
		steps: []step{
			failN(6, "alice", ipA), expect("alice", ipA, 2*time.Second),
			advance(2 * time.Second), expect("alice", ipA, 0),
			succeed("alice", ipA), expect("alice", ipA, 0),
			failN(4, "alice", ipA), expect("alice", ipA, 0), // the count started over
			fail("alice", ipA), expect("alice", ipA, time.Second),
		},
	},
	{
		name: "success does not reset the IP",
		cfg:  Config{FreeFailures: 100, FreeFailuresPerIP: 3},
		steps: []step{
			failN(3, "mallory", ipA), expect("bob", ipA, time.Second),
			advance(time.Second),
			succeed("mallory", ipA), expect("bob", ipA, 0),
			fail("bob", ipA), expect("carol", ipA, 2*time.Second), // 4th IP failure
			expect("carol", ipB, 0),
		},
	},
	{
		name: "IP threshold is separate and higher",
		steps: func() []step {
			var s []step
			for i := range 19 { // 19 users, one typo each, behind one NAT
				s = append(s, fail(fmt.Sprintf("user%d", i), ipA))
			}
			s = append(s, expect("newcomer", ipA, 0))
			s = append(s, fail("user19", ipA)) // 20th failure from the IP
			s = append(s, expect("newcomer", ipA, time.Second), expect("newcomer", ipB, 0), expect("user19", ipB, 0))
			return s
		}(),
	},
	{
		name: "account locks across IPs",
		steps: []step{
			fail("alice", "198.51.100.1"), fail("alice", "198.51.100.2"), fail("alice", "198.51.100.3"),
			fail("alice", "198.51.100.4"), fail("alice", "198.51.100.5"),
			expect("alice", "198.51.100.6", time.Second),
			expect("bob", "198.51.100.5", 0),
		},
	},
	{
		name: "IPv6 /64 counts as one address",
		cfg:  Config{FreeFailures: 100, FreeFailuresPerIP: 2},
		steps: []step{
			fail("a", "2001:db8:1:2::1"), fail("b", "2001:db8:1:2:ffff::9"),
			expect("c", "2001:db8:1:2::77", time.Second),
			expect("c", "2001:db8:1:3::1", 0),
		},
	},
	{
		name: "failures expire after a quiet window",
		steps: []step{
			failN(4, "alice", ipA),
			advance(15 * time.Minute), // exactly Window after the last failure
			fail("alice", ipA), expect("alice", ipA, 0),
			failN(3, "alice", ipA), expect("alice", ipA, 0),
			fail("alice", ipA), expect("alice", ipA, time.Second),
		},
	},
	{
		name: "each failure restarts the window",
		steps: []step{
			failN(4, "alice", ipA),
			advance(15*time.Minute - time.Millisecond),
			fail("alice", ipA), expect("alice", ipA, time.Second),
		},
	},
	{
		name: "window counts from the end of the lock",
		cfg:  Config{FreeFailures: 1, BaseDelay: time.Minute, MaxDelay: time.Hour, Window: 15 * time.Minute},
		steps: []step{
			fail("alice", ipA), expect("alice", ipA, time.Minute),
			advance(time.Minute + 14*time.Minute), // lock over, but not 15m quiet since
			fail("alice", ipA), expect("alice", ipA, 2*time.Minute),
			advance(2*time.Minute + 15*time.Minute),
			fail("alice", ipA), expect("alice", ipA, time.Minute),
		},
	},
	{
		name: "no request info: account only",
		cfg:  Config{FreeFailures: 2, FreeFailuresPerIP: 1},
		steps: []step{
			fail("alice", ""), expect("alice", "", 0), expect("bob", "", 0),
			fail("alice", ""), expect("alice", "", time.Second), expect("alice", ipA, time.Second),
			expect("bob", "", 0),
		},
	},
	{
		name: "tenants are separate",
		steps: []step{
			failN(5, "t1|alice", ""), expect("t1|alice", "", time.Second), expect("t2|alice", "", 0),
		},
	},
}

// splitUser maps "tenant|user" to its parts (tenant "t0" by default).
func splitUser(s string) (string, string) {
	if t, u, ok := strings.Cut(s, "|"); ok {
		return t, u
	}
	return "t0", s
}

func TestScenarios(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					clk := newClock()
					cfg := sc.cfg
					cfg.Now = clk.Now
					lim := b.new(t, cfg)
					for i, s := range sc.steps {
						tenant, user := splitUser(s.user)
						ctx := reqCtx(s.ip)
						switch s.op {
						case "fail":
							for range s.n {
								lim.Record(ctx, tenant, user, false)
							}
						case "ok":
							lim.Record(ctx, tenant, user, true)
						case "advance":
							clk.Advance(s.d)
						case "expect":
							got, err := lim.Allow(ctx, tenant, user)
							if err != nil {
								t.Fatalf("step %d: Allow: %v", i, err)
							}
							if got != s.d {
								t.Fatalf("step %d: Allow(%s, %s) from %q = %v, want %v", i, tenant, user, s.ip, got, s.d)
							}
						default:
							t.Fatalf("step %d: unknown op %q", i, s.op)
						}
					}
				})
			}
		})
	}
}

func TestGenericKeys(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			lim := b.new(t, Config{Now: clk.Now, FreeFailures: 2, FreeFailuresPerIP: 3})
			ctx := context.Background()
			check := func(key string, want time.Duration) {
				t.Helper()
				got, err := lim.Check(ctx, key)
				if err != nil || got != want {
					t.Fatalf("Check(%q) = %v, %v; want %v", key, got, err, want)
				}
			}
			client, ip := ClientKey("svc"), IPKey(ipA)
			for range 2 {
				check(client, 0)
				lim.Fail(ctx, client)
				lim.Fail(ctx, ip)
			}
			check(client, time.Second) // FreeFailures for client keys
			check(ip, 0)               // FreeFailuresPerIP for ip: keys
			lim.Fail(ctx, ip)
			check(ip, time.Second)
			lim.Fail(ctx, client)
			check(client, 2*time.Second)
			lim.Reset(ctx, client)
			check(client, 0)
			check(ip, time.Second)
			// The password grant sees the IP locked by client-auth failures.
			if got, _ := lim.Allow(reqCtx(ipA), "t", "u"); got != time.Second {
				t.Fatalf("Allow = %v, want 1s", got)
			}
			// Long keys are hashed, consistently.
			long := AccountKey("t", strings.Repeat("x", 10_000))
			lim.Fail(ctx, long)
			lim.Fail(ctx, long)
			check(long, time.Second)
			check(AccountKey("t", strings.Repeat("x", 9_999)), 0)
		})
	}
}

// TestConcurrent records failures from many goroutines (run with -race)
// and checks that none was lost: the thresholds equal the exact totals, so
// the keys are locked for exactly BaseDelay only if every failure counted
// (one fewer: not locked; one more: 2×BaseDelay).
func TestConcurrent(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			const workers, each = 16, 10
			clk := newClock()
			lim := b.new(t, Config{Now: clk.Now, FreeFailures: workers * each, FreeFailuresPerIP: 2 * each})
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					ctx := reqCtx(fmt.Sprintf("192.0.2.%d", w+1))
					for i := range each {
						lim.Record(ctx, "t", "shared", false)
						lim.Record(ctx, "t", fmt.Sprintf("w%d-%d", w, i), false)
						if _, err := lim.Allow(ctx, "t", "shared"); err != nil {
							t.Error(err)
						}
						if i%3 == 0 {
							lim.Record(ctx, "t", fmt.Sprintf("w%d-%d", w, i), true)
						}
					}
				})
			}
			wg.Wait()
			for _, key := range []string{AccountKey("t", "shared"), IPKey("192.0.2.1"), IPKey("192.0.2.16")} {
				if got, _ := lim.Check(context.Background(), key); got != time.Second {
					t.Errorf("Check(%q) = %v, want 1s", key, got)
				}
			}
			if got, _ := lim.Check(context.Background(), AccountKey("t", "w0-1")); got != 0 {
				t.Errorf("single-failure account locked: %v", got)
			}
		})
	}
}

func TestLockFor(t *testing.T) {
	p := policy{free: 5, base: time.Second, max: 15 * time.Minute}
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {4, 0}, {5, time.Second}, {6, 2 * time.Second}, {7, 4 * time.Second},
		{14, 512 * time.Second}, {15, 15 * time.Minute}, {1 << 40, 15 * time.Minute},
	} {
		if got := lockFor(tc.failures, p); got != tc.want {
			t.Errorf("lockFor(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
	// No overflow with an extreme cap.
	huge := policy{free: 1, base: time.Nanosecond, max: time.Duration(1<<63 - 1)}
	if got := lockFor(200, huge); got != huge.max {
		t.Errorf("lockFor(200, huge) = %v", got)
	}
}

func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "ip:192.0.2.7",
		"::ffff:192.0.2.7":     "ip:192.0.2.7",
		"2001:db8:a:b:c:d:e:f": "ip:2001:db8:a:b::/64",
		"fe80::1%eth0":         "ip:fe80::/64",
		"not-an-ip":            "ip:not-an-ip",
		"":                     "ip:",
	} {
		if got := IPKey(in); got != want {
			t.Errorf("IPKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMemoryEviction(t *testing.T) {
	clk := newClock()
	lim := New(Config{Now: clk.Now, FreeFailures: 1, MaxKeys: 3})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		lim.Fail(ctx, k)
		clk.Advance(time.Millisecond)
	}
	lim.Fail(ctx, "a") // a is now the most recently failed
	lim.Fail(ctx, "d") // evicts b, the least recently failed
	if n := lim.local.size(); n != 3 {
		t.Fatalf("size = %d, want 3", n)
	}
	for k, locked := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		got, _ := lim.Check(ctx, k)
		if (got > 0) != locked {
			t.Errorf("Check(%q) = %v, want locked=%v", k, got, locked)
		}
	}
	// Expired entries are dropped as new failures arrive.
	clk.Advance(time.Hour)
	lim.Fail(ctx, "e")
	lim.Fail(ctx, "f")
	if n := lim.local.size(); n > 3 {
		t.Fatalf("size = %d after expiry", n)
	}
}

// TestRedisDownFallsBack points the limiter at a closed port: it must keep
// throttling with the in-process state and log a (rate-limited) warning.
func TestRedisDownFallsBack(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		DialerRetries: 1, DialerRetryTimeout: time.Microsecond})
	defer rdb.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	clk := newClock()
	lim := New(Config{Now: clk.Now, Redis: rdb, Logger: logger})
	ctx := reqCtx(ipA)
	for range 5 {
		if got, err := lim.Allow(ctx, "t", "alice"); err != nil || got != 0 {
			t.Fatalf("Allow = %v, %v", got, err)
		}
		lim.Record(ctx, "t", "alice", false)
	}
	if got, err := lim.Allow(ctx, "t", "alice"); err != nil || got != time.Second {
		t.Fatalf("Allow after 5 failures = %v, %v; want 1s", got, err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Fatalf("want exactly one warning within a minute, got %d:\n%s", n, out)
	}
	clk.Advance(time.Minute)
	_, _ = lim.Allow(ctx, "t", "alice")
	mu.Lock()
	out = buf.String()
	mu.Unlock()
	if n := strings.Count(out, "level=WARN"); n != 2 || !strings.Contains(out, "suppressed=") {
		t.Fatalf("want a second warning with the suppressed count:\n%s", out)
	}
}

// failHandler fails the test on every log record.
type failHandler struct{ t *testing.T }

func (h failHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h failHandler) Handle(_ context.Context, r slog.Record) error {
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	h.t.Errorf("unexpected log: %s %v", r.Message, attrs)
	return nil
}
func (h failHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h failHandler) WithGroup(string) slog.Handler      { return h }

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRedisSharedAndExpiring checks what only the Redis backend does: two
// instances share state, and keys carry a TTL so Redis cleans them up.
func TestRedisSharedAndExpiring(t *testing.T) {
	rdb, prefix := testRedis(t)
	clk := newClock()
	cfg := Config{Now: clk.Now, Redis: rdb, KeyPrefix: prefix, FreeFailures: 2, Window: time.Minute}
	cfg.Logger = slog.New(failHandler{t})
	a, b := New(cfg), New(cfg)
	ctx := reqCtx(ipA)
	a.Record(ctx, "t", "alice", false)
	b.Record(ctx, "t", "alice", false)
	for name, l := range map[string]*Limiter{"a": a, "b": b} {
		if got, _ := l.Allow(ctx, "t", "alice"); got != time.Second {
			t.Errorf("instance %s: Allow = %v, want 1s", name, got)
		}
	}
	ttl, err := rdb.PTTL(context.Background(), prefix+AccountKey("t", "alice")).Result()
	if err != nil {
		t.Fatal(err)
	}
	// exp = lock end (1s) + Window (1m), relative to now.
	if ttl <= 0 || ttl > time.Minute+time.Second {
		t.Errorf("PTTL = %v, want in (0, 61s]", ttl)
	}
	b.Record(ctx, "t", "alice", true)
	if got, _ := a.Allow(ctx, "t", "alice"); got != 0 {
		t.Errorf("after success on b, a.Allow = %v", got)
	}
	if n, _ := rdb.Exists(context.Background(), prefix+AccountKey("t", "alice")).Result(); n != 0 {
		t.Errorf("account key still exists after success")
	}
}
