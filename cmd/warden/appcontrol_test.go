package main

import (
	"context"
	"errors"
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

	"warden/testuser"
)

// TestAppControlAgentKilled runs the real agent with an ApplicationControl
// deny on a tmpfs the test mounts (never a shared filesystem), keeps execs
// going on it, and kills the agent with SIGKILL: the kernel must drop the
// marks and let every exec through, none left waiting.
func TestAppControlAgentKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events, a tmpfs, a test user")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("wdn-appctl", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=8m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	prog := filepath.Join(mnt, "true")
	in, _ := os.Open("/usr/bin/true")
	out, _ := os.OpenFile(prog, os.O_WRONLY|os.O_CREATE, 0o755)
	io.Copy(out, in)
	in.Close()
	out.Close()

	name := "wdn-appctl-k"
	asUser := testuser.New(t, name, testuser.Options{NoUserGroup: true}).Credential()
	run := func(ctx context.Context, cred *syscall.Credential) int {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", prog)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			return -1
		}
		return 0
	}

	docs := filepath.Join(dir, "docs")
	os.MkdirAll(filepath.Join(docs, "policies"), 0o755)
	os.WriteFile(filepath.Join(docs, "settings.json"), []byte(`{"kind": "Settings", "id": "agent", "spec": {"applicationControl": {"mounts": ["`+mnt+`"]}}}`), 0o644)
	os.WriteFile(filepath.Join(docs, "policies", "no-true.json"), []byte(`{"kind": "Policy", "id": "no-true", "spec": {"name": "no true",
		"type": "ApplicationControl", "status": "enforce", "controls": ["deny"],
		"filters": {"users": ["`+name+`"], "applications": [{"path": "`+prog+`"}]}}}`), 0o644)
	keys := filepath.Join(dir, "keys")
	if out, code := warden(t, "bundle", "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	b := filepath.Join(dir, "b1.tar.gz")
	if out, code := warden(t, "bundle", "build", "--in", docs, "--key", filepath.Join(keys, "bundle.key"), "--version", "1", "--out", b); code != 0 {
		t.Fatalf("build: %s", out)
	}
	root := filepath.Join(dir, "root")
	trustKey(t, root, keys)
	os.Chmod(root, 0o755)
	agent := startAgent(t, root)
	os.Rename(b, filepath.Join(root, "inbox", "b1.tar.gz"))
	waitFor(t, func() bool { return run(context.Background(), asUser) == 126 })
	if code := run(context.Background(), nil); code != 0 {
		t.Fatalf("root: exit %d; want 0", code)
	}

	// Execs in flight, allowed (root) and denied (the user), while the
	// agent dies.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var hung int
	for i := range 4 {
		cred := asUser
		if i%2 == 0 {
			cred = nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if run(ctx, cred) == -1 {
					mu.Lock()
					hung++
					mu.Unlock()
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	agent.Wait()
	killed := time.Now()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if hung > 0 || ctx.Err() != nil {
		t.Fatalf("%d exec loops hung after the agent was killed", hung)
	}
	if code := run(context.Background(), asUser); code != 0 {
		t.Fatalf("after SIGKILL of the agent the user's exec exits %d; want 0 (marks released)", code)
	}
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("execs took %v to drain after the kill", d)
	}
}

// TestValidateAllowListWarning: an allow list that leaves out /usr/bin and
// /usr/sbin validates (exit 0) with a warning for each.
func TestValidateAllowListWarning(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"kind": "Settings", "id": "agent", "spec": {"applicationControl": {"default": "deny"}}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "bin.json"), []byte(`{"kind": "Policy", "id": "bin", "spec": {"name": "bin",
		"type": "ApplicationControl", "status": "enforce", "controls": ["allow"], "filters": {"folders": ["/usr/bin"]}}}`), 0o644)
	out, code := warden(t, "validate", dir)
	if code != 0 || !strings.Contains(out, "warning: ") || !strings.Contains(out, "/usr/sbin") || strings.Contains(out, "programs in /usr/bin\n") {
		t.Fatalf("validate: exit %d\n%s\nwant 0 and one warning, for /usr/sbin", code, out)
	}
}
