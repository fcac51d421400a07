// Package procgroup answers whether anything of a process group is still
// alive, and waits for a group it has just killed to be gone: kill(2)
// returns before the processes have died, and a supervisor that reports a
// process stopped, or starts its successor, must not be believed before
// the old group has actually left. Stat is the one reader of
// /proc/PID/stat: the plugin supervisor also uses it to recognise its own
// processes by start time.
package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Alive lists the live processes of process group pgid. Zombies (dead, not
// yet reaped by their parent, perhaps a slow init) do not count.
func Alive(pgid int) []int {
	// Fast path: no process at all in the group, zombies included.
	if err := unix.Kill(-pgid, 0); errors.Is(err, unix.ESRCH) {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := Stat(pid); err == nil && st.Live() && st.Pgrp == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// WaitGone waits up to d until group pgid has no live process, and returns
// those still alive then (a process in uninterruptible sleep dies only
// when it wakes). It reads /proc every few milliseconds, so it is for a
// group that was just killed, not for watching one.
func WaitGone(pgid int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := Alive(pgid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Info is what /proc/PID/stat says of a process.
type Info struct {
	State      byte   // R, S, D, Z, ...
	Pgrp       int    // process group
	StartTicks uint64 // start time, clock ticks after boot: with the pid, it names one process
}

// Live reports whether the process has not died (a zombie has).
func (i Info) Live() bool { return i.State != 'Z' && i.State != 'X' }

// Stat reads /proc/PID/stat.
func Stat(pid int) (Info, error) {
	var pi Info
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return pi, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return pi, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return pi, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	// f[0] is field 3 (state): pgrp is field 5, starttime field 22.
	pi.State = f[0][0]
	if pi.Pgrp, err = strconv.Atoi(f[2]); err != nil {
		return pi, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	if pi.StartTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return pi, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return pi, nil
}

// BootID identifies this boot of the kernel; a process recorded under
// another boot id is not one of ours. It is "unknown-..." (matching no
// record) when the kernel does not say.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	return strings.TrimSpace(string(b))
}
