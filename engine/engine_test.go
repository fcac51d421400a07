package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
	"warden/policy"
	"warden/schema"
	"warden/state"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	store *state.Store
	aw    *audit.Writer
	eng   *engine.Engine
	clk   *clock
}

func setup(t testing.TB, docs ...string) *fixture {
	t.Helper()
	return setupIn(t, t.TempDir(), docs...)
}

// setupIn is setup with the store in dir.
func setupIn(t testing.TB, dir string, docs ...string) *fixture {
	t.Helper()
	st, err := state.Open(dir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ds []*schema.Document
	for i, d := range docs {
		doc, err := schema.Validate("doc"+string(rune('a'+i))+".json", []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, doc)
	}
	if _, err := st.ApplyGeneration(state.Apply{BundleVersion: 1, Source: "test", Docs: ds}); err != nil {
		t.Fatal(err)
	}
	aw, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aw.Close)
	clk := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	// Waiting for a rate-limited turn takes no time here: the queue fills.
	nosleep := func(context.Context, time.Duration) error { return nil }
	eng, err := engine.New(engine.Options{Store: st, Audit: aw, Now: clk.Now, Sleep: nosleep})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st, aw, eng, clk}
}

func (f *fixture) count(t *testing.T, typ string) int {
	t.Helper()
	evs, _, err := audit.Query(f.store, audit.Filter{Types: []string{typ}, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

const devTools = `{"kind": "Policy", "id": "dev-tools", "spec": {"name": "Developers", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 50, "controls": ["allow", "justification"], "durationSeconds": 900,
 "filters": {"groups": ["developers"], "applications": [{"path": "/usr/bin/apt*"}]}}}`

const needsApproval = `{"kind": "Policy", "id": "db-admin", "spec": {"name": "DB admin", "type": "PrivilegeElevation",
 "status": "enforce", "controls": ["allow", "approval"], "filters": {"applications": [{"path": "/usr/bin/psql"}]}}}`

const needsMFA = `{"kind": "Policy", "id": "sudo-mfa", "spec": {"name": "MFA for su", "type": "PrivilegeElevation",
 "status": "enforce", "controls": ["allow", "mfa"], "filters": {"applications": [{"path": "/usr/bin/su"}]}}}`

const approver = `{"kind": "Approver", "id": "dba", "spec": {"name": "DBAs", "users": ["alice"], "policies": ["db-*"]}}`

// as is a user caller over the socket, as the kernel and the agent
// identified it.
func as(name string, uid uint32, groups ...string) engine.Caller {
	return engine.Caller{Kind: engine.CallerUser, Name: name, UID: uid, PID: 4242, Groups: groups}
}

var (
	pluginCaller = engine.Caller{Kind: engine.CallerPlugin, Name: "heartbeat"}
	adminCaller  = engine.Caller{Kind: engine.CallerAdmin, Name: "cli"}
	dave         = as("dave", 1001, "developers")
	carol        = as("carol", 1002, "staff")
	alice        = as("alice", 1003, "staff")
	bob          = as("bob", 1004, "staff")
	erin         = as("erin", 1005, "staff")
	frank        = as("frank", 1006, "staff")
)

func req(user, app string) *policy.Request {
	return &policy.Request{User: user, Groups: []string{"developers"}, Machine: "ws-1", Action: "elevate",
		Application: policy.Application{Path: app}}
}

func TestJustificationCreatesGrantThatExpires(t *testing.T) {
	f := setup(t, devTools)
	ctx := context.Background()
	r, err := f.eng.Evaluate(ctx, dave, req("dave", "/usr/bin/apt-get"), false)
	if err != nil || r.Decision.Decision != "justification" || r.Effective != "justification" {
		t.Fatalf("without justification: %+v, %v; want justification", r, err)
	}
	q := req("dave", "/usr/bin/apt-get")
	q.Justification = "patching CVE-2026-1234"
	r, err = f.eng.Evaluate(ctx, dave, q, false)
	if err != nil || r.Effective != "allow" || r.GrantID == "" {
		t.Fatalf("with justification: %+v, %v; want allow with a grant", r, err)
	}
	if want := f.clk.Now().Add(900 * time.Second); !r.GrantExpiresAt.Equal(want) {
		t.Fatalf("grant expires %v; want %v", r.GrantExpiresAt, want)
	}
	evs, _, _ := audit.Query(f.store, audit.Filter{Types: []string{audit.PolicyEvaluation}})
	if len(evs) != 2 || evs[1].Details["justification"] != "patching CVE-2026-1234" {
		t.Fatalf("justification not audited: %+v", evs)
	}
	if f.count(t, audit.ElevationGranted) != 1 {
		t.Fatal("no ELEVATION_GRANTED")
	}
	// The grant outlives the agent being down: a new engine after the
	// expiry time revokes it at start.
	f.clk.Add(901 * time.Second)
	// Past its expiry a grant is not listed as in force, even before the
	// timer has deleted it.
	if gs, err := f.eng.Grants(); err != nil || len(gs) != 0 {
		t.Fatalf("grants listed after expiry: %+v, %v", gs, err)
	}
	eng2, _ := engine.New(engine.Options{Store: f.store, Audit: f.aw, Now: f.clk.Now})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng2.Run(rctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for f.count(t, audit.ElevationExpired) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if gs, _ := eng2.Grants(); len(gs) != 0 || f.count(t, audit.ElevationExpired) != 1 {
		t.Fatalf("after expiry: grants %v, ELEVATION_EXPIRED %d; want none and 1", gs, f.count(t, audit.ElevationExpired))
	}
}

func TestApprovalFlow(t *testing.T) {
	f := setup(t, needsApproval, approver)
	ctx := context.Background()
	r, err := f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	if err != nil || r.Effective != "approval" || r.ApprovalID == "" {
		t.Fatalf("first request: %+v, %v; want approval with an id", r, err)
	}
	again, _ := f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	if again.ApprovalID != r.ApprovalID {
		t.Fatalf("repeated request made a second approval %s (first %s)", again.ApprovalID, r.ApprovalID)
	}
	if _, err := f.eng.Decide(ctx, as("mallory", 1666), r.ApprovalID, true, ""); !errors.Is(err, engine.ErrNotAnApprover) {
		t.Fatalf("unlisted approver: %v; want ErrNotAnApprover", err)
	}
	if a, err := f.eng.Decide(ctx, alice, r.ApprovalID, true, ""); err != nil || a.State != "approved" {
		t.Fatalf("alice approves: %+v, %v", a, err)
	}
	if _, err := f.eng.Decide(ctx, alice, r.ApprovalID, false, ""); !errors.Is(err, engine.ErrAlreadyDecided) {
		t.Fatalf("second decision: %v; want ErrAlreadyDecided", err)
	}
	r, _ = f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	if r.Effective != "allow" {
		t.Fatalf("after approval: %+v; want allow", r)
	}
	f.clk.Add(25 * time.Hour)
	r, _ = f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	if r.Effective != "approval" {
		t.Fatalf("after 25 h: %+v; want approval again (an approval is usable 24 h)", r)
	}
	// A pending request expires after 30 minutes.
	r2, _ := f.eng.Evaluate(ctx, erin, req("erin", "/usr/bin/psql"), false)
	f.clk.Add(31 * time.Minute)
	if _, err := f.eng.Decide(ctx, alice, r2.ApprovalID, true, ""); !errors.Is(err, engine.ErrNoApproval) {
		t.Fatalf("approving an expired request: %v; want ErrNoApproval", err)
	}
}

func TestMFA(t *testing.T) {
	f := setup(t, needsMFA)
	ctx := context.Background()
	uri, err := f.eng.EnrollMFA(context.Background(), "frank", engine.EnrollOptions{})
	if err != nil || !strings.HasPrefix(uri, "otpauth://totp/") {
		t.Fatalf("EnrollMFA = %q, %v", uri, err)
	}
	secret := secretOf(t, uri)
	if r, _ := f.eng.Evaluate(ctx, frank, req("frank", "/usr/bin/su"), false); r.Effective != "mfa" {
		t.Fatalf("no code: %+v; want mfa", r)
	}
	bad := req("frank", "/usr/bin/su")
	bad.MFACode = wrongCode(secret, f.clk.Now())
	if r, _ := f.eng.Evaluate(ctx, frank, bad, false); r.Effective != "mfa" || r.MFA != "failed" {
		t.Fatalf("wrong code: %+v; want mfa, failed", r)
	}
	good := req("frank", "/usr/bin/su")
	good.MFACode = policy.TOTPCode(secret, f.clk.Now())
	if r, _ := f.eng.Evaluate(ctx, frank, good, false); r.Effective != "allow" || r.MFA != "verified" {
		t.Fatalf("right code: %+v; want allow, verified", r)
	}
	// A verified code satisfies that one evaluation, never the user at
	// large: the next request asks again at once.
	if r, _ := f.eng.Evaluate(ctx, frank, req("frank", "/usr/bin/su"), false); r.Effective != "mfa" {
		t.Fatalf("next request without a code: %+v; want mfa (no user-wide freshness)", r)
	}
	replay := req("frank", "/usr/bin/su")
	replay.MFACode = good.MFACode
	if r, _ := f.eng.Evaluate(ctx, frank, replay, false); r.MFA != "failed" || r.Effective != "mfa" {
		t.Fatalf("replayed code: %+v; want failed", r)
	}
}

func TestRateLimitAndBreaker(t *testing.T) {
	settings := `{"kind": "Settings", "id": "agent", "spec": {"rateLimit": {"perMinute": 2, "queue": 1},
	  "circuitBreaker": {"failures": 4, "openSeconds": 300}}}`
	f := setup(t, settings)
	ctx := context.Background()
	// Two within the rate, one queued, then the queue is full.
	for i := 0; i < 3; i++ {
		if _, err := f.eng.Evaluate(ctx, as("gina", 1010), req("gina", "/usr/bin/vim"), false); err != nil {
			t.Fatalf("request %d: %v; want an answer", i, err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := f.eng.Evaluate(ctx, as("gina", 1010), req("gina", "/usr/bin/vim"), false); !errors.Is(err, engine.ErrRateLimited) {
			t.Fatalf("over the rate and queue: %v; want ErrRateLimited", err)
		}
	}
	if n := f.count(t, audit.RateLimited); n != 1 {
		t.Fatalf("RATE_LIMITED events = %d for one burst; want 1", n)
	}
	// Refused requests are not evaluations: three denials so far, the
	// fourth opens gina's circuit.
	if f.count(t, audit.CircuitOpen) != 0 {
		t.Fatal("circuit opened before the fourth failure")
	}
	f.clk.Add(time.Minute)
	if _, err := f.eng.Evaluate(ctx, as("gina", 1010), req("gina", "/usr/bin/vim"), false); err != nil {
		t.Fatal(err)
	}
	if f.count(t, audit.CircuitOpen) != 1 {
		t.Fatalf("CIRCUIT_OPEN events = %d after 4 failures; want 1", f.count(t, audit.CircuitOpen))
	}
	r, err := f.eng.Evaluate(ctx, as("gina", 1010), req("gina", "/usr/bin/vim"), false)
	if err != nil || !strings.HasPrefix(r.Reason, policy.ReasonCircuitOpen) || r.Effective != "deny" {
		t.Fatalf("while open: %+v, %v; want deny, circuit-open", r, err)
	}
	// Another source is not affected.
	if r, err := f.eng.Evaluate(ctx, as("hank", 1011), req("hank", "/usr/bin/vim"), false); err != nil || strings.HasPrefix(r.Reason, policy.ReasonCircuitOpen) {
		t.Fatalf("other source: %+v, %v; want an evaluation", r, err)
	}
	f.clk.Add(5 * time.Minute)
	r, err = f.eng.Evaluate(ctx, as("gina", 1010), req("gina", "/usr/bin/vim"), false)
	if err != nil || strings.HasPrefix(r.Reason, policy.ReasonCircuitOpen) {
		t.Fatalf("after 5 min: %+v, %v; want an evaluation again", r, err)
	}
}

func TestConcurrentDecisionsDecideOnce(t *testing.T) {
	f := setup(t, needsApproval, strings.Replace(approver, `["alice"]`, `["alice", "bob"]`, 1))
	r, err := f.eng.Evaluate(context.Background(), carol, req("carol", "/usr/bin/psql"), false)
	if err != nil || r.ApprovalID == "" {
		t.Fatalf("%+v, %v", r, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			who := []engine.Caller{alice, bob}[i%2]
			if _, err := f.eng.Decide(context.Background(), who, r.ApprovalID, i%2 == 0, ""); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d decisions succeeded; want exactly 1", ok)
	}
}
