package reconcile

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/procgroup"
	"warden/state"
)

// script is a plugin that leaves a child in its process group.
const script = "#!/bin/sh\nsleep 1000 &\necho child $!\nwait\n"

// A changed document restarts only that plugin; a removed one is stopped,
// its whole process group with it, and its certificate revoked.
func TestPluginDocumentChangedAndRemoved(t *testing.T) {
	e := newPluginEnv(t)
	e.run(nil)
	hb := e.install("heartbeat")
	sh := e.installBytes("shell", "run.sh", []byte(script), 0o750)
	docA := pluginDoc(t, "heartbeat", "heartbeat", hb, "", "--interval", "1s")
	docB := pluginDoc(t, "shell", "run.sh", sh, "")
	e.apply(docA, docB)
	a1, b1 := e.running("heartbeat", 0), e.running("shell", 0)
	e.waitFor("shell's child", func() bool { return len(procgroup.Alive(b1.PID)) == 2 })

	e.apply(pluginDoc(t, "heartbeat", "heartbeat", hb, "", "--interval", "2s"), docB)
	a2 := e.running("heartbeat", a1.PID)
	if s := e.status("shell"); s.PID != b1.PID || s.Restarts != 0 {
		t.Errorf("unchanged plugin touched: %+v", s)
	}
	rs := e.events(audit.PluginRestarted)
	if len(rs) != 1 || rs[0].Details["reason"] != "document changed" {
		t.Fatalf("PLUGIN_RESTARTED: %+v", rs)
	}
	if alive(a1.PID) {
		t.Errorf("old heartbeat %d alive", a1.PID)
	}

	e.apply(pluginDoc(t, "heartbeat", "heartbeat", hb, "", "--interval", "2s"))
	e.waitFor("shell stopped", func() bool { return e.status("shell").State == "unknown" })
	if m := procgroup.Alive(b1.PID); len(m) != 0 {
		t.Errorf("shell's group still has %v", m)
	}
	revoked := map[string]bool{}
	for _, r := range e.ca.Revoked() {
		revoked[r.Serial] = true
	}
	if !revoked[b1.Serial] || !revoked[a1.Serial] || revoked[a2.Serial] {
		t.Errorf("revoked %v; want %s and %s, not %s", revoked, b1.Serial, a1.Serial, a2.Serial)
	}
	if s := e.status("heartbeat"); s.PID != a2.PID {
		t.Errorf("remaining plugin touched: %+v", s)
	}
}

// When the leader dies its children go with it; when the agent stops, no
// plugin process is left, and no record of one.
func TestPluginStopLeavesNoProcess(t *testing.T) {
	e := newPluginEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	e.p, err = e.m.AddPlugins(PluginOptions{CA: e.ca, Broker: e.broker, MQTTAddr: e.mqtt, StopGrace: 500 * time.Millisecond})
	must(t, err)
	e.start()
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()

	sh := e.installBytes("shell", "run.sh", []byte(script), 0o750)
	e.apply(pluginDoc(t, "shell", "run.sh", sh, `"restart": {"policy": "always"}`), pluginDoc(t, "heartbeat", "heartbeat", e.install("heartbeat"), ""))
	s1 := e.running("shell", 0)
	e.waitFor("child", func() bool { return len(procgroup.Alive(s1.PID)) == 2 })
	must(t, syscall.Kill(s1.PID, syscall.SIGKILL)) // the leader only
	s2 := e.running("shell", s1.PID)
	e.waitFor("old group gone", func() bool { return len(procgroup.Alive(s1.PID)) == 0 })
	e.waitFor("new child", func() bool { return len(procgroup.Alive(s2.PID)) == 2 })
	hb := e.running("heartbeat", 0)

	cancel()
	<-done
	for _, pid := range []int{s2.PID, hb.PID} {
		if m := procgroup.Alive(pid); len(m) != 0 {
			t.Errorf("group %d left: %v", pid, m)
		}
	}
	n := 0
	must(t, e.store.List(state.Plugins, func(string, json.RawMessage) error { n++; return nil }))
	if n != 0 {
		t.Errorf("%d process records left", n)
	}
	stops := 0
	for _, ev := range e.events(audit.PluginExited) {
		if ev.Details["reason"] == "agent stopping" {
			stops++
		}
	}
	if stops != 2 {
		t.Errorf("PLUGIN_EXITED for the stop: %d, want 2", stops)
	}
}

// A plugin process an earlier agent run recorded and left running is
// ended at start; a recorded pid that now names another process is not.
func TestPluginOrphansOfEarlierRunEnded(t *testing.T) {
	e := newPluginEnv(t)
	orphan := exec.Command("/bin/sh", "-c", "sleep 1000 & wait")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, orphan.Start())
	go orphan.Wait()
	t.Cleanup(func() { syscall.Kill(-orphan.Process.Pid, syscall.SIGKILL) })
	e.waitFor("orphan's child", func() bool { return len(procgroup.Alive(orphan.Process.Pid)) == 2 })
	st, err := procgroup.Stat(orphan.Process.Pid)
	must(t, err)
	ticks := st.StartTicks
	me, err := procgroup.Stat(os.Getpid())
	must(t, err)
	self := me.StartTicks
	_, _, serial, err := e.ca.Issue("plugin", "old", time.Hour)
	must(t, err)
	must(t, e.store.PutMany(state.Plugins, map[string]any{
		recordKey("old", orphan.Process.Pid): pluginRecord{ID: "old", PID: orphan.Process.Pid, StartTicks: ticks, BootID: bootID(), Serial: serial},
		recordKey("reused", os.Getpid()):     pluginRecord{ID: "reused", PID: os.Getpid(), StartTicks: self + 1, BootID: bootID()},
		recordKey("reboot", os.Getpid()+1):   pluginRecord{ID: "reboot", PID: os.Getpid(), StartTicks: self, BootID: "another boot"},
	}))

	e.run(nil) // AddPlugins looks for orphans before anything starts
	if m := procgroup.Alive(orphan.Process.Pid); len(m) != 0 {
		t.Errorf("orphan group left: %v", m)
	}
	n := 0
	must(t, e.store.List(state.Plugins, func(string, json.RawMessage) error { n++; return nil }))
	if n != 0 {
		t.Errorf("%d records left", n)
	}
	ex := e.events(audit.PluginExited)
	if len(ex) != 1 || ex[0].TargetInfo.ID != "old" || ex[0].Details["reason"] != "orphan of an earlier agent run" {
		t.Errorf("PLUGIN_EXITED: %+v", ex)
	}
	found := false
	for _, r := range e.ca.Revoked() {
		found = found || r.Serial == serial
	}
	if !found {
		t.Error("orphan's certificate not revoked")
	}
}

// Plugin drift an earlier run left unresolved (a bad executable, say) is
// corrected once the plugin starts in this run.
func TestPluginDriftOfEarlierRunAdopted(t *testing.T) {
	e := newPluginEnv(t)
	must(t, e.store.PutDrift(state.DriftRecord{ID: "earlier", Kind: "Plugin", Name: "heartbeat", Field: "executable",
		Desired: "sha256:...", Actual: "sha256: differs", State: state.DriftUnresolved, DetectedAt: time.Now()}))
	e.run(nil)
	e.apply(pluginDoc(t, "heartbeat", "heartbeat", e.install("heartbeat"), ""))
	e.running("heartbeat", 0)
	e.waitFor("earlier drift corrected", func() bool { return e.hasDrift("Plugin", "heartbeat", "executable", state.DriftCorrected) })
}
