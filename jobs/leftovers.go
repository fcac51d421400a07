package jobs

import (
	"fmt"
	"strconv"
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

// recordProc stores r before the task's run goes on; a failure is logged
// (Pdeathsig still ends the leader with the agent).
func (s *Scheduler) recordProc(r procRecord) {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	if s.procs == nil {
		s.procs = map[string]procRecord{}
	}
	s.procs[procKey(r.Run, r.Task)] = r
	if err := s.opts.Store.Put(state.JobRuns, keyProcs, s.procs); err != nil {
		s.log.Error("task process not recorded; an agent crash could leave it running", "id", r.Job, "run", r.Run, "err", err)
	}
}

func (s *Scheduler) forgetProc(run string, task int) {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	delete(s.procs, procKey(run, task))
	if err := s.opts.Store.Put(state.JobRuns, keyProcs, s.procs); err != nil {
		s.log.Warn("task process record not removed", "run", run, "err", err)
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
	boot := procgroup.BootID()
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
	// Cgroups of tasks whose record was never written.
	if s.opts.Cgroups != nil {
		for _, l := range s.opts.Cgroups.Leftovers(cgroupPrefix) {
			if seen[l.Name] {
				continue
			}
			left := s.opts.Cgroups.EndLeftover(l.Name, leftoverWait)
			if len(l.Procs) > 0 {
				s.auditLeftover("", l.Name, -1, l.Procs, left)
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

// cgroupName is the cgroup of one task of one run.
func cgroupName(run string, task int) string {
	return fmt.Sprintf("%s%s-%d", cgroupPrefix, run, task)
}
