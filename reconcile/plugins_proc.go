package reconcile

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/procgroup"
)

// logDrain bounds how long an exited plugin's output may keep its pipes
// open: a child that left the process group (setsid) could hold them for
// ever.
const logDrain = time.Second

// proc is one running plugin process.
type proc struct {
	id         string
	pid        int
	cmd        *exec.Cmd
	serial     string
	sum        string // hex SHA-256 of the executable it runs
	docHash    [32]byte
	started    time.Time
	startTicks uint64            // /proc/PID/stat starttime, for the orphan check
	cg         *procgroup.Cgroup // nil: its process group is all there is
	renewAt    time.Time
	heartbeat  time.Duration // 0: none expected
	lastBeat   atomic.Int64  // unix nanoseconds of the last heartbeat

	// Guarded by the plugin's lock.
	stopReason string // why the supervisor is stopping it; "" while it should run
	hung       bool
	termAt     time.Time
	killed     bool

	sigMu  sync.Mutex // orders signals before the reap: a reaped pid may be reused
	reaped bool

	outR, errR *os.File
	logs       sync.WaitGroup
	done       chan struct{} // closed once the exit is recorded
}

// signal sends sig to the plugin's process group, unless the process has
// been reaped (its pid, and so the group id, may belong to someone else).
func (pr *proc) signal(sig syscall.Signal) {
	pr.sigMu.Lock()
	defer pr.sigMu.Unlock()
	if !pr.reaped {
		unix.Kill(-pr.pid, sig)
	}
	if sig == syscall.SIGKILL && pr.cg != nil {
		pr.cg.Kill() // what left the group (setsid) too
	}
}

// wait notices the exit at once (it blocks in waitid; no polling), ends
// what is left of the process group, records the exit, revokes the
// certificate and queues the key so Reconcile decides what follows.
func (p *Plugins) wait(pl *plugin, pr *proc) {
	defer p.procs.Done()
	var info unix.Siginfo
	for {
		// WNOWAIT leaves the zombie in place: while it exists its pid
		// cannot be reused, so the group can be killed safely.
		err := unix.Waitid(unix.P_PID, pr.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	at := time.Now()
	pr.sigMu.Lock()
	unix.Kill(-pr.pid, unix.SIGKILL) // children it left in its group
	// Before the leader is reaped (its pid, the group id, stays ours):
	// the group is gone before the exit is recorded and a successor starts.
	if left := procgroup.WaitGone(pr.pid, orphanKillWait); len(left) > 0 {
		p.log.Error("plugin processes survive SIGKILL", "plugin", pl.id, "pids", left)
	}
	if pr.cg != nil {
		// Children that left the group (setsid) are still in the cgroup.
		if left := pr.cg.Remove(orphanKillWait); len(left) > 0 {
			p.log.Error("plugin processes survive SIGKILL of their cgroup", "plugin", pl.id, "pids", left)
		}
	}
	pr.reaped = true
	_ = pr.cmd.Wait()
	pr.sigMu.Unlock()
	exit := exitOf(pr.cmd.ProcessState, at)
	p.drainLogs(pr)

	pl.mu.Lock()
	exit.Stopped, exit.Hung, exit.Ran = pr.stopReason != "", pr.hung, at.Sub(pr.started)
	dec := pl.tracker.Next(exit)
	why := pr.stopReason
	pl.proc, pl.lastExit, pl.exitWhy, pl.after, pl.nextAt, pl.lastPID = nil, &exit, why, &dec, at.Add(dec.Delay), pr.pid
	pl.mu.Unlock()
	p.mu.Lock()
	delete(p.bySerial, pr.serial)
	p.mu.Unlock()
	p.revoke(pr.serial)

	p.logExit(pr, exit, why, dec)
	p.forgetRecord(pr)
	close(pr.done)
	p.ctrl.Enqueue(pr.id)
}

func (p *Plugins) logExit(pr *proc, exit Exit, why string, dec RestartDecision) {
	next := "none: " + dec.Reason
	switch {
	case p.closing.Load():
		next = "none: agent stopping"
	case dec.Restart:
		next = "restart in " + dec.Delay.String()
	case dec.Reason == ReasonTooManyRestarts:
		next = "none: gave up"
	}
	severity, level := audit.Info, "info"
	switch {
	case dec.Reason == ReasonTooManyRestarts:
		severity, level = audit.Critical, "error"
	case exit.Hung || (!exit.Stopped && exit.Failed()):
		severity, level = audit.Warning, "warn"
	}
	reason := why
	if reason == "" {
		reason = exit.String()
	}
	args := []any{"plugin", pr.id, "pid", pr.pid, "exit", exit.String(), "reason", reason, "next", next}
	switch level {
	case "error":
		p.log.Error("plugin exited", args...)
	case "warn":
		p.log.Warn("plugin exited", args...)
	default:
		p.log.Info("plugin exited", args...)
	}
	details := map[string]any{"pid": pr.pid, "exitCode": exit.Code, "reason": reason, "next": next,
		"serial": pr.serial, "ranForSeconds": exit.At.Sub(pr.started).Seconds()}
	if exit.Signal != "" {
		details["signal"] = exit.Signal
	}
	if dec.Detail != "" {
		details["restartPolicy"] = dec.Detail
	}
	p.emit(audit.Event{Type: audit.PluginExited, Severity: severity, TargetInfo: &audit.TargetInfo{Kind: "Plugin", ID: pr.id, Hash: pr.sum},
		Details: details})
}

// exitOf reads how a process ended.
func exitOf(ps *os.ProcessState, at time.Time) Exit {
	e := Exit{At: at, Code: -1}
	if ps == nil {
		return e
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = unix.SignalName(ws.Signal())
		return e
	}
	e.Code = ps.ExitCode()
	return e
}

// pump logs the plugin's output, one slog record per line, with the
// plugin's id. Lines longer than the buffer are logged in pieces.
func (p *Plugins) pump(pr *proc, stream string, r *os.File) {
	defer pr.logs.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 8<<10)
	for {
		line, err := br.ReadSlice('\n')
		if n := len(line); n > 0 {
			if line[n-1] == '\n' {
				line = line[:n-1]
			}
			p.log.Info(string(line), "plugin", pr.id, "stream", stream, "pid", pr.pid)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// drainLogs waits for the last output of an exited plugin, and cuts the
// pipes off if something else keeps them open.
func (p *Plugins) drainLogs(pr *proc) {
	done := make(chan struct{})
	go func() { pr.logs.Wait(); close(done) }()
	t := time.NewTimer(logDrain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		pr.outR.Close()
		pr.errR.Close()
		<-done
	}
}

// stopAll stops every plugin for the agent's stop: SIGTERM to every
// process group at once, SIGKILL to those left after StopGrace, then it
// waits for every waiter (exits audited, certificates revoked).
func (p *Plugins) stopAll() {
	p.closing.Store(true)
	p.mu.Lock()
	pls := make([]*plugin, 0, len(p.plugins))
	for _, pl := range p.plugins {
		pls = append(pls, pl)
	}
	p.mu.Unlock()
	var running []*proc
	for _, pl := range pls {
		pl.mu.Lock()
		if pr := pl.proc; pr != nil {
			if pr.stopReason == "" {
				pr.stopReason, pr.termAt = "agent stopping", time.Now()
				pr.signal(syscall.SIGTERM)
			}
			running = append(running, pr)
		}
		pl.mu.Unlock()
	}
	if len(running) > 0 {
		p.log.Info("stopping plugins", "count", len(running))
		grace := time.NewTimer(p.opts.StopGrace)
	waiting:
		for _, pr := range running {
			select {
			case <-pr.done:
			case <-grace.C:
				for _, left := range running {
					left.signal(syscall.SIGKILL)
				}
				break waiting
			}
		}
		grace.Stop()
	}
	p.procs.Wait()
	p.spawn.Stop()
}
