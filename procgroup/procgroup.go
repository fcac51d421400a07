// Package procgroup answers whether anything of a process group is still
// alive, and waits for a group it has just killed to be gone: kill(2)
// returns before the processes have died, and a supervisor that reports a
// process stopped, or starts its successor, must not be believed before
// the old group has actually left.
package procgroup

import (
	"bytes"
	"errors"
	"os"
	"strconv"
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
		if g, live := stat(pid); live && g == pgid {
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

// stat reads the process group and liveness of pid from /proc/PID/stat.
func stat(pid int) (pgid int, live bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then: state, ppid, pgrp.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, false
	}
	if g, err := strconv.Atoi(string(f[2])); err == nil {
		return g, f[0][0] != 'Z' && f[0][0] != 'X'
	}
	return 0, false
}
