package jobs

import (
	"path/filepath"
	"strings"
	"time"

	"warden/audit"
)

// eventOf maps the audit types that can trigger jobs to #JobEvent names.
var eventOf = map[string]string{
	audit.BundleApplied:    EventBundleApplied,
	audit.DriftDetected:    EventDriftDetected,
	audit.DriftUnresolved:  EventDriftUnresolved,
	audit.PolicyEvaluation: EventPolicyEvaluationPending,
	audit.PluginExited:     EventPluginExited,
}

func triggerTypes() []string {
	out := make([]string, 0, len(eventOf))
	for t := range eventOf {
		out = append(out, t)
	}
	return out
}

// eventName is the trigger name of an audit event, or "" when it triggers
// nothing. A policy evaluation counts only when its effective decision is
// approval: a request waits on an approver.
func eventName(ev audit.Event) string {
	if ev.Type == audit.PolicyEvaluation && (ev.Evaluation == nil || ev.Evaluation.Effective != "approval") {
		return ""
	}
	return eventOf[ev.Type]
}

// onEvent starts the jobs that listen for ev, unless the recursion guard
// says the job itself may have caused it.
func (s *Scheduler) onEvent(ev audit.Event) {
	name := eventName(ev)
	if name == "" {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.sortedJobs() {
		if !j.spec.Enabled || j.err != nil || !j.plan.events[name] {
			continue
		}
		reason := s.guard(j, ev, now)
		if s.hooks.eventSeen != nil {
			s.hooks.eventSeen(j.id, ev, reason)
		}
		if reason != "" {
			s.log.Debug("event ignored by the recursion guard", "id", j.id, "event", name, "eventId", ev.ID, "reason", reason)
			continue
		}
		if _, err := s.enqueue(j, trigger{kind: TriggerEvent, event: name, eventID: ev.ID}); err != nil {
			s.log.Warn("event run not started", "id", j.id, "event", name, "err", err)
		}
	}
	s.dispatch()
}

// guard is the recursion guard: it says why an event must not trigger j,
// or "". A job never reacts to events about its own folder
// (Jobs/<id>/, where its tasks write), nor to any event that arrives
// while one of its runs is queued or going, nor within its cool-down
// (trigger.eventCooldownSeconds) after its last run ended: an event its
// own action caused (drift it made somewhere else) lands in one of those
// windows, since the controllers report drift within moments of it. s.mu
// is held.
func (s *Scheduler) guard(j *job, ev audit.Event, now time.Time) string {
	if ev.TargetInfo != nil && ev.TargetInfo.Path != "" {
		own := filepath.Join(s.opts.Root, "Jobs", j.id)
		if p := filepath.Clean(ev.TargetInfo.Path); p == own || strings.HasPrefix(p, own+"/") {
			return "the event is about the job's own folder"
		}
	}
	if len(j.active) > 0 {
		return "a run of this job is in progress"
	}
	if !j.lastEnd.IsZero() && now.Before(j.lastEnd.Add(j.plan.cooldown)) {
		return "within the cool-down after the job's last run"
	}
	return ""
}
