package procgroup

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// A shell and its child in their own group: both alive, then, killed, gone
// (the shell a zombie until it is reaped, which does not count).
func TestAliveAndWaitGone(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 1000 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for len(Alive(pgid)) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("group members %v, want the shell and its sleep", Alive(pgid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := Alive(pgid); !slices.Contains(m, pgid) {
		t.Fatalf("members %v lack the leader %d", m, pgid)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: the shell stays a zombie, and a zombie is gone.
	if left := WaitGone(pgid, 10*time.Second); len(left) != 0 {
		t.Fatalf("left after SIGKILL: %v", left)
	}
	if m := Alive(pgid); m != nil {
		t.Errorf("Alive after WaitGone: %v", m)
	}
}

func TestNoSuchGroup(t *testing.T) {
	if m := Alive(1 << 22); m != nil { // above pid_max's default
		t.Errorf("Alive of an unused group id: %v", m)
	}
	start := time.Now()
	if left := WaitGone(1<<22, time.Minute); left != nil || time.Since(start) > 10*time.Second {
		t.Errorf("WaitGone of an unused group: %v after %s", left, time.Since(start))
	}
}
