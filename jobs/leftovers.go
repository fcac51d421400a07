package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"warden/audit"
	"warden/procgroup"
	"warden/schema"
	"warden/state"
)

// keyProcs (in state.JobRuns) holds the task processes running now, so
// that the next agent run can end them if this one dies first (kill -9,
// a crash): the task leader gets SIGKILL from Pdeathsig, but what it
// started lives on in its process group or cgroup.
const keyProcs = "procs"

// cgroupPrefix names the cgroups of job tasks in the agent's folder.
const cgroupPrefix = "job-"

// procRecord is one running task process group.
type procRecord struct {
	Job        string `json:"job"`
	Run        string `json:"run"`
	Task       int    `json:"task"`
	PID        int    `json:"pid"` // the leader, whose pid is the group id
	StartTicks uint64 `json:"startTicks"`
	BootID     string `json:"bootId"`
	Cgroup     string `json:"cgroup,omitempty"`
}

func procKey(run string, task int) string { return run + "/" + strconv.Itoa(task) }

// recordProc notes a started task process; the record writer stores it
// (a failure is logged: Pdeathsig still ends the leader with the agent).
// The write is not waited for: it would add two fsyncs to every task,
// and a kill within that window is covered by the cgroup sweep.
func (s *Scheduler) recordProc(r procRecord) {
	s.procMu.Lock()
	if s.procs == nil {
		s.procs = map[string]procRecord{}
	}
	s.procs[procKey(r.Run, r.Task)] = r
	s.procMu.Unlock()
	s.procsChanged()
}

func (s *Scheduler) forgetProc(run string, task int) {
	s.procMu.Lock()
	delete(s.procs, procKey(run, task))
	s.procMu.Unlock()
	s.procsChanged()
}

func (s *Scheduler) procsChanged() {
	select {
	case s.procDirty <- struct{}{}:
	default: // a write is pending; it will see this change
	}
}

// writeProcs stores the running task processes whenever they change,
// coalescing changes that come while a write is under way, until stop is
// closed (after every run has ended); then it writes once more.
func (s *Scheduler) writeProcs(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	write := func() {
		s.procMu.Lock()
		snap := make(map[string]procRecord, len(s.procs))
		for k, v := range s.procs {
			snap[k] = v
		}
		s.procMu.Unlock()
		if err := s.opts.Store.Put(state.JobRuns, keyProcs, snap); err != nil {
			s.log.Error("task processes not recorded; an agent crash could leave them running", "err", err)
		}
	}
	for {
		select {
		case <-s.procDirty:
			write()
		case <-stop:
			write()
			return
		}
	}
}

// leftoverWait bounds how long the start waits for a killed leftover.
const leftoverWait = 2 * time.Second

// endLeftovers ends the task processes an earlier agent run left running
// (it died with them), before anything is scheduled: an abandoned run must
// not keep running past its timeout, and a job with concurrency forbid
// must not find a survivor beside its next run. Each group ended is
// audited as JOB_FINISHED with state abandoned.
func (s *Scheduler) endLeftovers() {
	var recs map[string]procRecord
	if _, err := s.opts.Store.Get(state.JobRuns, keyProcs, &recs); err != nil {
		s.log.Error("reading task process records", "err", err)
	}
	boot := s.boot
	seen := map[string]bool{}
	for _, r := range recs {
		var killed, left []int
		switch {
		case r.Cgroup != "" && s.opts.Cgroups != nil:
			seen[r.Cgroup] = true
			for _, l := range s.opts.Cgroups.Leftovers(r.Cgroup) {
				if l.Name == r.Cgroup {
					killed = l.Procs
					left = s.opts.Cgroups.EndLeftover(l.Name, leftoverWait)
				}
			}
		case r.BootID == boot && r.PID > 1:
			if st, err := procgroup.Stat(r.PID); err == nil && st.StartTicks != r.StartTicks {
				break // the pid is someone else's now
			}
			killed = procgroup.Alive(r.PID)
			if len(killed) > 0 {
				syscall.Kill(-r.PID, syscall.SIGKILL)
				left = procgroup.WaitGone(r.PID, leftoverWait)
			}
		}
		if len(killed) > 0 {
			s.auditLeftover(r.Job, r.Run, r.Task, killed, left)
		}
	}
	// Task cgroups: their names say the job, run and task.
	if s.opts.Cgroups != nil {
		for _, l := range s.opts.Cgroups.Leftovers(cgroupPrefix) {
			if seen[l.Name] {
				continue
			}
			left := s.opts.Cgroups.EndLeftover(l.Name, leftoverWait)
			if len(l.Procs) > 0 {
				job, run, task, ok := parseCgroupName(l.Name)
				if !ok {
					job, run, task = "", l.Name, -1
				}
				s.auditLeftover(job, run, task, l.Procs, left)
			}
		}
	}
	if len(recs) > 0 {
		if err := s.opts.Store.Delete(state.JobRuns, keyProcs); err != nil {
			s.log.Warn("deleting task process records", "err", err)
		}
	}
}

func (s *Scheduler) auditLeftover(job, run string, task int, killed, left []int) {
	s.log.Warn("ended task processes left by an earlier agent run", "id", job, "run", run, "task", task,
		"pids", killed, "survivors", left)
	if s.opts.Audit == nil {
		return
	}
	d := map[string]any{"run": run, "state": StateAbandoned, "pids": killed,
		"reason": "processes left running by an earlier agent run, ended at start"}
	if task >= 0 {
		d["task"] = task
	}
	if len(left) > 0 {
		d["survivors"] = left
	}
	s.opts.Audit.Emit(audit.Event{Type: audit.JobFinished, Severity: audit.Warning, Component: "jobs",
		TargetInfo: &audit.TargetInfo{Kind: schema.KindJob, ID: job}, Details: d})
}

// cgroupName is the cgroup of one task of one run: job-JOB_RUN_TASK (job
// and run ids hold no "_").
func cgroupName(job, run string, task int) string {
	return fmt.Sprintf("%s%s_%s_%d", cgroupPrefix, job, run, task)
}

// parseCgroupName reads cgroupName back; ok is false for another name.
func parseCgroupName(name string) (job, run string, task int, ok bool) {
	parts := strings.Split(strings.TrimPrefix(name, cgroupPrefix), "_")
	if len(parts) != 3 || !strings.HasPrefix(name, cgroupPrefix) {
		return "", "", 0, false
	}
	task, err := strconv.Atoi(parts[2])
	return parts[0], parts[1], task, err == nil
}
