package engine

import (
	"context"
	"encoding/json"
	"time"

	"warden/audit"
	"warden/policy"
)

// Result is the answer of POST /api/v1/evaluate: the policy decision plus
// what the agent did about it.
type Result struct {
	policy.Decision
	// ApprovalID names the pending approval an approval decision created
	// (or found); approvers act on it with POST /api/v1/approvals/{id}/approve.
	ApprovalID string `json:"approvalId,omitempty"`
	// GrantID and GrantExpiresAt describe the time-limited grant an allow
	// with durationSeconds created.
	GrantID        string     `json:"grantId,omitempty"`
	GrantExpiresAt *time.Time `json:"grantExpiresAt,omitempty"`
	// MFA says whether an MFA code was given and whether it verified.
	MFA string `json:"mfa,omitempty"`
}

// Evaluate answers req. It waits its turn when the source is over its rate
// (in order, bounded by ctx) and returns ErrRateLimited when the source's
// queue is full. Every answer is audited as POLICY_EVALUATION.
func (e *Engine) Evaluate(ctx context.Context, req *policy.Request, explain bool) (Result, error) {
	now := e.opts.Now()
	key := req.SourceKey()
	if ok, until := e.breaker.Load().Allow(key, now); !ok {
		r := Result{Decision: policy.CircuitOpen()}
		r.Reason = policy.ReasonCircuitOpen + " until " + until.UTC().Format(time.RFC3339)
		e.auditDecision(req, &r)
		return r, nil
	}
	res := e.limiter.Load().Reserve(key, now)
	if res.Audit {
		e.opts.Audit.Emit(audit.Event{Type: audit.RateLimited, Severity: audit.Warning, Component: "engine",
			UserInfo: userInfo(req), Details: map[string]any{"source": key, "queued": res.OK}})
	}
	if !res.OK {
		return Result{}, ErrRateLimited
	}
	if res.Wait > 0 {
		if err := e.opts.Sleep(ctx, res.Wait); err != nil {
			return Result{}, err
		}
		now = e.opts.Now()
	}

	var r Result
	if req.MFACode != "" {
		r.MFA = "failed"
		if e.checkMFA(req.User, req.MFACode, now) {
			r.MFA = "verified"
		}
	}
	req.MFAVerified = e.mfaFresh(req.User, now)
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
	if r.Decision.Decision == policy.Approval || r.Effective == policy.Approval {
		fp = fingerprint(req)
		approval, _ = e.findApproval(fp, now)
		if approval != nil && approval.State == approvalApproved {
			req.Approved = true
			decide()
		}
	}
	if e.breaker.Load().Record(key, r.Failed(), now) {
		e.opts.Audit.Emit(audit.Event{Type: audit.CircuitOpen, Severity: audit.Warning, Component: "engine",
			UserInfo: userInfo(req), Details: map[string]any{"source": key}})
	}
	switch {
	case r.Effective == policy.Approval:
		if approval != nil && approval.State == approvalPending {
			r.ApprovalID = approval.ID
		} else if id, err := e.createApproval(req, fp, &r.Decision, now); err == nil {
			r.ApprovalID = id
		} else {
			e.log.Error("store pending approval", "err", err)
		}
	case r.Effective == policy.Allow && r.DurationSeconds > 0:
		if g, err := e.grant(req, &r.Decision, now); err == nil {
			r.GrantID, r.GrantExpiresAt = g.ID, &g.ExpiresAt
		} else {
			e.log.Error("store grant", "err", err)
		}
	}
	e.auditDecision(req, &r)
	if r.Notify && e.opts.Notify != nil {
		payload, _ := json.Marshal(map[string]any{"type": "policy", "user": req.User, "machine": req.Machine,
			"application": req.Application.Path, "decision": r.Decision.Decision, "policy": r.Policy, "time": now.UTC()})
		e.opts.Notify(payload)
	}
	return r, nil
}

func userInfo(req *policy.Request) *audit.UserInfo {
	return &audit.UserInfo{User: req.User, Groups: req.Groups, SessionID: req.SessionID}
}

func (e *Engine) auditDecision(req *policy.Request, r *Result) {
	target := &audit.TargetInfo{Kind: req.Action, Path: req.Application.Path, Hash: req.Application.SHA256}
	if req.Target != nil && req.Target.Path != "" {
		target.Path = req.Target.Path
	}
	details := map[string]any{"machine": req.Machine}
	if req.Application.CommandLine != "" {
		details["commandLine"] = req.Application.CommandLine
	}
	if req.Justification != "" {
		details["justification"] = req.Justification
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
	e.opts.Audit.Emit(audit.Event{Type: audit.PolicyEvaluation, Severity: sev, Component: "engine",
		UserInfo: userInfo(req), TargetInfo: target,
		Evaluation: &audit.Evaluation{Decision: r.Decision.Decision, Effective: r.Effective, Mode: r.Mode,
			Policy: r.Policy, Matched: r.Matched, Reason: r.Reason},
		Details: details})
}
