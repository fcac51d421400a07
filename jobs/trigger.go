package jobs

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"warden/schema"
)

// Trigger kinds recorded with every run (Run.Trigger).
const (
	TriggerSchedule = "schedule" // trigger.schedule came due
	TriggerInterval = "interval" // trigger.intervalMinutes came due
	TriggerRunAt    = "runAt"    // the one-time trigger.runAt came due
	TriggerCatchUp  = "catchUp"  // runs missed while the agent was down, made up once at start
	TriggerEvent    = "event"    // an audit event or Startup (Run.Event names it)
	TriggerManual   = "manual"   // POST /api/v1/jobs/{id}/run
)

// Event trigger names (schema #JobEvent) and the audit types behind them.
const (
	EventStartup                 = "Startup"
	EventBundleApplied           = "BundleApplied"
	EventDriftDetected           = "DriftDetected"
	EventDriftUnresolved         = "DriftUnresolved"
	EventPolicyEvaluationPending = "PolicyEvaluationPending"
	EventPluginExited            = "PluginExited"
)

// maxMissed bounds how many missed schedule times are counted at start.
const maxMissed = 10000

// plan is a job's parsed trigger.
type plan struct {
	cron     cron.Schedule
	interval time.Duration
	runAt    time.Time
	events   map[string]bool
	cooldown time.Duration
}

// parsePlan reads a trigger. Schedules without a timeZone use the agent's
// local zone, like cron (schema.ParseSchedule).
func parsePlan(t schema.JobTrigger) (plan, error) {
	p := plan{interval: time.Duration(t.IntervalMinutes) * time.Minute,
		cooldown: time.Duration(t.EventCooldownSeconds) * time.Second}
	if t.Schedule != "" {
		s, err := schema.ParseSchedule(t.Schedule, t.TimeZone)
		if err != nil {
			return p, fmt.Errorf("trigger: %w", err)
		}
		p.cron = s
	}
	if t.RunAt != "" {
		at, err := time.Parse(time.RFC3339Nano, t.RunAt)
		if err != nil {
			return p, fmt.Errorf("trigger.runAt %q: %w", t.RunAt, err)
		}
		p.runAt = at
	}
	if len(t.Events) > 0 {
		p.events = map[string]bool{}
		for _, e := range t.Events {
			p.events[e] = true
		}
	}
	return p, nil
}

// timed holds a job's next due time per timed trigger; zero is "none".
type timed struct {
	cron, interval, runAt time.Time
}

// earliest is the next due time and the trigger that owns it. At equal
// times schedule wins over interval over runAt: one run, one name.
func (t timed) earliest() (time.Time, string) {
	var at time.Time
	kind := ""
	for _, c := range []struct {
		at   time.Time
		kind string
	}{{t.cron, TriggerSchedule}, {t.interval, TriggerInterval}, {t.runAt, TriggerRunAt}} {
		if !c.at.IsZero() && (at.IsZero() || c.at.Before(at)) {
			at, kind = c.at, c.kind
		}
	}
	return at, kind
}

// missed counts the schedule times in (since, now] and returns the last
// of them. The count stops at maxMissed.
func missedCron(s cron.Schedule, since, now time.Time) (int, time.Time) {
	n, last := 0, time.Time{}
	for t := s.Next(since); !t.IsZero() && !t.After(now) && n < maxMissed; t = s.Next(t) {
		n, last = n+1, t
	}
	return n, last
}

// nextOnGrid returns the first time base + k*every (k >= 1) after now, and
// how many grid times in (base, now] it passed.
func nextOnGrid(base, now time.Time, every time.Duration) (time.Time, int) {
	next := base.Add(every)
	if next.After(now) {
		return next, 0
	}
	k := int(now.Sub(base)/every) + 1
	return base.Add(time.Duration(k) * every), k - 1
}

// advance moves every trigger due at or before now to its next time and
// reports which fired, earliest first in the order of earliest().
func (t *timed) advance(p plan, now time.Time) (fired string, at time.Time) {
	at, fired = t.earliest()
	if !t.cron.IsZero() && !t.cron.After(now) {
		t.cron = p.cron.Next(now)
	}
	if !t.interval.IsZero() && !t.interval.After(now) {
		t.interval, _ = nextOnGrid(t.interval, now, p.interval)
	}
	if !t.runAt.IsZero() && !t.runAt.After(now) {
		t.runAt = time.Time{}
	}
	return fired, at
}
