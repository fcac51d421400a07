package reconcile

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"warden/audit"
	"warden/procgroup"
)

// setsidScript is a plugin that starts a child outside its process group
// (setsid) and writes the child's pid.
const setsidScript = "#!/bin/sh\nsetsid sleep 1000 &\necho $! > \"$(dirname \"$0\")/child\"\nwait\n"

// With cgroup v2, a plugin child that called setsid does not outlive the
// plugin: it dies when the plugin exits, whether the plugin is stopped or
// dies on its own, and the cgroup goes with it.
func TestPluginSetsidChildDiesWithPlugin(t *testing.T) {
	e := newPluginEnv(t)
	cg, err := procgroup.OpenCgroups(e.root)
	if err != nil {
		t.Skipf("no writable cgroup v2 here: %v", err)
	}
	e.run(func(o *PluginOptions) { o.Cgroups = cg })
	t.Cleanup(func() { cg.Close() })
	sum := e.installBytes("escaper", "run.sh", []byte(setsidScript), 0o750)
	e.apply(pluginDoc(t, "escaper", "run.sh", sum, ""))
	first := e.running("escaper", 0)
	child := e.childPID(t)
	// $! is written as soon as the shell forks; the child leaves the
	// plugin's group once it has run setsid.
	e.waitFor("the child outside the plugin's group", func() bool {
		st, err := procgroup.Stat(child)
		return err == nil && st.Pgrp != first.PID
	})
	// The plugin dies on its own: the child goes with it.
	os.Remove(e.path("Plugins/escaper/child"))
	syscall.Kill(first.PID, syscall.SIGKILL)
	e.waitFor("the setsid child to die with its plugin", func() bool { return !live(child) })
	// Restarted; then the document is removed: the new child goes too.
	e.running("escaper", first.PID)
	child = e.childPID(t)
	e.apply()
	e.waitFor("plugin stopped", func() bool { return e.status("escaper").State == "unknown" })
	e.waitFor("the setsid child to die with its stopped plugin", func() bool { return !live(child) })
	if left := cg.Leftovers(pluginCgroupPrefix); len(left) != 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

func (e *pluginEnv) childPID(t *testing.T) int {
	t.Helper()
	var pid int
	e.waitFor("the plugin's child pid", func() bool {
		data, _ := os.ReadFile(e.path("Plugins/escaper/child"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// live reports whether pid runs (a zombie does not).
func live(pid int) bool {
	st, err := procgroup.Stat(pid)
	return err == nil && st.Live()
}

// A plugin cgroup an earlier agent run left behind (the agent was killed;
// a setsid child of its plugin lives on in it) is ended at start, removed
// and audited.
func TestPluginLeftoverCgroupEndedAtStart(t *testing.T) {
	e := newPluginEnv(t)
	cg, err := procgroup.OpenCgroups(e.root)
	if err != nil {
		t.Skipf("no writable cgroup v2 here: %v", err)
	}
	t.Cleanup(func() { cg.Close() })
	g, err := cg.New(pluginCgroupPrefix + "escaper-earlier")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: g.FD()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }() // reaped as soon as it dies, as init would
	t.Cleanup(func() { cmd.Process.Kill(); <-waited })
	e.run(func(o *PluginOptions) { o.Cgroups = cg })
	e.waitFor("the leftover's process to die", func() bool { return !live(cmd.Process.Pid) })
	if left := cg.Leftovers(pluginCgroupPrefix); len(left) != 0 {
		t.Errorf("cgroups left: %v", left)
	}
	e.waitFor("PLUGIN_EXITED for the leftover", func() bool {
		for _, ev := range e.events(audit.PluginExited) {
			if ev.Details["cgroup"] == pluginCgroupPrefix+"escaper-earlier" {
				return true
			}
		}
		return false
	})
}
