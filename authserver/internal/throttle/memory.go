package throttle

import (
	"container/list"
	"sync"
	"time"
)

// memStore is the in-process backend: a map plus a list ordered by last
// failure, so the least recently failed key is evicted when the store is
// full. Expired entries are dropped lazily.
type memStore struct {
	mu  sync.Mutex
	m   map[string]*list.Element // of *memEntry
	lru *list.List               // front: least recently failed
	max int
}

type memEntry struct {
	key      string
	failures int
	until    time.Time // locked before this instant
	expires  time.Time // forgotten at this instant
}

func newMemStore(max int) *memStore {
	return &memStore{m: make(map[string]*list.Element), lru: list.New(), max: max}
}

// fail records a failure of key at now and returns the lock end (which may
// be in the past or zero when the key is not locked).
func (s *memStore) fail(now time.Time, key string, p policy) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *memEntry
	if el, ok := s.m[key]; ok {
		e = el.Value.(*memEntry)
		if !now.Before(e.expires) {
			*e = memEntry{key: key}
		}
		s.lru.MoveToBack(el)
	} else {
		e = &memEntry{key: key}
		s.m[key] = s.lru.PushBack(e)
	}
	e.failures++
	if d := lockFor(e.failures, p); d > 0 {
		if u := now.Add(d); u.After(e.until) {
			e.until = u
		}
	}
	last := now
	if e.until.After(last) {
		last = e.until
	}
	e.expires = last.Add(p.window)
	s.gc(now)
	return e.until
}

// gc evicts entries beyond the size bound and a few expired ones from the
// front, which keeps the store from holding long-dead keys indefinitely.
func (s *memStore) gc(now time.Time) {
	for s.lru.Len() > s.max {
		s.remove(s.lru.Front())
	}
	for i := 0; i < 2; i++ {
		el := s.lru.Front()
		if el == nil || now.Before(el.Value.(*memEntry).expires) {
			return
		}
		s.remove(el)
	}
}

func (s *memStore) remove(el *list.Element) {
	delete(s.m, el.Value.(*memEntry).key)
	s.lru.Remove(el)
}

// lockedUntil returns each key's lock end (zero when not locked).
func (s *memStore) lockedUntil(now time.Time, keys []string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Time, len(keys))
	for i, k := range keys {
		el, ok := s.m[k]
		if !ok {
			continue
		}
		if e := el.Value.(*memEntry); now.Before(e.expires) {
			out[i] = e.until
		}
	}
	return out
}

func (s *memStore) reset(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.m[key]; ok {
		s.remove(el)
	}
}

func (s *memStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}
