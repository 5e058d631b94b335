package verify

import "sync"

// lru is a small mutex-guarded least-recently-used map with a fixed bound.
// It avoids a dependency for the two caches of a Verifier.
type lru[K comparable, V any] struct {
	mu   sync.Mutex
	max  int
	m    map[K]*lruNode[K, V]
	root lruNode[K, V] // sentinel of a circular doubly linked list, front = most recent
}

type lruNode[K comparable, V any] struct {
	key        K
	val        V
	prev, next *lruNode[K, V]
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	if max < 1 {
		max = 1
	}
	c := &lru[K, V]{max: max, m: make(map[K]*lruNode[K, V], min(max, 1024))}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

func (c *lru[K, V]) unlink(n *lruNode[K, V]) {
	n.prev.next, n.next.prev = n.next, n.prev
}

func (c *lru[K, V]) pushFront(n *lruNode[K, V]) {
	n.prev, n.next = &c.root, c.root.next
	n.prev.next, n.next.prev = n, n
}

// Get returns the value for k and marks it most recently used.
func (c *lru[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	if c.root.next != n {
		c.unlink(n)
		c.pushFront(n)
	}
	return n.val, true
}

// Add stores v under k, evicting the least recently used entry when full.
func (c *lru[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.m[k]; ok {
		n.val = v
		c.unlink(n)
		c.pushFront(n)
		return
	}
	var n *lruNode[K, V]
	if len(c.m) >= c.max {
		// Reuse the evicted node to keep a full cache allocation-free.
		n = c.root.prev
		c.unlink(n)
		delete(c.m, n.key)
		*n = lruNode[K, V]{}
	} else {
		n = new(lruNode[K, V])
	}
	n.key, n.val = k, v
	c.m[k] = n
	c.pushFront(n)
}

// Remove deletes k if present.
func (c *lru[K, V]) Remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.m[k]; ok {
		c.unlink(n)
		delete(c.m, k)
	}
}

// Len returns the number of entries.
func (c *lru[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
