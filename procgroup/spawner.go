package procgroup

import (
	"os/exec"
	"runtime"
	"sync"
)

// Spawner starts processes from one goroutine locked to its OS thread for
// the Spawner's whole life: Pdeathsig fires when the thread that forked a
// child ends, not the process, so the fork must come from a thread that
// does not end before the agent does (a Go runtime thread may otherwise be
// one that a locked goroutine ends).
type Spawner struct {
	reqs chan spawnReq
	done chan struct{}
	once sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// NewSpawner starts the spawning thread; Stop ends it.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer close(s.done)
		defer runtime.UnlockOSThread() // every child is gone by now
		for r := range s.reqs {
			r.err <- r.cmd.Start()
		}
	}()
	return s
}

// Start starts cmd from the spawning thread.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	ch := make(chan error, 1)
	s.reqs <- spawnReq{cmd, ch}
	return <-ch
}

// Stop ends the spawning thread once no Start is in progress. Call it
// after every child started through it has exited.
func (s *Spawner) Stop() {
	s.once.Do(func() { close(s.reqs) })
	<-s.done
}
