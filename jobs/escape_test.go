package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"warden/audit"
	"warden/procgroup"
	"warden/schema"
	"warden/state"
)

// TestMain lets this test binary act as a job runner in a child process
// (WARDEN_JOBS_RUNNER=ROOT), so a test can kill -9 it like an agent.
func TestMain(m *testing.M) {
	if root := os.Getenv("WARDEN_JOBS_RUNNER"); root != "" {
		runner(root, os.Getenv("WARDEN_JOBS_CGROUPS") != "")
		return
	}
	os.Exit(m.Run())
}

// escapeTask starts a child in its group, a child that leaves the group
// (setsid) and writes their pids, then waits. It first gives the runner a
// moment to record the task's process group (written just after the
// start; a kill in that window leaves only the cgroup to find it).
const escapeTask = `sleep 0.5; sleep 1000 & echo $! >> "$WARDEN_JOB_DIR/pids"; setsid sleep 1000 & echo $! >> "$WARDEN_JOB_DIR/pids"; echo $$ >> "$WARDEN_JOB_DIR/pids"; wait`

// runner runs one job in a scheduler and blocks until killed.
func runner(root string, cgroups bool) {
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o := Options{Root: root, Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if cgroups {
		if o.Cgroups, err = procgroup.OpenCgroups(root); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	doc, err := schema.Validate("jobs/escape.json", []byte(fmt.Sprintf(
		`{"kind": "Job", "id": "escape", "spec": {"trigger": {}, "concurrency": "forbid", "tasks": [{"command": "/bin/sh", "args": ["-c", %q], "timeoutSeconds": 60}]}}`,
		escapeTask)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := st.ApplyGeneration(state.Apply{Source: "local", Docs: []*schema.Document{doc}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go s.Run(context.Background())
	<-s.ready
	if _, err := s.RunNow("escape", "test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	select {}
}

// kill -9 of the agent (here a runner process) does not leave the job's
// processes running: the task leader dies with it (Pdeathsig), and the
// next start ends what the task started and audits it, before anything is
// scheduled. With cgroup v2 even the child that called setsid dies.
func TestJobProcessesDieWithTheAgent(t *testing.T) {
	for _, mode := range []string{"cgroup", "process group"} {
		t.Run(mode, func(t *testing.T) {
			root := t.TempDir()
			os.Mkdir(filepath.Join(root, "Jobs"), 0o750)
			var cg *procgroup.Cgroups
			if mode == "cgroup" {
				var err error
				if cg, err = procgroup.OpenCgroups(root); err != nil {
					t.Skipf("no writable cgroup v2 here: %v", err)
				}
				t.Cleanup(func() { cg.Close() })
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "WARDEN_JOBS_RUNNER="+root)
			if cg != nil {
				cmd.Env = append(cmd.Env, "WARDEN_JOBS_CGROUPS=1")
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			eventually(t, "the task to write its pids", func() bool {
				data, _ := os.ReadFile(filepath.Join(root, "Jobs", "escape", "pids"))
				pids = pids[:0]
				for _, f := range strings.Fields(string(data)) {
					n, _ := strconv.Atoi(f)
					pids = append(pids, n)
				}
				return len(pids) == 3
			})
			t.Cleanup(func() {
				for _, p := range pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
			})
			child, setsid, leader := pids[0], pids[1], pids[2]
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			eventually(t, "the task leader to die with the agent (Pdeathsig)", func() bool { return !alive(leader) })

			// The next start.
			st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			aw, _ := audit.NewWriter(st, audit.Options{})
			defer aw.Close()
			s, err := New(Options{Root: root, Store: st, Audit: aw, Cgroups: cg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			<-s.ready
			defer func() { cancel(); <-done }()
			if alive(child) {
				t.Errorf("the task's child %d survives the next start", child)
			}
			if cg != nil && alive(setsid) {
				t.Errorf("the task's setsid child %d survives the next start (cgroup mode)", setsid)
			}
			eventually(t, "a JOB_FINISHED (abandoned) event for the ended processes", func() bool {
				evs, _, _ := audit.Query(st, audit.Filter{Types: []string{audit.JobFinished}})
				for _, e := range evs {
					if e.Details["state"] == StateAbandoned && e.Details["pids"] != nil {
						return true
					}
				}
				return false
			})
			// concurrency forbid: the job runs again, with no survivor beside it.
			if _, err := s.RunNow("escape", "test"); err != nil {
				t.Fatalf("RunNow after the restart: %v", err)
			}
		})
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	st, err := procgroup.Stat(pid)
	return err == nil && st.Live()
}

// With a cgroup per task, a child that left the task's process group
// (setsid) ends with the task; the cgroup is removed.
func TestSetsidChildEndsWithTask(t *testing.T) {
	var cg *procgroup.Cgroups
	h := newHarness(t, func(o *Options) {
		var err error
		if cg, err = procgroup.OpenCgroups(o.Root); err != nil {
			t.Skipf("no writable cgroup v2 here: %v", err)
		}
		o.Cgroups = cg
	})
	t.Cleanup(func() { cg.Close() })
	runID := manual(t, h, "daemon", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "setsid sleep 1000 & echo $! > \"$WARDEN_JOB_DIR/pid\""]}]}`)
	r := h.waitRuns("daemon", 1)[0]
	if r.ID != runID || r.State != StateSucceeded {
		t.Fatalf("run %+v", r)
	}
	data, _ := os.ReadFile(filepath.Join(h.root, "Jobs", "daemon", "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid == 0 {
		t.Fatalf("no pid written: %q", data)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if alive(pid) {
		t.Errorf("the setsid child %d outlives its task", pid)
	}
	if left := cg.Leftovers(cgroupPrefix); len(left) != 0 {
		t.Errorf("cgroups left: %v", left)
	}
}
