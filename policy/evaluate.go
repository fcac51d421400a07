package policy

import (
	"slices"
	"strings"
	"time"
)

// Decision is the engine's answer to a Request; its JSON shape is the
// answer of POST /api/v1/evaluate.
type Decision struct {
	// Decision is what enforcing the deciding policy means: allow, deny,
	// mfa, approval, justification or redirect.
	Decision string `json:"decision"`
	// Effective is what the caller must enforce. It differs from Decision
	// when a monitor policy decided: then it is what the enforcing policies
	// say, or allow when none matched.
	Effective string `json:"effective"`
	// Mode is the status of the deciding policy: enforce, monitor or
	// monitor-notify (enforce when no policy matched).
	Mode string `json:"mode"`
	// Policy is the id of the deciding policy; empty when none matched.
	Policy string `json:"policy,omitempty"`
	// EnforcedBy is the id of the enforcing policy Effective comes from,
	// when one matched.
	EnforcedBy string `json:"enforcedBy,omitempty"`
	// Matched lists every policy that matched, most restrictive first.
	Matched []string `json:"matched"`
	Reason  string   `json:"reason"`
	// DurationSeconds is how long an allow lasts (the enforcing policy's
	// durationSeconds) when Effective is allow; 0 means this request only.
	DurationSeconds int `json:"durationSeconds,omitempty"`
	// RedirectTo is where a redirect sends the user.
	RedirectTo string `json:"redirectTo,omitempty"`
	// Notify is set when the deciding policy is monitor-notify: the caller
	// publishes a notification.
	Notify bool `json:"notify,omitempty"`
	// Explain is filled by EvaluateExplain only.
	Explain *Explain `json:"explain,omitempty"`
}

// Reasons the engine gives without a policy.
const (
	ReasonNoMatch     = "no policy matched; denied by default"
	ReasonCircuitOpen = "circuit-open"
)

var noMatched = []string{}

// Failed reports whether the decision counts as a failed evaluation for the
// circuit breaker: the request was effectively denied.
func (d *Decision) Failed() bool { return d.Effective == Deny }

// CircuitOpen is the decision for a source whose circuit is open: deny at
// once, without evaluating.
func CircuitOpen() Decision {
	return Decision{Decision: Deny, Effective: Deny, Mode: StatusEnforce, Matched: noMatched, Reason: ReasonCircuitOpen}
}

// hit is a policy that matched, with the outcome it gives this request.
type hit struct {
	i int32
	o outcome
}

// Evaluate answers req, judging time windows at now. It looks only at the
// policies the index links to the request's action, application path,
// target path and sha256, plus those that cannot be indexed, and allocates
// nothing when no policy matches. It is safe for concurrent use.
func (ix *Index) Evaluate(req *Request, now time.Time) Decision {
	var buf [16]hit
	return ix.decide(req, ix.collect(req, now, buf[:0]))
}

// EvaluateExplain is Evaluate plus, in Decision.Explain, every policy of the
// request's action (those off included) and which of its filters matched.
func (ix *Index) EvaluateExplain(req *Request, now time.Time) Decision {
	d := ix.Evaluate(req, now)
	d.Explain = ix.explain(req, now)
	return d
}

func (ix *Index) collect(req *Request, now time.Time, hits []hit) []hit {
	a, ok := actionIndex[req.Action]
	if !ok {
		return hits
	}
	b := &ix.buckets[a]
	v := vars{user: req.User, machine: req.Machine}
	for _, i := range b.any {
		hits = ix.try(i, req, now, v, hits)
	}
	for n, s := &b.app, req.Application.Path; n != nil; n, s = n.next(s) {
		for _, i := range n.items {
			hits = ix.try(i, req, now, v, hits)
		}
	}
	if req.Target != nil {
		for n, s := &b.target, req.Target.Path; n != nil; n, s = n.next(s) {
			for _, i := range n.items {
				hits = ix.try(i, req, now, v, hits)
			}
		}
	}
	if req.Application.SHA256 != "" {
		for _, i := range b.sha[req.Application.SHA256] {
			hits = ix.try(i, req, now, v, hits)
		}
	}
	return hits
}

func (ix *Index) try(i int32, req *Request, now time.Time, v vars, hits []hit) []hit {
	p := ix.policies[i]
	if !p.matches(req, now, v) {
		return hits
	}
	for _, h := range hits {
		if h.i == i { // found through two anchors
			return hits
		}
	}
	return append(hits, hit{i: i, o: p.outcome(req)})
}

// outcome is what the policy answers this request: the most restrictive of
// its controls that the request has not satisfied yet. A justification is
// satisfied by a non-blank justification text, mfa by a verified code,
// approval by an approval; once all are, the answer is redirect if that is
// a control, else allow.
func (p *compiled) outcome(req *Request) outcome {
	c := p.controls
	switch {
	case c.has(oDeny):
		return oDeny
	case c.has(oApproval) && !req.Approved:
		return oApproval
	case c.has(oMFA) && !req.MFAVerified:
		return oMFA
	case c.has(oJustification) && strings.TrimSpace(req.Justification) == "":
		return oJustification
	case c.has(oRedirect):
		return oRedirect
	}
	return oAllow
}

// before orders hits by precedence: more restrictive, then higher
// priority, then id.
func (ix *Index) before(a, b hit) bool {
	if a.o != b.o {
		return a.o > b.o
	}
	pa, pb := ix.policies[a.i], ix.policies[b.i]
	if pa.priority != pb.priority {
		return pa.priority > pb.priority
	}
	return pa.id < pb.id
}

func (ix *Index) decide(req *Request, hits []hit) Decision {
	if len(hits) == 0 {
		return Decision{Decision: Deny, Effective: Deny, Mode: StatusEnforce, Matched: noMatched, Reason: ReasonNoMatch}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if ix.before(a, b) {
			return -1
		}
		return 1
	})
	var enf, mon *hit
	matched := make([]string, len(hits))
	for k := range hits {
		h := &hits[k]
		p := ix.policies[h.i]
		matched[k] = p.id
		if p.monitor && mon == nil {
			mon = h
		} else if !p.monitor && enf == nil {
			enf = h
		}
	}
	d := Decision{Matched: matched}
	var decider *compiled
	switch {
	case enf != nil && (mon == nil || mon.o <= enf.o):
		decider = ix.policies[enf.i]
		d.Decision, d.Effective = enf.o.String(), enf.o.String()
		d.Reason = reason(enf.o, decider)
	case enf != nil:
		decider = ix.policies[mon.i]
		d.Decision, d.Effective = mon.o.String(), enf.o.String()
		d.Reason = "monitor: policy " + decider.id + " would answer " + d.Decision +
			"; enforced: " + reason(enf.o, ix.policies[enf.i])
	default:
		decider = ix.policies[mon.i]
		d.Decision, d.Effective = mon.o.String(), Allow
		d.Reason = "monitor: policy " + decider.id + " would answer " + d.Decision +
			"; allowed, as no enforcing policy matched"
	}
	d.Policy, d.Mode, d.Notify = decider.id, decider.status, decider.status == StatusMonitorNotify
	if enf != nil {
		e := ix.policies[enf.i]
		d.EnforcedBy = e.id
		switch enf.o {
		case oAllow:
			d.DurationSeconds = e.duration
		case oRedirect:
			d.RedirectTo = e.redirect
		}
	}
	if d.RedirectTo == "" && d.Decision == Redirect {
		d.RedirectTo = decider.redirect
	}
	return d
}

func reason(o outcome, p *compiled) string {
	switch o {
	case oDeny:
		return "denied by policy " + p.id
	case oApproval:
		return "approval required by policy " + p.id
	case oMFA:
		return "MFA required by policy " + p.id
	case oJustification:
		return "justification required by policy " + p.id
	case oRedirect:
		return "redirected to " + p.redirect + " by policy " + p.id
	}
	return "allowed by policy " + p.id
}
