package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"warden/engine"
	"warden/fulldisk"
)

// On a full disk a decision that would create a grant or an approval
// request fails with ErrAuditUnavailable, and neither exists: the record
// and its events are one store transaction. Once space returns, the same
// engine works again.
func TestFullDiskNoGrantWithoutItsEvents(t *testing.T) {
	fs := fulldisk.Mount(t, 16<<20)
	f := setupIn(t, fs.Dir, devTools, needsApproval, approver)
	ctx := context.Background()
	long := strings.Repeat("x", 1500) // larger events fill the file's free pages sooner
	ask := func(i int) (engine.Result, error) {
		q := req("dave", "/usr/bin/apt-get")
		q.Justification = fmt.Sprint(i, long)
		return f.eng.Evaluate(ctx, dave, q, false)
	}
	if r, err := ask(0); err != nil || r.GrantID == "" {
		t.Fatalf("before filling: %+v, %v; want a grant", r, err)
	}
	fs.Fill()
	var refused error
	for i := 1; i < 200 && refused == nil; i++ { // free pages in the file may take a few
		_, refused = ask(i)
	}
	if !errors.Is(refused, engine.ErrAuditUnavailable) {
		t.Fatalf("on a full disk: %v; want ErrAuditUnavailable", refused)
	}
	n := len(f.storedGrants(t))
	if grants := f.grantedIDs(t); grants != n {
		t.Fatalf("%d grants stored, ELEVATION_GRANTED for %d: a grant without its event or the reverse", n, grants)
	}
	if _, err := f.eng.Evaluate(ctx, carol, req("carol", "/usr/bin/psql"), false); !errors.Is(err, engine.ErrAuditUnavailable) {
		t.Fatalf("approval request on a full disk: %v; want ErrAuditUnavailable", err)
	}
	if as, _ := f.eng.ApprovalsFor(adminCaller); len(as) != 0 {
		t.Fatalf("approvals stored on a full disk: %+v", as)
	}
	fs.Free()
	if r, err := ask(1000); err != nil || r.GrantID == "" {
		t.Fatalf("after space returned: %+v, %v; want a grant", r, err)
	}
	if grants := f.grantedIDs(t); grants != len(f.storedGrants(t)) {
		t.Fatalf("ELEVATION_GRANTED for %d grants, %d stored", grants, len(f.storedGrants(t)))
	}
}
