package agent

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"warden/procgroup"
)

// openCgroups decides how job tasks and plugin processes are contained:
// a cgroup v2 each where the hierarchy is writable (nothing they start
// escapes, setsid included), else their process group, Pdeathsig and the
// sweep at the next start (docs/jobs.md, "Processes").
func (a *agent) openCgroups() {
	cg, err := procgroup.OpenCgroups(a.opts.Root)
	if err != nil {
		a.log.Warn("cgroup v2 not writable: job and plugin processes are contained by process group only (a child that calls setsid can escape)", "err", err)
		return
	}
	a.cgroups = cg
	a.log.Info("job and plugin processes run in their own cgroups", "path", cg.Dir())
}

// closeOnExecInherited marks every descriptor above stderr close-on-exec:
// whatever the agent inherited from whoever started it (a shell's fd 10, a
// service manager's fd 251) stays usable by the agent but never reaches a
// job task or a plugin, which get exactly stdin, stdout, stderr and the
// descriptors they are handed (a plugin's credentials on fd 3). Go opens
// its own descriptors close-on-exec already.
func closeOnExecInherited() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Before Linux 5.11: one by one.
	ents, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close-on-exec: %w (and %v)", err, rerr)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC) // fails only for the fd ReadDir used, already closed
	}
	return nil
}
