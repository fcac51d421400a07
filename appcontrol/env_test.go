package appcontrol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/schema"
	"warden/state"
	"warden/testuser"
)

// The tests mark only a tmpfs they mount themselves: a bug cannot stop
// programs anywhere else on the machine, where others run their tests.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("application control needs root (fanotify permission events, mounts, test users)")
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		t.Skipf("fanotify permission events unavailable here: %v", err)
	}
	unix.Close(fd)
}

// mountTmpfs mounts a small tmpfs, copies /usr/bin/true into it as
// "true", and unmounts it when the test ends.
func mountTmpfs(t *testing.T, sizeMB int) (mnt, prog string) {
	t.Helper()
	dir := t.TempDir()
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test users must reach the mount: open the test's own folders.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("wdn-appctl", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%dm,mode=0755", sizeMB)); err != nil {
		t.Skipf("cannot mount a tmpfs for the test: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	prog = filepath.Join(mnt, "true")
	copyFile(t, "/usr/bin/true", prog, 0)
	return mnt, prog
}

// copyFile copies src to dst (0755), padded with pad zero bytes.
func copyFile(t *testing.T, src, dst string, pad int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if pad > 0 {
		if _, err := io.CopyN(out, zeros{}, pad); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// testUser is a user made for the test, removed after.
type testUser = testuser.User

func addUser(t *testing.T, suffix string) testUser {
	t.Helper()
	return testuser.New(t, "wdn-appctl-"+suffix, testuser.Options{NoUserGroup: true})
}

// run runs prog through /bin/sh as u (nil: root) and returns the shell's
// exit code and output. The shell, not this test process, execs prog:
// children of the process running the controller are its own, which it
// lets run.
func run(t *testing.T, u *testUser, prog string) (int, string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", prog)
	cmd.Dir = "/"
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("run %s: %v", prog, err)
	return 0, ""
}

// fixture is a store, an audit writer and a running controller.
type fixture struct {
	store *state.Store
	aw    *audit.Writer
	c     *Controller
	root  string
	gen   int64

	mu       sync.Mutex
	notified []string // payloads of monitor-notify notifications
}

func start(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "store"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	aw, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aw.Close)
	f := &fixture{store: st, aw: aw, root: filepath.Join(dir, "root")}
	f.c, err = New(Options{Root: f.root, Store: st, Audit: aw, Machine: "ws-test", Notify: func(p []byte) {
		f.mu.Lock()
		f.notified = append(f.notified, string(p))
		f.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("controller did not stop within 5 s")
		}
	})
	return f
}

// apply makes docs the next generation and waits until the controller
// runs it.
func (f *fixture) apply(t *testing.T, docs ...string) {
	t.Helper()
	var ds []*schema.Document
	for i, d := range docs {
		doc, err := schema.Validate(fmt.Sprintf("doc%d.json", i), []byte(d))
		if err != nil {
			t.Fatalf("validate %s: %v", d, err)
		}
		ds = append(ds, doc)
	}
	f.gen++
	m, err := f.store.ApplyGeneration(state.Apply{BundleVersion: f.gen, Source: "test", Docs: ds})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "generation applied", func() bool { return f.c.done.Load() == m.Generation })
}

// blocked returns the APPLICATION_BLOCKED events stored so far.
func (f *fixture) blocked(t *testing.T) []audit.Event {
	t.Helper()
	evs, _, err := audit.Query(f.store, audit.Filter{Types: []string{audit.ApplicationBlocked}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func settings(mnt string, extra string) string {
	return `{"kind": "Settings", "id": "agent", "spec": {"applicationControl": {"mounts": ["` + mnt + `"]` + extra + `}}}`
}

func acPolicy(id, status, filters string, control string) string {
	return `{"kind": "Policy", "id": "` + id + `", "spec": {"name": "` + id + `", "type": "ApplicationControl",
		"status": "` + status + `", "controls": ["` + control + `"], "filters": ` + filters + `}}`
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
