package engine

import (
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// newTestEngine is an engine on a real store in t.TempDir() holding docs
// as its generation, with its clock at *now.
func newTestEngine(t *testing.T, now *time.Time, docs ...string) (*Engine, *state.Store) {
	t.Helper()
	st, err := state.Open(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if len(docs) > 0 {
		var ds []*schema.Document
		for _, d := range docs {
			doc, err := schema.Validate("doc.json", []byte(d))
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, doc)
		}
		if _, err := st.ApplyGeneration(state.Apply{BundleVersion: 1, Source: "test", Docs: ds}); err != nil {
			t.Fatal(err)
		}
	}
	aw, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aw.Close)
	e, err := New(Options{Store: st, Audit: aw, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return e, st
}
