package storage

import (
	"context"
	"sync"
	"time"
)

// clientCache remembers client records for a short time, because every
// token request and every introspection authenticates a client and the
// record almost never changes. Changes made through this Store invalidate
// the entry at once; changes made by another instance are seen after at
// most the TTL (documented in docs/security.md).
type clientCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]clientEntry
}

type clientEntry struct {
	c       Client
	fetched time.Time
}

const maxCachedClients = 10000

func (cc *clientCache) get(id string, now time.Time) (*Client, bool) {
	if cc == nil || cc.ttl <= 0 {
		return nil, false
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.m[id]
	if !ok || now.Sub(e.fetched) >= cc.ttl {
		return nil, false
	}
	c := e.c
	return &c, true
}

func (cc *clientCache) put(c *Client, now time.Time) {
	if cc == nil || cc.ttl <= 0 {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.m) >= maxCachedClients {
		clear(cc.m)
	}
	cc.m[c.ID] = clientEntry{c: *c, fetched: now}
}

// InvalidateClient drops a client from the cache; every method of Store
// that changes a client calls it.
func (s *Store) InvalidateClient(id string) {
	if s.clients == nil {
		return
	}
	s.clients.mu.Lock()
	delete(s.clients.m, id)
	s.clients.mu.Unlock()
}

// SetClientCacheTTL sets how long client records are cached (0 disables).
func (s *Store) SetClientCacheTTL(d time.Duration) {
	s.clients = &clientCache{ttl: d, m: make(map[string]clientEntry)}
}

// cachedClient returns a client for authentication and token hydration,
// from the cache when fresh. Inside a transaction it always reads the
// database, so a transaction sees its own writes.
func (s *Store) cachedClient(ctx context.Context, id string) (*Client, error) {
	_, inTx := ctx.Value(txKey{}).(*txState)
	now := s.now()
	if !inTx {
		if c, ok := s.clients.get(id, now); ok {
			c.now = s.now
			return c, nil
		}
	}
	c, err := s.LookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if !inTx {
		s.clients.put(c, now)
	}
	return c, nil
}
