// Package throttle slows down password guessing with per-key exponential
// backoff.
//
// # Model
//
// Every throttled subject is a string key. Each failure recorded for a key
// increments its failure count. Once the count reaches the key's threshold
// ("free failures") the key is locked:
//
//	lock = BaseDelay × 2^(failures − threshold), capped at MaxDelay
//
// so with the defaults (threshold 5, BaseDelay 1s) the first five failures
// cost nothing, the fifth locks the key for 1s, the sixth for 2s, the seventh
// for 4s, … up to 15m. A failure while a key is locked extends the lock; it
// never shortens it. The count is forgotten after Window (default 15m)
// without failures, measured from the later of the last failure and the end
// of the lock, so an attacker who waits out a long lock does not get a fresh
// set of free failures.
//
// # Keys
//
// The password grant ([Limiter.Allow] and [Limiter.Record]) uses two keys
// per attempt:
//
//   - [AccountKey] (acct:<tenant>\x00<username>), threshold
//     Config.FreeFailures. A successful login resets it.
//   - [IPKey] (ip:<address>), threshold Config.FreeFailuresPerIP, which is
//     higher so that many users behind one NAT are not locked out by one
//     user's typos. A successful login does not reset it, otherwise an
//     attacker with one valid account could launder its failures. IPv6
//     addresses are aggregated to their /64, which a single host
//     typically controls entirely.
//
// Allow returns the longer of the two remaining locks.
//
// The same Limiter can throttle other credential checks through the generic
// [Limiter.Check], [Limiter.Fail] and [Limiter.Reset]. For client
// authentication failures at the token endpoint use [ClientKey] and
// [IPKey]:
//
//	ip := storage.RequestInfoFrom(ctx).IP
//	wait, _ := lim.Check(ctx, throttle.ClientKey(id))      // before verifying the secret
//	if w, _ := lim.Check(ctx, throttle.IPKey(ip)); w > wait { wait = w }
//	if wait > 0 { /* 429 + Retry-After, do not verify */ }
//	...
//	if badSecret {
//		lim.Fail(ctx, throttle.ClientKey(id))
//		lim.Fail(ctx, throttle.IPKey(ip))
//	} else {
//		lim.Reset(ctx, throttle.ClientKey(id))
//	}
//
// Keys starting with "ip:" get the per-IP threshold; every other key gets
// Config.FreeFailures.
//
// # Storage and failure mode
//
// Without Config.Redis the state lives in process memory (bounded to
// Config.MaxKeys keys, evicting the least recently failed). With Redis the
// state is shared by all instances. If a Redis call fails the Limiter
// neither fails open (that would switch brute-force protection off exactly
// when an attacker can cause Redis trouble, e.g. by flooding it) nor closed
// (that would lock every user out of login during a Redis outage); it falls
// back, for that call, to the in-process state, which always mirrors the
// failures seen by this instance. Protection thus degrades to per-instance
// limits — still bounding guesses to a small multiple of the configured
// rate — and a warning is logged (at most once per minute, with the number
// of suppressed errors). Consequently Allow and Check never return an error
// today; the error result is kept for the oauth.LoginThrottle contract.
//
// All time arithmetic uses Config.Now (Redis' clock is used only to garbage
// collect expired keys), so instances should have reasonably synchronised
// clocks. The Redis backend stores times with millisecond resolution.
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// Defaults applied by [New] to zero (or negative) Config fields.
const (
	DefaultFreeFailures      = 5
	DefaultFreeFailuresPerIP = 20
	DefaultBaseDelay         = time.Second
	DefaultMaxDelay          = 15 * time.Minute
	DefaultWindow            = 15 * time.Minute
	DefaultMaxKeys           = 100_000
	DefaultKeyPrefix         = "epitwin:throttle:"
)

// Config configures a [Limiter]. Zero fields take the Default* values.
type Config struct {
	// FreeFailures is the number of failures within Window after which an
	// account (or any non-IP key) is locked.
	FreeFailures int
	// FreeFailuresPerIP is the same threshold for IP keys.
	FreeFailuresPerIP int
	// BaseDelay is the first lock; each further failure doubles it.
	BaseDelay time.Duration
	// MaxDelay caps a single lock.
	MaxDelay time.Duration
	// Window is how long failures are remembered without new failures.
	Window time.Duration
	// Redis, when set, holds the state shared by all instances; nil keeps
	// the state in process memory. Every login waits for Redis, so give the
	// client short timeouts (ReadTimeout, DialTimeout, DialerRetries): while
	// Redis is down each call pays them before falling back.
	Redis *redis.Client
	// KeyPrefix prefixes every Redis key (default "epitwin:throttle:").
	KeyPrefix string
	// MaxKeys bounds the in-process state (default 100k keys); the least
	// recently failed keys are evicted first.
	MaxKeys int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives Redis errors (default slog.Default()).
	Logger *slog.Logger
}

// Limiter throttles failed credential checks. It is safe for concurrent use
// and implements oauth.LoginThrottle.
type Limiter struct {
	cfg    Config
	local  *memStore
	remote *redisStore // nil without Redis

	lastWarn   atomic.Int64 // unix nanos of the last logged Redis error
	suppressed atomic.Int64 // Redis errors not logged since
}

// policy is the per-key part of the configuration passed to a backend.
type policy struct {
	free   int
	base   time.Duration
	max    time.Duration
	window time.Duration
}

// New returns a Limiter for cfg, filling in defaults.
func New(cfg Config) *Limiter {
	if cfg.FreeFailures <= 0 {
		cfg.FreeFailures = DefaultFreeFailures
	}
	if cfg.FreeFailuresPerIP <= 0 {
		cfg.FreeFailuresPerIP = DefaultFreeFailuresPerIP
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.MaxDelay < cfg.BaseDelay {
		cfg.MaxDelay = cfg.BaseDelay
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Limiter{cfg: cfg, local: newMemStore(cfg.MaxKeys)}
	if cfg.Redis != nil {
		l.remote = &redisStore{rdb: cfg.Redis, prefix: cfg.KeyPrefix}
	}
	return l
}

// AccountKey is the key of a tenant's user account.
func AccountKey(tenantID, username string) string {
	return "acct:" + tenantID + "\x00" + username
}

// IPKey is the key of a client address. IPv4-mapped IPv6 addresses are
// unmapped, other IPv6 addresses are reduced to their /64 and zones are
// dropped; strings that are not IP addresses are used verbatim.
func IPKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip:" + ip
	}
	a = a.WithZone("").Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// ClientKey is the key of an OAuth client, for client authentication
// failures.
func ClientKey(clientID string) string {
	return "client:" + clientID
}

// Allow implements oauth.LoginThrottle: it returns how long the caller must
// wait before the password of username may be checked, considering the
// account and the client IP from storage.RequestInfoFrom(ctx) (skipped when
// empty). The error is always nil (see the package doc on Redis failures).
func (l *Limiter) Allow(ctx context.Context, tenantID, username string) (time.Duration, error) {
	keys := []string{AccountKey(tenantID, username)}
	if ip := storage.RequestInfoFrom(ctx).IP; ip != "" {
		keys = append(keys, IPKey(ip))
	}
	return l.check(ctx, keys...), nil
}

// Record implements oauth.LoginThrottle: a failure counts against the
// account and the client IP; a success resets the account only.
func (l *Limiter) Record(ctx context.Context, tenantID, username string, success bool) {
	acct := AccountKey(tenantID, username)
	if success {
		l.Reset(ctx, acct)
		return
	}
	l.Fail(ctx, acct)
	if ip := storage.RequestInfoFrom(ctx).IP; ip != "" {
		l.Fail(ctx, IPKey(ip))
	}
}

// Check returns how long key is still locked (0 when it is not). The error
// is always nil (see the package doc on Redis failures).
func (l *Limiter) Check(ctx context.Context, key string) (time.Duration, error) {
	return l.check(ctx, key), nil
}

// Fail records a failure for key, locking it once its threshold is reached
// (FreeFailuresPerIP for keys starting with "ip:", FreeFailures otherwise).
func (l *Limiter) Fail(ctx context.Context, key string) {
	p := policy{free: l.cfg.FreeFailures, base: l.cfg.BaseDelay, max: l.cfg.MaxDelay, window: l.cfg.Window}
	if strings.HasPrefix(key, "ip:") {
		p.free = l.cfg.FreeFailuresPerIP
	}
	key = storeKey(key)
	now := l.cfg.Now()
	// The local state mirrors this instance's failures even with Redis so
	// that a Redis outage degrades to per-instance limits with history.
	l.local.fail(now, key, p)
	if l.remote != nil {
		if _, err := l.remote.fail(ctx, now, key, p); err != nil {
			l.warn(ctx, "fail", err)
		}
	}
}

// Reset forgets the failures and lock of key.
func (l *Limiter) Reset(ctx context.Context, key string) {
	key = storeKey(key)
	l.local.reset(key)
	if l.remote != nil {
		if err := l.remote.reset(ctx, key); err != nil {
			l.warn(ctx, "reset", err)
		}
	}
}

func (l *Limiter) check(ctx context.Context, keys ...string) time.Duration {
	for i, k := range keys {
		keys[i] = storeKey(k)
	}
	now := l.cfg.Now()
	var until []time.Time
	if l.remote != nil {
		var err error
		if until, err = l.remote.lockedUntil(ctx, now, keys); err != nil {
			l.warn(ctx, "check", err)
			until = nil
		}
	}
	if until == nil {
		until = l.local.lockedUntil(now, keys)
	}
	var wait time.Duration
	for _, u := range until {
		if d := u.Sub(now); d > wait {
			wait = d
		}
	}
	return wait
}

// warn logs a Redis error, at most once per minute.
func (l *Limiter) warn(ctx context.Context, op string, err error) {
	now := l.cfg.Now().UnixNano()
	last := l.lastWarn.Load()
	if last != 0 && now-last < int64(time.Minute) || !l.lastWarn.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	l.cfg.Logger.WarnContext(ctx, "throttle: redis unavailable, using in-process limits",
		"op", op, "error", err, "suppressed", l.suppressed.Swap(0))
}

// maxKeyLen bounds stored keys: usernames come from the request, so a long
// one is replaced by its hash to keep memory and Redis key sizes bounded.
const maxKeyLen = 256

func storeKey(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// lockFor returns the lock after failures failures under p (0: no lock).
func lockFor(failures int, p policy) time.Duration {
	if failures < p.free {
		return 0
	}
	d := p.base
	for k := failures - p.free; k > 0 && d < p.max; k-- {
		if d > p.max/2 {
			return p.max
		}
		d *= 2
	}
	return min(d, p.max)
}
