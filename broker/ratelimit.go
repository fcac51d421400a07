package broker

import (
	"sync"
	"time"
)

// maxLimiterKeys bounds the limiter's memory; past it, keys idle for a
// whole window are forgotten.
const maxLimiterKeys = 4096

// auditLimiter lets the first refusal of a kind through at once, then at
// most one per window, so a client looping on a forbidden topic (or a local
// process reconnecting without a certificate) cannot flood the audit log.
// The event that ends a quiet period reports how many were suppressed.
type auditLimiter struct {
	now    func() time.Time
	window time.Duration

	mu   sync.Mutex
	keys map[string]*limitEntry
}

type limitEntry struct {
	last       time.Time // when an event for this key was last let through
	suppressed int
}

func newAuditLimiter(now func() time.Time, window time.Duration) *auditLimiter {
	return &auditLimiter{now: now, window: window, keys: map[string]*limitEntry{}}
}

// allow reports whether an event for key should be audited now and, if so,
// how many were suppressed since the last one audited.
func (l *auditLimiter) allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.keys[key]
	if !found {
		if len(l.keys) >= maxLimiterKeys {
			l.pruneLocked(now)
		}
		l.keys[key] = &limitEntry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.window {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed, e.last = e.suppressed, 0, now
	return true, suppressed
}

func (l *auditLimiter) pruneLocked(now time.Time) {
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.window {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= maxLimiterKeys {
		// Everything is recent: a flood of distinct keys. Forgetting them
		// costs at most one more audit event per key.
		clear(l.keys)
	}
}
