package schema

import "sync"

// cacheSize bounds the validated-document cache. A generation of 100,000
// documents fits; past that the cache starts over rather than grow.
const cacheSize = 200_000

// docCache maps a document's SHA-256 to its validated form, so a document
// that is re-applied unchanged is never validated twice.
type docCache struct {
	mu sync.RWMutex
	m  map[[32]byte]*Document
}

var cache = &docCache{m: map[[32]byte]*Document{}}

func (c *docCache) get(k [32]byte) *Document {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[k]
}

func (c *docCache) put(k [32]byte, d *Document) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= cacheSize {
		c.m = map[[32]byte]*Document{}
	}
	c.m[k] = d
}
