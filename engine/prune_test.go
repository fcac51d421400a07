package engine

import (
	"context"
	"testing"
	"time"

	"warden/policy"
)

// Approvals are kept for a week after their time ends, then deleted with
// their fingerprint entry; a live one stays.
func TestPruneApprovals(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	e, _ := newTestEngine(t, &now, `{"kind": "Policy", "id": "db", "spec": {"name": "db", "type": "PrivilegeElevation",
	 "status": "enforce", "controls": ["allow", "approval"], "filters": {"applications": [{"path": "/usr/bin/psql"}]}}}`)
	ask := func(user string, uid uint32) {
		t.Helper()
		c := Caller{Kind: CallerUser, Name: user, UID: uid}
		q := &policy.Request{User: user, Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/psql"}}
		if r, err := e.Evaluate(context.Background(), c, q, false); err != nil || r.ApprovalID == "" {
			t.Fatalf("%+v, %v", r, err)
		}
	}
	ask("old", 1)
	now = now.Add(7*24*time.Hour + 31*time.Minute + time.Second) // old's pending time ended a week ago
	ask("new", 2)
	n, err := e.pruneApprovals(now)
	if err != nil || n != 2 {
		t.Fatalf("pruneApprovals = %d, %v; want 2 (old's approval and its fingerprint)", n, err)
	}
	as, _ := e.approvals()
	if len(as) != 1 || as[0].User != "new" {
		t.Fatalf("left %+v; want new's only", as)
	}
	if n, _ := e.pruneApprovals(now); n != 0 {
		t.Fatalf("second prune deleted %d", n)
	}
}
