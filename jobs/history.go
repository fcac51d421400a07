package jobs

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"warden/state"
)

// Keys in state.JobRuns. The bucket is never listed: every read is by key,
// so history of any size costs nothing at start.
const (
	keyIndex    = "index"  // []string: ids of the jobs that have a state record
	keyStatePfx = "state/" // + job id: jobState
	keyRunPfx   = "run/"   // + run id: Run
)

// jobState is what the scheduler keeps about a job across restarts.
type jobState struct {
	// LastFire is when a timed trigger last fired (or was skipped as
	// missed), or when the job was first seen: missed schedules are counted
	// from here at start.
	LastFire time.Time `json:"lastFire"`
	// RunAtDone is the runAt value that has run (or been skipped): a one-time
	// trigger never fires twice, across restarts too.
	RunAtDone string      `json:"runAtDone,omitempty"`
	LastRun   *RunSummary `json:"lastRun,omitempty"`
	Running   []string    `json:"running,omitempty"` // runs started and not yet recorded as ended
	Runs      []runRef    `json:"runs,omitempty"`    // oldest first
}

type runRef struct {
	ID    string    `json:"id"`
	Start time.Time `json:"start"`
}

// history is the jobs' part of the store: one state record per job and one
// record per run, in state.JobRuns. Every change is written before the
// method returns. It is safe for concurrent use; writes are serialized so
// a job's state record is never overwritten by an older copy.
type history struct {
	store *state.Store
	mu    sync.Mutex
	index map[string]bool
	st    map[string]*jobState
}

func openHistory(store *state.Store) (*history, error) {
	h := &history{store: store, index: map[string]bool{}, st: map[string]*jobState{}}
	var ids []string
	if _, err := store.Get(state.JobRuns, keyIndex, &ids); err != nil {
		return nil, fmt.Errorf("jobs: read history index: %w", err)
	}
	for _, id := range ids {
		h.index[id] = true
	}
	return h, nil
}

// load returns id's state, reading it on first use; h.mu must be held.
func (h *history) load(id string) (*jobState, error) {
	if s := h.st[id]; s != nil {
		return s, nil
	}
	s := &jobState{}
	if h.index[id] {
		if _, err := h.store.Get(state.JobRuns, keyStatePfx+id, s); err != nil {
			return nil, fmt.Errorf("jobs: read state of %s: %w", id, err)
		}
	}
	h.st[id] = s
	return s, nil
}

// state returns a copy of id's state and whether one was stored before.
func (h *history) state(id string) (jobState, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	known := h.index[id]
	s, err := h.load(id)
	if err != nil {
		return jobState{}, false, err
	}
	c := *s
	c.Runs = append([]runRef(nil), s.Runs...)
	c.Running = append([]string(nil), s.Running...)
	return c, known, nil
}

// lastRun returns a copy of id's last run summary, or nil.
func (h *history) lastRun(id string) *RunSummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.load(id)
	if err != nil || s.LastRun == nil {
		return nil
	}
	c := *s.LastRun
	return &c
}

// update changes the states of ids with fn and writes them, with extra
// records, in one transaction.
func (h *history) update(ids []string, fn func(id string, s *jobState), extra map[string]any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	kv := make(map[string]any, len(ids)+len(extra)+1)
	for k, v := range extra {
		kv[k] = v
	}
	newIDs := false
	for _, id := range ids {
		s, err := h.load(id)
		if err != nil {
			return err
		}
		fn(id, s)
		kv[keyStatePfx+id] = s
		if !h.index[id] {
			h.index[id], newIDs = true, true
		}
	}
	if newIDs {
		kv[keyIndex] = h.indexList()
	}
	if len(kv) == 0 {
		return nil
	}
	return h.store.PutMany(state.JobRuns, kv)
}

func (h *history) indexList() []string {
	out := make([]string, 0, len(h.index))
	for id := range h.index {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// started records a run that has started.
func (h *history) started(r *Run) error {
	return h.update([]string{r.Job}, func(_ string, s *jobState) {
		s.Running = append(s.Running, r.ID)
		s.Runs = append(s.Runs, runRef{ID: r.ID, Start: r.Start})
		s.LastRun = r.summary()
	}, map[string]any{keyRunPfx + r.ID: r})
}

// finished records a run's end, and drops the job's runs beyond maxRuns.
func (h *history) finished(r *Run, maxRuns int) error {
	var drop []string
	err := h.update([]string{r.Job}, func(_ string, s *jobState) {
		s.Running = remove(s.Running, r.ID)
		if !containsRef(s.Runs, r.ID) { // cancelled before it started
			s.Runs = append(s.Runs, runRef{ID: r.ID, Start: r.Start})
		}
		if s.LastRun == nil || s.LastRun.ID == r.ID || !r.Start.Before(s.LastRun.Start) {
			s.LastRun = r.summary()
		}
		if n := len(s.Runs) - maxRuns; n > 0 {
			for _, ref := range s.Runs[:n] {
				drop = append(drop, keyRunPfx+ref.ID)
			}
			s.Runs = append([]runRef(nil), s.Runs[n:]...)
		}
	}, map[string]any{keyRunPfx + r.ID: r})
	if err != nil || len(drop) == 0 {
		return err
	}
	return h.store.Delete(state.JobRuns, drop...)
}

// run reads one run record.
func (h *history) run(id string) (*Run, bool, error) {
	var r Run
	ok, err := h.store.Get(state.JobRuns, keyRunPfx+id, &r)
	return &r, ok, err
}

// runs returns up to limit of job's runs, newest first.
func (h *history) runs(job string, limit int) ([]*Run, error) {
	st, _, err := h.state(job)
	if err != nil {
		return nil, err
	}
	out := []*Run{}
	for i := len(st.Runs) - 1; i >= 0 && len(out) < limit; i-- {
		r, ok, err := h.run(st.Runs[i].ID)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// known reports whether job has any stored history.
func (h *history) known(job string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.index[job]
}

// prune deletes the runs that started before cutoff (runs still going are
// kept), and the state of jobs that are neither live nor have runs left.
// It returns how many run records it deleted.
func (h *history) prune(cutoff time.Time, live func(id string) bool) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kv := map[string]any{}
	var del []string
	runs := 0
	for _, id := range h.indexList() {
		s, err := h.load(id)
		if err != nil {
			return runs, err
		}
		keep := s.Runs[:0:0]
		for _, ref := range s.Runs {
			if ref.Start.Before(cutoff) && !contains(s.Running, ref.ID) {
				del = append(del, keyRunPfx+ref.ID)
				runs++
			} else {
				keep = append(keep, ref)
			}
		}
		if len(keep) == len(s.Runs) && (live(id) || len(keep) > 0) {
			continue
		}
		s.Runs = keep
		if len(keep) == 0 && !live(id) {
			del = append(del, keyStatePfx+id)
			delete(h.index, id)
			delete(h.st, id)
			kv[keyIndex] = nil // rewritten below
			continue
		}
		kv[keyStatePfx+id] = s
	}
	if _, ok := kv[keyIndex]; ok {
		kv[keyIndex] = h.indexList()
	}
	if len(kv) > 0 {
		if err := h.store.PutMany(state.JobRuns, kv); err != nil {
			return 0, err
		}
	}
	if len(del) > 0 {
		if err := h.store.Delete(state.JobRuns, del...); err != nil {
			return 0, err
		}
	}
	return runs, nil
}

// abandoned marks the runs a previous agent left running (it died with
// them) as abandoned, once at start.
func (h *history) abandoned(now time.Time) (int, error) {
	h.mu.Lock()
	ids := h.indexList()
	h.mu.Unlock()
	n := 0
	for _, id := range ids {
		st, _, err := h.state(id)
		if err != nil || len(st.Running) == 0 {
			continue
		}
		recs := map[string]any{}
		for _, rid := range st.Running {
			r, ok, err := h.run(rid)
			if err != nil || !ok {
				continue
			}
			r.State, r.Error = StateAbandoned, "the agent stopped while this run was going"
			end := now
			r.End = &end
			recs[keyRunPfx+rid] = r
			n++
		}
		err = h.update([]string{id}, func(_ string, s *jobState) {
			s.Running = nil
			if s.LastRun != nil && s.LastRun.State == StateRunning {
				s.LastRun.State = StateAbandoned
			}
		}, recs)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func remove(list []string, v string) []string {
	var out []string
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func containsRef(list []runRef, id string) bool {
	for _, r := range list {
		if r.ID == id {
			return true
		}
	}
	return false
}
