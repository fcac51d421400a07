package jobs

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Job states (JobStatus.State).
const (
	JobIdle     = "idle"
	JobQueued   = "queued"
	JobRunning  = "running"
	JobDisabled = "disabled"
	JobInvalid  = "invalid" // its trigger cannot be used here (an unknown time zone)
)

// JobStatus is what GET /api/v1/jobs says about one job.
type JobStatus struct {
	ID          string      `json:"id"`
	Enabled     bool        `json:"enabled"`
	Priority    int         `json:"priority"`
	Concurrency string      `json:"concurrency"`
	Triggers    []string    `json:"triggers"`
	NextRun     *time.Time  `json:"nextRun,omitempty"`
	NextTrigger string      `json:"nextTrigger,omitempty"`
	LastRun     *RunSummary `json:"lastRun,omitempty"`
	State       string      `json:"state"`
	ActiveRuns  []string    `json:"activeRuns,omitempty"`
	Error       string      `json:"error,omitempty"`
}

// RunNow queues a manual run of job id and returns the run's id. by names
// who asked (recorded with the run). It fails with ErrUnknownJob, ErrBusy
// (concurrency forbid and a run is going) or ErrStopping. A disabled job
// can still be run by hand, as a suspended CronJob or a disabled systemd
// unit can.
func (s *Scheduler) RunNow(id, by string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return "", fmt.Errorf("%q: %w", id, ErrUnknownJob)
	}
	r, err := s.enqueue(j, trigger{kind: TriggerManual, by: by})
	if err != nil {
		return "", err
	}
	s.dispatch()
	return r.rec.ID, nil
}

// List describes every desired job, sorted by id.
func (s *Scheduler) List() []JobStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobStatus, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, s.status(j))
	}
	sortStatus(out)
	return out
}

func (s *Scheduler) status(j *job) JobStatus {
	st := JobStatus{ID: j.id, Enabled: j.spec.Enabled, Priority: j.spec.Priority, Concurrency: j.spec.Concurrency,
		Triggers: describe(j), State: JobIdle, NextTrigger: j.dueKind}
	if !j.due.IsZero() {
		at := j.due
		st.NextRun = &at
	}
	st.LastRun = s.hist.lastRun(j.id)
	for _, r := range j.active {
		st.ActiveRuns = append(st.ActiveRuns, r.rec.ID)
		if r.dispatched {
			st.State = JobRunning
		} else if st.State == JobIdle {
			st.State = JobQueued
		}
	}
	switch {
	case j.err != nil:
		st.State, st.Error = JobInvalid, j.err.Error()
	case !j.spec.Enabled && len(j.active) == 0:
		st.State = JobDisabled
	}
	return st
}

func describe(j *job) []string {
	t := j.spec.Trigger
	out := []string{"manual"}
	if t.Schedule != "" {
		zone := t.TimeZone
		if zone == "" {
			zone = "Local"
		}
		out = append(out, fmt.Sprintf("schedule %q (%s)", t.Schedule, zone))
	}
	if t.IntervalMinutes > 0 {
		out = append(out, fmt.Sprintf("every %dm", t.IntervalMinutes))
	}
	if t.RunAt != "" {
		out = append(out, "runAt "+t.RunAt)
	}
	if len(t.Events) > 0 {
		out = append(out, "events "+strings.Join(t.Events, ","))
	}
	return out
}

func sortStatus(s []JobStatus) {
	sort.Slice(s, func(a, b int) bool { return s[a].ID < s[b].ID })
}

// Runs returns up to limit runs of job id, newest first, from the stored
// history (a job removed from the desired state keeps its history until it
// ages out). Runs still going show their state at start.
func (s *Scheduler) Runs(id string, limit int) ([]*Run, error) {
	s.mu.Lock()
	_, live := s.jobs[id]
	s.mu.Unlock()
	if !live && !s.hist.known(id) {
		return nil, fmt.Errorf("%q: %w", id, ErrUnknownJob)
	}
	return s.hist.runs(id, limit)
}

// Lookup reads one run record by its id.
func (s *Scheduler) Lookup(runID string) (*Run, bool, error) { return s.hist.run(runID) }
