package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

const localPolicy = `{"kind": "Policy", "id": "deny-nc", "spec": {"name": "p", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 1, "controls": ["deny"], "filters": {"users": ["*"]}}}`

// Local changes go through the pipeline as bundles do: validated in the
// place a bundle would hold the document, compiled, applied as the next
// generation with the bundle version kept, audited in the same
// transaction (ADMIN_ACTION, CONFIG_CHANGED for a Job), and a refusal is
// audited and changes nothing.
func TestApplyLocal(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	ctx := context.Background()
	by := &audit.UserInfo{Identity: "admin/cli"}
	if _, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 4}, docFiles(nil))))); err != nil {
		t.Fatal(err)
	}
	before := a.store.Current().Meta

	cases := []struct {
		name   string
		c      LocalChange
		wantIs error
		want   string // in the error
	}{
		{"invalid field", LocalChange{Kind: schema.KindPolicy, ID: "deny-nc", Data: []byte(strings.Replace(localPolicy, `"priority": 1`, `"priority": 1, "durationSeconds": 30`, 1))},
			ErrInvalid, "policies/deny-nc.json: spec.durationSeconds"},
		{"id not its place", LocalChange{Kind: schema.KindPolicy, ID: "other", Data: []byte(localPolicy)}, ErrInvalid, "policies/other.json: id"},
		{"kind not its place", LocalChange{Kind: schema.KindJob, ID: "deny-nc", Data: []byte(localPolicy)}, ErrInvalid, "jobs/deny-nc.json: kind"},
		{"delete of a missing document", LocalChange{Kind: schema.KindPolicy, ID: "nope"}, state.ErrNotFound, "nope"},
		{"stale base", LocalChange{Kind: schema.KindPolicy, ID: "deny-nc", Data: []byte(localPolicy), Base: before.Generation + 5}, ErrChanged, "changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.By = by
			_, err := a.p.ApplyLocal(ctx, tc.c)
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ApplyLocal: %v; want %v mentioning %q", err, tc.wantIs, tc.want)
			}
			if m := a.store.Current().Meta; m.Generation != before.Generation {
				t.Fatalf("generation %d after a refused change; want %d", m.Generation, before.Generation)
			}
		})
	}
	refused := 0
	for _, e := range a.events(t, audit.AdminAction) {
		if e.Details["result"] == "refused" {
			refused++
		}
	}
	if refused != 3 { // the invalid ones; not found and stale change nothing and are answered
		t.Errorf("%d refused local changes audited; want 3", refused)
	}

	m, err := a.p.ApplyLocal(ctx, LocalChange{Kind: schema.KindPolicy, ID: "deny-nc", Data: []byte(localPolicy), Base: before.Generation, By: by})
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != before.Generation+1 || m.BundleVersion != 4 || m.Source != "local" {
		t.Fatalf("meta %+v; want generation %d, bundle version 4, source local", m, before.Generation+1)
	}
	job := `{"kind": "Job", "id": "inv", "spec": {"trigger": {}, "tasks": [{"command": "/bin/true"}]}}`
	if _, err := a.p.ApplyLocal(ctx, LocalChange{Kind: schema.KindJob, ID: "inv", Data: []byte(job), By: by}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.p.ApplyLocal(ctx, LocalChange{Kind: schema.KindJob, ID: "inv", By: by}); err != nil {
		t.Fatal(err)
	}
	if n := len(a.events(t, audit.ConfigChanged)); n < 2 {
		t.Errorf("%d CONFIG_CHANGED events for a Job put and deleted; want 2", n)
	}
}
