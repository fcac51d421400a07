package doctor

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"warden/audit"
	"warden/source"
	"warden/state"
)

// doc is a desired document as the API and the store hold it.
type doc struct {
	Kind string          `json:"kind"`
	ID   string          `json:"id"`
	Spec json.RawMessage `json:"spec"`
}

// GatherFromAgent fills e.Data from a running agent's API.
func (e *Env) GatherFromAgent() {
	var settings doc
	if e.Agent.Get("/api/v1/desired/Settings/agent", &settings) == nil {
		e.Data.Settings = settings.Spec
	}
	var pols struct {
		Documents []doc `json:"documents"`
	}
	if e.Agent.Get("/api/v1/desired/Policy", &pols) == nil {
		for _, p := range pols.Documents {
			e.Data.Policies = append(e.Data.Policies, p.Spec)
		}
	}
	var gs struct {
		Grants []Grant `json:"grants"`
	}
	if e.Agent.Get("/api/v1/grants", &gs) == nil {
		e.Data.Grants = gs.Grants
	}
	var v struct {
		Events   int    `json:"events"`
		Intact   bool   `json:"intact"`
		BrokenAt uint64 `json:"brokenAt"`
		Reason   string `json:"reason"`
	}
	var st struct {
		AuditForward       []audit.ForwardStatus `json:"auditForward"`
		ApplicationControl *AppControl           `json:"applicationControl"`
	}
	if e.Agent.Get("/api/v1/status", &st) == nil {
		e.Data.Forward, e.Data.AppControl = st.AuditForward, st.ApplicationControl
	}
	if e.Agent.Get("/api/v1/audit/verify", &v) == nil {
		e.Data.AuditChecked, e.Data.AuditEvents = true, v.Events
		if !v.Intact {
			e.Data.AuditBroken = (&audit.BreakError{Seq: v.BrokenAt, Reason: v.Reason}).Error()
		}
	}
}

// GatherFromStore fills e.Data by opening the store (the agent is down).
// It returns state.ErrLocked when an agent holds it after all.
func (e *Env) GatherFromStore() error {
	db := filepath.Join(e.Root, "KeeperStorage", "warden.db")
	if _, err := os.Lstat(db); err != nil {
		return err // never create a store where there is none
	}
	st, err := state.Open(filepath.Join(e.Root, "KeeperStorage"), state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	sn := st.Current()
	if d := sn.Get("Settings", "agent"); d != nil {
		var dd doc
		if json.Unmarshal(d.Raw, &dd) == nil {
			e.Data.Settings = dd.Spec
		}
	}
	for _, d := range sn.OfKind("Policy") {
		var dd doc
		if json.Unmarshal(d.Raw, &dd) == nil {
			e.Data.Policies = append(e.Data.Policies, dd.Spec)
		}
	}
	st.List(state.Grants, func(_ string, v json.RawMessage) error {
		var g Grant
		if json.Unmarshal(v, &g) == nil {
			e.Data.Grants = append(e.Data.Grants, g)
		}
		return nil
	})
	_, rerr := source.LoadRegistration(st)
	reg := rerr == nil
	if rerr == nil || errors.Is(rerr, source.ErrNotRegistered) {
		e.Data.Registered = &reg
	}
	n, verr := audit.Verify(st)
	e.Data.AuditChecked, e.Data.AuditEvents = true, n
	if verr != nil {
		e.Data.AuditBroken = verr.Error()
	}
	return nil
}
