package elevate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// forwardable are the signals a client may pass on to its command.
var forwardable = map[int]bool{
	int(unix.SIGINT): true, int(unix.SIGQUIT): true, int(unix.SIGTERM): true, int(unix.SIGHUP): true,
	int(unix.SIGTSTP): true, int(unix.SIGCONT): true, int(unix.SIGWINCH): true,
}

// hangupGrace is how long a command may outlive its client after SIGHUP
// before it is killed; stopGrace is the same when the agent stops (which
// must be done within 5 s).
const (
	hangupGrace = 5 * time.Second
	stopGrace   = 2 * time.Second
)

// process is an elevated command that runs.
type process struct {
	cmd   *exec.Cmd
	start time.Time
}

// launch starts x as root in its own session with the given stdio, and
// calls admit with its pid while it is held stopped before the first
// instruction of the program (ptrace stop at exec). The command runs only
// if admit returns nil (the ELEVATION_STARTED event is stored); otherwise
// it is killed before it ran and admit's error is returned.
func launch(x Executable, argv, env []string, dir string, stdio []*os.File, admit func(pid int) error) (*process, error) {
	cmd := &exec.Cmd{Path: x.Path, Args: argv, Env: env, Dir: dir,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Ptrace: true}}
	if len(stdio) == 3 {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	}
	// ptrace requests must come from the thread that is the tracer: the
	// one that forked.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", x.Path, err)
	}
	pid := cmd.Process.Pid
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				return nil, fmt.Errorf("wait for %s to stop at exec: %w", x.Path, err)
			}
			break
		}
	}
	if !ws.Stopped() {
		cmd.Wait()
		return nil, fmt.Errorf("%s ended before it started (status %v)", x.Path, ws)
	}
	if err := admit(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		unix.PtraceDetach(pid)
		cmd.Wait()
		return nil, err
	}
	if err := unix.PtraceDetach(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		cmd.Wait()
		return nil, fmt.Errorf("release %s: %w", x.Path, err)
	}
	return &process{cmd: cmd, start: time.Now()}, nil
}

// signal sends sig to the command's process group.
func (p *process) signal(sig int) {
	unix.Kill(-p.cmd.Process.Pid, unix.Signal(sig))
}

// hangup is what happens when the client goes away: SIGHUP (and SIGCONT,
// so a stopped command sees it) to the group, SIGKILL if it outlives the
// grace period. done is closed when the command was reaped.
func (p *process) hangup(done <-chan struct{}, grace time.Duration) {
	p.signal(int(unix.SIGHUP))
	p.signal(int(unix.SIGCONT))
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.signal(int(unix.SIGKILL))
	}
}

// exitStatus is the command's end as `warden elevate` reports it: the exit
// code, or 128+N and N for a signal.
func exitStatus(err error, ps *os.ProcessState) (code, sig int) {
	if ps == nil {
		return 1, 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ps.ExitCode(), 0
}
