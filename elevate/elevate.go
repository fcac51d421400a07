package elevate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"warden/audit"
	"warden/elevate/wire"
	"warden/engine"
	"warden/policy"
)

// maxMFATries is how many codes one request may try.
const maxMFATries = 3

// elevate serves wire.TypeElevate: resolve, decide, run.
func (ss *session) elevate(m *wire.Message, fds []*os.File) {
	if len(fds) != 3 {
		ss.fail(wire.ExitUsage, "elevate needs the caller's stdin, stdout and stderr passed with the request")
		return
	}
	x, err := Resolve(m.Argv[0])
	if err != nil {
		if errors.Is(err, ErrUnsafeExecutable) {
			ss.s.refuse(ss.a, err.Error(), map[string]any{"argv": m.Argv})
		}
		ss.fail(wire.ExitRefused, err.Error())
		return
	}
	argv := append([]string(nil), m.Argv...)
	req := &policy.Request{Action: policy.ActionElevate, Justification: strings.TrimSpace(m.Reason),
		Application: policy.Application{Path: x.Path, SHA256: x.SHA256, CommandLine: commandLine(argv),
			Parent: parentExe(ss.a.PID)}}
	ss.startReader()
	r, record, ok := ss.decide(req, m)
	if !ok {
		return
	}
	defer record() // on every path; after run's record(ELEVATION_STARTED) it does nothing
	if r.Effective == policy.Redirect {
		to, err := Resolve(r.RedirectTo)
		if err != nil {
			record()
			ss.fail(wire.ExitRefused, fmt.Sprintf("policy %s redirects to %s, which cannot run: %v", r.Policy, r.RedirectTo, err))
			return
		}
		ss.c.Send(&wire.Message{Type: wire.TypeNotice, Text: fmt.Sprintf("policy %s redirects %s to %s", r.Policy, x.Path, to.Path)})
		x, argv[0] = to, to.Path
	}
	if r.Notify {
		ss.c.Send(&wire.Message{Type: wire.TypeNotice, Text: fmt.Sprintf("policy %s (%s) would have decided %s: %s",
			r.Policy, r.Mode, r.Decision.Decision, r.Reason)})
	}
	ss.run(x, argv, m.Env, fds, &r, record)
}

// decide asks the engine until the answer is allow or redirect, carrying
// out the steps in between (justification, MFA, approval). It returns
// false when the request ends here (refused, pending, client gone); the
// client was told why. An allow or redirect comes with its evaluation not
// yet stored: the caller stores it with record, on every path, before
// anything runs. Every other answer is stored before the client hears of
// it.
func (ss *session) decide(req *policy.Request, m *wire.Message) (engine.Result, engine.Record, bool) {
	tries := 0
	for {
		r, record, err := ss.s.opts.Engine.Evaluate(ss.ctx, ss.a, req)
		req.MFACode = "" // a code counts for one evaluation only
		if err == nil && r.Effective != policy.Allow && r.Effective != policy.Redirect {
			err = record()
		}
		if err != nil {
			ss.fail(wire.ExitRefused, "the policy engine did not answer: "+err.Error())
			return r, nil, false
		}
		switch r.Effective {
		case policy.Allow, policy.Redirect:
			return r, record, true
		case policy.Justification:
			if !m.TTY {
				ss.fail(wire.ExitRefused, fmt.Sprintf("policy %s asks for a justification: run again with --reason TEXT", r.Policy))
				return r, nil, false
			}
			text, ok := ss.ask(wire.PromptJustification, fmt.Sprintf("Policy %s asks why you need this. Reason: ", r.Policy))
			if !ok {
				return r, nil, false
			}
			if req.Justification = strings.TrimSpace(text); req.Justification == "" {
				ss.fail(wire.ExitRefused, "no justification given")
				return r, nil, false
			}
		case policy.MFA:
			if r.MFA == "locked" {
				ss.fail(wire.ExitRefused, "MFA is locked: "+r.Reason)
				return r, nil, false
			}
			if !m.TTY {
				ss.fail(wire.ExitRefused, fmt.Sprintf("policy %s asks for an MFA code: run from a terminal", r.Policy))
				return r, nil, false
			}
			if tries == maxMFATries {
				ss.fail(wire.ExitRefused, fmt.Sprintf("%d wrong MFA codes", maxMFATries))
				return r, nil, false
			}
			if r.MFA == "failed" {
				ss.c.Send(&wire.Message{Type: wire.TypeNotice, Text: "wrong code"})
			}
			code, ok := ss.ask(wire.PromptMFA, fmt.Sprintf("Policy %s asks for your MFA code: ", r.Policy))
			if !ok {
				return r, nil, false
			}
			req.MFACode, tries = strings.TrimSpace(code), tries+1
		case policy.Approval:
			if !ss.awaitApproval(&r, m.NoWait) {
				return r, nil, false
			}
		default:
			ss.fail(wire.ExitRefused, denial(&r))
			return r, nil, false
		}
	}
}

// awaitApproval tells the client the approval id and waits for a
// decision. The approval stays pending when the client leaves.
func (ss *session) awaitApproval(r *engine.Result, noWait bool) bool {
	if r.ApprovalID == "" {
		ss.fail(wire.ExitRefused, fmt.Sprintf("policy %s needs an approval, and none could be requested", r.Policy))
		return false
	}
	ss.c.Send(&wire.Message{Type: wire.TypeApproval, ID: r.ApprovalID,
		Text: fmt.Sprintf("policy %s needs an approval: request %s", r.Policy, r.ApprovalID)})
	if noWait {
		ss.fail(wire.ExitPending, "")
		return false
	}
	ctx, cancel := context.WithCancel(ss.ctx)
	defer cancel()
	go func() {
		select {
		case <-ss.gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	a, err := ss.s.opts.Engine.WaitApproval(ctx, r.ApprovalID)
	switch {
	case err != nil:
		return false // client gone or agent stopping: it stays pending
	case a.State == "approved":
		ss.c.Send(&wire.Message{Type: wire.TypeNotice, Text: "approved by " + a.DecidedBy})
		return true
	case a.State == "denied":
		ss.fail(wire.ExitRefused, fmt.Sprintf("request %s was denied by %s", a.ID, a.DecidedBy))
	default:
		ss.fail(wire.ExitRefused, fmt.Sprintf("request %s %s without a decision", a.ID, a.State))
	}
	return false
}

// denial is the one line a refused caller reads.
func denial(r *engine.Result) string {
	if r.Policy == "" {
		return "denied: no policy allows this (" + r.Reason + ")"
	}
	return fmt.Sprintf("denied by policy %s: %s", r.Policy, r.Reason)
}

// run starts the command once its evaluation and ELEVATION_STARTED are
// stored, relays signals until it exits, then reports the exit and audits
// ELEVATION_EXITED.
func (ss *session) run(x Executable, argv, env []string, stdio []*os.File, r *engine.Result, record engine.Record) {
	cwd := callerCwd(ss.a.PID)
	ev := func(typ string, details map[string]any) audit.Event {
		d := map[string]any{"uid": ss.a.UID, "tty": ss.a.TTY, "argv": argv, "cwd": cwd,
			"policy": r.Policy, "decision": r.Decision.Decision, "effective": r.Effective}
		for k, v := range details {
			d[k] = v
		}
		return audit.Event{Type: typ, Component: "elevate", UserInfo: ss.a.userInfo(),
			TargetInfo: &audit.TargetInfo{Kind: "elevate", Path: x.Path, Hash: x.SHA256}, Details: d}
	}
	// The command is forked and held before its first instruction; it runs
	// once the evaluation that allowed it and its ELEVATION_STARTED are on
	// disk, stored together (one fsync).
	proc, err := launch(x, argv, ResetEnv(env, ss.a, x.Path, argv[1:]), cwd, stdio, func(pid int) error {
		err := record(ev(audit.ElevationStarted, map[string]any{"pid": pid}))
		return err
	})
	wire.CloseAll(stdio) // the command holds its own copies now
	if err != nil {
		ss.log.Error("elevated command not started", "path", x.Path, "err", err)
		ss.fail(wire.ExitRefused, "not started: "+err.Error())
		return
	}
	pid := proc.cmd.Process.Pid
	ss.log.Info("elevated command started", "path", x.Path, "cmd_pid", pid, "policy", r.Policy)
	ss.c.Send(&wire.Message{Type: wire.TypeStarted, PID: pid})
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = proc.cmd.Wait(); close(done) }()
	hungUp, gone, stopping := false, ss.gone, ss.ctx.Done()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case m := <-ss.inbox:
			if m.Type == wire.TypeSignal && forwardable[m.Signal] {
				proc.signal(m.Signal)
			}
		case <-gone:
			if !hungUp {
				hungUp = true
				go proc.hangup(done, hangupGrace)
			}
			gone = nil
		case <-stopping:
			if !hungUp {
				hungUp = true
				go proc.hangup(done, stopGrace)
			}
			stopping = nil
		}
	}
	code, sig := exitStatus(waitErr, proc.cmd.ProcessState)
	ss.c.Send(&wire.Message{Type: wire.TypeExit, Code: code, Signal: sig})
	details := map[string]any{"pid": pid, "exitCode": code, "durationMs": time.Since(proc.start).Milliseconds()}
	if sig != 0 {
		details["signal"] = sig
	}
	if hungUp {
		details["hangup"] = true
	}
	ss.s.opts.Audit.Emit(ev(audit.ElevationExited, details))
}

// commandLine joins argv for policies and approvals, quoting arguments
// that would otherwise be ambiguous.
func commandLine(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}

// callerCwd is the caller's working directory as the kernel has it ("/"
// when it is gone).
func callerCwd(pid int) string {
	p, err := os.Readlink(fmt.Sprintf("%s/%d/cwd", procRoot, pid))
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		return "/"
	}
	return p
}

// parentExe is the program that started the caller (its shell, usually):
// the policy's "parent".
func parentExe(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return ""
	}
	exe, _ := os.Readlink(procRoot + "/" + f[1] + "/exe")
	return exe
}
