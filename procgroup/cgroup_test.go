package procgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func openOrSkip(t *testing.T, root string) *Cgroups {
	t.Helper()
	c, err := OpenCgroups(root)
	if errors.Is(err, ErrNoCgroups) {
		t.Skipf("no writable cgroup v2 here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A process in a cgroup, and one it starts with setsid, both end with the
// cgroup; the cgroup is gone after Remove.
func TestCgroupKillsWhatLeftTheGroup(t *testing.T) {
	c := openOrSkip(t, t.TempDir())
	g, err := c.New("job-test_run_0")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "setsid sleep 1000 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, UseCgroupFD: true, CgroupFD: g.FD()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.Procs()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("cgroup holds %v; want the shell and its setsid child", g.Procs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	procs := g.Procs()
	if left := g.Remove(5 * time.Second); len(left) != 0 {
		t.Fatalf("left after Remove: %v", left)
	}
	cmd.Wait()
	for _, p := range procs {
		if st, err := Stat(p); err == nil && st.Live() {
			t.Errorf("process %d of the cgroup is alive", p)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "job-test_run_0")); !os.IsNotExist(err) {
		t.Errorf("cgroup still there: %v", err)
	}
}

// Empty folders that killed agents left beside ours are removed; one in
// use is not, and an agent whose empty folder was removed makes it again.
func TestEmptySiblingFoldersRemoved(t *testing.T) {
	a := openOrSkip(t, t.TempDir())
	inUse := openOrSkip(t, t.TempDir())
	g, err := inUse.New("plugin-x-1")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove(time.Second)
	empty := openOrSkip(t, t.TempDir()) // its agent "killed": nothing in it
	b := openOrSkip(t, t.TempDir())
	if _, err := os.Stat(empty.Dir()); !os.IsNotExist(err) {
		t.Errorf("empty sibling %s not removed: %v", empty.Dir(), err)
	}
	if _, err := os.Stat(inUse.Dir()); err != nil {
		t.Errorf("sibling in use removed: %v", err)
	}
	// a's folder was empty too and went; its next cgroup brings it back.
	ga, err := a.New("job-x_y_0")
	if err != nil {
		t.Fatalf("New after the folder was removed: %v", err)
	}
	ga.Remove(time.Second)
	_ = b
}
