package jobs

import (
	"container/heap"
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"warden/audit"
	"warden/procgroup"
	"warden/schema"
)

// run is one run of a job, from the moment it is due until its record is
// written.
type run struct {
	rec     Run // written by the run's own goroutine only, once dispatched
	job     *job
	spec    *schema.JobSpec // the spec as it was when the run was due
	prio    int
	seq     uint64
	ctx     context.Context
	cancel  context.CancelCauseFunc
	done    chan struct{}
	waitFor []*run // runs this one replaces; it starts when they have ended

	dispatched bool // guarded by Scheduler.mu
}

// enqueue applies the job's concurrency rule and queues a run. s.mu is
// held; the caller dispatches.
func (s *Scheduler) enqueue(j *job, t trigger) (*run, error) {
	if s.stopping {
		return nil, ErrStopping
	}
	var waitFor []*run
	if len(j.active) > 0 {
		switch j.spec.Concurrency {
		case "allow":
		case "replace":
			waitFor = append(waitFor, j.active...)
			for _, r := range j.active {
				s.stopRun(r, &stopCause{reason: "replaced by a new run (concurrency replace)"})
			}
		default: // forbid
			s.log.Info("run skipped: the previous run is still going (concurrency forbid)", "id", j.id,
				"trigger", t.kind, "event", t.event, "running", j.active[0].rec.ID)
			return nil, ErrBusy
		}
	}
	now := s.clock.Now()
	s.seq++
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &run{job: j, spec: j.spec, prio: j.spec.Priority, seq: s.seq, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), waitFor: waitFor}
	r.rec = Run{ID: newRunID(now), Job: j.id, Trigger: t.kind, Event: t.event, EventID: t.eventID, By: t.by,
		State: StateQueued, Start: now, Tasks: []TaskResult{}}
	if !t.scheduledFor.IsZero() {
		at := t.scheduledFor
		r.rec.ScheduledFor = &at
	}
	j.active = append(j.active, r)
	heap.Push(&s.pending, r)
	s.runs.Add(1)
	return r, nil
}

// dispatch starts queued runs while slots are free, highest priority
// first. s.mu is held.
func (s *Scheduler) dispatch() {
	for s.running < s.opts.MaxParallel && s.pending.Len() > 0 {
		r := heap.Pop(&s.pending).(*run)
		r.dispatched = true
		s.running++
		go s.execute(r)
	}
}

// stopRun stops r: a running run's process group is terminated, a queued
// run is taken off the queue and recorded as cancelled. s.mu is held.
func (s *Scheduler) stopRun(r *run, cause *stopCause) {
	r.cancel(cause)
	if r.dispatched {
		return
	}
	for i, q := range s.pending {
		if q == r {
			heap.Remove(&s.pending, i)
			break
		}
	}
	r.dispatched = true
	go s.cancelled(r, cause)
}

// cancelled records a run that never started.
func (s *Scheduler) cancelled(r *run, cause *stopCause) {
	defer s.ended(r, false)
	end := s.clock.Now()
	r.rec.State, r.rec.Error, r.rec.End = StateCancelled, cause.reason, &end
	if err := s.hist.finished(&r.rec, s.opts.MaxRuns); err != nil {
		s.log.Error("record job run", "id", r.rec.Job, "run", r.rec.ID, "err", err)
	}
}

// ended frees r's slot and starts what waits for one.
func (s *Scheduler) ended(r *run, slot bool) {
	s.mu.Lock()
	if slot {
		s.running--
	}
	j := r.job
	for i, a := range j.active {
		if a == r {
			j.active = append(j.active[:i:i], j.active[i+1:]...)
			break
		}
	}
	j.lastEnd = s.clock.Now()
	close(r.done)
	r.cancel(nil)
	s.dispatch()
	s.mu.Unlock()
	s.runs.Done()
}

// execute runs r's tasks and records the run: JOB_STARTED and the running
// record are written beside the first task (so they add nothing to the
// time a task takes to start), JOB_FINISHED and the final record after
// the last.
func (s *Scheduler) execute(r *run) {
	defer s.ended(r, true)
	for _, w := range r.waitFor {
		<-w.done
	}
	if r.ctx.Err() != nil {
		cause := causeOf(r.ctx)
		end := s.clock.Now()
		r.rec.State, r.rec.Error, r.rec.End = StateCancelled, cause.reason, &end
		s.record(r)
		return
	}
	r.rec.Start = s.clock.Now()
	r.rec.State = StateRunning
	snap := r.rec
	snap.Tasks = nil
	booked := make(chan struct{})
	go func() {
		defer close(booked)
		if err := s.hist.started(&snap); err != nil {
			s.log.Error("record job run", "id", snap.Job, "run", snap.ID, "err", err)
		}
		s.emit(audit.JobStarted, audit.Info, &snap)
		s.log.Info("job run started", "id", snap.Job, "run", snap.ID, "trigger", snap.Trigger, "event", snap.Event)
	}()
	s.runTasks(r)
	end := s.clock.Now()
	r.rec.End = &end
	r.rec.DurationMs = end.Sub(r.rec.Start).Milliseconds()
	<-booked
	s.record(r)
}

func (s *Scheduler) record(r *run) {
	if err := s.hist.finished(&r.rec, s.opts.MaxRuns); err != nil {
		s.log.Error("record job run", "id", r.rec.Job, "run", r.rec.ID, "err", err)
	}
	sev := audit.Info
	if r.rec.State != StateSucceeded {
		sev = audit.Warning
	}
	s.emit(audit.JobFinished, sev, &r.rec)
	s.log.Info("job run finished", "id", r.rec.Job, "run", r.rec.ID, "state", r.rec.State,
		"durationMs", r.rec.DurationMs, "err", r.rec.Error)
}

func (s *Scheduler) emit(typ, severity string, r *Run) {
	if s.opts.Audit == nil {
		return
	}
	d := map[string]any{"run": r.ID, "trigger": r.Trigger, "state": r.State}
	for k, v := range map[string]string{"event": r.Event, "eventId": r.EventID, "by": r.By, "signal": r.Signal, "error": r.Error} {
		if v != "" {
			d[k] = v
		}
	}
	if r.ScheduledFor != nil {
		d["scheduledFor"] = r.ScheduledFor.UTC().Format(time.RFC3339)
	}
	if typ == audit.JobFinished {
		d["durationMs"] = r.DurationMs
		if r.ExitCode != nil {
			d["exitCode"] = *r.ExitCode
		}
	}
	s.opts.Audit.Emit(audit.Event{Type: typ, Severity: severity, Component: "jobs",
		TargetInfo: &audit.TargetInfo{Kind: schema.KindJob, ID: r.Job}, Details: d})
}

// shouldRun applies a task's condition to the previous task that ran.
// Without a condition a task runs unless an earlier task failed without
// continueOnError.
func shouldRun(condition string, ran, prevOK, stopped bool) bool {
	switch condition {
	case "always":
		return true
	case "success":
		return !ran || prevOK
	case "failure":
		return ran && !prevOK
	default:
		return !stopped
	}
}

// runTasks runs the tasks in order and sets the run's state, exit code and
// error.
func (s *Scheduler) runTasks(r *run) {
	ran, prevOK, stopped := false, true, false
	failed, last := -1, -1 // indices in r.rec.Tasks
	for i := range r.spec.Tasks {
		t := &r.spec.Tasks[i]
		if r.ctx.Err() != nil || !shouldRun(t.Condition, ran, prevOK, stopped) {
			r.rec.Tasks = append(r.rec.Tasks, TaskResult{Index: i, Command: t.Command, State: TaskSkipped})
			continue
		}
		r.rec.Tasks = append(r.rec.Tasks, s.execTask(r, i, t))
		last = len(r.rec.Tasks) - 1
		ran, prevOK = true, r.rec.Tasks[last].State == TaskSucceeded
		if !prevOK && !t.ContinueOnError && !stopped {
			stopped, failed = true, last
		}
	}
	// The run's exit is the first task that failed it; a cleanup task
	// that ran after it does not hide it. Otherwise it is the last task's.
	decisive := last
	if failed >= 0 {
		decisive = failed
	}
	if decisive >= 0 {
		d := &r.rec.Tasks[decisive]
		r.rec.ExitCode, r.rec.Signal = d.ExitCode, d.Signal
	}
	switch {
	case r.ctx.Err() != nil:
		r.rec.State, r.rec.Error = StateStopped, causeOf(r.ctx).reason
	case stopped:
		d := &r.rec.Tasks[failed]
		r.rec.State = StateFailed
		r.rec.Error = fmt.Sprintf("task %d (%s): %s", d.Index, d.Command, d.Error)
	default:
		r.rec.State = StateSucceeded
	}
}

// execTask runs one task to its end: started in its own process group,
// killed with its whole group at its timeout or when the run is stopped.
func (s *Scheduler) execTask(r *run, i int, t *schema.Task) (res TaskResult) {
	res = TaskResult{Index: i, Command: t.Command, State: TaskFailed}
	start := s.clock.Now()
	res.Start = &start
	defer func() {
		end := s.clock.Now()
		res.End, res.DurationMs = &end, end.Sub(start).Milliseconds()
	}()
	cmd, id, err := s.command(r, t)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var cg *procgroup.Cgroup
	if s.opts.Cgroups != nil {
		if cg, err = s.opts.Cgroups.New(cgroupName(r.rec.Job, r.rec.ID, i)); err != nil {
			s.log.Warn("task runs without a cgroup (process group only)", "id", r.rec.Job, "run", r.rec.ID, "err", err)
			cg = nil
		}
	}
	p, err := startProc(s.spawn.Load(), cmd, id.cred, cg)
	if err != nil {
		if cg != nil {
			cg.Remove(groupGoneWait)
		}
		res.Error = "start: " + err.Error()
		return res
	}
	res.PID = p.pid
	if s.hooks.taskStarted != nil {
		s.hooks.taskStarted(r.rec.ID, i, p.pid)
	}
	if cg == nil {
		// Without a cgroup the process group must be recorded for the
		// next start to find it; a cgroup's name says all of it.
		rec := procRecord{Job: r.rec.Job, Run: r.rec.ID, Task: i, PID: p.pid, BootID: s.boot}
		if st, err := procgroup.Stat(p.pid); err == nil {
			rec.StartTicks = st.StartTicks
		}
		s.recordProc(rec)
		defer s.forgetProc(r.rec.ID, i)
	}
	timeout := s.clock.NewTimer(time.Duration(t.TimeoutSeconds) * time.Second)
	select {
	case <-p.exited:
	case <-timeout.C():
		select {
		case <-p.exited: // it finished as the timer fired
		default:
			res.TimedOut = true
			how := "SIGTERM"
			if p.terminate(s.clock.NewTimer(s.opts.KillGrace)) {
				how += fmt.Sprintf(", then SIGKILL after %s", s.opts.KillGrace)
			}
			res.Error = fmt.Sprintf("timed out after %ds: process group sent %s", t.TimeoutSeconds, how)
		}
	case <-r.ctx.Done():
		cause := causeOf(r.ctx)
		grace := s.clock.NewTimer(s.opts.KillGrace)
		if cause.agent {
			grace.Stop()
			grace = realClock{}.NewTimer(s.opts.StopGrace)
		}
		p.terminate(grace)
		res.Error = cause.reason
	}
	timeout.Stop()
	ps, survivors := p.finish()
	if len(survivors) > 0 {
		s.log.Error("task processes survive SIGKILL", "id", r.rec.Job, "run", r.rec.ID, "task", i, "pids", survivors)
	}
	res.ExitCode, res.Signal = exitOf(ps)
	res.Output, res.OutputTruncatedBytes = string(p.out.buf), p.out.dropped
	switch {
	case res.Error != "":
	case res.Signal != "":
		res.Error = "killed by " + res.Signal
	case res.ExitCode != nil && *res.ExitCode != 0:
		res.Error = fmt.Sprintf("exit code %d", *res.ExitCode)
	default:
		res.State = TaskSucceeded
	}
	return res
}

// command prepares a task's process: the command checked, the user
// resolved, the working directory made, the environment set.
func (s *Scheduler) command(r *run, t *schema.Task) (*exec.Cmd, identity, error) {
	if err := checkCommand(t.Command); err != nil {
		return nil, identity{}, err
	}
	id, err := lookupRunAs(t.RunAs)
	if err != nil {
		return nil, id, err
	}
	var dir string
	if id.cred != nil {
		// Jobs/ is 0750 and the service account's: another user starts
		// in its home directory (the schema refuses workingDir here).
		dir = "/"
		if st, err := os.Stat(id.home); err == nil && st.IsDir() && id.home != "" {
			dir = id.home
		}
	} else if dir, err = workDir(s.opts.Root, r.rec.Job, t.WorkingDir); err != nil {
		return nil, id, err
	}
	cmd := exec.Command(t.Command, t.Args...)
	cmd.Dir = dir
	cmd.Env = taskEnv(t, id, s.opts.Root, r.rec.Job, r.rec.ID, r.rec.Trigger)
	return cmd, id, nil
}
