package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"warden/audit"
	"warden/engine"
	"warden/policy"
)

// Enrolment is audited, never silently replaces a secret, and refuses
// names no user can have.
func TestEnrollMFAAuditedForcedAndValidated(t *testing.T) {
	f := setup(t, needsMFA)
	ctx := context.Background()
	admin := &audit.UserInfo{Identity: "admin/cli"}
	first, err := f.eng.EnrollMFA(ctx, "frank", engine.EnrollOptions{By: admin})
	if err != nil {
		t.Fatal(err)
	}
	e := f.last(t, audit.AdminAction)
	if e.TargetInfo == nil || e.TargetInfo.ID != "frank" || e.UserInfo.Identity != "admin/cli" || e.Details["replaced"] != false {
		t.Fatalf("enrolment event %+v; want ADMIN_ACTION on mfa/frank by admin/cli, replaced false", e)
	}
	if _, err := f.eng.EnrollMFA(ctx, "frank", engine.EnrollOptions{By: admin}); !errors.Is(err, engine.ErrEnrolled) {
		t.Fatalf("second enrolment without force = %v; want ErrEnrolled", err)
	}
	// The refused replacement left the first secret in force.
	secret := secretOf(t, first)
	q := req("frank", "/usr/bin/su")
	q.MFACode = policy.TOTPCode(secret, f.clk.Now())
	if r, err := f.eng.Evaluate(ctx, frank, q, false); err != nil || r.MFA != "verified" {
		t.Fatalf("first secret after a refused replacement: %+v, %v; want verified", r, err)
	}
	second, err := f.eng.EnrollMFA(ctx, "frank", engine.EnrollOptions{Force: true, By: admin})
	if err != nil || second == first {
		t.Fatalf("forced enrolment = %v (same URI %v)", err, second == first)
	}
	if e := f.last(t, audit.AdminAction); e.Details["replaced"] != true {
		t.Fatalf("forced enrolment event %+v; want replaced true", e.Details)
	}
	n := len(f.events(t, audit.AdminAction))
	for _, name := range []string{"", "fr\x00ank", "fr\nank", strings.Repeat("a", 3000), "-rf", "../../etc", "a b", "émile"} {
		if _, err := f.eng.EnrollMFA(ctx, name, engine.EnrollOptions{By: admin}); !errors.Is(err, engine.ErrBadUserName) {
			t.Errorf("EnrollMFA(%q) = %v; want ErrBadUserName", name, err)
		}
	}
	for _, name := range []string{"frank2", "first.last", "svc_backup", "ann@corp.example", "machine$"} {
		if err := engine.ValidUserName(name); err != nil {
			t.Errorf("ValidUserName(%q) = %v; want nil", name, err)
		}
	}
	if got := len(f.events(t, audit.AdminAction)); got != n {
		t.Fatalf("refused names were audited as enrolments (%d events, want %d)", got, n)
	}
}
