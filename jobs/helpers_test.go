package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	ch   chan time.Time
	at   time.Time
	done bool
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1), at: c.now.Add(d)}
	if d <= 0 {
		t.done = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock and fires every timer that is due.
func (c *fakeClock) At(deadline time.Time) Timer { return c.NewTimer(deadline.Sub(c.Now())) }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.done = true
			t.ch <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// AdvanceTo moves the clock to at (never backwards).
func (c *fakeClock) AdvanceTo(at time.Time) {
	if d := at.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}

var t0 = time.Date(2026, 3, 2, 10, 2, 0, 0, time.UTC)

// eventually polls cond until it holds. It waits for real processes and
// goroutines, never for time to pass in the scheduler: that is the fake
// clock's job.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// harness is a scheduler on a real store and audit writer in a temporary
// root, with the fake clock.
type harness struct {
	t     *testing.T
	root  string
	store *state.Store
	audit *audit.Writer
	clock *fakeClock
	opts  func(*Options)
	s     *Scheduler

	cancel context.CancelFunc
	done   chan error

	mu       sync.Mutex
	gen      uint64
	pids     map[string][]int // run id -> task pids
	seen     []seenEvent
	register map[string]int
}

type seenEvent struct {
	job, typ, path, ignored string
}

func newHarness(t *testing.T, opts func(*Options)) *harness {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"Jobs", "Plugins"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.NewWriter(st, audit.Options{Machine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, root: root, store: st, audit: w, clock: newFakeClock(t0), opts: opts}
	t.Cleanup(func() {
		h.stop()
		w.Close()
		st.Close()
	})
	h.newScheduler()
	return h
}

func (h *harness) newScheduler() {
	h.t.Helper()
	o := Options{Root: h.root, Store: h.store, Audit: h.audit, Clock: h.clock,
		Logger: slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if h.opts != nil {
		h.opts(&o)
	}
	s, err := New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.pids, h.register, h.gen = map[string][]int{}, map[string]int{}, 0
	h.mu.Unlock()
	s.hooks = hooks{
		taskStarted: func(runID string, _ int, pid int) {
			h.mu.Lock()
			h.pids[runID] = append(h.pids[runID], pid)
			h.mu.Unlock()
		},
		eventSeen: func(job string, ev audit.Event, ignored string) {
			path := ""
			if ev.TargetInfo != nil {
				path = ev.TargetInfo.Path
			}
			h.mu.Lock()
			h.seen = append(h.seen, seenEvent{job, ev.Type, path, ignored})
			h.mu.Unlock()
		},
		synced: func(gen uint64) {
			h.mu.Lock()
			h.gen = max(h.gen, gen)
			h.mu.Unlock()
		},
		registered: func(id string) {
			h.mu.Lock()
			h.register[id]++
			h.mu.Unlock()
		},
	}
	h.s = s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs the scheduler and waits until it has registered the jobs.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	s := h.s
	go func() { h.done <- s.Run(ctx) }()
	select {
	case <-s.ready:
	case err := <-h.done:
		h.t.Fatalf("Run: %v", err)
	}
}

// stop stops the scheduler (as an agent stop does) and waits for it.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// restart is an agent restart: a new scheduler on the same store.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.newScheduler()
	h.start()
}

// apply makes docs the next generation and waits until the scheduler has
// registered it (when it runs).
func (h *harness) apply(docs ...string) {
	h.t.Helper()
	var ds []*schema.Document
	for i, raw := range docs {
		d, err := schema.Validate(fmt.Sprintf("jobs/%d.json", i), []byte(raw))
		if err != nil {
			h.t.Fatal(err)
		}
		ds = append(ds, d)
	}
	m, err := h.store.ApplyGeneration(state.Apply{Source: "local", Docs: ds})
	if err != nil {
		h.t.Fatal(err)
	}
	if h.cancel == nil {
		return
	}
	eventually(h.t, "generation registered", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.gen >= m.Generation
	})
}

// jobDoc renders a Job document.
func jobDoc(id, spec string) string {
	return fmt.Sprintf(`{"kind": "Job", "id": %q, "spec": %s}`, id, spec)
}

// finished returns job's finished runs, oldest first.
func (h *harness) finished(id string) []*Run {
	h.t.Helper()
	runs, err := h.s.hist.runs(id, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*Run
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].End != nil {
			out = append(out, runs[i])
		}
	}
	return out
}

// waitRuns waits until job has n finished runs and nothing active, and
// returns the runs.
func (h *harness) waitRuns(id string, n int) []*Run {
	h.t.Helper()
	var runs []*Run
	eventually(h.t, fmt.Sprintf("%d finished runs of %s", n, id), func() bool {
		runs = h.finished(id)
		return len(runs) >= n && h.idle(id)
	})
	return runs
}

func (h *harness) idle(id string) bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	j := h.s.jobs[id]
	return j == nil || len(j.active) == 0
}

// waitPID waits until run's task i has started and returns its pid.
func (h *harness) waitPID(runID string, i int) int {
	h.t.Helper()
	var pid int
	eventually(h.t, "task "+strconv.Itoa(i)+" of run "+runID+" to start", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.pids[runID]) > i {
			pid = h.pids[runID][i]
			return true
		}
		return false
	})
	return pid
}

// activeRun waits for a run of job to be going and returns its id.
func (h *harness) activeRun(id string) string {
	h.t.Helper()
	var runID string
	eventually(h.t, "a run of "+id+" to be going", func() bool {
		for _, st := range h.s.List() {
			if st.ID == id && st.State == JobRunning {
				runID = st.ActiveRuns[len(st.ActiveRuns)-1]
				return true
			}
		}
		return false
	})
	return runID
}

func (h *harness) output(r *Run, task int) string {
	h.t.Helper()
	if len(r.Tasks) <= task {
		h.t.Fatalf("run %s has %d task results, want task %d: %+v", r.ID, len(r.Tasks), task, r)
	}
	return r.Tasks[task].Output
}
