package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/state"
	"warden/wallclock"
)

// Grant is the stored grant record (state owns it).
type Grant = state.Grant

func (e *Engine) grant(req *policy.Request, d *policy.Decision, now time.Time) (Grant, error) {
	var b [9]byte
	rand.Read(b[:])
	g := Grant{ID: hex.EncodeToString(b[:]), User: req.User, Machine: req.Machine, Action: req.Action,
		Scope: req.Application.Path, Policy: d.EnforcedBy, CreatedAt: now.UTC(),
		ExpiresAt: now.Add(time.Duration(d.DurationSeconds) * time.Second).UTC()}
	if g.Policy == "" {
		g.Policy = d.Policy
	}
	if req.Target != nil && req.Target.Path != "" {
		g.Scope = req.Target.Path
	}
	if err := e.opts.Store.Put(state.Grants, g.ID, g); err != nil {
		return g, err
	}
	e.opts.Audit.Emit(audit.Event{Type: audit.ElevationGranted, Component: "engine",
		UserInfo:   userInfo(req),
		TargetInfo: &audit.TargetInfo{Kind: req.Action, ID: g.ID, Path: g.Scope},
		Details:    map[string]any{"policy": g.Policy, "expiresAt": g.ExpiresAt, "durationSeconds": d.DurationSeconds}})
	e.grants.schedule(g.ExpiresAt)
	return g, nil
}

// Grants lists the grants in force, soonest expiry first. A grant past its
// expiry is not listed even in the moment before the timer deletes it.
func (e *Engine) Grants() ([]Grant, error) {
	all, err := e.storedGrants()
	now := e.opts.Now()
	return slices.DeleteFunc(all, func(g Grant) bool { return !now.Before(g.ExpiresAt) }), err
}

// storedGrants lists every grant in the store, expired or not.
func (e *Engine) storedGrants() ([]Grant, error) {
	var out []Grant
	err := e.opts.Store.List(state.Grants, func(_ string, v json.RawMessage) error {
		var g Grant
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	slices.SortFunc(out, func(a, b Grant) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return out, err
}

// grantTimer fires when the earliest grant expires: one timer, never a
// poll. It is a wall-clock timer, so a grant expires on time even when the
// machine was suspended in between; it also fires when the clock is set,
// and expire then only re-arms it.
type grantTimer struct {
	e       *Engine
	mu      sync.Mutex
	stopped bool // the engine stopped: arm nothing more
	timer   *wallclock.Timer
	next    time.Time // when the armed timer fires; zero once it has fired
	fire    chan struct{}
}

func newGrantTimer(e *Engine) *grantTimer { return &grantTimer{e: e, fire: make(chan struct{}, 1)} }

func (t *grantTimer) c() <-chan struct{} { return t.fire }

// schedule makes the timer fire no later than at.
func (t *grantTimer) schedule(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || !t.next.IsZero() && !at.Before(t.next) {
		return
	}
	t.next = at
	if t.timer != nil {
		t.timer.Stop()
	}
	// The deadline on the real wall clock: at itself, unless a test
	// injected a clock of its own.
	deadline := time.Now().Add(at.Sub(t.e.opts.Now()))
	var tm *wallclock.Timer
	tm = wallclock.AfterFunc(deadline, func() {
		t.mu.Lock()
		if t.timer == tm {
			t.next = time.Time{} // nothing armed until expire schedules again
		}
		t.mu.Unlock()
		select {
		case t.fire <- struct{}{}:
		default:
		}
	})
	t.timer = tm
}

func (t *grantTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}

// start expires what expired while the agent was down and schedules the
// next expiry.
func (t *grantTimer) start(ctx context.Context) error { return t.expire(ctx) }

// expire deletes and audits every expired grant, then sets the timer for
// the next one.
func (t *grantTimer) expire(_ context.Context) error {
	now := t.e.opts.Now()
	grants, err := t.e.storedGrants()
	if err != nil {
		return err
	}
	// No reset of t.next here: a grant created since the listing has
	// already scheduled its (earlier) expiry, and schedule only moves the
	// timer earlier. The timer that fired cleared t.next itself.
	var gone []string
	for _, g := range grants {
		if now.Before(g.ExpiresAt) {
			t.schedule(g.ExpiresAt)
			continue
		}
		gone = append(gone, g.ID)
		t.e.opts.Audit.Emit(audit.Event{Type: audit.ElevationExpired, Component: "engine",
			UserInfo:   &audit.UserInfo{User: g.User},
			TargetInfo: &audit.TargetInfo{Kind: g.Action, ID: g.ID, Path: g.Scope},
			Details:    map[string]any{"policy": g.Policy, "expiresAt": g.ExpiresAt}})
	}
	return t.e.opts.Store.Delete(state.Grants, gone...)
}
