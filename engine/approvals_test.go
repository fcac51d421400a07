package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
	"warden/policy"
)

func psql(cmdline, sha string) *policy.Request {
	q := req("carol", "/usr/bin/psql")
	q.Application.CommandLine, q.Application.SHA256 = cmdline, sha
	return q
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// An approval covers the exact request it was asked for: another command
// line, another executable digest, or the same request made over HTTP
// asks anew.
func TestApprovalBindsExactRequest(t *testing.T) {
	f := setup(t, needsApproval, approver)
	ctx := context.Background()
	r, err := f.eng.Evaluate(ctx, carol, psql("psql -c 'select 1'", shaA), false)
	if err != nil || r.Effective != "approval" || r.ApprovalID == "" {
		t.Fatalf("%+v, %v; want approval", r, err)
	}
	ev := f.last(t, audit.ApprovalRequested)
	if ev.TargetInfo.ID != r.ApprovalID || ev.Details["commandLine"] != "psql -c 'select 1'" || ev.UserInfo.Identity != "uid:1002" {
		t.Fatalf("APPROVAL_REQUESTED: %+v %+v %v", ev.TargetInfo, ev.UserInfo, ev.Details)
	}
	a, err := f.eng.Decide(ctx, alice, r.ApprovalID, true, "change 42")
	if err != nil || a.DecidedBy != "uid:1003 (alice)" || a.SHA256 != shaA || a.CommandLine != "psql -c 'select 1'" {
		t.Fatalf("alice approves: %+v, %v", a, err)
	}
	if ev := f.last(t, audit.ApprovalDecided); ev.Details["decidedBy"] != "uid:1003 (alice)" || ev.Details["reason"] != "change 42" {
		t.Fatalf("APPROVAL_DECIDED details %v", ev.Details)
	}
	if r, _ := f.eng.Evaluate(ctx, carol, psql("psql -c 'select 1'", shaA), false); r.Effective != "allow" {
		t.Fatalf("the approved request: %+v; want allow", r)
	}
	for name, tc := range map[string]struct {
		c engine.Caller
		q *policy.Request
	}{
		"other command line": {carol, psql("psql -c 'drop table users'", shaA)},
		"other sha256":       {carol, psql("psql -c 'select 1'", shaB)},
		"over HTTP":          {pluginCaller, psql("psql -c 'select 1'", shaA)},
		"other user":         {erin, psql("psql -c 'select 1'", shaA)},
	} {
		r, err := f.eng.Evaluate(ctx, tc.c, tc.q, false)
		if err != nil || r.Effective != "approval" || r.ApprovalID == a.ID {
			t.Errorf("%s: %+v, %v; want a new approval request", name, r, err)
		}
	}
	// Usable for 24 hours, then asked anew.
	f.clk.Add(24*time.Hour + time.Second)
	if r, _ := f.eng.Evaluate(ctx, carol, psql("psql -c 'select 1'", shaA), false); r.Effective != "approval" {
		t.Fatalf("after 24 h: %+v; want approval", r)
	}
}

// The requester may not decide their own request even when listed as an
// approver; an unlisted user is refused; both are audited naming the
// would-be approver. A member of an approver group may decide.
func TestApproverRules(t *testing.T) {
	grp := `{"kind": "Approver", "id": "dba-group", "spec": {"name": "DBA group", "users": ["nobody-at-all"],
	  "groups": ["dba"], "policies": ["db-admin"]}}`
	f := setup(t, needsApproval, approver, grp)
	ctx := context.Background()
	// alice is an approver; her own request is not hers to decide.
	r, _ := f.eng.Evaluate(ctx, alice, req("alice", "/usr/bin/psql"), false)
	if _, err := f.eng.Decide(ctx, alice, r.ApprovalID, true, ""); !errors.Is(err, engine.ErrOwnRequest) {
		t.Fatalf("alice approving her own request: %v; want ErrOwnRequest", err)
	}
	ev := f.last(t, audit.AuthorizationFailed)
	if ev.Details["approver"] != "uid:1003 (alice)" || ev.TargetInfo.ID != r.ApprovalID {
		t.Fatalf("AUTHORIZATION_FAILED: %+v %v; want alice named", ev.TargetInfo, ev.Details)
	}
	// mallory is no approver; her name in the body of anything changes nothing.
	mallory := as("mallory", 1666, "staff")
	if _, err := f.eng.Decide(ctx, mallory, r.ApprovalID, true, ""); !errors.Is(err, engine.ErrNotAnApprover) {
		t.Fatalf("mallory: %v; want ErrNotAnApprover", err)
	}
	if ev := f.last(t, audit.AuthorizationFailed); ev.Details["approver"] != "uid:1666 (mallory)" || ev.UserInfo.Identity != "uid:1666" {
		t.Fatalf("AUTHORIZATION_FAILED for mallory: %+v %v", ev.UserInfo, ev.Details)
	}
	// A plugin decides nothing.
	if _, err := f.eng.Decide(ctx, pluginCaller, r.ApprovalID, true, ""); !errors.Is(err, engine.ErrNotAnApprover) {
		t.Fatalf("plugin: %v; want ErrNotAnApprover", err)
	}
	if n := f.count(t, audit.AuthorizationFailed); n != 3 {
		t.Fatalf("AUTHORIZATION_FAILED events = %d; want 3", n)
	}
	// What each sees: the approver group member sees alice's pending
	// request; alice sees her own; mallory sees nothing.
	dbaMember := as("dora", 1020, "staff", "dba")
	for _, tc := range []struct {
		c    engine.Caller
		want int
	}{{dbaMember, 1}, {alice, 1}, {mallory, 0}, {pluginCaller, 0}, {adminCaller, 1}} {
		if as, err := f.eng.ApprovalsFor(tc.c); err != nil || len(as) != tc.want {
			t.Errorf("ApprovalsFor(%s) = %d approvals, %v; want %d", tc.c, len(as), err, tc.want)
		}
	}
	a, err := f.eng.Decide(ctx, dbaMember, r.ApprovalID, false, "not today")
	if err != nil || a.State != "denied" || a.DecidedBy != "uid:1020 (dora)" {
		t.Fatalf("dba group member denies: %+v, %v", a, err)
	}
	if r, _ := f.eng.Evaluate(ctx, alice, req("alice", "/usr/bin/psql"), false); r.Effective != "approval" || r.ApprovalID == a.ID {
		t.Fatalf("after a denial: %+v; want a new request", r)
	}
}

// An admin's decision is recorded as the admin certificate's identity.
func TestAdminDecisionRecordedAsCertificate(t *testing.T) {
	f := setup(t, needsApproval, approver)
	ctx := context.Background()
	r, _ := f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	a, err := f.eng.Decide(ctx, adminCaller, r.ApprovalID, true, "")
	if err != nil || a.DecidedBy != "admin/cli" {
		t.Fatalf("admin approves: %+v, %v; want decided by admin/cli", a, err)
	}
	if ev := f.last(t, audit.ApprovalDecided); ev.UserInfo.Identity != "admin/cli" {
		t.Fatalf("APPROVAL_DECIDED names %+v", ev.UserInfo)
	}
}

// WaitApproval returns once the request is decided, and reports a request
// nobody decided in time as expired.
func TestWaitApproval(t *testing.T) {
	f := setup(t, needsApproval, approver)
	ctx := context.Background()
	r, _ := f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false)
	got := make(chan engine.Approval, 1)
	go func() {
		a, err := f.eng.WaitApproval(ctx, r.ApprovalID)
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	time.Sleep(20 * time.Millisecond) // let it wait (it must return either way)
	if _, err := f.eng.Decide(ctx, alice, r.ApprovalID, true, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.State != "approved" {
			t.Fatalf("WaitApproval = %+v; want approved", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitApproval did not return after the decision")
	}
	r2, _ := f.eng.Evaluate(ctx, erin, req("erin", "/usr/bin/psql"), false)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := f.eng.WaitApproval(cctx, r2.ApprovalID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApproval with a short ctx: %v; want the ctx's error", err)
	}
	f.clk.Add(31 * time.Minute)
	if a, err := f.eng.WaitApproval(ctx, r2.ApprovalID); err != nil || a.State != engine.ApprovalExpired {
		t.Fatalf("after 31 minutes: %+v, %v; want expired", a, err)
	}
	if _, err := f.eng.WaitApproval(ctx, "nonexistent"); !errors.Is(err, engine.ErrNoApproval) {
		t.Fatalf("unknown id: %v", err)
	}
}
