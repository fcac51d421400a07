package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/state"
)

// Result is the answer of POST /api/v1/evaluate: the policy decision plus
// what the agent did about it.
type Result struct {
	policy.Decision
	// ApprovalID names the pending approval an approval decision created
	// (or found); approvers act on it with `warden approvals approve ID`.
	ApprovalID string `json:"approvalId,omitempty"`
	// GrantID and GrantExpiresAt describe the time-limited grant an allow
	// created. Only attested (user socket) requests get grants.
	GrantID        string     `json:"grantId,omitempty"`
	GrantExpiresAt *time.Time `json:"grantExpiresAt,omitempty"`
	// MFA says what became of an MFA code the request carried: verified,
	// failed or locked (the user's MFA is locked until MFALockedUntil).
	// A code is only checked when the decision asks for MFA.
	MFA            string     `json:"mfa,omitempty"`
	MFALockedUntil *time.Time `json:"mfaLockedUntil,omitempty"`
}

// Evaluate answers req for caller c. For a user caller the request's user
// and groups are the caller's and its machine is this one, whatever req
// said. explain (the filters that did and did not match) is honoured for
// admins only.
//
// Evaluate waits its turn when a source key is over its rate (in order,
// bounded by ctx) and returns ErrRateLimited when a key's queue is full
// (see sourceKeys). Every answer is audited as POLICY_EVALUATION naming
// the caller; when that event cannot be stored Evaluate returns the error
// and nothing it decided takes effect.
func (e *Engine) Evaluate(ctx context.Context, c Caller, req *policy.Request, explain bool) (Result, error) {
	r, record, err := e.EvaluateDeferred(ctx, c, req, explain)
	if err == nil {
		err = record()
	}
	if err != nil {
		return Result{}, err
	}
	return r, nil
}

// Record stores an answer's POLICY_EVALUATION followed by with (events of
// what the caller does because of the answer) in one transaction. It
// returns nil once they are on disk; nothing the answer allows may happen
// before that. Calling it again does nothing and returns the first
// outcome.
type Record func(with ...audit.Event) error

// EvaluateDeferred is Evaluate for a caller that acts on the answer with
// something it must audit as well: the user socket forks the command it
// will run, held before its first instruction, and stores
// POLICY_EVALUATION and ELEVATION_STARTED together, one fsync instead of
// two. For a plain decision the evaluation is not yet stored when it
// returns: the caller must call record on every path (a defer), whatever
// it then does. Decisions that store a grant or an approval are stored
// before it returns, as with Evaluate, and record stores only with.
func (e *Engine) EvaluateDeferred(ctx context.Context, c Caller, req *policy.Request, explain bool) (Result, Record, error) {
	if c.Kind == CallerUser {
		if c.Name == "" {
			// The transport resolves the name; a user it could not name is
			// not evaluated under an empty one.
			return Result{}, nil, fmt.Errorf("%w: user caller uid %d has no name", ErrNoCaller, c.UID)
		}
		req.User, req.Groups, req.Machine = c.Name, c.Groups, e.opts.Machine
	}
	req.MFAVerified, req.Approved = false, false
	explain = explain && c.Kind == CallerAdmin
	now := e.opts.Now()
	keys := sourceKeys(c, req)
	if until, open := e.circuitOpen(keys, now); open {
		r := Result{Decision: policy.CircuitOpen()}
		r.Reason = policy.ReasonCircuitOpen + " until " + until.UTC().Format(time.RFC3339)
		return r, e.auditAll, e.auditDecision(ctx, c, req, &r)
	}
	wait, err := e.reserve(ctx, c, req, keys, now)
	if err != nil {
		return Result{}, nil, err
	}
	if wait > 0 {
		if err := e.opts.Sleep(ctx, wait); err != nil {
			return Result{}, nil, err
		}
		now = e.opts.Now()
	}

	var r Result
	ix := e.index.Load()
	decide := func() {
		if explain {
			r.Decision = ix.EvaluateExplain(req, now)
		} else {
			r.Decision = ix.Evaluate(req, now)
		}
	}
	decide()
	// Approvals are looked up in the store only when a decision asks for
	// one, so the common request does no I/O here. An approval satisfies
	// only approval controls, so when neither answer is approval it could
	// not change them.
	var fp string
	var approval *Approval
	if asks(&r.Decision, policy.Approval) {
		fp = fingerprint(c, req)
		approval, _ = e.findApproval(fp, now)
		if approval != nil && approval.State == approvalApproved {
			req.Approved = true
			decide()
		}
	}
	// A code is checked only when the decision asks for MFA: then it
	// satisfies this evaluation, and nothing after it. A locked user is
	// told so, code or not.
	if asks(&r.Decision, policy.MFA) && !justificationFirst(req, &r, decide) {
		verified, err := e.checkMFA(ctx, c, req, &r, now)
		if err != nil {
			return Result{}, nil, err
		}
		if verified {
			req.MFAVerified = true
			decide()
		}
	}
	if e.recordOutcome(keys, r.Failed(), now) {
		if err := e.audit(ctx, audit.Event{Type: audit.CircuitOpen, Severity: audit.Warning, Component: "engine",
			UserInfo: requestUserInfo(c, req), Details: map[string]any{"sources": keys}}); err != nil {
			return Result{}, nil, err
		}
	}
	var newApproval bool
	var grant *Grant
	switch {
	case r.Effective == policy.Approval:
		if approval != nil && approval.State == approvalPending {
			r.ApprovalID = approval.ID
		} else {
			r.ApprovalID, newApproval = newID(), true
		}
	case r.Effective == policy.Allow && c.Attested():
		if secs := grantSeconds(req, &r.Decision); secs > 0 {
			grant = e.newGrant(c, req, &r.Decision, now, secs)
			r.GrantID, r.GrantExpiresAt = grant.ID, &grant.ExpiresAt
		}
	}
	// The evaluation is on disk before anything it decided happens (record
	// returns nil); an approval request or a grant is stored in the same
	// transaction as the evaluation and its own event, before this
	// returns, so neither exists unaudited.
	ev := decisionEvent(c, req, &r)
	record := Record(e.auditAll) // for a grant or an approval: the caller's events only
	switch {
	case newApproval:
		a := e.newApproval(c, req, r.ApprovalID, fp, &r.Decision, now)
		err = e.commit(state.Approvals, map[string]any{a.ID: a, fpKey(fp): a.ID}, ev, approvalRequested(c, req, &a))
		if err == nil {
			e.approvalsChanged()
		}
	case grant != nil:
		e.grantMu.Lock()
		var renewed bool
		if renewed, err = e.renew(grant, now); err == nil {
			r.GrantID, r.GrantExpiresAt = grant.ID, &grant.ExpiresAt
			ev = decisionEvent(c, req, &r)
			gev := grantCreated(c, req, grant)
			if renewed {
				gev.Details["renewed"] = true
			}
			err = e.commit(state.Grants, map[string]any{grant.ID: *grant}, ev, gev)
		}
		e.grantMu.Unlock()
		if err == nil {
			e.grants.schedule(grant.ExpiresAt)
		}
	default:
		record = func(with ...audit.Event) error { return e.auditAll(append([]audit.Event{ev}, with...)...) }
	}
	if err != nil {
		return Result{}, nil, err
	}
	if r.Notify && e.opts.Notify != nil {
		// The notification follows the stored evaluation, as events do.
		payload, _ := json.Marshal(map[string]any{"type": "policy", "user": req.User, "machine": req.Machine,
			"application": req.Application.Path, "decision": r.Decision.Decision, "policy": r.Policy, "time": now.UTC()})
		stored := record
		record = func(with ...audit.Event) error {
			if err := stored(with...); err != nil {
				return err
			}
			e.opts.Notify(payload)
			return nil
		}
	}
	return r, once(record), nil
}

// justificationFirst handles a code sent with a request that, once MFA
// is satisfied, would still be asked for a justification: the code is
// neither checked nor used, and the answer is that question ("mfa":
// "unchecked"). The client asks for the text and sends it with the code,
// so that one code serves the request instead of a second one 30 seconds
// later. It reports whether it answered; otherwise r is as it was.
func justificationFirst(req *policy.Request, r *Result, decide func()) bool {
	if req.MFACode == "" || strings.TrimSpace(req.Justification) != "" {
		return false
	}
	req.MFAVerified = true
	decide()
	req.MFAVerified = false
	if asks(&r.Decision, policy.Justification) {
		r.MFA = "unchecked"
		return true
	}
	decide()
	return false
}

// asks reports whether d, enforced or in monitor mode, answers control.
func asks(d *policy.Decision, control string) bool {
	return d.Decision == control || d.Effective == control
}

// grantSeconds is how long the grant of an allowed request lasts: the
// shorter of the policy's durationSeconds and what the request asked for.
// A file access request under a policy without a duration gets what it
// asked for (DefaultAccessSeconds when it asked nothing); an elevation
// under such a policy gets no grant (the command runs now, and that is
// all).
func grantSeconds(req *policy.Request, d *policy.Decision) int {
	pol, asked := d.DurationSeconds, req.RequestedSeconds
	if req.Action == policy.ActionFileAccess && pol == 0 {
		if asked == 0 {
			asked = policy.DefaultAccessSeconds
		}
		return min(asked, policy.MaxGrantSeconds)
	}
	if asked > 0 && asked < pol {
		return asked
	}
	return pol
}

// requestUserInfo names the caller and, for certificate callers, the user
// the request is about (which only the caller vouches for).
func requestUserInfo(c Caller, req *policy.Request) *audit.UserInfo {
	ui := c.userInfo()
	if c.Kind != CallerUser {
		ui.User, ui.Groups = req.User, req.Groups
	}
	ui.SessionID = req.SessionID
	return ui
}

// audit stores ev and returns an error when it could not be: the action it
// records must then not happen.
func (e *Engine) audit(ctx context.Context, ev audit.Event) error {
	if _, err := e.opts.Audit.Write(ctx, ev); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrAuditUnavailable, ev.Type, err)
	}
	return nil
}

// auditAll stores evs, in order, in one transaction (one fsync). A single
// event goes through the writer's group commit instead, and none is
// nothing to store. It is the Record of an answer already stored.
func (e *Engine) auditAll(evs ...audit.Event) error {
	switch len(evs) {
	case 0:
		return nil
	case 1:
		return e.audit(context.Background(), evs[0])
	}
	return e.commit("", nil, evs...)
}

// once makes r store once; later calls return the first outcome.
func once(r Record) Record {
	var (
		o   sync.Once
		err error
	)
	return func(with ...audit.Event) error {
		o.Do(func() { err = r(with...) })
		return err
	}
}

// commit stores kv in bucket b and evs in the audit chain in one store
// transaction: the records and the events that record them are on disk
// together or not at all, with one fsync for all of them. With no records
// (kv nil, b "") it stores the events alone.
func (e *Engine) commit(b state.Bucket, kv map[string]any, evs ...audit.Event) error {
	txn, err := e.opts.Audit.Begin()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
	}
	entries := make([]state.AuditEntry, len(evs))
	for i, ev := range evs {
		entries[i] = txn.Add(ev)
	}
	if err := txn.End(e.opts.Store.PutManyAudited(b, kv, entries), false); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrAuditUnavailable, evs[0].Type, err)
	}
	return nil
}

func (e *Engine) auditDecision(ctx context.Context, c Caller, req *policy.Request, r *Result) error {
	return e.audit(ctx, decisionEvent(c, req, r))
}

// decisionEvent is the POLICY_EVALUATION of one answer.
func decisionEvent(c Caller, req *policy.Request, r *Result) audit.Event {
	target := &audit.TargetInfo{Kind: req.Action, Path: req.Application.Path, Hash: req.Application.SHA256}
	if req.Target != nil && req.Target.Path != "" {
		target.Path = req.Target.Path
	}
	details := map[string]any{"machine": req.Machine, "attested": c.Attested()}
	if req.Application.CommandLine != "" {
		details["commandLine"] = req.Application.CommandLine
	}
	if req.Justification != "" {
		details["justification"] = req.Justification
	}
	if req.Target != nil && req.Target.Write {
		details["write"] = true
	}
	if req.RequestedSeconds > 0 {
		details["requestedSeconds"] = req.RequestedSeconds
	}
	if r.ApprovalID != "" {
		details["approvalId"] = r.ApprovalID
	}
	if r.GrantID != "" {
		details["grantId"] = r.GrantID
	}
	if r.MFA != "" {
		details["mfa"] = r.MFA
	}
	sev := audit.Info
	if r.Effective == policy.Deny {
		sev = audit.Warning
	}
	return audit.Event{Type: audit.PolicyEvaluation, Severity: sev, Component: "engine",
		UserInfo: requestUserInfo(c, req), TargetInfo: target,
		Evaluation: &audit.Evaluation{Decision: r.Decision.Decision, Effective: r.Effective, Mode: r.Mode,
			Policy: r.Policy, Matched: r.Matched, Reason: r.Reason},
		Details: details}
}
