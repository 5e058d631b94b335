package verify

import "testing"

func TestLRU(t *testing.T) {
	c := newLRU[int, string](2)
	c.Add(1, "a")
	c.Add(2, "b")
	if _, ok := c.Get(1); !ok { // 1 becomes most recent
		t.Fatal("missing 1")
	}
	c.Add(3, "c") // evicts 2
	if _, ok := c.Get(2); ok {
		t.Fatal("2 not evicted")
	}
	if v, ok := c.Get(1); !ok || v != "a" {
		t.Fatal("1 evicted instead of 2")
	}
	c.Add(1, "a2")
	if v, _ := c.Get(1); v != "a2" || c.Len() != 2 {
		t.Fatal("update failed")
	}
	c.Remove(1)
	c.Remove(42)
	if _, ok := c.Get(1); ok || c.Len() != 1 {
		t.Fatal("remove failed")
	}
}
