package procgroup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoCgroups says cgroup v2 cannot be used here (not mounted, or not
// writable); callers fall back to process groups and their orphan sweep.
var ErrNoCgroups = errors.New("cgroup v2 not available for writing")

// Cgroups is a folder of the cgroup v2 hierarchy that holds one cgroup per
// contained process tree (a job task, a plugin process). A process cannot
// leave its cgroup by calling setsid or double-forking, as it can leave a
// process group, so killing the cgroup ends everything it started. The
// folder sits below the agent's own cgroup, so a service manager that
// ends the agent's cgroup (systemd's KillMode=control-group) ends the
// contained processes with it.
type Cgroups struct {
	dir string
}

// OpenCgroups creates (or reuses) the folder for the agent whose root is
// root: "warden-" and a digest of root, below the calling process's own
// cgroup, so agents on different roots never meet. It fails with
// ErrNoCgroups when there is no writable cgroup v2 hierarchy.
func OpenCgroups(root string) (*Cgroups, error) {
	own, err := ownCgroup()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(own, "warden-"+hex.EncodeToString(sum[:6]))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
	}
	// A leaf created and removed proves the folder is usable (a read-only
	// or delegated-elsewhere hierarchy fails here, not at the first job).
	probe := filepath.Join(dir, "probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
	}
	if err := os.Remove(probe); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
	}
	removeEmptySiblings(own, dir)
	return &Cgroups{dir: dir}, nil
}

// removeEmptySiblings removes the empty warden-* folders that agents
// killed on other roots left beside ours. The kernel removes a cgroup only
// when it has neither processes nor child cgroups, so a folder in use is
// never removed; an agent whose folder is empty between two tasks creates
// it again (New).
func removeEmptySiblings(own, mine string) {
	ents, _ := os.ReadDir(own)
	for _, e := range ents {
		p := filepath.Join(own, e.Name())
		if e.IsDir() && strings.HasPrefix(e.Name(), "warden-") && p != mine {
			os.Remove(p) // EBUSY when in use
		}
	}
}

// Dir is the folder's path.
func (c *Cgroups) Dir() string { return c.dir }

// Close removes the folder if it is empty (nothing contained is left).
func (c *Cgroups) Close() error {
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ownCgroup finds the cgroup v2 mount and this process's cgroup in it.
func ownCgroup() (string, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			if strings.Contains(rest, "..") {
				return "", fmt.Errorf("own cgroup %q", rest)
			}
			return filepath.Join(mount, rest), nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// cgroup2Mount finds where cgroup v2 is mounted: /sys/fs/cgroup on a
// unified system, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) >= 5 && f[3] == "/" {
			return f[4], nil
		}
	}
	return "", errors.New("cgroup2 is not mounted")
}

// Cgroup is one contained process tree.
type Cgroup struct {
	path string
	fd   int
}

// New creates the cgroup name (a single path component). Start the
// process into it with SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}:
// the kernel places the child there at clone, before it can fork.
func (c *Cgroups) New(name string) (*Cgroup, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroup name %q", name)
	}
	p := filepath.Join(c.dir, name)
	// The folder may have been removed while empty (removeEmptySiblings
	// of another agent): make it again.
	if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(p)
		return nil, err
	}
	return &Cgroup{path: p, fd: fd}, nil
}

// FD is the cgroup's directory descriptor, for CLONE_INTO_CGROUP.
func (g *Cgroup) FD() int { return g.fd }

// Name is the cgroup's name in its folder.
func (g *Cgroup) Name() string { return filepath.Base(g.path) }

// Procs lists the processes in the cgroup.
func (g *Cgroup) Procs() []int { return procsOf(g.path) }

// Kill sends SIGKILL to every process in the cgroup, descendants that
// left the process group included.
func (g *Cgroup) Kill() { killCgroup(g.path) }

// Remove kills what is left in the cgroup, waits up to d for it to be
// empty and removes it. It returns the processes still alive then.
func (g *Cgroup) Remove(d time.Duration) []int {
	left := removeCgroup(g.path, d)
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	return left
}

// Leftover is a cgroup an earlier agent run left in the folder, with the
// processes still in it.
type Leftover struct {
	Name  string
	Procs []int
}

// Leftovers lists the cgroups in the folder whose names start with prefix
// (an earlier agent run died without removing them).
func (c *Cgroups) Leftovers(prefix string) []Leftover {
	ents, _ := os.ReadDir(c.dir)
	var out []Leftover
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			out = append(out, Leftover{Name: e.Name(), Procs: procsOf(filepath.Join(c.dir, e.Name()))})
		}
	}
	return out
}

// EndLeftover kills and removes the leftover cgroup name; it returns the
// processes still alive after d.
func (c *Cgroups) EndLeftover(name string, d time.Duration) []int {
	return removeCgroup(filepath.Join(c.dir, filepath.Base(name)), d)
}

func procsOf(path string) []int {
	data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range bytes.Fields(data) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// killCgroup uses cgroup.kill (Linux 5.14) and, where it is missing, kills
// the listed processes one by one (a fork between the read and the kill is
// caught by the next round of removeCgroup).
func killCgroup(path string) {
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	for _, pid := range procsOf(path) {
		unix.Kill(pid, unix.SIGKILL)
	}
}

func removeCgroup(path string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		killCgroup(path)
		err := os.Remove(path) // EBUSY while a process (a zombie too) is in it
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return procsOf(path)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
