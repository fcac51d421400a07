package engine_test

import (
	"context"
	"errors"
	"testing"

	"warden/audit"
	"warden/engine"
	"warden/fulldisk"
	"warden/policy"
)

const plainAllow = `{"kind": "Policy", "id": "id-for-all", "spec": {"name": "id", "type": "PrivilegeElevation",
 "status": "enforce", "controls": ["allow"], "filters": {"users": ["*"], "applications": [{"path": "/usr/bin/id"}]}}}`

// EvaluateDeferred's record stores the evaluation and the caller's events
// in one transaction, evaluation first and adjacent in the chain; it
// stores once however often it is called; and until it is called the
// evaluation is not stored (which is why the socket defers it).
func TestEvaluateDeferredStoresWithTheEvaluation(t *testing.T) {
	f := setup(t, plainAllow)
	ctx := context.Background()
	user := as("carol", 1002, "staff")
	r, record, err := f.eng.EvaluateDeferred(ctx, user, req("carol", "/usr/bin/id"), false)
	if err != nil || r.Effective != policy.Allow {
		t.Fatalf("EvaluateDeferred = %+v, %v; want allow", r, err)
	}
	if n := f.count(t, audit.PolicyEvaluation); n != 0 {
		t.Fatalf("%d POLICY_EVALUATION stored before record", n)
	}
	started := audit.Event{Type: audit.ElevationStarted, Component: "elevate", Details: map[string]any{"pid": 77}}
	if err := record(started); err != nil {
		t.Fatal(err)
	}
	if err := record(started); err != nil { // again: nothing more
		t.Fatal(err)
	}
	evs, _, err := audit.Query(f.store, audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []uint64
	for _, ev := range evs {
		if ev.Type == audit.PolicyEvaluation || ev.Type == audit.ElevationStarted {
			got = append(got, ev.Type)
			seqs = append(seqs, ev.Seq)
		}
	}
	if len(got) != 2 || got[0] != audit.PolicyEvaluation || got[1] != audit.ElevationStarted || seqs[1] != seqs[0]+1 {
		t.Fatalf("stored %v at %v; want POLICY_EVALUATION then ELEVATION_STARTED, adjacent, once each", got, seqs)
	}
	if _, err := audit.Verify(f.store); err != nil {
		t.Fatalf("chain after a deferred record: %v", err)
	}
}

// When the store refuses the write, record says so: the caller must not
// act (the socket kills the held command), and a later record does not
// pretend it worked.
func TestEvaluateDeferredRecordFailsOnFullDisk(t *testing.T) {
	fs := fulldisk.Mount(t, 16<<20)
	f := setupIn(t, fs.Dir, plainAllow)
	user := as("carol", 1002, "staff")
	fs.Fill()
	big := audit.Event{Type: audit.ElevationStarted, Component: "elevate", Details: map[string]any{"pad": string(make([]byte, 1<<20))}}
	var err error
	for i := 0; i < 200 && err == nil; i++ { // free pages in the file may take a few
		var record engine.Record
		_, record, err = f.eng.EvaluateDeferred(context.Background(), user, req("carol", "/usr/bin/id"), false)
		if err == nil {
			err = record(big)
			if again := record(); !errors.Is(again, engine.ErrAuditUnavailable) && err != nil {
				t.Fatalf("second record after a failed one: %v; want the same failure", again)
			}
		}
	}
	if !errors.Is(err, engine.ErrAuditUnavailable) {
		t.Fatalf("record on a full disk: %v; want ErrAuditUnavailable", err)
	}
}
