package source

import (
	"context"
	"errors"
	"fmt"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// ErrChanged refuses a local change made against a generation that is no
// longer the current one (another change came first): the caller reads
// again and retries.
var ErrChanged = errors.New("desired state changed during the request")

// LocalChange is one document put or deleted by an operator through the
// API (PUT, DELETE /api/v1/desired/{kind}/{id}).
type LocalChange struct {
	Kind, ID string
	// Data is the document's bytes for a put, nil for a delete.
	Data []byte
	// Base is the generation the change was made against; 0: the current.
	Base uint64
	// By is the caller, as its certificate named it.
	By *audit.UserInfo
}

func (c LocalChange) action() string {
	if c.Data == nil {
		return "delete"
	}
	return "put"
}

// ApplyLocal takes a local change through the same pipeline as a bundle:
// the document validated where a bundle would hold it (policies/ID.json,
// settings.json, ...) with kind and id checked against that place, the
// whole resulting set's policies compiled, and the set applied as the
// next generation (the bundle version unchanged, source "local") with its
// ADMIN_ACTION and CONFIG_CHANGED in the same transaction. Local changes
// and bundles apply one at a time. A refused change (the error satisfies
// Refused: ErrInvalid) is audited as ADMIN_ACTION with the reason and
// changes nothing; ErrChanged says another change came first.
func (p *Pipeline) ApplyLocal(ctx context.Context, c LocalChange) (state.Meta, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.store.Current()
	if c.Base != 0 && c.Base != cur.Meta.Generation {
		return state.Meta{}, ErrChanged
	}
	docs, err := p.localSet(cur, c)
	if err != nil {
		if Refused(err) {
			p.emit(ctx, audit.Event{Type: audit.AdminAction, Severity: audit.Warning, Component: "api", UserInfo: c.By,
				TargetInfo: &audit.TargetInfo{Kind: c.Kind, ID: c.ID},
				Details:    map[string]any{"action": c.action(), "result": "refused", "reason": Reason(err)}})
		}
		return state.Meta{}, err
	}
	base := cur.Meta.Generation
	a := state.Apply{BundleVersion: cur.Meta.BundleVersion, Source: "local", Docs: docs,
		Check: func(m state.Meta) error {
			if m.Generation != base {
				return ErrChanged
			}
			return nil
		}}
	event := func(m state.Meta) []audit.Event {
		return []audit.Event{{Type: audit.AdminAction, Component: "api", UserInfo: c.By,
			TargetInfo: &audit.TargetInfo{Kind: c.Kind, ID: c.ID},
			Details:    map[string]any{"action": c.action(), "generation": m.Generation}}}
	}
	if p.audit == nil {
		return p.store.ApplyGeneration(a)
	}
	m, err := p.audit.ApplyGeneration(a, c.By, event)
	if err == nil {
		p.logger().Info("local change applied", "action", c.action(), "kind", c.Kind, "id", c.ID, "generation", m.Generation)
	}
	return m, err
}

// localSet is the current documents with c applied, checked as a bundle's
// documents are.
func (p *Pipeline) localSet(cur *state.Snapshot, c LocalChange) ([]*schema.Document, error) {
	place := localPlace(c.Kind, c.ID)
	var doc *schema.Document
	if c.Data != nil {
		d, err := schema.Validate(place, c.Data)
		if err != nil {
			var se schema.Errors
			if !errors.As(err, &se) {
				se = schema.Errors{{File: place, Msg: err.Error()}}
			}
			return nil, &InvalidError{Errors: se}
		}
		if errs := checkPlace(place, d); errs != nil {
			return nil, &InvalidError{Errors: errs}
		}
		doc = d
	} else if cur.Get(c.Kind, c.ID) == nil {
		return nil, fmt.Errorf("%s/%s: %w", c.Kind, c.ID, state.ErrNotFound)
	}
	docs := make([]*schema.Document, 0, len(cur.Docs)+1)
	for _, d := range cur.Docs {
		if d.Kind != c.Kind || d.ID != c.ID {
			docs = append(docs, d)
		}
	}
	if doc != nil {
		docs = append(docs, doc)
	}
	if errs := CompilePolicies(docs); errs != nil {
		return nil, &InvalidError{Errors: errs}
	}
	return docs, nil
}

// localPlace is where a bundle holds the document kind/id.
func localPlace(kind, id string) string {
	if kind == schema.KindSettings {
		return SettingsFile
	}
	for dir, k := range folderKinds {
		if k == kind {
			return dir + "/" + id + ".json"
		}
	}
	return kind + "/" + id
}
