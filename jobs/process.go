package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"warden/procgroup"
	"warden/schema"
)

// Errors a task can fail with before its process starts.
var (
	ErrCommandMissing   = errors.New("command does not exist")
	ErrNotExecutable    = errors.New("command is not executable")
	ErrNoSuchUser       = errors.New("runAs user does not exist")
	ErrCannotSwitchUser = errors.New("the agent is not root and cannot run a task as another user")
	ErrWorkingDir       = errors.New("working directory is not below Jobs/<id>/")
)

// defaultPath is the PATH of every task. Tasks start with a clean
// environment (as systemd units do), not the agent's: the agent's
// environment is no business of a job's.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputDrain bounds how long the runner waits for a task's output pipe to
// close once the task's process group is gone. Only a process that left
// the group (setsid) and kept the pipe can hold it open. This is wall-clock
// time on purpose: it guards the agent, it is not a behaviour of a job.
const outputDrain = 2 * time.Second

// identity is who a task runs as.
type identity struct {
	cred *syscall.Credential // nil: as the agent
	home string
	name string
}

// lookupRunAs resolves runAs to a uid, gid and supplementary groups. It
// refuses a user that does not exist and, when the agent is not root, any
// user but the agent's own.
func lookupRunAs(name string) (identity, error) {
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return identity{home: "/"}, nil
		}
		return identity{home: u.HomeDir, name: u.Username}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return identity{}, fmt.Errorf("runAs %q: %w", name, ErrNoSuchUser)
		}
		return identity{}, fmt.Errorf("runAs %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return identity{}, fmt.Errorf("runAs %q: uid %q or gid %q is not numeric", name, u.Uid, u.Gid)
	}
	id := identity{home: u.HomeDir, name: u.Username}
	if euid := os.Geteuid(); euid != 0 {
		if int(uid) == euid {
			return id, nil // already that user: nothing to drop
		}
		return identity{}, fmt.Errorf("runAs %q (uid %d): the agent runs as uid %d: %w", name, uid, euid, ErrCannotSwitchUser)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return identity{}, fmt.Errorf("runAs %q: groups: %w", name, err)
	}
	groups := make([]uint32, 0, len(gids))
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	id.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	return id, nil
}

// checkCommand gives a clear error for a command that cannot run, before
// fork: missing, not a regular file, or without any execute bit.
func checkCommand(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrCommandMissing)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is a %s, not a file: %w", path, st.Mode().Type(), ErrNotExecutable)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s (mode %04o): %w", path, st.Mode().Perm(), ErrNotExecutable)
	}
	return nil
}

// workDir creates ROOT/Jobs/<id>/<rel> (0750) and checks that, symlinks
// resolved, it is still below ROOT/Jobs/<id>/.
func workDir(root, job, rel string) (string, error) {
	base := filepath.Join(root, "Jobs", job)
	dir := filepath.Join(base, rel)
	if err := os.MkdirAll(base, 0o750); err != nil {
		return "", fmt.Errorf("create working directory: %w", err)
	}
	// Create what is below base through an os.Root: a symlink planted in
	// the job's folder cannot make us create folders outside it.
	r, err := os.OpenRoot(base)
	if err != nil {
		return "", fmt.Errorf("create working directory: %w", err)
	}
	defer r.Close()
	if rel != "" && rel != "." {
		if err := r.MkdirAll(rel, 0o750); err != nil {
			return "", fmt.Errorf("%s: %w: %v", dir, ErrWorkingDir, err)
		}
	}
	realBase, err1 := filepath.EvalSymlinks(base)
	realDir, err2 := filepath.EvalSymlinks(dir)
	if err1 != nil || err2 != nil || (realDir != realBase && !strings.HasPrefix(realDir, realBase+"/")) {
		return "", fmt.Errorf("%s: %w", dir, ErrWorkingDir)
	}
	return dir, nil
}

// taskEnv is a task's environment: a clean base, the task's env, then the
// WARDEN_ variables, which a task's env cannot override.
func taskEnv(t *schema.Task, id identity, root, job, runID, trigger string) []string {
	env := []string{"PATH=" + defaultPath, "HOME=" + id.home, "USER=" + id.name, "LOGNAME=" + id.name}
	for k, v := range t.Env {
		if !strings.HasPrefix(k, "WARDEN_") {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "WARDEN_JOB_ID="+job, "WARDEN_JOB_RUN="+runID, "WARDEN_JOB_TRIGGER="+trigger,
		"WARDEN_ROOT="+root, "WARDEN_JOB_DIR="+filepath.Join(root, "Jobs", job))
}

// proc is one started task process, the leader of its own process group
// and, where cgroup v2 is writable, of its own cgroup.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	cg     *procgroup.Cgroup // nil: the process group is all there is
	out    *capped
	pipe   *os.File
	copied chan struct{}
	exited chan struct{}
}

// startProc starts cmd in a new process group (and in cg, when not nil)
// with stdout and stderr on one pipe, read into a capped buffer. The pipe
// is an *os.File, so exec starts no copying goroutine of its own that a
// grandchild holding the pipe could keep waiting. The child gets SIGKILL
// when the agent dies (Pdeathsig); what it started is ended by the cgroup
// (or, without one, by the sweep at the next start, jobs/leftovers.go).
// Only stdin (/dev/null), stdout and stderr reach it: every descriptor the
// agent opens is close-on-exec.
func startProc(sp *procgroup.Spawner, cmd *exec.Cmd, cred *syscall.Credential, cg *procgroup.Cgroup) (*proc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.FD()
	}
	if sp != nil {
		err = sp.Start(cmd)
	} else {
		err = cmd.Start()
	}
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, cg: cg, out: newCapped(MaxOutput), pipe: pr,
		copied: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(p.copied)
		buf := make([]byte, 32<<10)
		io.CopyBuffer(p.out, onlyReader{pr}, buf)
	}()
	go func() {
		defer close(p.exited)
		waitExited(p.pid)
	}()
	return p, nil
}

// onlyReader hides os.File's WriteTo, so io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

// waitExited blocks until pid has exited without reaping it: while the
// leader is a zombie its pid, which is the group id, cannot be reused, so
// signalling the group afterwards cannot hit a stranger.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// signalGroup sends sig to the whole process group of p, and SIGKILL to
// its whole cgroup.
func (p *proc) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-p.pid, sig)
	if sig == syscall.SIGKILL && p.cg != nil {
		p.cg.Kill()
	}
}

// terminate sends SIGTERM to the group, then SIGKILL when grace fires
// before the leader exits. It returns once the leader has exited and
// reports whether SIGKILL was needed.
func (p *proc) terminate(grace Timer) bool {
	defer grace.Stop()
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-grace.C():
		p.signalGroup(syscall.SIGKILL)
		<-p.exited
		return true
	}
}

// groupGoneWait bounds how long finish waits for a killed group to die.
const groupGoneWait = 2 * time.Second

// finish kills what the leader left behind in its group, waits until the
// group is gone (kill returns before the processes die; a run is not
// finished while anything of it lives), reaps the leader and collects the
// output. Until the leader is reaped its pid, the group id, stays ours.
// survivors lists what was still alive then (a process stuck in
// uninterruptible sleep outlives SIGKILL until it wakes).
func (p *proc) finish() (ps *os.ProcessState, survivors []int) {
	p.signalGroup(syscall.SIGKILL)
	survivors = procgroup.WaitGone(p.pid, groupGoneWait)
	if p.cg != nil {
		// What left the group (setsid, a daemon) is still in the cgroup.
		survivors = append(survivors, p.cg.Remove(groupGoneWait)...)
	}
	_ = p.cmd.Wait()
	t := time.NewTimer(outputDrain)
	select {
	case <-p.copied:
	case <-t.C:
		p.pipe.Close() // a process outside the group holds the pipe
		<-p.copied
	}
	t.Stop()
	p.pipe.Close()
	return p.cmd.ProcessState, survivors
}

// exitOf reads an exit code or a signal name from a wait status.
func exitOf(ps *os.ProcessState) (code *int, signal string) {
	if ps == nil {
		return nil, ""
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return nil, unix.SignalName(ws.Signal())
	}
	c := ps.ExitCode()
	return &c, ""
}

// stopCause is why a run was stopped from outside.
type stopCause struct {
	reason string
	agent  bool // the agent is stopping: the kill grace is short and wall-clock
}

func (c *stopCause) Error() string { return c.reason }

func causeOf(ctx context.Context) *stopCause {
	var c *stopCause
	if errors.As(context.Cause(ctx), &c) {
		return c
	}
	return &stopCause{reason: "stopped"}
}
