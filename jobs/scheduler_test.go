package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/procgroup"
)

const envTask = `{"command": "/bin/sh", "args": ["-c", "echo id=$WARDEN_JOB_ID run=$WARDEN_JOB_RUN trigger=$WARDEN_JOB_TRIGGER; pwd"]}`

func TestScheduleFires(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("every5", `{"trigger": {"schedule": "*/5 * * * *", "timeZone": "UTC"}, "tasks": [`+envTask+`]}`))
	h.start()
	st := h.s.List()
	want := time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)
	if len(st) != 1 || st[0].NextRun == nil || !st[0].NextRun.Equal(want) || st[0].NextTrigger != TriggerSchedule {
		t.Fatalf("List = %+v, want next run %s by schedule", st, want)
	}
	h.clock.AdvanceTo(want.Add(-time.Second))
	if n := len(h.finished("every5")); n != 0 {
		t.Fatalf("%d runs before the schedule was due", n)
	}
	h.clock.AdvanceTo(want)
	r := h.waitRuns("every5", 1)[0]
	if r.Trigger != TriggerSchedule || r.State != StateSucceeded || r.ScheduledFor == nil || !r.ScheduledFor.Equal(want) {
		t.Errorf("run = %+v, want a successful schedule run for %s", r, want)
	}
	out := h.output(r, 0)
	wantOut := "id=every5 run=" + r.ID + " trigger=schedule\n" + filepath.Join(h.root, "Jobs", "every5") + "\n"
	if out != wantOut {
		t.Errorf("output = %q, want %q", out, wantOut)
	}
	if fi, err := os.Stat(filepath.Join(h.root, "Jobs", "every5")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("working directory: %v, mode %v; want 0750", err, fi.Mode().Perm())
	}
	h.clock.AdvanceTo(want.Add(5 * time.Minute))
	h.waitRuns("every5", 2)
}

func TestIntervalFires(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("tick", `{"trigger": {"intervalMinutes": 10}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	for i := 1; i <= 3; i++ {
		h.clock.Advance(10 * time.Minute)
		runs := h.waitRuns("tick", i)
		if r := runs[i-1]; r.Trigger != TriggerInterval || !r.ScheduledFor.Equal(t0.Add(time.Duration(i)*10*time.Minute)) {
			t.Errorf("run %d = %s for %v, want interval for +%dm", i, r.Trigger, r.ScheduledFor, i*10)
		}
	}
}

// On the real clock a schedule is a wall-clock timer (package wallclock):
// a runAt a second or two ahead runs at its time, not before.
func TestRunAtOnTheRealClock(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Clock = realClock{} })
	at := time.Now().Add(2 * time.Second).Truncate(time.Second)
	h.apply(jobDoc("soon", fmt.Sprintf(`{"trigger": {"runAt": %q}, "tasks": [{"command": "/bin/true"}]}`, at.Format(time.RFC3339))))
	h.start()
	r := h.waitRuns("soon", 1)[0]
	if r.Trigger != TriggerRunAt || r.Start.Before(at) {
		t.Errorf("run %s at %v, want runAt at or after %v", r.Trigger, r.Start, at)
	}
}

// On the real clock, due times carry no monotonic reading: they compare on
// the wall clock their timers fire on, so after a suspend or a clock step
// a due time is due when its timer fires (with a monotonic reading it would
// still look ahead, and the scheduler would spin re-arming the timer).
func TestDueTimesAreWallClock(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Clock = realClock{} })
	h.apply(jobDoc("hourly", `{"trigger": {"intervalMinutes": 60}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	due := h.s.nextDue()
	if due.IsZero() || strings.Contains(due.String(), "m=") {
		t.Errorf("next due %v: want a wall-clock time without a monotonic reading", due)
	}
}

func TestRunAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("once", `{"trigger": {"runAt": "2026-03-02T11:00:00Z"}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	h.clock.Advance(time.Hour)
	if r := h.waitRuns("once", 1)[0]; r.Trigger != TriggerRunAt {
		t.Errorf("trigger = %s, want runAt", r.Trigger)
	}
	if st := h.s.List()[0]; st.NextRun != nil {
		t.Errorf("next run %v after the one-time run", st.NextRun)
	}
	// A restart, even with catchUp, does not run it again.
	h.restart()
	h.clock.Advance(24 * time.Hour)
	h.s.RunNow("once", "test") // a marker run, so there is something to wait for
	if runs := h.waitRuns("once", 2); runs[1].Trigger != TriggerManual || len(runs) != 2 {
		t.Errorf("runs after restart: %d, last %s; want only the manual one", len(runs), runs[len(runs)-1].Trigger)
	}
}

func TestEventTriggers(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(
		jobDoc("on-drift", `{"trigger": {"events": ["DriftDetected", "DriftUnresolved"], "eventCooldownSeconds": 0}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("on-bundle", `{"trigger": {"events": ["BundleApplied"]}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("on-pending", `{"trigger": {"events": ["PolicyEvaluationPending"]}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("on-plugin", `{"trigger": {"events": ["PluginExited"]}, "tasks": [{"command": "/bin/true"}]}`),
	)
	h.start()
	emit := func(e audit.Event) audit.Event {
		t.Helper()
		stored, err := h.audit.Write(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	ev := emit(audit.Event{Type: audit.DriftDetected, Component: "test", TargetInfo: &audit.TargetInfo{Kind: "Path", ID: "x", Path: "/elsewhere/x"}})
	r := h.waitRuns("on-drift", 1)[0]
	if r.Trigger != TriggerEvent || r.Event != EventDriftDetected || r.EventID != ev.ID {
		t.Errorf("run = %s/%s/%s, want event DriftDetected %s", r.Trigger, r.Event, r.EventID, ev.ID)
	}
	emit(audit.Event{Type: audit.DriftUnresolved, Component: "test"})
	if r := h.waitRuns("on-drift", 2)[1]; r.Event != EventDriftUnresolved {
		t.Errorf("event = %s, want DriftUnresolved", r.Event)
	}
	emit(audit.Event{Type: audit.BundleApplied, Component: "test"})
	h.waitRuns("on-bundle", 1)
	emit(audit.Event{Type: audit.PluginExited, Component: "test"})
	h.waitRuns("on-plugin", 1)
	// Only an evaluation whose effective decision is approval is pending.
	emit(audit.Event{Type: audit.PolicyEvaluation, Component: "test", Evaluation: &audit.Evaluation{Decision: "approval", Effective: "allow"}})
	emit(audit.Event{Type: audit.PolicyEvaluation, Component: "test", Evaluation: &audit.Evaluation{Decision: "approval", Effective: "approval"}})
	if r := h.waitRuns("on-pending", 1)[0]; r.Event != EventPolicyEvaluationPending {
		t.Errorf("event = %s", r.Event)
	}
	h.clock.Advance(time.Minute)                                    // past on-bundle's cool-down
	emit(audit.Event{Type: audit.BundleApplied, Component: "test"}) // a marker behind the evaluations
	h.waitRuns("on-bundle", 2)
	if n := len(h.finished("on-pending")); n != 1 {
		t.Errorf("%d PolicyEvaluationPending runs, want 1 (the monitor-mode allow must not count)", n)
	}
}

func TestStartupAndManual(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("boot", `{"trigger": {"events": ["Startup"]}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("idle", `{"enabled": false, "trigger": {"events": ["Startup"]}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	if r := h.waitRuns("boot", 1)[0]; r.Event != EventStartup {
		t.Errorf("event = %s, want Startup", r.Event)
	}
	// A new generation is not a start.
	h.apply(jobDoc("boot", `{"priority": 6, "trigger": {"events": ["Startup"]}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("idle", `{"enabled": false, "trigger": {"events": ["Startup"]}, "tasks": [{"command": "/bin/true"}]}`))
	id, err := h.s.RunNow("idle", "admin/cli")
	if err != nil {
		t.Fatalf("manual run of a disabled job: %v", err)
	}
	if r := h.waitRuns("idle", 1)[0]; r.ID != id || r.Trigger != TriggerManual || r.By != "admin/cli" {
		t.Errorf("run = %+v, want manual %s by admin/cli", r, id)
	}
	if n := len(h.finished("boot")); n != 1 {
		t.Errorf("%d Startup runs, want 1", n)
	}
	if _, err := h.s.RunNow("nope", ""); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("RunNow(unknown) = %v, want ErrUnknownJob", err)
	}
}

func TestCatchUp(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(
		jobDoc("catch", `{"catchUp": true, "trigger": {"schedule": "0 * * * *", "timeZone": "UTC"}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("skip", `{"trigger": {"schedule": "0 * * * *", "timeZone": "UTC"}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("catch-once", `{"catchUp": true, "trigger": {"runAt": "2026-03-02T13:00:00Z"}, "tasks": [{"command": "/bin/true"}]}`),
		jobDoc("catch-every", `{"catchUp": true, "trigger": {"intervalMinutes": 30}, "tasks": [{"command": "/bin/true"}]}`),
	)
	h.start()
	h.clock.AdvanceTo(time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC))
	h.waitRuns("catch", 1)
	h.waitRuns("skip", 1)
	h.stop() // the agent is down from 11:00 ...
	h.clock.AdvanceTo(time.Date(2026, 3, 2, 16, 20, 0, 0, time.UTC))
	h.newScheduler() // ... until 16:20: 12:00 to 16:00 missed
	h.start()
	r := h.waitRuns("catch", 2)[1]
	if r.Trigger != TriggerCatchUp || !r.ScheduledFor.Equal(time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("catch-up run = %s for %v, want catchUp for 16:00", r.Trigger, r.ScheduledFor)
	}
	if r := h.waitRuns("catch-once", 1)[0]; r.Trigger != TriggerCatchUp {
		t.Errorf("missed runAt: trigger %s, want catchUp", r.Trigger)
	}
	h.waitRuns("catch-every", 2)
	h.clock.AdvanceTo(time.Date(2026, 3, 2, 17, 0, 0, 0, time.UTC))
	runs := h.waitRuns("skip", 2)
	if len(runs) != 2 || runs[1].Trigger != TriggerSchedule || !runs[1].ScheduledFor.Equal(time.Date(2026, 3, 2, 17, 0, 0, 0, time.UTC)) {
		t.Errorf("skip runs = %d, last %s; want the 11:00 and 17:00 schedule runs only", len(runs), runs[len(runs)-1].Trigger)
	}
	h.waitRuns("catch", 3)
	if n := len(h.finished("catch")); n != 3 {
		t.Errorf("catch: %d runs, want 3 (11:00, one catch-up, 17:00)", n)
	}
}

func TestPriorityOrdersDueRuns(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxParallel = 1 })
	order := filepath.Join(h.root, "order")
	task := `{"command": "/bin/sh", "args": ["-c", "echo $WARDEN_JOB_ID >> ` + order + `"]}`
	var docs []string
	for _, p := range []struct{ id, prio string }{{"low", "1"}, {"high", "10"}, {"mid", "5"}, {"mid2", "5"}} {
		docs = append(docs, jobDoc(p.id, `{"priority": `+p.prio+`, "trigger": {"schedule": "0 11 * * *", "timeZone": "UTC"}, "tasks": [`+task+`]}`))
	}
	h.apply(docs...)
	h.start()
	h.clock.AdvanceTo(time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC))
	h.waitRuns("low", 1)
	data, _ := os.ReadFile(order)
	if got := strings.Fields(string(data)); strings.Join(got, ",") != "high,mid,mid2,low" {
		t.Errorf("run order = %v, want high,mid,mid2,low", got)
	}
}

func TestOnlyChangedJobsReregister(t *testing.T) {
	h := newHarness(t, nil)
	a := jobDoc("a", `{"trigger": {"intervalMinutes": 5}, "tasks": [{"command": "/bin/true"}]}`)
	b := jobDoc("b", `{"trigger": {"intervalMinutes": 5}, "tasks": [{"command": "/bin/true"}]}`)
	h.apply(a, b)
	h.start()
	h.apply(a, jobDoc("b", `{"trigger": {"intervalMinutes": 7}, "tasks": [{"command": "/bin/true"}]}`), jobDoc("c", `{"trigger": {}, "tasks": [{"command": "/bin/true"}]}`))
	h.mu.Lock()
	got := map[string]int{"a": h.register["a"], "b": h.register["b"], "c": h.register["c"]}
	h.mu.Unlock()
	if got["a"] != 1 || got["b"] != 2 || got["c"] != 1 {
		t.Errorf("registrations = %v, want a 1 (unchanged), b 2, c 1", got)
	}
}

func TestRemovedJobIsStopped(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("long", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000 & sleep 1000"]}]}`))
	h.start()
	id, err := h.s.RunNow("long", "")
	if err != nil {
		t.Fatal(err)
	}
	pid := h.waitPID(id, 0)
	h.apply() // a generation without the job
	r := h.waitRuns("long", 1)[0]
	if r.State != StateStopped || !strings.Contains(r.Error, "removed") || r.Tasks[0].Signal != "SIGTERM" {
		t.Errorf("run = %s (%s), signal %s; want stopped by removal with SIGTERM", r.State, r.Error, r.Tasks[0].Signal)
	}
	if alive := procgroup.Alive(pid); len(alive) > 0 {
		t.Errorf("processes %v of the removed job's group survive", alive)
	}
	if _, err := h.s.Runs("long", 10); err != nil {
		t.Errorf("history of a removed job: %v", err)
	}
}

func TestPrune(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("p", `{"trigger": {}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	h.s.RunNow("p", "")
	old := h.waitRuns("p", 1)[0]
	h.clock.Advance(16 * 24 * time.Hour) // also fires the hourly prune
	eventually(t, "the 16-day-old run to be pruned", func() bool {
		_, ok, _ := h.s.Lookup(old.ID)
		return !ok
	})
	h.s.RunNow("p", "")
	if runs := h.waitRuns("p", 1); len(runs) != 1 || runs[0].ID == old.ID {
		t.Errorf("runs after prune = %d", len(runs))
	}
}

func TestAgentStopAndCrash(t *testing.T) {
	h := newHarness(t, nil)
	runID := manual(t, h, "long", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "trap '' TERM; sleep 1000"]}]}`)
	pid := h.waitPID(runID, 0)
	start := time.Now()
	h.stop() // the agent stops: SIGTERM is ignored, SIGKILL follows after StopGrace (wall clock)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stop took %s; the agent must stop within 5 s", d)
	}
	r, _, _ := h.s.Lookup(runID)
	if r.State != StateStopped || !strings.Contains(r.Error, "agent is stopping") || len(procgroup.Alive(pid)) > 0 {
		t.Errorf("run after stop = %s %q, alive %v", r.State, r.Error, procgroup.Alive(pid))
	}
	// A crash leaves a run recorded as running; the next start marks it.
	ghost := &Run{ID: "ghost", Job: "long", Trigger: TriggerManual, State: StateRunning, Start: t0}
	if err := h.s.hist.started(ghost); err != nil {
		t.Fatal(err)
	}
	h.newScheduler()
	h.start()
	g, _, _ := h.s.Lookup("ghost")
	if g.State != StateAbandoned || g.End == nil {
		t.Errorf("run left by a crash = %s, want abandoned", g.State)
	}
	if st := h.s.List()[0]; st.LastRun == nil || st.LastRun.State != StateAbandoned {
		t.Errorf("last run = %+v", st.LastRun)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("a", `{"trigger": {"intervalMinutes": 1, "events": ["BundleApplied"]}, "tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000 & echo x"]}]}`),
		jobDoc("b", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000"]}]}`))
	before := runtime.NumGoroutine()
	h.start()
	h.clock.Advance(time.Minute)
	h.waitRuns("a", 1)
	runID, _ := h.s.RunNow("b", "")
	h.waitPID(runID, 0)
	h.stop()
	eventually(t, "goroutines to return to the count before start", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
