package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"warden/audit"
	"warden/procgroup"
	"warden/schema"
	"warden/state"
)

// Defaults of Options.
const (
	DefaultMaxParallel = 16
	DefaultRetention   = 15 * 24 * time.Hour
	DefaultMaxRuns     = 500
	DefaultKillGrace   = 5 * time.Second
	DefaultStopGrace   = time.Second
)

// pruneEvery is how often run history older than the retention is pruned.
const pruneEvery = time.Hour

// Errors a caller can test for.
var (
	ErrUnknownJob = errors.New("no such job")
	ErrUnknownRun = errors.New("no such run")
	ErrBusy       = errors.New("a run of this job is still going (concurrency forbid)")
	ErrStopping   = errors.New("the job scheduler is stopping")
	ErrRunning    = errors.New("jobs: scheduler already running")
)

// Options configures a Scheduler.
type Options struct {
	Root   string        // the agent root; tasks run below Root/Jobs/<id>/
	Store  *state.Store  // desired Jobs, run history (state.JobRuns)
	Audit  *audit.Writer // JOB_STARTED, JOB_FINISHED, and the source of event triggers; nil: neither (tests only)
	Logger *slog.Logger  // default slog.Default()
	Clock  Clock         // default the wall clock

	MaxParallel int           // runs at once; further due runs queue by priority (DefaultMaxParallel)
	Retention   time.Duration // run history kept (DefaultRetention, 15 days)
	MaxRuns     int           // runs kept per job, whatever their age (DefaultMaxRuns)
	KillGrace   time.Duration // SIGTERM to SIGKILL on timeout, replace, removal (DefaultKillGrace)
	// StopGrace is SIGTERM to SIGKILL when the agent stops; short, and
	// measured on the wall clock, because the agent promises to stop
	// within 5 s (DefaultStopGrace).
	StopGrace time.Duration
	// Cgroups, when set, holds one cgroup per task, so that nothing a task
	// starts (setsid included) outlives it; nil: process groups only
	// (docs/jobs.md, "Processes").
	Cgroups *procgroup.Cgroups
}

// Scheduler registers the triggers of the desired Jobs and runs them. Create
// it with New and call Run once; RunNow, List and Runs are safe to call from
// any goroutine at any time.
type Scheduler struct {
	opts  Options
	log   *slog.Logger
	clock Clock
	hist  *history

	mu       sync.Mutex
	jobs     map[string]*job
	times    timeHeap
	pending  runQueue
	running  int
	seq      uint64
	stopping bool
	runs     sync.WaitGroup

	started atomic.Bool
	ready   chan struct{}
	hooks   hooks

	procMu sync.Mutex
	procs  map[string]procRecord // running task processes (leftovers.go)
	boot   string                // this boot's id, in each procRecord
	// procDirty wakes writeProcs (leftovers.go).
	procDirty chan struct{}
	// spawn forks every task from one long-lived thread, so that the
	// tasks' Pdeathsig fires when the agent dies, not when some runtime
	// thread does. Set while Run runs.
	spawn atomic.Pointer[procgroup.Spawner]
}

// hooks let tests in this package watch what happens; nil in production.
type hooks struct {
	taskStarted func(runID string, task, pid int)
	eventSeen   func(job string, ev audit.Event, ignored string)
	synced      func(gen uint64)
	registered  func(id string)
}

// job is one registered Job.
type job struct {
	id      string
	hash    [32]byte
	spec    *schema.JobSpec
	plan    plan
	err     error // the trigger could not be read (time zone unknown here)
	next    timed
	due     time.Time
	dueKind string
	heapIdx int
	active  []*run // queued or running, oldest first
	lastEnd time.Time
}

// trigger is why a run starts.
type trigger struct {
	kind, event, eventID, by string
	scheduledFor             time.Time
}

// New checks opts and opens the run history.
func New(opts Options) (*Scheduler, error) {
	if opts.Root == "" || opts.Store == nil {
		return nil, errors.New("jobs: Root and Store are required")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("jobs: root: %w", err)
	}
	opts.Root = root
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = DefaultMaxParallel
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxRuns <= 0 {
		opts.MaxRuns = DefaultMaxRuns
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	h, err := openHistory(opts.Store)
	if err != nil {
		return nil, err
	}
	return &Scheduler{opts: opts, log: opts.Logger.With("component", "jobs"), clock: opts.Clock, hist: h,
		jobs: map[string]*job{}, ready: make(chan struct{}), boot: procgroup.BootID(),
		procDirty: make(chan struct{}, 1)}, nil
}

// Run registers the desired Jobs, catches up or skips what was missed while
// the agent was down, fires Startup, and then runs triggers until ctx ends.
// It waits on one timer for the next due run; it never polls. When ctx ends
// it stops every run (SIGTERM, SIGKILL after StopGrace) and returns once
// their records are written.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	gens, cancelGens := s.opts.Store.Subscribe()
	defer cancelGens()
	var events <-chan audit.Event
	if s.opts.Audit != nil {
		ch, cancel := s.opts.Audit.Subscribe(triggerTypes()...)
		defer cancel()
		events = ch
	}
	sp := procgroup.NewSpawner()
	s.spawn.Store(sp)
	defer func() { s.spawn.Store(nil); sp.Stop() }() // after shutdown: every run has ended
	s.endLeftovers()
	stopW, wDone := make(chan struct{}), make(chan struct{})
	go s.writeProcs(stopW, wDone)
	defer func() { close(stopW); <-wDone }() // after shutdown: every run has ended
	if n, err := s.hist.abandoned(s.clock.Now()); err != nil {
		s.log.Error("mark abandoned runs", "err", err)
	} else if n > 0 {
		s.log.Warn("runs abandoned when the agent last stopped", "count", n)
	}
	s.sync(true)
	s.startup()
	close(s.ready)

	prune := s.clock.NewTimer(0)
	var timer Timer
	var timerAt time.Time
	defer func() {
		prune.Stop()
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if due := s.nextDue(); !due.Equal(timerAt) {
			if timer != nil {
				timer.Stop()
				timer = nil
			}
			if timerAt = due; !due.IsZero() {
				timer = s.clock.At(due)
			}
		}
		var fire <-chan time.Time
		if timer != nil {
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case _, ok := <-gens:
			if !ok {
				gens = nil
				continue
			}
			s.sync(false)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			s.onEvent(ev)
		case <-fire:
			timer, timerAt = nil, time.Time{}
			s.fire()
		case <-prune.C():
			s.prune()
			prune = s.clock.NewTimer(pruneEvery)
		}
	}
}

func (s *Scheduler) nextDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) == 0 {
		return time.Time{}
	}
	return s.times[0].due
}

// sync brings the registered jobs in line with the current generation.
// Only jobs whose document hash changed are registered again; a removed
// job's runs are stopped.
func (s *Scheduler) sync(startup bool) {
	snap := s.opts.Store.Current()
	docs := snap.OfKind(schema.KindJob)
	now := s.clock.Now()
	changes := map[string]func(*jobState){}
	s.mu.Lock()
	seen := make(map[string]bool, len(docs))
	for _, d := range docs {
		seen[d.ID] = true
		j := s.jobs[d.ID]
		if j != nil && j.hash == d.Hash {
			continue
		}
		if j == nil {
			j = &job{id: d.ID, heapIdx: -1}
			s.jobs[d.ID] = j
			s.log.Debug("job registered", "id", d.ID)
		} else {
			s.log.Info("job changed, triggers registered again", "id", d.ID)
		}
		j.hash, j.spec = d.Hash, d.Job()
		if fn := s.register(j, startup, now); fn != nil {
			changes[j.id] = fn
		}
	}
	for id, j := range s.jobs {
		if !seen[id] {
			s.removeJob(j)
		}
	}
	s.dispatch()
	s.mu.Unlock()
	s.persist(changes)
	if s.hooks.synced != nil {
		s.hooks.synced(snap.Meta.Generation)
	}
}

func (s *Scheduler) persist(changes map[string]func(*jobState)) {
	if len(changes) == 0 {
		return
	}
	ids := make([]string, 0, len(changes))
	for id := range changes {
		ids = append(ids, id)
	}
	if err := s.hist.update(ids, func(id string, st *jobState) { changes[id](st) }, nil); err != nil {
		s.log.Error("record job trigger state", "err", err)
	}
}

// register computes j's next due times from its trigger and, at start,
// counts what was missed since its last timed run: made up once when
// catchUp is set, otherwise skipped and logged. It returns the change to
// j's stored state, if any. s.mu is held.
func (s *Scheduler) register(j *job, startup bool, now time.Time) func(*jobState) {
	defer s.times.set(j)
	if s.hooks.registered != nil {
		s.hooks.registered(j.id)
	}
	j.next, j.due, j.dueKind, j.err = timed{}, time.Time{}, "", nil
	p, err := parsePlan(j.spec.Trigger)
	j.plan = p
	if err != nil {
		j.err = err
		s.log.Error("job trigger cannot be used", "id", j.id, "err", err)
		return nil
	}
	if !j.spec.Enabled {
		return nil
	}
	st, known, err := s.hist.state(j.id)
	if err != nil {
		s.log.Error("read job state", "id", j.id, "err", err)
	}
	base := st.LastFire
	if !known || base.IsZero() {
		base = now
	}
	catchUp := startup && known
	missed, last := 0, time.Time{}
	if p.cron != nil {
		if catchUp {
			missed, last = missedCron(p.cron, base, now)
		}
		j.next.cron = p.cron.Next(now)
	}
	if p.interval > 0 {
		next, n := nextOnGrid(base, now, p.interval)
		if catchUp && n > 0 {
			missed += n
			last = latest(last, next.Add(-p.interval))
		}
		j.next.interval = next
	}
	runAtDone := ""
	if !p.runAt.IsZero() && st.RunAtDone != j.spec.Trigger.RunAt {
		if p.runAt.After(now) {
			j.next.runAt = p.runAt
		} else {
			missed++
			last = latest(last, p.runAt)
			runAtDone = j.spec.Trigger.RunAt
		}
	}
	j.due, j.dueKind = j.next.earliest()
	if missed > 0 {
		if j.spec.CatchUp {
			s.log.Info("catching up missed runs with one run", "id", j.id, "missed", missed, "last", last)
			if _, err := s.enqueue(j, trigger{kind: TriggerCatchUp, scheduledFor: last}); err != nil {
				s.log.Warn("catch-up run not started", "id", j.id, "err", err)
			}
		} else {
			s.log.Info("missed runs skipped (catchUp is false)", "id", j.id, "missed", missed, "last", last)
		}
	}
	if known && missed == 0 && runAtDone == "" {
		return nil
	}
	return func(st *jobState) {
		if missed > 0 || !known {
			st.LastFire = now
		}
		if runAtDone != "" {
			st.RunAtDone = runAtDone
		}
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// removeJob forgets j and stops its runs. s.mu is held.
func (s *Scheduler) removeJob(j *job) {
	j.due = time.Time{}
	s.times.set(j)
	for _, r := range j.active {
		s.stopRun(r, &stopCause{reason: "the job was removed from the desired state"})
	}
	delete(s.jobs, j.id)
	s.log.Info("job removed", "id", j.id, "stopped", len(j.active))
}

// fire starts every job that is due, at once, in priority order, and
// records when each fired in one transaction.
func (s *Scheduler) fire() {
	now := s.clock.Now()
	changes := map[string]func(*jobState){}
	s.mu.Lock()
	for len(s.times) > 0 && !s.times[0].due.After(now) {
		j := s.times[0]
		runAt := ""
		if !j.next.runAt.IsZero() && !j.next.runAt.After(now) {
			runAt = j.spec.Trigger.RunAt
		}
		kind, at := j.next.advance(j.plan, now)
		j.due, j.dueKind = j.next.earliest()
		s.times.set(j)
		if _, err := s.enqueue(j, trigger{kind: kind, scheduledFor: at}); err != nil && !errors.Is(err, ErrBusy) {
			s.log.Warn("run not started", "id", j.id, "trigger", kind, "err", err)
		}
		changes[j.id] = func(st *jobState) {
			st.LastFire = now
			if runAt != "" {
				st.RunAtDone = runAt
			}
		}
	}
	s.dispatch()
	s.mu.Unlock()
	s.persist(changes)
}

// startup fires the Startup event trigger, once.
func (s *Scheduler) startup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.sortedJobs() {
		if j.spec.Enabled && j.err == nil && j.plan.events[EventStartup] {
			if _, err := s.enqueue(j, trigger{kind: TriggerEvent, event: EventStartup}); err != nil {
				s.log.Warn("startup run not started", "id", j.id, "err", err)
			}
		}
	}
	s.dispatch()
}

// sortedJobs returns the jobs by priority (highest first), then id. s.mu
// is held.
func (s *Scheduler) sortedJobs() []*job {
	out := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].spec.Priority != out[b].spec.Priority {
			return out[a].spec.Priority > out[b].spec.Priority
		}
		return out[a].id < out[b].id
	})
	return out
}

func (s *Scheduler) prune() {
	s.mu.Lock()
	live := make(map[string]bool, len(s.jobs))
	for id := range s.jobs {
		live[id] = true
	}
	s.mu.Unlock()
	cutoff := s.clock.Now().Add(-s.opts.Retention)
	n, err := s.hist.prune(cutoff, func(id string) bool { return live[id] })
	if err != nil {
		s.log.Error("prune job runs", "err", err)
	} else if n > 0 {
		s.log.Info("pruned job runs", "count", n, "before", cutoff)
	}
}

// shutdown stops every run and waits for their records.
func (s *Scheduler) shutdown() {
	s.mu.Lock()
	s.stopping = true
	for _, j := range s.jobs {
		for _, r := range j.active {
			s.stopRun(r, &stopCause{reason: "the agent is stopping", agent: true})
		}
	}
	s.mu.Unlock()
	s.runs.Wait()
}

func newRunID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b[:])
}
