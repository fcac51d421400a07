package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
	"warden/policy"
)

const rootOnly = `{"kind": "Policy", "id": "admins-anything", "spec": {"name": "Admins", "type": "PrivilegeElevation",
 "status": "enforce", "controls": ["allow"], "durationSeconds": 600,
 "filters": {"users": ["root"], "groups": ["admins"], "machines": ["ws-admin"], "applications": [{"path": "/usr/bin/*"}]}}}`

// A user caller is evaluated as the kernel's user, with the agent's
// groups and this machine, whatever the request claims; the audit record
// names the uid and the kernel's user.
func TestIdentityFromCallerNotBody(t *testing.T) {
	f := setup(t, rootOnly)
	ctx := context.Background()
	q := req("root", "/usr/bin/id")
	q.Groups, q.Machine, q.SessionID = []string{"admins"}, "ws-admin", "forged"
	q.MFAVerified, q.Approved = true, true // a Go caller's flags are reset too
	r, err := f.eng.Evaluate(ctx, carol, q, false)
	if err != nil || r.Effective != "deny" || r.Policy != "" {
		t.Fatalf("carol claiming root/admins/ws-admin: %+v, %v; want the default deny", r, err)
	}
	if q.User != "carol" || len(q.Groups) != 1 || q.Groups[0] != "staff" || q.Machine == "ws-admin" {
		t.Fatalf("request after Evaluate: user %q groups %v machine %q; want the caller's", q.User, q.Groups, q.Machine)
	}
	ev := f.last(t, audit.PolicyEvaluation)
	if ui := ev.UserInfo; ui.Identity != "uid:1002" || ui.User != "carol" || ev.Details["attested"] != true {
		t.Fatalf("POLICY_EVALUATION names %+v (attested %v); want uid:1002, carol, attested", ui, ev.Details["attested"])
	}
	if len(f.storedGrants(t)) != 0 {
		t.Fatal("a denied request left a grant")
	}

	// Certificate callers ask about a user; the record names the
	// certificate as well.
	q = req("root", "/usr/bin/id")
	q.Groups, q.Machine = []string{"admins"}, "ws-admin"
	if r, err := f.eng.Evaluate(ctx, pluginCaller, q, true); err != nil || r.Effective != "allow" || r.Explain != nil {
		t.Fatalf("plugin asking about root: %+v, %v; want allow without explain (admins only)", r, err)
	}
	if ui := f.last(t, audit.PolicyEvaluation).UserInfo; ui.Identity != "plugin/heartbeat" || ui.User != "root" {
		t.Fatalf("POLICY_EVALUATION of a plugin names %+v; want plugin/heartbeat asking about root", ui)
	}
	if r, _ := f.eng.Evaluate(ctx, adminCaller, q, true); r.Explain == nil {
		t.Fatalf("admin with explain: %+v; want the explanation", r)
	}
	if ui := f.last(t, audit.PolicyEvaluation).UserInfo; ui.Identity != "admin/cli" {
		t.Fatalf("POLICY_EVALUATION of the admin names %+v; want admin/cli", ui)
	}
}

// A certificate caller cannot escape the limiter or the breaker by
// rotating sessionId or the user it names: its identity is a key too. A
// user caller is keyed on its uid, which no request field changes.
func TestRateLimitKeyCannotBeRotated(t *testing.T) {
	settings := `{"kind": "Settings", "id": "agent", "spec": {"rateLimit": {"perMinute": 2, "queue": 1},
	  "circuitBreaker": {"failures": 4, "openSeconds": 300}}}`
	for _, c := range []engine.Caller{pluginCaller, as("gina", 1010)} {
		t.Run(string(c.Kind), func(t *testing.T) {
			f := setup(t, settings)
			ctx := context.Background()
			rotated := func(i int) *policy.Request {
				q := req(fmt.Sprintf("user-%d", i), "/usr/bin/vim")
				q.SessionID, q.Machine = fmt.Sprintf("s-%d", i), fmt.Sprintf("ws-%d", i)
				return q
			}
			// Two within the rate and one queued, each with a fresh
			// session, user and machine; then the queue is full.
			for i := range 3 {
				if _, err := f.eng.Evaluate(ctx, c, rotated(i), false); err != nil {
					t.Fatalf("request %d: %v; want an answer", i, err)
				}
			}
			if _, err := f.eng.Evaluate(ctx, c, rotated(3), false); !errors.Is(err, engine.ErrRateLimited) {
				t.Fatalf("fourth request with a new session: %v; want ErrRateLimited", err)
			}
			if f.count(t, audit.RateLimited) == 0 {
				t.Fatal("no RATE_LIMITED event")
			}
			// Three denials so far; the fourth, under yet another
			// session, opens the circuit of the caller.
			f.clk.Add(time.Minute)
			if _, err := f.eng.Evaluate(ctx, c, rotated(4), false); err != nil {
				t.Fatal(err)
			}
			if f.count(t, audit.CircuitOpen) != 1 {
				t.Fatalf("CIRCUIT_OPEN events = %d after 4 denials; want 1", f.count(t, audit.CircuitOpen))
			}
			f.clk.Add(time.Minute)
			r, err := f.eng.Evaluate(ctx, c, rotated(5), false)
			if err != nil || !strings.HasPrefix(r.Reason, policy.ReasonCircuitOpen) {
				t.Fatalf("new session while open: %+v, %v; want circuit-open", r, err)
			}
			// Another caller is not affected.
			other := engine.Caller{Kind: engine.CallerPlugin, Name: "other"}
			if c.Kind == engine.CallerUser {
				other = as("hank", 1011)
			}
			if r, err := f.eng.Evaluate(ctx, other, req("hank", "/usr/bin/vim"), false); err != nil || strings.HasPrefix(r.Reason, policy.ReasonCircuitOpen) {
				t.Fatalf("another caller: %+v, %v; want an evaluation", r, err)
			}
		})
	}
}

// Two plugins naming the same session do not share a budget: a session
// id is the identity's.
func TestSessionKeyIsPerIdentity(t *testing.T) {
	settings := `{"kind": "Settings", "id": "agent", "spec": {"rateLimit": {"perMinute": 2, "queue": 1}}}`
	f := setup(t, settings)
	ctx := context.Background()
	for i := range 3 {
		q := req(fmt.Sprintf("u%d", i), "/usr/bin/vim")
		q.SessionID = "shared"
		if _, err := f.eng.Evaluate(ctx, pluginCaller, q, false); err != nil {
			t.Fatal(err)
		}
	}
	q := req("someone", "/usr/bin/vim")
	q.SessionID = "shared"
	if _, err := f.eng.Evaluate(ctx, engine.Caller{Kind: engine.CallerPlugin, Name: "other"}, q, false); err != nil {
		t.Fatalf("another plugin with the same session id: %v; want an answer", err)
	}
}

// A user caller the transport could not name is refused, not evaluated
// as the empty user.
func TestUserCallerWithoutName(t *testing.T) {
	f := setup(t, rootOnly)
	if _, err := f.eng.Evaluate(context.Background(), engine.Caller{Kind: engine.CallerUser, UID: 4000}, req("root", "/usr/bin/id"), false); !errors.Is(err, engine.ErrNoCaller) {
		t.Fatalf("Evaluate = %v; want ErrNoCaller", err)
	}
}
