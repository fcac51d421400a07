package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
)

// pinCPUs puts every server process (all its threads; threads made later
// inherit the mask) on the last CPU and this client on the others, so
// each server has one core to itself and the client never takes its
// time. Other processes on the machine still run anywhere.
func pinCPUs(servers []*server) {
	n := runtime.NumCPU()
	if n < 2 {
		fail("--pin needs 2 CPUs or more")
	}
	last := strconv.Itoa(n - 1)
	for _, s := range servers {
		taskset(last, s.pid())
	}
	taskset(fmt.Sprintf("0-%d", n-2), os.Getpid())
}

func taskset(cpus string, pid int) {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		fail("taskset %s %d: %v: %s", cpus, pid, err, out)
	}
}
