package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// A write that keeps failing (the policies folder replaced by a file)
// leaves the drift unresolved, audited with the error; the agent keeps
// running and retrying with backoff, and converges once the obstacle goes.
func TestFailingWriteUnresolvedThenCorrected(t *testing.T) {
	e := newEnv(t, nil) // GiveUpAfter 3, backoff 1 ms .. 50 ms
	e.start()
	rel := e.denyNetcat()

	// Swap the folder for a file in one step (the reconciler would refill
	// a folder removed first).
	blocker := outside(t, e.path("policies/x"))
	must(t, os.WriteFile(blocker, []byte("not a folder"), 0o600))
	must(t, unix.Renameat2(unix.AT_FDCWD, blocker, unix.AT_FDCWD, e.path("policies"), unix.RENAME_EXCHANGE))

	e.waitFor("DRIFT_UNRESOLVED", func() bool { return len(e.events(audit.DriftUnresolved)) > 0 })
	ev := e.events(audit.DriftUnresolved)[0]
	if msg, _ := ev.Details["error"].(string); !strings.Contains(msg, "not a directory") {
		t.Errorf("DRIFT_UNRESOLVED error: got %q, want it to name the cause", msg)
	}
	if !e.hasDrift("File", rel, "exists", state.DriftUnresolved) {
		t.Errorf("no unresolved record; have %+v", e.drift())
	}
	// Still retrying, with backoff: more attempts come.
	n := e.keyCount(FilesController, rel)
	e.waitFor("more retries", func() bool { return e.keyCount(FilesController, rel) >= n+3 })
	st := statusOf(e.m, FilesController)
	if st.LastError == "" || st.LastErrorKey != rel {
		t.Errorf("status: got %+v, want the last error on %s", st, rel)
	}

	must(t, os.Remove(e.path("policies")))
	e.waitFor("restored", func() bool { return readFile(e.path(rel)) != "" })
	e.waitFor("drift corrected", func() bool { return e.hasDrift("File", rel, "exists", state.DriftCorrected) })
	if n := len(e.events(audit.DriftUnresolved)); n != 1 {
		t.Errorf("DRIFT_UNRESOLVED: got %d, want exactly 1 (retries must not repeat it)", n)
	}
	if m := mode(t, e.path("policies")); m != 0o700 {
		t.Errorf("recreated policies mode: got %v, want 0700", m)
	}
}

// A non-empty folder where a file belongs is not deleted recursively: the
// drift stays unresolved (terminally or after the retries) but the
// contents survive.
func TestNonEmptyFolderIsNotDeleted(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	rel := e.denyNetcat()
	tmp := outside(t, e.path(rel))
	must(t, os.Mkdir(tmp, 0o700))
	must(t, os.WriteFile(tmp+"/keep", []byte("data"), 0o600))
	// Delete the file and move the folder in its place. The reconciler may
	// put the file back in between (a folder cannot be renamed over a file):
	// then delete it again.
	for attempt := 0; ; attempt++ {
		if err := os.Remove(e.path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		err := os.Rename(tmp, e.path(rel))
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOTDIR) || attempt == 100 {
			t.Fatal(err)
		}
	}
	// Whether the reconciler saw the file missing first ("exists") or only
	// the folder in its place ("type"), the drift of that file stays unresolved.
	e.waitFor("DRIFT_UNRESOLVED", func() bool {
		for _, r := range e.drift() {
			if r.Kind == "File" && r.Name == rel && r.State == state.DriftUnresolved {
				return true
			}
		}
		return false
	})
	if readFile(e.path(rel)+"/keep") != "data" {
		t.Error("the folder's content was deleted")
	}
}

// 1,000 files tampered with at once: every one is put back, every drift is
// recorded and audited exactly once, and the reconciler does not storm.
func TestThousandFilesTampered(t *testing.T) {
	const n = 1000
	e := newEnv(t, nil)
	e.start()
	docs := policies(t, n)
	e.apply(docs...)
	e.waitFor("all materialized", func() bool {
		return readFile(e.path(fmt.Sprintf("policies/p-%05d.json", n-1))) != "" && statusOf(e.m, FilesController).QueueDepth == 0
	})
	e.waitQuiet()
	before := e.count(FilesController)

	for i := range n {
		must(t, os.WriteFile(e.path(fmt.Sprintf("policies/p-%05d.json", i)), []byte("tampered"), 0o600))
	}
	e.waitFor("all restored", func() bool {
		for i := range n {
			if readFile(e.path(fmt.Sprintf("policies/p-%05d.json", i))) != string(docs[i].Raw) {
				return false
			}
		}
		return true
	})
	e.waitQuiet()
	e.waitFor("every correction audited", func() bool { return len(e.events(audit.DriftCorrected)) >= n })

	corrected := 0
	for _, r := range e.drift() {
		if r.Kind == "File" && r.Field == "content" && r.State == state.DriftCorrected {
			corrected++
		}
	}
	if corrected != n {
		t.Errorf("corrected content drift records: got %d, want %d", corrected, n)
	}
	if got := len(e.events(audit.DriftDetected)); got != n {
		t.Errorf("DRIFT_DETECTED: got %d, want %d", got, n)
	}
	if got := len(e.events(audit.DriftCorrected)); got != n {
		t.Errorf("DRIFT_CORRECTED: got %d, want %d", got, n)
	}
	// Each tampered file costs a few reconciles (the write events, the
	// correction's own rename event), never an endless chain.
	if got := e.count(FilesController) - before; got > 6*n {
		t.Errorf("reconciles for %d tampered files: got %d, want at most %d", n, got, 6*n)
	}
	if w := counterValue(t, e, "warden_reconcile_writes_total", map[string]string{"controller": FilesController, "op": "write"}); w < n {
		t.Errorf("writes: got %v, want at least %d", w, n)
	}
}

// An idle agent with applied state does no work: no reconcile runs while
// nothing changes (the resync timer is set far away here).
func TestIdleDoesNoWork(t *testing.T) {
	e := newEnv(t, nil)
	must(t, os.MkdirAll(e.path("logs"), 0o700))
	e.start()
	e.apply(append(validated(t, policyJSON("deny-netcat", 100)), policies(t, 50)...)...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/p-00049.json")) != "" })
	// The events of the agent's own last writes may still be in flight
	// (slowly, on a loaded machine): settle until a whole half second
	// passes without a reconcile.
	for prev := -1; prev != e.total(); {
		e.waitQuiet()
		prev = e.total()
		time.Sleep(500 * time.Millisecond)
	}

	before := e.total()
	time.Sleep(2 * time.Second)
	if got := e.total() - before; got != 0 {
		e.mu.Lock()
		t.Errorf("reconciles while idle: got %d, want 0 (%v)", got, e.keys)
		e.mu.Unlock()
	}
}

// With a short resync period, the idle agent reconciles every key again
// and again but changes nothing: no write, no drift.
func TestResyncWritesNothing(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ResyncInterval = 100 * time.Millisecond })
	e.start()
	e.apply(policies(t, 200)...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/p-00199.json")) != "" })
	e.waitQuiet()
	writes := totalWrites(t, e)
	n := e.count(FilesController)
	e.waitFor("several resyncs", func() bool { return e.count(FilesController) >= n+3*201 })
	if got := totalWrites(t, e); got != writes {
		t.Errorf("writes during resync: got %v, want %v", got, writes)
	}
	if len(e.events(audit.DriftDetected)) != 0 {
		t.Errorf("drift during idle resync: %+v", e.drift())
	}
}

// A document removed from desired state takes its file with it, quietly.
func TestDocumentRemovedIsNotDrift(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.apply(validated(t, policyJSON("a", 1), policyJSON("b", 2))...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/b.json")) != "" })
	e.apply(validated(t, policyJSON("a", 1))...)
	e.waitFor("b removed", func() bool { _, err := os.Stat(e.path("policies/b.json")); return os.IsNotExist(err) })
	e.apply(validated(t, policyJSON("a", 5))...)
	e.waitFor("a updated", func() bool { return readFile(e.path("policies/a.json")) == string(policyJSON("a", 5)) })
	e.waitQuiet()
	if recs := e.drift(); len(recs) != 0 {
		t.Errorf("drift for desired-state changes: %+v", recs)
	}
}

func TestSettingsTakeEffect(t *testing.T) {
	lv := new(slog.LevelVar)
	e := newEnv(t, func(o *Options) { o.LogLevel = lv })
	got := make(chan *schema.SettingsSpec, 10)
	e.m.OnSettings(func(s *schema.SettingsSpec) { got <- s })
	e.start()
	if s := <-got; strings.Join(s.AllowedHosts, ";") != "localhost;127.0.0.1" {
		t.Errorf("initial AllowedHosts: got %v", s.AllowedHosts)
	}
	e.apply(validated(t, []byte(`{"kind": "Settings", "id": "agent", "spec": {
  "allowedHosts": ["localhost", "127.0.0.1", "warden.local"],
  "logging": {"level": "Debug", "retentionDays": 15}}}`))...)
	s := <-got
	if strings.Join(s.AllowedHosts, ";") != "localhost;127.0.0.1;warden.local" {
		t.Errorf("AllowedHosts: got %v", s.AllowedHosts)
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("log level: got %v, want debug", lv.Level())
	}
	e.waitFor("appsettings.json rendered", func() bool {
		return strings.Contains(readFile(e.path("appsettings.json")), `"AllowedHosts": "localhost;127.0.0.1;warden.local"`)
	})
	if !strings.Contains(readFile(e.path("appsettings.json")), `"Default": "Debug"`) {
		t.Errorf("appsettings.json:\n%s", readFile(e.path("appsettings.json")))
	}
	if e.m.Settings().Logging.Level != "Debug" {
		t.Errorf("Settings(): got %+v", e.m.Settings())
	}
	// Late observers get the settings in effect at once.
	late := make(chan string, 1)
	e.m.OnSettings(func(s *schema.SettingsSpec) { late <- s.Logging.Level })
	if l := <-late; l != "Debug" {
		t.Errorf("late observer: got %q", l)
	}
	e.waitQuiet()
	if recs := e.drift(); len(recs) != 0 {
		t.Errorf("a settings change is not drift: %+v", recs)
	}
}

func TestListenMustBeLoopback(t *testing.T) {
	cases := []struct {
		l  Listen
		ok bool
	}{
		{Listen{API: "127.0.0.1:6889", Health: "127.0.0.1:6888", MQTT: "127.0.0.1:8675"}, true},
		{Listen{API: "localhost:0", Health: "[::1]:6888"}, true},
		{Listen{API: "127.0.0.2:6889"}, true},
		{Listen{API: "0.0.0.0:6889"}, false},
		{Listen{API: ":6889"}, false},
		{Listen{MQTT: "10.0.0.1:8675"}, false},
		{Listen{Health: "example.com:80"}, false},
		{Listen{API: "127.0.0.1"}, false},
	}
	for _, tc := range cases {
		err := tc.l.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrNotLoopback)) {
			t.Errorf("%+v: got %v, want ok=%v", tc.l, err, tc.ok)
		}
	}
	e := newEnv(t, nil)
	if _, err := NewManager(Options{Root: e.root, Store: e.store, Listen: Listen{API: "0.0.0.0:1"}}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("NewManager with 0.0.0.0: got %v", err)
	}
	if err := e.m.SetListen(Listen{MQTT: "192.168.1.1:8675"}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("SetListen: got %v", err)
	}
	e.start()
	must(t, e.m.SetListen(Listen{API: "127.0.0.1:41234", Health: "127.0.0.1:41235", MQTT: "127.0.0.1:41236"}))
	e.waitFor("ports rendered", func() bool { return strings.Contains(readFile(e.path("appsettings.json")), "127.0.0.1:41234") })
}

// A panicking controller is recovered, recorded and retried; the agent
// and the other controllers go on.
func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t, nil)
	var calls atomic.Int32
	c, err := e.m.Add("flaky", reconcilerFunc(func(ctx context.Context, key string) (Result, error) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return Result{}, nil
	}), ControllerOptions{})
	must(t, err)
	e.start()
	c.Enqueue("k")
	e.waitFor("retried after panic", func() bool { return calls.Load() >= 2 && statusOf(e.m, "flaky").LastSuccess.After(time.Time{}) })
	st := statusOf(e.m, "flaky")
	if !strings.Contains(st.LastError, "panic: boom") || st.Failures != 1 {
		t.Errorf("status: %+v", st)
	}
	if _, err := e.m.Add("late", reconcilerFunc(nil), ControllerOptions{}); !errors.Is(err, ErrRunning) {
		t.Errorf("Add after Run: got %v", err)
	}
}

// A terminal error is not retried and is unresolved drift at once.
func TestTerminalError(t *testing.T) {
	e := newEnv(t, nil)
	var calls atomic.Int32
	c, err := e.m.Add("broken", reconcilerFunc(func(ctx context.Context, key string) (Result, error) {
		calls.Add(1)
		ReportDrift(ctx, Drift{Kind: "Thing", ID: key, Field: "x", Desired: "1", Actual: "2", Action: "none"})
		return Result{}, TerminalError(errors.New("cannot fix"))
	}), ControllerOptions{})
	must(t, err)
	e.start()
	c.Enqueue("k")
	e.waitFor("unresolved", func() bool { return e.hasDrift("Thing", "k", "x", state.DriftUnresolved) })
	e.waitQuiet()
	if calls.Load() != 1 {
		t.Errorf("calls: got %d, want 1 (terminal errors are not retried)", calls.Load())
	}
}

// RequeueAfter reconciles the key again.
func TestRequeueAfter(t *testing.T) {
	e := newEnv(t, nil)
	var calls atomic.Int32
	c, err := e.m.Add("timer", reconcilerFunc(func(ctx context.Context, key string) (Result, error) {
		if calls.Add(1) < 3 {
			return Result{RequeueAfter: time.Millisecond}, nil
		}
		return Result{}, nil
	}), ControllerOptions{})
	must(t, err)
	e.start()
	c.Enqueue("k")
	e.waitFor("requeued twice", func() bool { return calls.Load() == 3 })
}

func TestStatusAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.apply(validated(t, policyJSON("deny-netcat", 100))...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/deny-netcat.json")) != "" })
	must(t, os.Chmod(e.path("policies/deny-netcat.json"), 0o644))
	e.waitFor("drift corrected", func() bool {
		return e.hasDrift("File", "policies/deny-netcat.json", "mode", state.DriftCorrected)
	})
	var names []string
	for _, s := range e.m.Status() {
		names = append(names, s.Name)
		if s.LastSuccess.IsZero() {
			t.Errorf("%s: no successful reconcile in status %+v", s.Name, s)
		}
	}
	if strings.Join(names, ",") != "files,permissions,settings" {
		t.Errorf("controllers: got %v", names)
	}
	mfs, err := e.reg.Gather()
	must(t, err)
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, n := range []string{"warden_reconcile_duration_seconds", "warden_reconcile_queue_depth",
		"warden_drift_total", "warden_reconcile_last_success_timestamp_seconds", "warden_reconcile_total"} {
		if !have[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	if v := counterValue(t, e, "warden_drift_total", map[string]string{"kind": "File", "state": "corrected"}); v < 1 {
		t.Errorf("warden_drift_total{kind=File,state=corrected}: got %v", v)
	}
}

type reconcilerFunc func(ctx context.Context, key string) (Result, error)

func (f reconcilerFunc) Reconcile(ctx context.Context, key string) (Result, error) {
	return f(ctx, key)
}

func statusOf(m *Manager, name string) ControllerStatus {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return ControllerStatus{}
}

func counterValue(t testing.TB, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	must(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

func totalWrites(t testing.TB, e *env) float64 {
	return counterValue(t, e, "warden_reconcile_writes_total", map[string]string{})
}

// Run leaves no goroutine behind once its context ends.
func TestRunStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t, nil)
	e.start()
	e.apply(validated(t, policyJSON("deny-netcat", 100))...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/deny-netcat.json")) != "" })
	must(t, os.Chmod(e.path("policies/deny-netcat.json"), 0o644))
	e.waitFor("corrected", func() bool { return e.hasDrift("File", "policies/deny-netcat.json", "mode", state.DriftCorrected) })
	e.stop()
	if err := e.m.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: got %v, want ErrRunning", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// Drift left open by a run that stopped before settling it is corrected
// by the next run once the key converges.
func TestOpenDriftAdoptedAfterRestart(t *testing.T) {
	e := newEnv(t, nil)
	stale := state.DriftRecord{ID: "stale1", Kind: "File", Name: "policies/gone.json", Field: "exists",
		Desired: "absent", Actual: "present", State: state.DriftOpen, Action: "remove", DetectedAt: time.Now().UTC()}
	must(t, e.store.PutDrift(stale))
	e.start()
	e.waitFor("stale drift corrected", func() bool { return e.hasDrift("File", "policies/gone.json", "exists", state.DriftCorrected) })
	e.waitQuiet()
	if n := len(e.events(audit.DriftCorrected)); n != 1 {
		t.Errorf("DRIFT_CORRECTED: got %d, want 1", n)
	}
}

// With no file watch (inotify instances exhausted) the reconciler still
// runs: it materializes, puts back a tampered file at the next retry, and
// sets the watch up once it can.
func TestRunsWithoutFileWatch(t *testing.T) {
	var fail, set atomic.Bool
	fail.Store(true)
	startWatch = func(m *Manager) (*watch, error) {
		if fail.Load() {
			return nil, errors.New("couldn't initialize inotify: too many open files")
		}
		w, err := newWatch(m)
		set.Store(err == nil)
		return w, err
	}
	t.Cleanup(func() { startWatch = newWatch })
	e := newEnv(t, nil)
	e.start()
	rel := e.denyNetcat()
	must(t, os.Chmod(e.path(rel), 0o644))
	e.waitFor("mode restored without a watch", func() bool { return mode(t, e.path(rel)) == 0o600 })
	fail.Store(false)
	e.waitFor("the watch set up at a retry", set.Load)
	must(t, os.Chmod(e.path(rel), 0o644))
	e.waitFor("mode restored with the watch", func() bool { return mode(t, e.path(rel)) == 0o600 })
}
