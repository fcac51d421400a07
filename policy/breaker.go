package policy

import (
	"slices"
	"sync"
	"time"

	"warden/schema"
)

// Breaker is a circuit breaker per source (Request.SourceKey): after
// Failures consecutive failed evaluations (denied or invalid) the source's
// circuit opens for OpenSeconds, during which its requests are denied at
// once (CircuitOpen) without evaluation; then it closes by itself with the
// count at zero. Only sources with failures are remembered. Safe for
// concurrent use.
type Breaker struct {
	mu         sync.Mutex
	failures   int
	open       time.Duration
	maxSources int
	sources    map[string]*circuit
}

type circuit struct {
	fails     int
	last      time.Time // of the last failure
	openUntil time.Time // zero while closed
}

// NewBreaker returns a Breaker for cfg; zero fields take the defaults
// (schema.DefaultBreakerFailures, schema.DefaultBreakerOpenSecond).
func NewBreaker(cfg schema.CircuitBreaker) *Breaker {
	return &Breaker{
		failures:   cmpOrInt(cfg.Failures, schema.DefaultBreakerFailures),
		open:       time.Duration(cmpOrInt(cfg.OpenSeconds, schema.DefaultBreakerOpenSecond)) * time.Second,
		maxSources: DefaultMaxSources,
		sources:    map[string]*circuit{},
	}
}

// Allow reports whether a request of source key may be evaluated at now.
// When it may not, until is when the circuit closes.
func (b *Breaker) Allow(key string, now time.Time) (ok bool, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.sources[key]
	switch {
	case c == nil || c.openUntil.IsZero():
		return true, time.Time{}
	case now.Before(c.openUntil):
		return false, c.openUntil
	}
	delete(b.sources, key) // the open period is over: closed, count at zero
	return true, time.Time{}
}

// Record counts the result of one evaluation of source key. A success
// resets the count. It returns true when this failure opened the circuit:
// audit CIRCUIT_OPEN then, once per opening. Failures recorded while the
// circuit is open (evaluations already in flight) do not count.
func (b *Breaker) Record(key string, failed bool, now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.sources[key]
	if !failed {
		delete(b.sources, key)
		return false
	}
	if c == nil {
		if len(b.sources) >= b.maxSources {
			b.evict(now)
		}
		c = &circuit{}
		b.sources[key] = c
	}
	if !c.openUntil.IsZero() {
		if now.Before(c.openUntil) {
			return false
		}
		*c = circuit{}
	}
	c.fails++
	c.last = now
	if c.fails >= b.failures {
		c.openUntil = now.Add(b.open)
		return true
	}
	return false
}

// Len is the number of sources remembered.
func (b *Breaker) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sources)
}

// Sweep forgets circuits whose open period ended before now; it returns
// how many.
func (b *Breaker) Sweep(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sweep(now)
}

func (b *Breaker) sweep(now time.Time) int {
	n := 0
	for k, c := range b.sources {
		if !c.openUntil.IsZero() && !now.Before(c.openUntil) {
			delete(b.sources, k)
			n++
		}
	}
	return n
}

// evict makes room: expired circuits first, then a quarter of the rest,
// closed ones with the oldest last failure before open ones closing soonest
// (forgetting an open circuit lets its source straight back in).
func (b *Breaker) evict(now time.Time) {
	if b.sweep(now) > 0 {
		return
	}
	type kv struct {
		k    string
		open bool
		at   time.Time
	}
	all := make([]kv, 0, len(b.sources))
	for k, c := range b.sources {
		if c.openUntil.IsZero() {
			all = append(all, kv{k, false, c.last})
		} else {
			all = append(all, kv{k, true, c.openUntil})
		}
	}
	slices.SortFunc(all, func(x, y kv) int {
		if x.open != y.open {
			if x.open {
				return 1
			}
			return -1
		}
		return x.at.Compare(y.at)
	})
	for _, e := range all[:len(all)/4+1] {
		delete(b.sources, e.k)
	}
}
