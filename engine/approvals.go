package engine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/schema"
	"warden/state"
)

// Approval lifetimes (issue 7): a pending request expires after 30
// minutes; an approval can be used for 24 hours.
const (
	pendingFor = 30 * time.Minute
	usableFor  = 24 * time.Hour
)

const (
	approvalPending  = "pending"
	approvalApproved = "approved"
	approvalDenied   = "denied"
)

// Errors of Decide.
var (
	ErrNoApproval     = errors.New("no such pending approval")
	ErrNotAnApprover  = errors.New("not an approver for this policy")
	ErrAlreadyDecided = errors.New("approval already decided")
)

// Approval is a request waiting for (or decided by) an approver.
type Approval struct {
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	User        string    `json:"user"`
	Machine     string    `json:"machine,omitempty"`
	Action      string    `json:"action"`
	Application string    `json:"application,omitempty"`
	Target      string    `json:"target,omitempty"`
	Policy      string    `json:"policy"`
	Approvers   []string  `json:"approvers"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	DecidedBy   string    `json:"decidedBy,omitempty"`
	DecidedAt   time.Time `json:"decidedAt,omitzero"`
}

// fingerprint identifies "the same request again": who, where, what.
func fingerprint(req *policy.Request) string {
	h := sha256.New()
	target := ""
	if req.Target != nil {
		target = req.Target.Path
	}
	for _, s := range []string{req.User, req.Machine, req.Action, req.Application.Path, req.Application.SHA256, target} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fpKey(fp string) string { return "fp/" + fp }

// findApproval returns the live approval for a request fingerprint: pending
// and not expired, or approved and still usable.
func (e *Engine) findApproval(fp string, now time.Time) (*Approval, error) {
	var id string
	if ok, err := e.opts.Store.Get(state.Approvals, fpKey(fp), &id); err != nil || !ok {
		return nil, err
	}
	var a Approval
	if ok, err := e.opts.Store.Get(state.Approvals, id, &a); err != nil || !ok {
		return nil, err
	}
	if now.After(a.ExpiresAt) || a.State == approvalDenied {
		return nil, nil
	}
	return &a, nil
}

// approversFor lists the users of every Approver document covering policy.
func (e *Engine) approversFor(policyID string) []string {
	var users []string
	for _, d := range e.opts.Store.Current().OfKind(schema.KindApprover) {
		sp := d.Approver()
		for _, pat := range sp.Policies {
			if ok, _ := path.Match(pat, policyID); ok {
				users = append(users, sp.Users...)
				break
			}
		}
	}
	slices.Sort(users)
	return slices.Compact(users)
}

func (e *Engine) createApproval(req *policy.Request, fp string, d *policy.Decision, now time.Time) (string, error) {
	var b [9]byte
	rand.Read(b[:])
	pol := d.EnforcedBy
	if pol == "" {
		pol = d.Policy
	}
	a := Approval{ID: hex.EncodeToString(b[:]), Fingerprint: fp, User: req.User, Machine: req.Machine,
		Action: req.Action, Application: req.Application.Path, Policy: pol, Approvers: e.approversFor(pol),
		State: approvalPending, CreatedAt: now.UTC(), ExpiresAt: now.Add(pendingFor).UTC()}
	if req.Target != nil {
		a.Target = req.Target.Path
	}
	if err := e.opts.Store.PutMany(state.Approvals, map[string]any{a.ID: a, fpKey(fp): a.ID}); err != nil {
		return "", err
	}
	return a.ID, nil
}

// Decide approves or denies a pending approval as approver, who must be
// listed by an Approver document covering the policy. Audited as
// ADMIN_ACTION.
func (e *Engine) Decide(id, approver string, approve bool) (Approval, error) {
	// One decision at a time: read, check pending, write must not
	// interleave, or two approvers could both decide one request.
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	now := e.opts.Now()
	var a Approval
	ok, err := e.opts.Store.Get(state.Approvals, id, &a)
	if err != nil {
		return a, err
	}
	if !ok || (a.State == approvalPending && now.After(a.ExpiresAt)) {
		return a, ErrNoApproval
	}
	if a.State != approvalPending {
		return a, ErrAlreadyDecided
	}
	if !slices.Contains(e.approversFor(a.Policy), approver) {
		return a, fmt.Errorf("%w: %s may not decide for policy %s", ErrNotAnApprover, approver, a.Policy)
	}
	a.State, a.DecidedBy, a.DecidedAt = approvalDenied, approver, now.UTC()
	if approve {
		a.State, a.ExpiresAt = approvalApproved, now.Add(usableFor).UTC()
	}
	if err := e.opts.Store.Put(state.Approvals, a.ID, a); err != nil {
		return a, err
	}
	e.opts.Audit.Emit(audit.Event{Type: audit.AdminAction, Component: "engine",
		UserInfo:   &audit.UserInfo{User: a.User},
		TargetInfo: &audit.TargetInfo{Kind: "approval", ID: a.ID, Path: a.Application},
		Details:    map[string]any{"action": "approval " + a.State, "approver": approver, "policy": a.Policy}})
	return a, nil
}

// Approvals lists the stored approvals (fingerprint index entries left out).
func (e *Engine) Approvals() ([]Approval, error) {
	var out []Approval
	err := e.opts.Store.List(state.Approvals, func(key string, v json.RawMessage) error {
		if len(key) > 3 && key[:3] == "fp/" {
			return nil
		}
		var a Approval
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	slices.SortFunc(out, func(a, b Approval) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}
