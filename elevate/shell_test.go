package elevate_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"warden/audit"
)

// TestInteractiveRootShell drives `warden elevate -- /bin/sh` as a test
// user inside tmux: a real terminal, typed keys, the screen read back.
func TestInteractiveRootShell(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed (.ci/packages.d lists it)")
	}
	a := startAgent(t)
	u := newUser(t, "tty")
	a.policy(t, "el-shell", `{"name": "shell", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow"], "filters": {"users": ["wdn-elevate-tty"], "applications": [{"path": "/usr/bin/dash"}]}}`)
	sock := fmt.Sprintf("%s/tmux.sock", openDir(t))
	session := "wdn-elevate-tty"
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v %s", args, err, out)
		}
		return string(out)
	}
	shell := fmt.Sprintf("setpriv --reuid %d --regid %d --init-groups env -i TERM=xterm PATH=/usr/bin:/bin %s --root %s elevate -- /bin/sh; echo client-exit=$?; sleep 30",
		u.UID, u.GID, wardenBin, a.root)
	tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", shell)
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	a.waitEvent(t, audit.ElevationStarted, func(e audit.Event) bool { return e.UserInfo.User == u.Name })
	time.Sleep(200 * time.Millisecond)
	tmux("send-keys", "-t", session, "echo uid=$(id -u); exit 3", "Enter")
	deadline := time.Now().Add(10 * time.Second)
	for {
		screen := tmux("capture-pane", "-p", "-t", session)
		if strings.Contains(screen, "client-exit=") {
			if !strings.Contains(screen, "uid=0") || !strings.Contains(screen, "client-exit=3") {
				t.Fatalf("screen:\n%s\nwant uid=0 from the root shell and the client exiting 3", screen)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell did not finish within 10 s; screen:\n%s", screen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
