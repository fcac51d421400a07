package engine

import (
	"context"
	"strconv"
	"time"

	"warden/audit"
	"warden/policy"
)

// sourceKeys are the keys the rate limiter and circuit breaker count a
// request under.
//
// A user caller has one key, its kernel uid ("uid:N"): nothing in the
// request can change it.
//
// A certificate caller is counted under every key that could name it, and
// the strictest wins: its identity ("id:plugin/ID"), the user and machine
// it asks about, and its session id (scoped to the identity, so that one
// plugin cannot spend another's budget). A request takes a place on every
// key's limiter; it waits as long as the longest wait and is refused when
// any key's queue is full. The circuit is open when any key's circuit is
// open, and an outcome is recorded on every key. Rotating sessionId, or
// the user named in the body, therefore escapes nothing: the identity key
// still counts every request.
func sourceKeys(c Caller, req *policy.Request) []string {
	if c.Kind == CallerUser {
		return []string{"uid:" + strconv.FormatUint(uint64(c.UID), 10)}
	}
	id := c.Identity()
	keys := []string{"id:" + id, "u:" + req.User + "\x00" + req.Machine}
	if req.SessionID != "" {
		keys = append(keys, "s:"+id+"\x00"+req.SessionID)
	}
	return keys
}

// circuitOpen reports whether any key's circuit is open, and until when
// the last of them stays open.
func (e *Engine) circuitOpen(keys []string, now time.Time) (until time.Time, open bool) {
	br := e.breaker.Load()
	for _, k := range keys {
		if ok, u := br.Allow(k, now); !ok {
			open = true
			if u.After(until) {
				until = u
			}
		}
	}
	return until, open
}

// reserve takes a place for the request on every key's limiter and
// returns the longest wait, or ErrRateLimited when any key's queue is
// full. The first refusal of a burst on a key is audited as RATE_LIMITED.
func (e *Engine) reserve(ctx context.Context, c Caller, req *policy.Request, keys []string, now time.Time) (time.Duration, error) {
	lim := e.limiter.Load()
	var wait time.Duration
	refused := false
	for _, k := range keys {
		res := lim.Reserve(k, now)
		if res.Audit {
			if err := e.audit(ctx, audit.Event{Type: audit.RateLimited, Severity: audit.Warning, Component: "engine",
				UserInfo: requestUserInfo(c, req), Details: map[string]any{"source": k, "queued": res.OK}}); err != nil {
				return 0, err
			}
		}
		if !res.OK {
			refused = true
		}
		wait = max(wait, res.Wait)
	}
	if refused {
		return 0, ErrRateLimited
	}
	return wait, nil
}

// recordOutcome counts an evaluation's outcome on every key; it reports
// whether this failure opened a circuit.
func (e *Engine) recordOutcome(keys []string, failed bool, now time.Time) bool {
	br := e.breaker.Load()
	opened := false
	for _, k := range keys {
		if br.Record(k, failed, now) {
			opened = true
		}
	}
	return opened
}
