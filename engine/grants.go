package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/state"
	"warden/wallclock"
)

// Grant is the stored grant record (state owns it).
type Grant = state.Grant

// Grant actions (state.Grant.Action): what reconcile makes true on the
// machine, a sudoers drop-in or a POSIX ACL entry.
const (
	GrantElevate = "elevate"
	GrantAccess  = "access"
)

func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newGrant builds the grant an allowed, attested request gets: secs long,
// for the executable and its SHA-256 (elevate) or the target and read or
// write access (file access).
func (e *Engine) newGrant(c Caller, req *policy.Request, d *policy.Decision, now time.Time, secs int) *Grant {
	g := &Grant{ID: newID(), User: req.User, UID: c.UID, Machine: req.Machine, Action: GrantElevate,
		Scope: req.Application.Path, SHA256: req.Application.SHA256, Policy: d.EnforcedBy, Attested: c.Attested(),
		CreatedAt: now.UTC(), ExpiresAt: now.Add(time.Duration(secs) * time.Second).UTC()}
	if g.Policy == "" {
		g.Policy = d.Policy
	}
	if req.Action == policy.ActionFileAccess {
		g.Action, g.Scope, g.SHA256, g.Access = GrantAccess, req.Target.Path, "", "read"
		if req.Target.Write {
			g.Access = "write"
		}
	}
	return g
}

// renew makes g the renewal of a live grant for the same thing (user and
// uid, machine, action, scope, digest, access, policy), if there is one:
// g takes its id and creation time and the later of the two expiries, so
// the same command run again keeps one sudoers drop-in (or ACL entry) in
// force instead of adding another. The caller holds grantMu.
func (e *Engine) renew(g *Grant, now time.Time) (renewed bool, err error) {
	all, err := e.storedGrants()
	if err != nil {
		return false, err
	}
	for _, o := range all {
		if !now.Before(o.ExpiresAt) || o.Attested != g.Attested || o.UID != g.UID || o.User != g.User ||
			o.Machine != g.Machine || o.Action != g.Action || o.Scope != g.Scope || o.SHA256 != g.SHA256 ||
			o.Access != g.Access || o.Policy != g.Policy {
			continue
		}
		g.ID, g.CreatedAt = o.ID, o.CreatedAt
		if o.ExpiresAt.After(g.ExpiresAt) {
			g.ExpiresAt = o.ExpiresAt
		}
		return true, nil
	}
	return false, nil
}

// grantEvent is the audit event of a grant's creation or expiry:
// ELEVATION_GRANTED/EXPIRED for elevate grants, FILE_ACCESS (with
// details.phase granted or expired) for access grants.
func grantEvent(g *Grant, expired bool) audit.Event {
	typ, phase := audit.ElevationGranted, "granted"
	if expired {
		typ, phase = audit.ElevationExpired, "expired"
	}
	details := map[string]any{"policy": g.Policy, "expiresAt": g.ExpiresAt, "attested": g.Attested,
		"durationSeconds": int(g.ExpiresAt.Sub(g.CreatedAt) / time.Second)}
	if g.Action == GrantAccess {
		typ = audit.FileAccess
		details["phase"], details["access"] = phase, g.Access
	}
	ui := &audit.UserInfo{User: g.User}
	if g.Attested {
		ui.Identity = "uid:" + strconv.FormatUint(uint64(g.UID), 10)
	}
	return audit.Event{Type: typ, Component: "engine", UserInfo: ui,
		TargetInfo: &audit.TargetInfo{Kind: g.Action, ID: g.ID, Path: g.Scope, Hash: g.SHA256},
		Details:    details}
}

// grantCreated is the audit event of g's creation for c's request.
func grantCreated(c Caller, req *policy.Request, g *Grant) audit.Event {
	ev := grantEvent(g, false)
	ev.UserInfo = requestUserInfo(c, req)
	return ev
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
		// An expiry is audited and the grant removed even when the event
		// cannot be stored: keeping a privilege past its time is worse
		// than a gap in the log, which the failed write reports.
		t.e.opts.Audit.Emit(grantEvent(&g, true))
	}
	return t.e.opts.Store.Delete(state.Grants, gone...)
}
