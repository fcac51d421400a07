package reconcile

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/procgroup"
	"warden/state"
)

// pluginRecord is what the store keeps of a running plugin process, so
// that the next agent run can recognise it if this one dies without
// stopping it. The start time (clock ticks since boot, /proc/PID/stat
// field 22) and the boot id tell it from an unrelated process that got
// the same pid later.
type pluginRecord struct {
	ID         string    `json:"id"`
	PID        int       `json:"pid"`
	StartTicks uint64    `json:"startTicks"`
	BootID     string    `json:"bootId"`
	Serial     string    `json:"serial"`
	StartedAt  time.Time `json:"startedAt"`
	Cgroup     string    `json:"cgroup,omitempty"`
}

func recordKey(id string, pid int) string { return id + "/" + strconv.Itoa(pid) }

// putRecord stores pr before its start is reported. A failure is logged:
// the plugin runs anyway, and Pdeathsig still ends it with the agent.
func (p *Plugins) putRecord(pr *proc) {
	rec := pluginRecord{ID: pr.id, PID: pr.pid, StartTicks: pr.startTicks, BootID: p.boot, Serial: pr.serial, StartedAt: pr.started.UTC()}
	if pr.cg != nil {
		rec.Cgroup = pr.cg.Name()
	}
	if err := p.m.store.Put(state.Plugins, recordKey(pr.id, pr.pid), rec); err != nil {
		p.log.Error("plugin process not recorded; an agent crash could leave it running", "plugin", pr.id, "pid", pr.pid, "err", err)
	}
}

func (p *Plugins) forgetRecord(pr *proc) {
	if err := p.m.store.Delete(state.Plugins, recordKey(pr.id, pr.pid)); err != nil {
		p.log.Warn("deleting plugin process record", "plugin", pr.id, "pid", pr.pid, "err", err)
	}
}

// orphan is a recorded process found still running.
type orphan struct {
	rec    pluginRecord
	pidfd  int // -1 when the group leader is gone (only members are left)
	leader bool
}

// reapOrphans ends the plugin processes an earlier agent run recorded and
// did not stop (it crashed or was killed): SIGTERM to each process group,
// SIGKILL after StopGrace. A recorded pid whose start time or boot differs
// is someone else's now and left alone. Their certificates are revoked.
func (p *Plugins) reapOrphans() {
	var recs []pluginRecord
	var keys []string
	err := p.m.store.List(state.Plugins, func(k string, v json.RawMessage) error {
		var r pluginRecord
		if json.Unmarshal(v, &r) == nil {
			recs = append(recs, r)
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		p.log.Error("reading plugin process records", "err", err)
		return
	}
	var found []orphan
	for _, r := range recs {
		if r.Serial != "" {
			p.revoke(r.Serial)
		}
		if r.BootID != p.boot || r.PID <= 1 {
			continue
		}
		o, ok := findOrphan(r)
		if !ok {
			continue
		}
		p.log.Warn("ending plugin process left by an earlier agent run", "plugin", r.ID, "pid", r.PID, "leader", o.leader)
		o.signal(unix.SIGTERM)
		found = append(found, o)
	}
	deadline := time.Now().Add(p.opts.StopGrace)
	for _, o := range found {
		if o.pidfd >= 0 {
			waitPidfd(o.pidfd, time.Until(deadline))
		}
		o.signal(unix.SIGKILL) // whatever is left
		if o.pidfd >= 0 {
			unix.Close(o.pidfd)
		}
		// kill returns before the processes are gone: wait, so that the
		// plugin's new process never meets its old one.
		if left := procgroup.WaitGone(o.rec.PID, orphanKillWait); len(left) > 0 {
			p.log.Error("plugin processes of an earlier run survive SIGKILL", "plugin", o.rec.ID, "pids", left)
		}
		p.emit(audit.Event{Type: audit.PluginExited, Severity: audit.Warning,
			TargetInfo: &audit.TargetInfo{Kind: "Plugin", ID: o.rec.ID},
			Details: map[string]any{"pid": o.rec.PID, "serial": o.rec.Serial, "reason": "orphan of an earlier agent run",
				"next": "none: the supervisor starts it anew"}})
	}
	p.reapCgroups(recs)
	if len(keys) > 0 {
		if err := p.m.store.Delete(state.Plugins, keys...); err != nil {
			p.log.Warn("deleting plugin process records", "err", err)
		}
	}
}

// pluginCgroupPrefix names the plugins' cgroups in the agent's folder.
const pluginCgroupPrefix = "plugin-"

// newCgroup creates the cgroup of a plugin process about to start, or
// returns nil (process group only) when cgroups are not in use or the
// cgroup cannot be made.
func (p *Plugins) newCgroup(id string) *procgroup.Cgroup {
	if p.opts.Cgroups == nil {
		return nil
	}
	cg, err := p.opts.Cgroups.New(pluginCgroupPrefix + id + "-" + strconv.FormatInt(time.Now().UnixNano(), 36))
	if err != nil {
		p.log.Warn("plugin runs without a cgroup (process group only)", "plugin", id, "err", err)
		return nil
	}
	return cg
}

// reapCgroups ends what is left in plugin cgroups of an earlier agent run
// (a child that called setsid survives the group kill above): each is
// killed, removed and audited.
func (p *Plugins) reapCgroups(recs []pluginRecord) {
	if p.opts.Cgroups == nil {
		return
	}
	owner := map[string]string{}
	for _, r := range recs {
		if r.Cgroup != "" {
			owner[r.Cgroup] = r.ID
		}
	}
	for _, l := range p.opts.Cgroups.Leftovers(pluginCgroupPrefix) {
		left := p.opts.Cgroups.EndLeftover(l.Name, orphanKillWait)
		if len(l.Procs) == 0 {
			continue
		}
		id := owner[l.Name]
		p.log.Warn("ended plugin processes left in a cgroup by an earlier agent run", "plugin", id, "cgroup", l.Name, "pids", l.Procs)
		d := map[string]any{"cgroup": l.Name, "pids": l.Procs, "reason": "orphan of an earlier agent run (cgroup)",
			"next": "none: the supervisor starts it anew"}
		if len(left) > 0 {
			d["survivors"] = left
		}
		p.emit(audit.Event{Type: audit.PluginExited, Severity: audit.Warning,
			TargetInfo: &audit.TargetInfo{Kind: "Plugin", ID: id}, Details: d})
	}
}

// findOrphan reports whether anything of r's process group is alive. If
// the leader is, it must have r's start time (else the pid was reused:
// not ours). If the leader is gone but processes remain in its group,
// they are ours: Linux does not hand out a pid while it is some group's
// id, so the group id cannot have been reused. Zombies (killed, not yet
// reaped by init) count as gone.
func findOrphan(r pluginRecord) (orphan, bool) {
	o := orphan{rec: r, pidfd: -1}
	st, err := procgroup.Stat(r.PID)
	switch {
	case err == nil && st.StartTicks != r.StartTicks:
		return o, false // the pid belongs to another process now
	case err == nil && st.Live():
		o.leader = true
		if fd, err := unix.PidfdOpen(r.PID, 0); err == nil {
			o.pidfd = fd
		}
		return o, true
	}
	return o, len(procgroup.Alive(r.PID)) > 0
}

// orphanKillWait bounds how long reapOrphans waits for a killed group to
// be gone (a process in uninterruptible sleep dies only when it wakes).
const orphanKillWait = 2 * time.Second

// signal signals the orphan's group and, through its pidfd (which cannot
// name a reused pid), its leader in case it left the group.
func (o orphan) signal(sig unix.Signal) {
	unix.Kill(-o.rec.PID, sig)
	if o.pidfd >= 0 {
		unix.PidfdSendSignal(o.pidfd, sig, nil, 0)
	}
}

// waitPidfd waits until the process behind fd exits or d passes.
func waitPidfd(fd int, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n > 0 {
			return
		}
	}
}

// bootID identifies this boot of the kernel ("" if unknown: then no
// recorded process is trusted to be ours).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	return strings.TrimSpace(string(b))
}
