package audit

import (
	"bytes"
	"encoding/json"
	"sort"

	"warden/schema"
	"warden/state"
)

// configKinds are the kinds whose change is a CONFIG_CHANGED: the agent's
// own configuration, as opposed to policy (audited by the decisions it
// makes).
var configKinds = map[string]bool{schema.KindSettings: true, schema.KindPlugin: true, schema.KindJob: true}

// ConfigChange is one document of a config kind added, changed or removed.
type ConfigChange struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Change string `json:"change"` // added, changed, removed
}

// ConfigChanges compares the config kinds of two generations' documents and
// returns what was added, changed (spec differs) or removed, sorted by kind
// and id.
func ConfigChanges(old, next []*schema.Document) []ConfigChange {
	before := map[string]*schema.Document{}
	for _, d := range old {
		if configKinds[d.Kind] {
			before[d.Key()] = d
		}
	}
	var out []ConfigChange
	for _, d := range next {
		if !configKinds[d.Kind] {
			continue
		}
		prev, ok := before[d.Key()]
		delete(before, d.Key())
		switch {
		case !ok:
			out = append(out, ConfigChange{Kind: d.Kind, ID: d.ID, Change: "added"})
		case !sameSpec(prev, d):
			out = append(out, ConfigChange{Kind: d.Kind, ID: d.ID, Change: "changed"})
		}
	}
	for _, d := range before {
		out = append(out, ConfigChange{Kind: d.Kind, ID: d.ID, Change: "removed"})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func sameSpec(a, b *schema.Document) bool {
	ja, err1 := json.Marshal(a.Spec)
	jb, err2 := json.Marshal(b.Spec)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// ConfigChangedEvent is the CONFIG_CHANGED event for generation m, whose
// documents are docs, against the generation before it (prev, nil for
// none), in the name of ui; nil when no Settings, Plugin or Job changed.
func ConfigChangedEvent(prev *state.Snapshot, docs []*schema.Document, m state.Meta, ui *UserInfo) *Event {
	var old []*schema.Document
	if prev != nil {
		old = prev.Docs
	}
	changes := ConfigChanges(old, docs)
	if len(changes) == 0 {
		return nil
	}
	list := make([]any, len(changes))
	for i, c := range changes {
		list[i] = map[string]any{"kind": c.Kind, "id": c.ID, "change": c.Change}
	}
	target := &TargetInfo{Kind: changes[0].Kind, ID: changes[0].ID}
	if len(changes) > 1 {
		target = &TargetInfo{Kind: "Generation"}
	}
	return &Event{Type: ConfigChanged, Severity: Info, Component: "state", UserInfo: ui,
		TargetInfo: target,
		Details: map[string]any{"generation": m.Generation, "bundleVersion": m.BundleVersion,
			"origin": m.Source, "changes": list}}
}

// ApplyGeneration commits a as the next generation of the writer's store
// together with its audit events, in one transaction: events(meta)
// (BUNDLE_APPLIED, ADMIN_ACTION) and, when Settings, Plugins or Jobs
// changed, CONFIG_CHANGED in the name of ui. The generation is committed
// if and only if its events are: when they cannot be stored (disk full)
// nothing is applied and the error wraps ErrUnavailable. An error from
// a.Check is returned as it is.
func (w *Writer) ApplyGeneration(a state.Apply, ui *UserInfo, events func(state.Meta) []Event) (state.Meta, error) {
	txn, err := w.Begin()
	if err != nil {
		return state.Meta{}, err
	}
	checkFailed := false
	if check := a.Check; check != nil {
		a.Check = func(cur state.Meta) error {
			err := check(cur)
			checkFailed = err != nil
			return err
		}
	}
	a.Audit = func(m state.Meta) []state.AuditEntry {
		var out []state.AuditEntry
		for _, e := range events(m) {
			out = append(out, txn.Add(e))
		}
		// Inside the transaction Current is the generation it replaces:
		// the store publishes the new one only after the commit.
		if cc := ConfigChangedEvent(w.store.Current(), a.Docs, m, ui); cc != nil {
			out = append(out, txn.Add(*cc))
		}
		return out
	}
	m, err := w.store.ApplyGeneration(a)
	return m, txn.End(err, checkFailed)
}
