package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
	"warden/policy"
	"warden/state"
)

// Five wrong codes within 15 minutes lock the user's MFA for 15 minutes,
// whatever sessions or callers they came from; a locked user's right code
// is refused with a clear reason; the lock survives a restart.
func TestMFALockoutAfterFiveFailures(t *testing.T) {
	f := setup(t, needsMFA)
	ctx := context.Background()
	uri, err := f.eng.EnrollMFA(context.Background(), "frank", engine.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret := secretOf(t, uri)
	try := func(eng *engine.Engine, c engine.Caller, code, session string) engine.Result {
		t.Helper()
		q := req("frank", "/usr/bin/su")
		q.MFACode, q.SessionID = code, session
		r, err := eng.Evaluate(ctx, c, q, false)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Failures from the socket and from a plugin asking in frank's name,
	// each under its own session, count together.
	for i := range 4 {
		c := frank
		if i%2 == 1 {
			c = pluginCaller
		}
		if r := try(f.eng, c, wrongCode(secret, f.clk.Now()), fmt.Sprint("s-", i)); r.MFA != "failed" {
			t.Fatalf("wrong code %d: %+v; want failed", i, r)
		}
		f.clk.Add(time.Minute)
	}
	if n := f.count(t, audit.MFAFailed); n != 4 {
		t.Fatalf("MFA_FAILED events = %d; want 4", n)
	}
	if f.count(t, audit.MFALocked) != 0 {
		t.Fatal("locked after 4 failures")
	}
	r := try(f.eng, frank, wrongCode(secret, f.clk.Now()), "s-4")
	if r.MFA != "locked" || r.MFALockedUntil == nil || !r.MFALockedUntil.Equal(f.clk.Now().Add(15*time.Minute)) {
		t.Fatalf("fifth failure: %+v; want locked for 15 minutes", r)
	}
	if ev := f.last(t, audit.MFALocked); ev.UserInfo.User != "frank" {
		t.Fatalf("MFA_LOCKED names %+v; want frank", ev.UserInfo)
	}
	// The right code does not help now, even after a restart.
	eng2, err := engine.New(engine.Options{Store: f.store, Audit: f.aw, Now: f.clk.Now,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Add(14 * time.Minute)
	r = try(eng2, frank, policy.TOTPCode(secret, f.clk.Now()), "s-5")
	if r.Effective != "mfa" || r.MFA != "locked" || !strings.Contains(r.Reason, "MFA for frank is locked until") {
		t.Fatalf("right code while locked, after a restart: %+v; want mfa, locked, with the reason", r)
	}
	// Without a code a locked user is told at once.
	if r := try(eng2, frank, "", "s-6"); r.MFA != "locked" {
		t.Fatalf("no code while locked: %+v; want locked", r)
	}
	// Other users are not locked.
	if _, err := f.eng.EnrollMFA(context.Background(), "carol", engine.EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := eng2.Evaluate(ctx, carol, req("carol", "/usr/bin/su"), false); r.MFA == "locked" {
		t.Fatalf("carol: %+v; frank's lock is frank's only", r)
	}
	f.clk.Add(time.Minute + time.Second)
	if r := try(eng2, frank, policy.TOTPCode(secret, f.clk.Now()), "s-7"); r.Effective != "allow" || r.MFA != "verified" {
		t.Fatalf("right code after the lock: %+v; want allow, verified", r)
	}
}

// Failures older than the window do not count toward a lock.
func TestMFAFailuresOutsideWindowForgotten(t *testing.T) {
	f := setup(t, needsMFA)
	uri, _ := f.eng.EnrollMFA(context.Background(), "frank", engine.EnrollOptions{})
	secret := secretOf(t, uri)
	for range 8 {
		q := req("frank", "/usr/bin/su")
		q.MFACode = wrongCode(secret, f.clk.Now())
		if r, err := f.eng.Evaluate(context.Background(), frank, q, false); err != nil || r.MFA != "failed" {
			t.Fatalf("%+v, %v; want failed, never locked at 4 failures a window", r, err)
		}
		f.clk.Add(4 * time.Minute)
	}
}

// A verified code satisfies its own evaluation only: another request
// (another command) with the same code is a failure, and so is a replay
// of the same request.
func TestMFACodeNotReusedAcrossRequests(t *testing.T) {
	other := strings.Replace(needsMFA, `"/usr/bin/su"`, `"/usr/bin/su*"`, 1)
	f := setup(t, other)
	ctx := context.Background()
	uri, _ := f.eng.EnrollMFA(context.Background(), "frank", engine.EnrollOptions{})
	secret := secretOf(t, uri)
	code := policy.TOTPCode(secret, f.clk.Now())
	a := req("frank", "/usr/bin/su")
	a.MFACode = code
	if r, _ := f.eng.Evaluate(ctx, frank, a, false); r.Effective != "allow" {
		t.Fatalf("first request: %+v; want allow", r)
	}
	b := req("frank", "/usr/bin/sudoedit")
	b.MFACode = code
	if r, _ := f.eng.Evaluate(ctx, frank, b, false); r.Effective != "mfa" || r.MFA != "failed" {
		t.Fatalf("another request with the same code: %+v; want mfa, failed", r)
	}
	if ev := f.last(t, audit.MFAFailed); ev.Details["reason"] != "code already used" {
		t.Fatalf("MFA_FAILED reason %v; want code already used", ev.Details["reason"])
	}
	// Nor does the verified user get anything without a code.
	if r, _ := f.eng.Evaluate(ctx, frank, req("frank", "/usr/bin/sudoedit"), false); r.Effective != "mfa" {
		t.Fatalf("no code after a verified one: %+v; want mfa", r)
	}
	// A code is only checked when the decision asks for MFA: one sent
	// with a request that needs none is neither used nor a failure.
	f.clk.Add(time.Minute)
	code = policy.TOTPCode(secret, f.clk.Now())
	n := f.count(t, audit.MFAFailed)
	c := req("frank", "/usr/bin/vim")
	c.MFACode = code
	if r, _ := f.eng.Evaluate(ctx, frank, c, false); r.MFA != "" || f.count(t, audit.MFAFailed) != n {
		t.Fatalf("code with a request needing no MFA: %+v; want it ignored", r)
	}
	a.MFACode = code
	if r, _ := f.eng.Evaluate(ctx, frank, a, false); r.MFA != "verified" {
		t.Fatalf("the unused code on an MFA request: %+v; want verified", r)
	}
}

// A code for a user who never enrolled is a failure, audited, but leaves
// no record in the store (a caller naming made-up users cannot fill it).
func TestMFANotEnrolledLeavesNoState(t *testing.T) {
	f := setup(t, needsMFA)
	for i := range 6 {
		q := req(fmt.Sprint("ghost-", i), "/usr/bin/su")
		q.MFACode = "123456"
		if r, err := f.eng.Evaluate(context.Background(), pluginCaller, q, false); err != nil || r.MFA != "failed" {
			t.Fatalf("%+v, %v; want failed", r, err)
		}
	}
	if n := f.count(t, audit.MFAFailed); n != 6 {
		t.Fatalf("MFA_FAILED events = %d; want 6", n)
	}
	n := 0
	f.store.List(state.Secrets, func(string, json.RawMessage) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d records in the secrets bucket; want none", n)
	}
}

// Under a policy that asks for MFA and a justification, a code sent
// without the text is not used up: the answer asks for the text, and the
// same code with it is accepted. Without a code the answer stays mfa.
func TestMFACodeKeptForJustification(t *testing.T) {
	both := `{"kind": "Policy", "id": "su-both", "spec": {"name": "su", "type": "PrivilegeElevation",
	 "status": "enforce", "controls": ["allow", "mfa", "justification"], "filters": {"applications": [{"path": "/usr/bin/su"}]}}}`
	f := setup(t, both)
	ctx := context.Background()
	uri, _ := f.eng.EnrollMFA(ctx, "frank", engine.EnrollOptions{})
	secret := secretOf(t, uri)
	if r, _ := f.eng.Evaluate(ctx, frank, req("frank", "/usr/bin/su"), false); r.Effective != "mfa" {
		t.Fatalf("nothing given: %+v; want mfa", r)
	}
	code := policy.TOTPCode(secret, f.clk.Now())
	q := req("frank", "/usr/bin/su")
	q.MFACode = code
	if r, _ := f.eng.Evaluate(ctx, frank, q, false); r.Effective != "justification" || r.MFA != "unchecked" {
		t.Fatalf("code without text: %+v; want justification, code unchecked", r)
	}
	q = req("frank", "/usr/bin/su")
	q.MFACode, q.Justification = code, "INC-7"
	if r, _ := f.eng.Evaluate(ctx, frank, q, false); r.Effective != "allow" || r.MFA != "verified" {
		t.Fatalf("the same code with the text: %+v; want allow, verified", r)
	}
	if r, _ := f.eng.Evaluate(ctx, frank, q, false); r.Effective != "mfa" || r.MFA != "failed" {
		t.Fatalf("the code a second time: %+v; want mfa, failed (used)", r)
	}
	// A wrong code sent without the text is not checked either: it is
	// not a failure until it is checked.
	q = req("frank", "/usr/bin/su")
	q.MFACode = wrongCode(secret, f.clk.Now())
	n := f.count(t, audit.MFAFailed)
	if r, _ := f.eng.Evaluate(ctx, frank, q, false); r.Effective != "justification" || f.count(t, audit.MFAFailed) != n {
		t.Fatalf("wrong code without text: %+v; want justification, no MFA_FAILED", r)
	}
}
