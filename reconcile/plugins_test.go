package reconcile

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/state"
)

// kill -9 of a plugin: restarted, PLUGIN_EXITED and PLUGIN_RESTARTED
// audited, the crash a corrected drift, and the old certificate refused
// by the broker.
func TestPluginKilledIsRestarted(t *testing.T) {
	e := newPluginEnv(t)
	e.run(nil)
	sha := e.install("heartbeat")
	e.apply(pluginDoc(t, "heartbeat", "heartbeat", sha, `"restart": {"policy": "always", "backoffSeconds": 0.1}, "heartbeatSeconds": 5`,
		"--interval", "100ms"))
	first := e.beating("heartbeat")
	if n := len(e.events(audit.PluginStarted)); n != 1 {
		t.Fatalf("PLUGIN_STARTED events: %d, want 1", n)
	}
	old := e.certs("heartbeat")[0]

	must(t, syscall.Kill(first.PID, syscall.SIGKILL))
	second := e.running("heartbeat", first.PID)
	if second.Restarts != 1 || second.Serial == first.Serial {
		t.Errorf("after restart: %+v (first %+v)", second, first)
	}
	e.waitFor("PLUGIN_EXITED and PLUGIN_RESTARTED", func() bool {
		return len(e.events(audit.PluginExited)) == 1 && len(e.events(audit.PluginRestarted)) == 1
	})
	ex := e.events(audit.PluginExited)[0]
	if ex.Details["signal"] != "SIGKILL" || ex.Details["pid"] != float64(first.PID) || ex.TargetInfo.ID != "heartbeat" {
		t.Errorf("PLUGIN_EXITED: %+v %+v", ex.TargetInfo, ex.Details)
	}
	rs := e.events(audit.PluginRestarted)[0]
	if rs.Details["previousPid"] != float64(first.PID) || rs.Details["pid"] != float64(second.PID) {
		t.Errorf("PLUGIN_RESTARTED: %+v", rs.Details)
	}
	e.waitFor("crash recorded as corrected drift", func() bool { return e.hasDrift("Plugin", "heartbeat", "process", state.DriftCorrected) })

	// The dead instance's certificate no longer connects; the new one does.
	if code, err := e.connectAs("heartbeat", old); err == nil || code != 0x87 {
		t.Errorf("old certificate: reason %#x, err %v; want refused with 0x87 (not authorized)", code, err)
	}
	e.beating("heartbeat")
	if s := e.status("heartbeat"); s.PID != second.PID {
		t.Errorf("plugin changed again: %+v", s)
	}
}

// A binary replaced with different bytes is not started: the start after
// the next exit fails validation, audited once, unresolved drift. Putting
// the right binary back starts it at once (the path is watched).
func TestPluginReplacedBinaryNotStarted(t *testing.T) {
	e := newPluginEnv(t)
	e.run(nil)
	sha := e.install("heartbeat")
	e.apply(pluginDoc(t, "heartbeat", "heartbeat", sha, `"restart": {"policy": "always"}`, "--interval", "1s"))
	first := e.running("heartbeat", 0)

	good, err := os.ReadFile(heartbeatBinary(t))
	must(t, err)
	e.installBytes("heartbeat", "heartbeat", append(append([]byte(nil), good...), 0), 0o750)
	must(t, syscall.Kill(first.PID, syscall.SIGKILL))
	e.waitFor("validation failure", func() bool {
		return e.status("heartbeat").State == "invalid" && len(e.events(audit.PluginValidationFailed)) == 1
	})
	ev := e.events(audit.PluginValidationFailed)[0]
	if ev.Details["check"] != "sha256" || ev.Details["want"] != sha || ev.Severity != audit.Critical {
		t.Errorf("PLUGIN_VALIDATION_FAILED: %+v", ev.Details)
	}
	if s := e.status("heartbeat"); s.PID != 0 || !strings.Contains(s.Error, "sha256") {
		t.Errorf("status: %+v", s)
	}
	e.waitFor("unresolved drift", func() bool { return e.hasDrift("Plugin", "heartbeat", "executable", state.DriftUnresolved) })
	if n := len(e.events(audit.PluginStarted)); n != 1 {
		t.Errorf("PLUGIN_STARTED events: %d, want 1", n)
	}

	// A resync tries again without auditing the same failure again.
	e.m.Resync()
	e.waitQuiet()
	if n := len(e.events(audit.PluginValidationFailed)); n != 1 {
		t.Errorf("PLUGIN_VALIDATION_FAILED events after resync: %d, want 1", n)
	}

	e.installBytes("heartbeat", "heartbeat", good, 0o750)
	e.running("heartbeat", first.PID)
	e.waitFor("drift corrected", func() bool { return e.hasDrift("Plugin", "heartbeat", "executable", state.DriftCorrected) })
}

// A crash loop stops at maxRestarts: the plugin is left stopped and the
// drift unresolved, until an operator restarts it.
func TestPluginCrashLoopGivesUp(t *testing.T) {
	e := newPluginEnv(t)
	e.run(nil)
	sha := e.install("crasher")
	e.apply(pluginDoc(t, "crasher", "heartbeat", sha,
		`"restart": {"policy": "on-failure", "backoffSeconds": 0.01, "maxRestarts": 2, "windowSeconds": 600}`,
		"--interval", "1s", "--crash-after", "1ms", "--crash-code", "7"))
	e.waitFor("giving up", func() bool { return e.status("crasher").State == "failed" })
	e.waitFor("unresolved drift", func() bool { return e.hasDrift("Plugin", "crasher", "process", state.DriftUnresolved) })
	if s, r, x := len(e.events(audit.PluginStarted)), len(e.events(audit.PluginRestarted)), len(e.events(audit.PluginExited)); s != 3 || r != 2 || x != 3 {
		t.Fatalf("started %d, restarted %d, exited %d; want 3, 2, 3", s, r, x)
	}
	last := e.events(audit.PluginExited)[2]
	if last.Details["exitCode"] != float64(7) || last.Details["next"] != "none: gave up" || last.Severity != audit.Critical {
		t.Errorf("last PLUGIN_EXITED: %s %+v", last.Severity, last.Details)
	}
	s := e.status("crasher")
	if s.PID != 0 || s.Restarts != 2 || s.ExitCode == nil || *s.ExitCode != 7 {
		t.Errorf("status: %+v", s)
	}

	// A resync does not start it again.
	e.m.Resync()
	e.waitQuiet()
	if n := len(e.events(audit.PluginStarted)); n != 3 {
		t.Fatalf("PLUGIN_STARTED after resync: %d, want 3", n)
	}
	// An operator's restart does, with a fresh restart history.
	must(t, e.p.Restart("crasher", "admin/cli"))
	e.waitFor("restart by operator", func() bool {
		rs := e.events(audit.PluginRestarted)
		return len(rs) > 2 && rs[2].Details["reason"] == "restart requested by admin/cli"
	})
	// ... with a fresh history: two more restarts before it gives up again.
	e.waitFor("giving up again", func() bool { return len(e.events(audit.PluginStarted)) == 6 && e.status("crasher").State == "failed" })
	if err := e.p.Restart("nope", "admin/cli"); !errors.Is(err, ErrPluginUnknown) {
		t.Errorf("Restart(unknown) = %v", err)
	}
}

// A plugin that stops sending heartbeats is restarted as hung, even when
// it ignores SIGTERM.
func TestPluginHungIsRestarted(t *testing.T) {
	e := newPluginEnv(t)
	e.run(func(o *PluginOptions) { o.StopGrace = 200 * time.Millisecond })
	sha := e.install("hang")
	e.apply(pluginDoc(t, "hang", "heartbeat", sha, `"heartbeatSeconds": 1, "restart": {"policy": "on-failure", "backoffSeconds": 0.1}`,
		"--interval", "200ms", "--hang-after", "500ms"))
	first := e.beating("hang")
	second := e.running("hang", first.PID)
	if alive(first.PID) {
		t.Errorf("hung process %d still alive", first.PID)
	}
	ex := e.events(audit.PluginExited)
	if len(ex) == 0 || !strings.HasPrefix(ex[0].Details["reason"].(string), "hung: no heartbeat") || ex[0].Details["signal"] != "SIGKILL" {
		t.Fatalf("PLUGIN_EXITED: %+v", ex)
	}
	if second.Restarts != 1 {
		t.Errorf("restarts %d", second.Restarts)
	}
}
