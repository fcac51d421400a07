package jobs

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"warden/procgroup"
)

// manual applies one job, starts the scheduler and runs the job by hand.
func manual(t *testing.T, h *harness, id, spec string) string {
	t.Helper()
	h.apply(jobDoc(id, spec))
	if h.cancel == nil {
		h.start()
	}
	runID, err := h.s.RunNow(id, "test")
	if err != nil {
		t.Fatal(err)
	}
	return runID
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	cases := []struct {
		name    string
		script  string
		advance []time.Duration // clock steps after the task started
		wantHow string
	}{
		{"children die on SIGTERM", "sleep 1000 & sleep 1000", []time.Duration{5 * time.Second}, "SIGTERM"},
		{"children ignore SIGTERM", "trap '' TERM; sleep 1000 & sleep 1000", []time.Duration{5 * time.Second, 5 * time.Second}, "SIGKILL after 5s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			runID := manual(t, h, "hang", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "`+c.script+`"], "timeoutSeconds": 5}]}`)
			pid := h.waitPID(runID, 0)
			eventually(t, "the shell and both sleeps to run", func() bool { return len(procgroup.Alive(pid)) == 3 })
			h.clock.Advance(c.advance[0])
			if len(c.advance) > 1 {
				// SIGTERM is ignored: the group lives until the grace ends.
				eventually(t, "SIGTERM to be sent", func() bool { return h.graceTimers() > 0 })
				if alive := procgroup.Alive(pid); len(alive) != 3 {
					t.Errorf("alive before the grace ended: %v, want all 3", alive)
				}
				h.clock.Advance(c.advance[1])
			}
			r := h.waitRuns("hang", 1)[0]
			task := r.Tasks[0]
			if !task.TimedOut || r.State != StateFailed || !strings.Contains(task.Error, c.wantHow) {
				t.Errorf("task = timedOut %v, %q; run %s; want timed out with %s", task.TimedOut, task.Error, r.State, c.wantHow)
			}
			if alive := procgroup.Alive(pid); len(alive) > 0 {
				t.Errorf("processes %v of the group survive the timeout", alive)
			}
		})
	}
}

// graceTimers counts the pending fake timers (the timeout has fired, so
// what is left beyond the scheduler's own is the kill grace).
func (h *harness) graceTimers() int {
	h.clock.mu.Lock()
	defer h.clock.mu.Unlock()
	n := 0
	for _, tm := range h.clock.timers {
		if !tm.done && tm.at.Equal(h.clock.now.Add(5*time.Second)) {
			n++
		}
	}
	return n
}

func TestLeftoverChildrenKilledAtExit(t *testing.T) {
	h := newHarness(t, nil)
	manual(t, h, "bg", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000 & echo started"]}]}`)
	r := h.waitRuns("bg", 1)[0]
	if r.State != StateSucceeded || r.Tasks[0].Output != "started\n" {
		t.Fatalf("run = %s, output %q", r.State, r.Tasks[0].Output)
	}
	if alive := procgroup.Alive(r.Tasks[0].PID); len(alive) > 0 {
		t.Errorf("background child %v outlived its task", alive)
	}
}

func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		h := newHarness(t, nil)
		manual(t, h, "as", `{"trigger": {}, "tasks": [{"command": "/usr/bin/id", "runAs": "root"}]}`)
		r := h.waitRuns("as", 1)[0]
		if r.State != StateFailed || !strings.Contains(r.Tasks[0].Error, ErrCannotSwitchUser.Error()) {
			t.Errorf("runAs root as non-root: %s %q, want a clear refusal", r.State, r.Tasks[0].Error)
		}
		t.Skip("not root: dropping privileges to another user cannot be tested (the refusal was)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this machine: runAs cannot be tested")
	}
	gids, _ := u.GroupIds()
	h := newHarness(t, nil)
	manual(t, h, "as", `{"trigger": {}, "tasks": [
		{"command": "/usr/bin/id", "args": ["-u"], "runAs": "nobody"},
		{"command": "/usr/bin/id", "args": ["-g"], "runAs": "nobody"},
		{"command": "/usr/bin/id", "args": ["-G"], "runAs": "nobody"},
		{"command": "/bin/sh", "args": ["-c", "echo $HOME $USER; pwd"], "runAs": "nobody"}]}`)
	r := h.waitRuns("as", 1)[0]
	if r.State != StateSucceeded {
		t.Fatalf("run %s: %s %+v", r.State, r.Error, r.Tasks)
	}
	want := []string{u.Uid, u.Gid, strings.Join(gids, " ")}
	for i, w := range want {
		if got := strings.TrimSpace(r.Tasks[i].Output); got != w {
			t.Errorf("task %d output %q, want %q", i, got, w)
		}
	}
	home := u.HomeDir
	if st, err := os.Stat(home); err != nil || !st.IsDir() {
		home = "/"
	}
	if got, want := r.Tasks[3].Output, u.HomeDir+" nobody\n"+home+"\n"; got != want {
		t.Errorf("environment and directory = %q, want %q", got, want)
	}

	manual(t, h, "ghost", `{"trigger": {}, "tasks": [{"command": "/usr/bin/id", "runAs": "no-such-user-here"}]}`)
	g := h.waitRuns("ghost", 1)[0]
	if g.State != StateFailed || !strings.Contains(g.Tasks[0].Error, ErrNoSuchUser.Error()) || g.Tasks[0].PID != 0 {
		t.Errorf("unknown user: %s %q pid %d, want refused before start", g.State, g.Tasks[0].Error, g.Tasks[0].PID)
	}
}

func TestHugeOutputIsCapped(t *testing.T) {
	h := newHarness(t, nil)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	const size = 50 << 20
	manual(t, h, "loud", fmt.Sprintf(`{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "yes 0123456789abcdef | head -c %d; echo done >&2"]}]}`, size))
	r := h.waitRuns("loud", 1)[0]
	close(stop)
	<-sampled
	task := r.Tasks[0]
	if r.State != StateSucceeded || len(task.Output) != MaxOutput || task.OutputTruncatedBytes != size+5-MaxOutput {
		t.Errorf("state %s, kept %d bytes, dropped %d; want %d kept, %d dropped", r.State, len(task.Output), task.OutputTruncatedBytes, MaxOutput, size+5-MaxOutput)
	}
	if !strings.HasPrefix(task.Output, "0123456789abcdef\n0123") {
		t.Errorf("output starts %q", task.Output[:32])
	}
	grew := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("heap in use: %d KiB before, peak %d KiB while 50 MiB went through", before.HeapInuse>>10, peak.Load()>>10)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB while the task printed 50 MiB; output must not be buffered", grew>>20)
	}
}

func TestConcurrency(t *testing.T) {
	long := `"tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000 & sleep 1000"]}]`
	t.Run("forbid", func(t *testing.T) {
		h := newHarness(t, nil)
		first := manual(t, h, "f", `{"concurrency": "forbid", "trigger": {}, `+long+`}`)
		h.waitPID(first, 0)
		if _, err := h.s.RunNow("f", ""); !errors.Is(err, ErrBusy) {
			t.Errorf("second run = %v, want ErrBusy", err)
		}
		if st := h.s.List()[0]; st.State != JobRunning || len(st.ActiveRuns) != 1 {
			t.Errorf("status = %+v, want one run going", st)
		}
	})
	t.Run("replace", func(t *testing.T) {
		h := newHarness(t, nil)
		first := manual(t, h, "r", `{"concurrency": "replace", "trigger": {}, `+long+`}`)
		pid := h.waitPID(first, 0)
		second, err := h.s.RunNow("r", "")
		if err != nil {
			t.Fatal(err)
		}
		h.waitPID(second, 0)
		if alive := procgroup.Alive(pid); len(alive) > 0 {
			t.Errorf("the replaced run's processes %v still run beside the new one", alive)
		}
		old, ok, _ := h.s.Lookup(first)
		if !ok || old.State != StateStopped || !strings.Contains(old.Error, "replaced") {
			t.Errorf("replaced run = %+v, want stopped (replaced)", old)
		}
	})
	t.Run("allow", func(t *testing.T) {
		h := newHarness(t, nil)
		first := manual(t, h, "a", `{"concurrency": "allow", "trigger": {}, `+long+`}`)
		second, err := h.s.RunNow("a", "")
		if err != nil {
			t.Fatal(err)
		}
		p1, p2 := h.waitPID(first, 0), h.waitPID(second, 0)
		if len(procgroup.Alive(p1)) == 0 || len(procgroup.Alive(p2)) == 0 {
			t.Error("both runs should be going at once")
		}
		if st := h.s.List()[0]; len(st.ActiveRuns) != 2 {
			t.Errorf("active runs = %v, want 2", st.ActiveRuns)
		}
	})
}

func TestBadCommands(t *testing.T) {
	h := newHarness(t, nil)
	noexec := filepath.Join(h.root, "script.sh")
	os.WriteFile(noexec, []byte("#!/bin/sh\necho hi\n"), 0o640)
	cases := []struct{ id, command, want string }{
		{"missing", "/no/such/command", ErrCommandMissing.Error()},
		{"noexec", noexec, ErrNotExecutable.Error()},
		{"folder", "/tmp", ErrNotExecutable.Error()},
	}
	h.start()
	for _, c := range cases {
		manual(t, h, c.id, `{"trigger": {}, "tasks": [{"command": "`+c.command+`"}]}`)
		r := h.waitRuns(c.id, 1)[0]
		if r.State != StateFailed || !strings.Contains(r.Error, c.want) || !strings.Contains(r.Error, c.command) {
			t.Errorf("%s: run %s, error %q; want failed with %q naming the command", c.id, r.State, r.Error, c.want)
		}
	}
	// The scheduler carries on.
	manual(t, h, "fine", `{"trigger": {}, "tasks": [{"command": "/bin/true"}]}`)
	if r := h.waitRuns("fine", 1)[0]; r.State != StateSucceeded {
		t.Errorf("a good job after bad ones: %s", r.State)
	}
}

func TestTaskSequence(t *testing.T) {
	cases := []struct {
		name      string
		tasks     string
		wantState string
		wantTasks string // per task: s(ucceeded), f(ailed), -(skipped)
		wantExit  int
	}{
		{"all succeed", `{"command": "/bin/true"}, {"command": "/bin/true"}`, StateSucceeded, "ss", 0},
		{"failure stops the run", `{"command": "/bin/false"}, {"command": "/bin/true"}`, StateFailed, "f-", 1},
		{"continueOnError", `{"command": "/bin/false", "continueOnError": true}, {"command": "/bin/true"}`, StateSucceeded, "fs", 0},
		{"cleanup on failure", `{"command": "/bin/false"}, {"command": "/bin/true", "condition": "failure"}, {"command": "/bin/true"}, {"command": "/bin/true", "condition": "always"}`, StateFailed, "fs-s", 1},
		{"failure branch skipped on success", `{"command": "/bin/true"}, {"command": "/bin/false", "condition": "failure"}, {"command": "/bin/true", "condition": "success"}`, StateSucceeded, "s-s", 0},
		{"exit code kept", `{"command": "/bin/sh", "args": ["-c", "exit 7"]}`, StateFailed, "f", 7},
	}
	h := newHarness(t, nil)
	h.start()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("seq-%d", i)
			manual(t, h, id, `{"trigger": {}, "tasks": [`+c.tasks+`]}`)
			r := h.waitRuns(id, 1)[0]
			var got strings.Builder
			for _, tr := range r.Tasks {
				got.WriteByte(map[string]byte{TaskSucceeded: 's', TaskFailed: 'f', TaskSkipped: '-'}[tr.State])
			}
			if r.State != c.wantState || got.String() != c.wantTasks || r.ExitCode == nil || *r.ExitCode != c.wantExit {
				t.Errorf("run %s, tasks %s, exit %v; want %s, %s, %d", r.State, got.String(), r.ExitCode, c.wantState, c.wantTasks, c.wantExit)
			}
		})
	}
}

func TestEnvCannotOverrideWarden(t *testing.T) {
	h := newHarness(t, nil)
	runID := manual(t, h, "env", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "echo $FOO $WARDEN_JOB_RUN; env | grep -c SECRET_OF_AGENT"], "env": {"FOO": "bar", "WARDEN_JOB_RUN": "forged"}}]}`)
	os.Setenv("SECRET_OF_AGENT", "x") // set after the run was queued; the clean env never has it anyway
	defer os.Unsetenv("SECRET_OF_AGENT")
	r := h.waitRuns("env", 1)[0]
	if got := h.output(r, 0); !strings.HasPrefix(got, "bar "+runID+"\n0") {
		t.Errorf("output = %q, want FOO set, WARDEN_JOB_RUN not forgeable, agent env absent", got)
	}
}
