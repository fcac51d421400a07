package policy

import (
	"slices"
	"sync"
	"time"

	"warden/schema"
)

// DefaultMaxSources bounds how many sources a Limiter or Breaker
// remembers; past it, the least recently active are forgotten.
const DefaultMaxSources = 10_000

// Limiter limits evaluations per source (Request.SourceKey) with a token
// bucket: PerMinute tokens a minute and a burst of PerMinute. A request
// above the rate is not dropped but given a wait: its place in a queue of
// at most Queue requests; past that it is refused. The limiter only
// computes: the caller waits (in order, since each later reservation waits
// longer) and answers 429 when refused. Safe for concurrent use.
type Limiter struct {
	mu         sync.Mutex
	interval   time.Duration // between two tokens
	tolerance  time.Duration // how far ahead of now the bucket may run: the burst
	queue      int
	maxSources int
	sources    map[string]*limitState
}

// limitState is one source's bucket, as the theoretical arrival time of
// its next request (GCRA): the bucket is full when tat <= now.
type limitState struct {
	tat     time.Time
	limited bool // refused since the queue last drained: a burst in progress
}

// Reservation is a Limiter's answer for one request.
type Reservation struct {
	// OK is false when the queue is full: answer 429.
	OK bool
	// Wait is how long the request must wait before it is evaluated.
	Wait time.Duration
	// Audit is set on the first refusal of a burst: audit RATE_LIMITED
	// once for it, not for every refused request. A burst ends when the
	// source is back within its rate (a request needs no wait).
	Audit bool
}

// NewLimiter returns a Limiter for cfg; zero fields take the defaults
// (schema.DefaultRateLimitPerMin, schema.DefaultRateLimitQueue).
func NewLimiter(cfg schema.RateLimit) *Limiter {
	per := cmpOrInt(cfg.PerMinute, schema.DefaultRateLimitPerMin)
	interval := time.Minute / time.Duration(per)
	return &Limiter{
		interval:   interval,
		tolerance:  time.Duration(per-1) * interval,
		queue:      cmpOrInt(cfg.Queue, schema.DefaultRateLimitQueue),
		maxSources: DefaultMaxSources,
		sources:    map[string]*limitState{},
	}
}

func cmpOrInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Reserve takes a place for one request of source key at now.
func (l *Limiter) Reserve(key string, now time.Time) Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[key]
	if s == nil {
		if len(l.sources) >= l.maxSources {
			l.evict(now)
		}
		s = &limitState{tat: now}
		l.sources[key] = s
	}
	tat := s.tat
	if tat.Before(now) || tat.Sub(now) > l.tolerance+time.Duration(l.queue+1)*l.interval {
		// Full bucket, or a tat no reservation could have set: the clock
		// went back, and the source starts afresh rather than wait for it.
		tat = now
	}
	wait := tat.Sub(now) - l.tolerance
	if wait <= 0 {
		s.tat, s.limited = tat.Add(l.interval), false
		return Reservation{OK: true}
	}
	// The k-th request waiting waits between (k-1) and k intervals.
	if place := (wait + l.interval - 1) / l.interval; place > time.Duration(l.queue) {
		first := !s.limited
		s.limited = true
		return Reservation{Wait: wait, Audit: first}
	}
	s.tat = tat.Add(l.interval)
	return Reservation{OK: true, Wait: wait}
}

// Len is the number of sources remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// Sweep forgets the sources whose bucket is full again at now: they are no
// different from a source never seen. It returns how many it forgot.
func (l *Limiter) Sweep(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sweep(now)
}

func (l *Limiter) sweep(now time.Time) int {
	n := 0
	for k, s := range l.sources {
		if !s.tat.After(now) {
			delete(l.sources, k)
			n++
		}
	}
	return n
}

// evict makes room: idle sources first, then, if every source is busy,
// the quarter whose buckets refill soonest (they owe the least).
func (l *Limiter) evict(now time.Time) {
	if l.sweep(now) > 0 {
		return
	}
	type kv struct {
		k   string
		tat time.Time
	}
	all := make([]kv, 0, len(l.sources))
	for k, s := range l.sources {
		all = append(all, kv{k, s.tat})
	}
	slices.SortFunc(all, func(a, b kv) int { return a.tat.Compare(b.tat) })
	for _, e := range all[:len(all)/4+1] {
		delete(l.sources, e.k)
	}
}
