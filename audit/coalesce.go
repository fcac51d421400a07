package audit

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxField caps each string field of a refusal event (paths, names,
// identities, header values): a refused caller decides their length.
const MaxField = 256

// maxCoalesceKeys bounds a Coalescer's memory: past it, every pending count
// is written out and the keys are forgotten.
const maxCoalesceKeys = 4096

// Coalescer records refusals (AUTHORIZATION_FAILED,
// PROCESS_AUTHENTICATION_FAILED, RATE_LIMITED) so that a flood cannot fill
// the log: every string field is capped at MaxField bytes, the first
// refusal of a key (a peer and what it was refused) is written at once,
// and the repeats within the next window are counted and written as one
// event (the first one's fields, details.repeated = N, the window) when
// the window ends. No first refusal is ever dropped, and no count is lost
// when the flood stops. The API and the broker share it. Safe for
// concurrent use.
type Coalescer struct {
	w      *Writer
	window time.Duration
	now    func() time.Time

	mu     sync.Mutex
	keys   map[string]*coalesced
	timer  *time.Timer
	closed bool
}

type coalesced struct {
	ev     Event // the first refusal of the window, capped
	start  time.Time
	repeat int
}

// NewCoalescer writes through w, counting repeats per window (default one
// minute) on clock now (default time.Now).
func NewCoalescer(w *Writer, window time.Duration, now func() time.Time) *Coalescer {
	if window <= 0 {
		window = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &Coalescer{w: w, window: window, now: now, keys: map[string]*coalesced{}}
}

// Record records refusal e under key. It reports whether e was written
// now (the first of its key in this window); a repeat is only counted.
// enrich, when set, runs only for an event written now: the place for a
// costly lookup (the peer's process) that a flood should not pay for.
func (c *Coalescer) Record(key string, e Event, enrich func(*Event)) bool {
	now := c.now()
	c.mu.Lock()
	if k, ok := c.keys[key]; ok && now.Sub(k.start) < c.window {
		k.repeat++
		c.mu.Unlock()
		return false
	}
	var out []Event
	if k, ok := c.keys[key]; ok && k.repeat > 0 {
		out = append(out, repeated(k))
	}
	if len(c.keys) >= maxCoalesceKeys {
		out = append(out, c.takeLocked(now, true)...)
	}
	// The key is taken before the lookup, so that concurrent repeats count
	// against it instead of each becoming a first.
	Capped(&e)
	k := &coalesced{ev: e, start: now}
	if !c.closed {
		c.keys[key] = k
		if c.timer == nil {
			c.timer = time.AfterFunc(c.window, c.tick)
		}
	}
	c.mu.Unlock()
	if enrich != nil {
		enrich(&e)
		Capped(&e)
		c.mu.Lock()
		k.ev = e
		c.mu.Unlock()
	}
	for _, r := range out {
		c.w.Emit(r)
	}
	c.w.Emit(e)
	return true
}

// tick writes the counts of windows that ended.
func (c *Coalescer) tick() {
	c.mu.Lock()
	out := c.takeLocked(c.now(), false)
	c.timer = nil
	if len(c.keys) > 0 && !c.closed {
		c.timer = time.AfterFunc(c.window, c.tick)
	}
	c.mu.Unlock()
	for _, e := range out {
		c.w.Emit(e)
	}
}

// takeLocked removes the keys whose window ended (all when all is set) and
// returns the events for those with repeats.
func (c *Coalescer) takeLocked(now time.Time, all bool) []Event {
	var out []Event
	for key, k := range c.keys {
		if !all && now.Sub(k.start) < c.window {
			continue
		}
		if k.repeat > 0 {
			out = append(out, repeated(k))
		}
		delete(c.keys, key)
	}
	return out
}

func repeated(k *coalesced) Event {
	e := k.ev
	d := make(map[string]any, len(e.Details)+2)
	for n, v := range e.Details {
		d[n] = v
	}
	d["repeated"] = k.repeat
	d["windowStart"] = k.start.UTC()
	e.Details = d
	return e
}

// Flush writes every pending count now (at shutdown).
func (c *Coalescer) Flush() {
	c.mu.Lock()
	out := c.takeLocked(c.now(), true)
	c.mu.Unlock()
	for _, e := range out {
		c.w.Emit(e)
	}
}

// Close flushes and stops the timer.
func (c *Coalescer) Close() {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	c.Flush()
}

// Capped caps every string field of e at MaxField bytes (details too,
// one level of strings and string lists).
func Capped(e *Event) {
	if u := e.UserInfo; u != nil {
		c := *u
		c.User, c.SessionID, c.Identity = Cap(c.User), Cap(c.SessionID), Cap(c.Identity)
		c.PeerAddr, c.PeerExe = Cap(c.PeerAddr), Cap(c.PeerExe)
		groups := c.Groups[:min(len(c.Groups), 32)]
		c.Groups = make([]string, len(groups))
		for i, g := range groups {
			c.Groups[i] = Cap(g)
		}
		e.UserInfo = &c
	}
	if t := e.TargetInfo; t != nil {
		c := *t
		c.Kind, c.ID, c.Path, c.Hash = Cap(c.Kind), Cap(c.ID), Cap(c.Path), Cap(c.Hash)
		e.TargetInfo = &c
	}
	if len(e.Details) > 0 {
		d := make(map[string]any, len(e.Details))
		for k, v := range e.Details {
			switch v := v.(type) {
			case string:
				d[Cap(k)] = Cap(v)
			default:
				d[Cap(k)] = v
			}
		}
		e.Details = d
	}
}

// Cap shortens s to at most MaxField bytes (on a rune boundary), saying
// how much was cut.
func Cap(s string) string {
	if len(s) <= MaxField {
		return s
	}
	suffix := fmt.Sprintf("...(%d bytes)", len(s))
	cut := MaxField - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + suffix
}
