package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/broker/pluginenv"
	"warden/pki"
	"warden/procgroup"
	"warden/schema"
)

// pluginPath is the PATH a plugin starts with; the agent's own
// environment is not inherited (it may hold credentials of the agent).
const pluginPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// start validates the executable and starts it. reason, when not empty,
// says why this start replaces an earlier process (a restart).
func (p *Plugins) start(ctx context.Context, pl *plugin, doc *schema.Document, reason string) error {
	spec := doc.Plugin()
	x, err := p.validateExecutable(spec.Executable, spec.SHA256, p.m.store.Current().Settings().AlternativeSignatures)
	if err != nil {
		return p.invalid(ctx, pl, spec, err)
	}
	defer x.close()
	if p.closing.Load() {
		return nil // the agent is stopping; Run stops whatever runs
	}
	certPEM, keyPEM, serial, err := p.opts.CA.Issue(pki.RolePlugin, pl.id, p.opts.CertTTL)
	if err != nil {
		return fmt.Errorf("plugin %s: issue certificate: %w", pl.id, err)
	}
	if p.onIssue != nil {
		p.onIssue(pl.id, string(certPEM), string(keyPEM))
	}
	pr, err := p.launch(pl.id, spec, x, certPEM, keyPEM)
	if err != nil {
		p.revoke(serial)
		pl.failed = err.Error()
		return err
	}
	pr.serial, pr.docHash = serial, doc.Hash
	pr.renewAt = pr.started.Add(p.opts.CertTTL * 9 / 10)
	pr.heartbeat = time.Duration(spec.HeartbeatSeconds) * time.Second
	p.mu.Lock()
	p.bySerial[serial] = pr
	p.mu.Unlock()
	prevPID := pl.lastPID
	pl.proc, pl.lastStart, pl.failed, pl.invalid, pl.after = pr, pr.started, "", "", nil
	p.procs.Add(1)
	go p.wait(pl, pr)

	p.putRecord(pr)
	details := map[string]any{"pid": pr.pid, "serial": serial, "executable": x.rel, "args": spec.Args}
	if x.signer != "" {
		details["signer"] = x.signer
	}
	p.log.Info("plugin started", "plugin", pl.id, "pid", pr.pid, "serial", serial, "restart", reason)
	t := p.target(pl.id, spec)
	t.Hash = pr.sum
	p.emit(audit.Event{Type: audit.PluginStarted, Severity: audit.Info, TargetInfo: t, Details: details})
	if reason != "" {
		pl.restarts++
		p.emit(audit.Event{Type: audit.PluginRestarted, Severity: audit.Warning, TargetInfo: t,
			Details: map[string]any{"pid": pr.pid, "previousPid": prevPID, "reason": reason, "restarts": pl.restarts}})
	}
	return nil
}

// invalid records a failed validation: audited (once per distinct
// failure, so a resync does not repeat it), reported as drift, and
// returned as terminal: retrying cannot fix an executable; an event on its
// path or the next resync looks again.
func (p *Plugins) invalid(ctx context.Context, pl *plugin, spec *schema.PluginSpec, err error) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("plugin %s: validate: %w", pl.id, err) // I/O trouble: retried
	}
	want := "sha256:" + spec.SHA256
	if spec.SHA256 == "" {
		want = "signed by a key in alternativeSignatures"
	}
	if pl.invalid != ve.Error() {
		pl.invalid = ve.Error()
		p.log.Warn("plugin executable failed validation; not started", "plugin", pl.id, "check", ve.Check, "err", ve)
		t := p.target(pl.id, spec)
		if ve.Check == "sha256" {
			t.Hash = ve.Got
		}
		p.emit(audit.Event{Type: audit.PluginValidationFailed, Severity: audit.Critical, TargetInfo: t,
			Details: map[string]any{"check": ve.Check, "path": ve.Path, "want": ve.Want, "got": ve.Got, "error": ve.Error()}})
	}
	ReportDrift(ctx, Drift{Kind: "Plugin", ID: pl.id, Field: "executable", Desired: want,
		Actual: ve.Check + ": " + ve.Error(), Action: "not started", Target: p.target(pl.id, spec)})
	return TerminalError(fmt.Errorf("plugin %s not started: %w", pl.id, err))
}

// launch starts the validated executable in its own process group with
// the credentials on an inherited pipe (fd 3) and its output piped to the
// log. The process runs by its path, so ps and pidof name it; that the
// path still leads to the file that was validated is checked on
// /proc/PID/exe right after the exec.
func (p *Plugins) launch(id string, spec *schema.PluginSpec, x *executable, certPEM, keyPEM []byte) (*proc, error) {
	creds, err := pluginenv.Pipe(pluginenv.Credentials{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: p.opts.CA.CertPEM()})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: credentials pipe: %w", id, err)
	}
	defer creds.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", id, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("plugin %s: %w", id, err)
	}
	cmd := &exec.Cmd{
		Path:       x.abs,
		Args:       append([]string{x.abs}, spec.Args...),
		Env:        p.env(id, spec),
		Dir:        filepath.Dir(x.abs),
		Stdout:     outW,
		Stderr:     errW,
		ExtraFiles: []*os.File{creds}, // fd 3: pluginenv.EnvCertFD
		// Pdeathsig: if the agent dies without stopping its plugins, the
		// kernel kills them (the spawner's thread lives as long as the
		// agent); the orphan check at the next start covers the rest.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	cg := p.newCgroup(id)
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.FD()
	}
	err = p.spawn.Start(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if cg != nil {
			cg.Remove(orphanKillWait)
		}
		return nil, fmt.Errorf("plugin %s: start %s: %w", id, x.rel, err)
	}
	pid := cmd.Process.Pid
	if dev, ino, err := exeIdentity(pid); err == nil && x.elf && (dev != x.dev || ino != x.ino) {
		// Replaced between validation and exec: only the service account
		// can do that (every folder on the path was checked), but what
		// runs must be what was checked. (A script's exe is its
		// interpreter, so only ELF executables are compared.)
		unix.Kill(-pid, unix.SIGKILL)
		if cg != nil {
			cg.Remove(orphanKillWait)
		}
		cmd.Wait()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("plugin %s: %s was replaced during the start; killed", id, x.rel)
	}
	pr := &proc{id: id, pid: pid, cmd: cmd, cg: cg, started: time.Now(), sum: x.sumHex(),
		outR: outR, errR: errR, done: make(chan struct{})}
	if st, err := procgroup.Stat(pid); err == nil {
		pr.startTicks = st.StartTicks
	}
	pr.logs.Add(2)
	go p.pump(pr, "stdout", outR)
	go p.pump(pr, "stderr", errR)
	return pr, nil
}

// env is the plugin's whole environment: PATH, the document's env, then
// the variables of the plugin contract (docs/plugins.md), which the
// document cannot override.
func (p *Plugins) env(id string, spec *schema.PluginSpec) []string {
	mqtt, api := p.addrs()
	env := []string{"PATH=" + pluginPath}
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	// exec.Cmd keeps the last value of a duplicated key.
	return append(env, pluginenv.EnvID+"="+id, pluginenv.EnvMQTTAddr+"="+mqtt,
		pluginenv.EnvAPIAddr+"="+api, pluginenv.EnvCertFD+"=3")
}

// stop asks a running plugin to end: SIGTERM to its process group now,
// SIGKILL once StopGrace has passed. It never waits: the waiter queues the
// key when the process is gone, and the returned requeue comes back for
// the SIGKILL.
func (p *Plugins) stop(pr *proc, why string, hung bool) Result {
	now := time.Now()
	if pr.stopReason == "" {
		pr.stopReason, pr.hung, pr.termAt = why, hung, now
		p.log.Info("stopping plugin", "plugin", pr.id, "pid", pr.pid, "reason", why)
		pr.signal(syscall.SIGTERM)
	}
	left := pr.termAt.Add(p.opts.StopGrace).Sub(now)
	if left > 0 {
		return Result{RequeueAfter: left}
	}
	if !pr.killed {
		p.log.Warn("plugin did not stop within the grace period; killing it", "plugin", pr.id, "pid", pr.pid, "grace", p.opts.StopGrace)
		pr.signal(syscall.SIGKILL)
		pr.killed = true
	}
	return Result{RequeueAfter: p.opts.StopGrace}
}

// revoke ends a certificate: refused from now on, and any broker
// connection made with it closed (revoke first, so it cannot reconnect).
func (p *Plugins) revoke(serial string) {
	if err := p.opts.CA.Revoke(serial); err != nil {
		p.log.Error("revoking plugin certificate", "serial", serial, "err", err)
	}
	if p.opts.Broker != nil {
		p.opts.Broker.DisconnectSerial(serial)
	}
}

// exeIdentity is the device and inode of the program pid runs.
func exeIdentity(pid int) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}
