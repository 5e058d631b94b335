package throttle

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore is the shared backend. Each key is a hash with fields
// n (failures), until and exp (lock end and expiry, Unix milliseconds on
// the Limiter's clock). The Redis TTL only garbage-collects the hash; the
// logical expiry is exp, so behaviour does not depend on Redis' clock.
type redisStore struct {
	rdb    *redis.Client
	prefix string
}

// failScript atomically records one failure and returns the lock end.
// KEYS[1]: hash. ARGV: now, window, free, base, max (milliseconds, count).
var failScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local free = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local maxd = tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'n', 'until', 'exp')
local n = tonumber(v[1]) or 0
local lock = tonumber(v[2]) or 0
local exp = tonumber(v[3]) or 0
if now >= exp then
  n = 0
  lock = 0
end
n = n + 1
if n >= free then
  local d = base
  local k = n - free
  while k > 0 and d < maxd do
    d = d * 2
    k = k - 1
  end
  if d > maxd then d = maxd end
  if now + d > lock then lock = now + d end
end
local last = now
if lock > last then last = lock end
exp = last + window
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n),
  'until', string.format('%.0f', lock), 'exp', string.format('%.0f', exp))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', exp - now))
return string.format('%.0f', lock)
`)

// ms converts a duration to whole milliseconds, rounding up so that a
// positive duration never becomes 0.
func ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func (s *redisStore) fail(ctx context.Context, now time.Time, key string, p policy) (time.Time, error) {
	res, err := failScript.Run(ctx, s.rdb, []string{s.prefix + key},
		now.UnixMilli(), ms(p.window), p.free, ms(p.base), ms(p.max)).Text()
	if err != nil {
		return time.Time{}, err
	}
	until, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	if until == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(until), nil
}

func (s *redisStore) lockedUntil(ctx context.Context, now time.Time, keys []string) ([]time.Time, error) {
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HMGet(ctx, s.prefix+k, "until", "exp")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	nowMS := now.UnixMilli()
	out := make([]time.Time, len(keys))
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 2 || v[0] == nil || v[1] == nil {
			continue // no such key
		}
		until, err1 := parseField(v[0])
		exp, err2 := parseField(v[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if nowMS < exp && until > 0 {
			out[i] = time.UnixMilli(until)
		}
	}
	return out, nil
}

func parseField(v any) (int64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, errors.New("throttle: unexpected redis value")
	}
	return strconv.ParseInt(s, 10, 64)
}

func (s *redisStore) reset(ctx context.Context, key string) error {
	return s.rdb.Del(ctx, s.prefix+key).Err()
}
