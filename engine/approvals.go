package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/schema"
	"warden/state"
)

// Approval lifetimes: a pending request expires after 30 minutes; an
// approval can be used for 24 hours, for the request it names only. A
// record is kept for keepFor after that (`warden approvals list` shows it;
// the audit log keeps the story for its own retention).
const (
	pendingFor = 30 * time.Minute
	usableFor  = 24 * time.Hour
	keepFor    = 7 * 24 * time.Hour
)

// Approval states. ApprovalExpired is never stored: WaitApproval reports
// it for a request nobody decided in time.
const (
	approvalPending  = "pending"
	approvalApproved = "approved"
	approvalDenied   = "denied"
	ApprovalExpired  = "expired"
)

// Errors of Decide.
var (
	ErrNoApproval     = errors.New("no such pending approval")
	ErrNotAnApprover  = errors.New("not an approver for this policy")
	ErrOwnRequest     = errors.New("a requester may not decide their own request")
	ErrAlreadyDecided = errors.New("approval already decided")
)

// Approval is a request waiting for (or decided by) an approver. It binds
// the exact request: user, machine, action, executable path and SHA-256,
// full command line and target; a decision covers that request and nothing
// else.
type Approval struct {
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
	User        string `json:"user"`
	UID         uint32 `json:"uid,omitempty"`
	// Attested is true when the kernel vouched for User (the user
	// socket). An approval of a request made over HTTP never satisfies an
	// attested request, and the reverse.
	Attested      bool      `json:"attested,omitempty"`
	RequestedBy   string    `json:"requestedBy"` // the caller's identity
	Machine       string    `json:"machine,omitempty"`
	Action        string    `json:"action"`
	Application   string    `json:"application,omitempty"`
	SHA256        string    `json:"sha256,omitempty"`
	CommandLine   string    `json:"commandLine,omitempty"`
	Target        string    `json:"target,omitempty"`
	Write         bool      `json:"write,omitempty"`
	Justification string    `json:"justification,omitempty"`
	Policy        string    `json:"policy"`
	Approvers     []string  `json:"approvers"` // users, and groups as %group
	State         string    `json:"state"`
	CreatedAt     time.Time `json:"createdAt"`
	ExpiresAt     time.Time `json:"expiresAt"`
	DecidedBy     string    `json:"decidedBy,omitempty"` // "uid:N (name)" or "admin/NAME"
	DecidedAt     time.Time `json:"decidedAt,omitzero"`
	Reason        string    `json:"reason,omitempty"` // the approver's
}

// fingerprint identifies "the same request again": who (and whether the
// kernel vouched for it), where, what, with which executable, command line
// and target.
func fingerprint(c Caller, req *policy.Request) string {
	h := sha256.New()
	target, write, who := "", "", "http"
	if req.Target != nil {
		target = req.Target.Path
		if req.Target.Write {
			write = "w"
		}
	}
	if c.Attested() {
		who = "uid:" + strconv.FormatUint(uint64(c.UID), 10)
	}
	for _, s := range []string{who, req.User, req.Machine, req.Action, req.Application.Path,
		req.Application.SHA256, req.Application.CommandLine, target, write} {
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

// approvers are the users and groups of every Approver document covering
// a policy.
type approvers struct{ users, groups []string }

func (e *Engine) approversFor(policyID string) approvers {
	var ap approvers
	for _, d := range e.opts.Store.Current().OfKind(schema.KindApprover) {
		sp := d.Approver()
		for _, pat := range sp.Policies {
			if ok, _ := path.Match(pat, policyID); ok {
				ap.users = append(ap.users, sp.Users...)
				ap.groups = append(ap.groups, sp.Groups...)
				break
			}
		}
	}
	slices.Sort(ap.users)
	slices.Sort(ap.groups)
	ap.users, ap.groups = slices.Compact(ap.users), slices.Compact(ap.groups)
	return ap
}

// list is the approvers as shown: users, then groups as %group.
func (ap approvers) list() []string {
	out := slices.Clone(ap.users)
	for _, g := range ap.groups {
		out = append(out, "%"+g)
	}
	return out
}

// covers reports whether a user caller is one of the approvers, by name
// or through one of the groups the agent resolved for it.
func (ap approvers) covers(c Caller) bool {
	if c.Kind != CallerUser {
		return false
	}
	if slices.Contains(ap.users, c.Name) {
		return true
	}
	for _, g := range c.Groups {
		if slices.Contains(ap.groups, g) {
			return true
		}
	}
	return false
}

// newApproval is the pending approval request for req.
func (e *Engine) newApproval(c Caller, req *policy.Request, id, fp string, d *policy.Decision, now time.Time) Approval {
	pol := d.EnforcedBy
	if pol == "" {
		pol = d.Policy
	}
	a := Approval{ID: id, Fingerprint: fp, User: req.User, Attested: c.Attested(), RequestedBy: c.Identity(),
		Machine: req.Machine, Action: req.Action, Application: req.Application.Path, SHA256: req.Application.SHA256,
		CommandLine: req.Application.CommandLine, Justification: req.Justification, Policy: pol,
		Approvers: e.approversFor(pol).list(), State: approvalPending, CreatedAt: now.UTC(), ExpiresAt: now.Add(pendingFor).UTC()}
	if c.Attested() {
		a.UID = c.UID
	}
	if req.Target != nil {
		a.Target, a.Write = req.Target.Path, req.Target.Write
	}
	return a
}

func approvalRequested(c Caller, req *policy.Request, a *Approval) audit.Event {
	return audit.Event{Type: audit.ApprovalRequested, Component: "engine",
		UserInfo: requestUserInfo(c, req), TargetInfo: approvalTarget(a), Details: approvalDetails(a)}
}

func approvalTarget(a *Approval) *audit.TargetInfo {
	t := &audit.TargetInfo{Kind: "approval", ID: a.ID, Path: a.Application, Hash: a.SHA256}
	if a.Target != "" {
		t.Path = a.Target
	}
	return t
}

func approvalDetails(a *Approval) map[string]any {
	d := map[string]any{"policy": a.Policy, "action": a.Action, "machine": a.Machine, "state": a.State,
		"requestedBy": a.RequestedBy, "attested": a.Attested, "expiresAt": a.ExpiresAt}
	if a.CommandLine != "" {
		d["commandLine"] = a.CommandLine
	}
	if a.Justification != "" {
		d["justification"] = a.Justification
	}
	return d
}

// Decide approves or denies a pending approval as caller c:
//   - a user caller must be named, directly or through one of its groups,
//     by an Approver document covering the policy, and must not be the
//     requester;
//   - an admin (certificate) may decide any approval, and the decision is
//     recorded as the certificate's identity;
//   - a plugin may decide none.
//
// Every refusal is audited as AUTHORIZATION_FAILED naming the would-be
// approver; a decision is audited as APPROVAL_DECIDED before it is stored.
func (e *Engine) Decide(ctx context.Context, c Caller, id string, approve bool, reason string) (Approval, error) {
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
	if err := e.mayDecide(c, &a); err != nil {
		if aerr := e.audit(ctx, audit.Event{Type: audit.AuthorizationFailed, Severity: audit.Warning, Component: "engine",
			UserInfo: c.userInfo(), TargetInfo: approvalTarget(&a),
			Details: map[string]any{"approver": c.String(), "reason": err.Error(), "policy": a.Policy,
				"requester": a.User}}); aerr != nil {
			return a, aerr
		}
		return a, err
	}
	if a.State != approvalPending {
		return a, ErrAlreadyDecided
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Reason = approvalDenied, c.String(), now.UTC(), reason
	if approve {
		a.State, a.ExpiresAt = approvalApproved, now.Add(usableFor).UTC()
	}
	details := approvalDetails(&a)
	details["decidedBy"] = a.DecidedBy
	if reason != "" {
		details["reason"] = reason
	}
	if err := e.commit(state.Approvals, map[string]any{a.ID: a}, audit.Event{Type: audit.ApprovalDecided,
		Component: "engine", UserInfo: c.userInfo(), TargetInfo: approvalTarget(&a), Details: details}); err != nil {
		return a, err
	}
	e.approvalsChanged()
	return a, nil
}

// mayDecide is Decide's rule of who may decide a.
func (e *Engine) mayDecide(c Caller, a *Approval) error {
	switch c.Kind {
	case CallerAdmin:
		return nil
	case CallerUser:
		if a.User == c.Name || (a.Attested && a.UID == c.UID) {
			return ErrOwnRequest
		}
		if e.approversFor(a.Policy).covers(c) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s may not decide for policy %s", ErrNotAnApprover, c, a.Policy)
}

// ApprovalsFor lists what c may see: for an admin every stored approval;
// for a user the pending ones it may decide plus its own requests; for a
// plugin nothing.
func (e *Engine) ApprovalsFor(c Caller) ([]Approval, error) {
	all, err := e.approvals()
	if err != nil || c.Kind == CallerAdmin {
		return all, err
	}
	now := e.opts.Now()
	return slices.DeleteFunc(all, func(a Approval) bool {
		if c.Kind != CallerUser {
			return true
		}
		if a.Attested && a.UID == c.UID {
			return false
		}
		return a.State != approvalPending || now.After(a.ExpiresAt) || e.mayDecide(c, &a) != nil
	}), nil
}

// approvals lists the stored approvals (fingerprint index entries left out).
func (e *Engine) approvals() ([]Approval, error) {
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

// pruneApprovals deletes the approvals whose time ended more than keepFor
// before now, with the fingerprint entries that name them (or nothing).
func (e *Engine) pruneApprovals(now time.Time) (int, error) {
	expiry := map[string]time.Time{} // approval id -> end of its time
	fps := map[string]string{}       // fingerprint key -> approval id
	err := e.opts.Store.List(state.Approvals, func(key string, v json.RawMessage) error {
		if strings.HasPrefix(key, "fp/") {
			var id string
			if err := json.Unmarshal(v, &id); err != nil {
				return err
			}
			fps[key] = id
			return nil
		}
		var a Approval
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		expiry[key] = a.ExpiresAt
		return nil
	})
	if err != nil {
		return 0, err
	}
	var gone []string
	for id, end := range expiry {
		if now.Sub(end) > keepFor {
			gone = append(gone, id)
			delete(expiry, id)
		}
	}
	for key, id := range fps {
		if _, kept := expiry[id]; !kept {
			gone = append(gone, key)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	return len(gone), e.opts.Store.Delete(state.Approvals, gone...)
}

// WaitApproval returns approval id once it is decided, or with State
// ApprovalExpired once its pending time is over, or ctx's error when ctx
// ends first.
func (e *Engine) WaitApproval(ctx context.Context, id string) (Approval, error) {
	for {
		changed := e.approvalsChange()
		var a Approval
		ok, err := e.opts.Store.Get(state.Approvals, id, &a)
		if err != nil {
			return a, err
		}
		if !ok {
			return a, ErrNoApproval
		}
		if a.State != approvalPending {
			return a, nil
		}
		left := a.ExpiresAt.Sub(e.opts.Now())
		if left <= 0 {
			a.State = ApprovalExpired
			return a, nil
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return a, ctx.Err()
		}
		t.Stop()
	}
}

// approvalsChange returns a channel closed at the next change of any
// approval.
func (e *Engine) approvalsChange() <-chan struct{} {
	e.changeMu.Lock()
	defer e.changeMu.Unlock()
	return e.changed
}

func (e *Engine) approvalsChanged() {
	e.changeMu.Lock()
	defer e.changeMu.Unlock()
	close(e.changed)
	e.changed = make(chan struct{})
}
