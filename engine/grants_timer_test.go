package engine

import (
	"context"
	"testing"
	"time"

	"warden/state"
)

// A grant created while expire runs (stored after expire listed the
// grants, scheduled before expire re-armed the timer) must keep its own,
// earlier deadline: expire must not push the timer to a later grant's.
func TestGrantTimerKeepsDeadlineScheduledDuringExpire(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	e, st := newTestEngine(t, &now)
	t.Cleanup(e.grants.stop)
	later := Grant{ID: "later", User: "carol", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.Put(state.Grants, later.ID, later); err != nil {
		t.Fatal(err)
	}
	// The new grant's schedule, as grant() calls it right after its Put,
	// which the listing in expire did not see.
	soon := now.Add(time.Minute)
	e.grants.schedule(soon)
	if err := e.grants.expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.grants.mu.Lock()
	next := e.grants.next
	e.grants.mu.Unlock()
	if !next.Equal(soon) {
		t.Fatalf("timer set for %v; want %v (the grant expiring first)", next, soon)
	}
}
