package appcontrol

import (
	"encoding/json"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/policy"
)

// coalesceWindow is how long repeated blocks of one file for one user give
// one event: the first is audited at once, the repeats as one count when
// the window ends.
const coalesceWindow = time.Minute

// report is one blocked (or, in monitor mode, would-be blocked) exec on
// its way to the audit log.
type report struct {
	v        verdict
	uid, gid uint32
	groups   string
	pid      int
	ppid     int
	path     string
	parent   string
	dev, ino uint64
}

type coalesceKey struct {
	uid      uint32
	dev, ino uint64
	path     string
	blocked  bool
}

type pending struct {
	first   report
	repeats int
	since   time.Time
}

// newReport describes a blocked exec. Build it before answering: while
// the kernel holds the exec its parent is waiting for it, so the parent's
// program can still be read.
func (c *Controller) newReport(ev *event, sub subject, path string, st *unix.Stat_t, v verdict) report {
	parent, _ := readlink("/proc/" + strconv.Itoa(sub.ppid) + "/exe")
	if !sub.full { // the audit names every group: ask /proc while the process waits
		if s, err := readSubject(ev.pid, ev.pidfd, make([]byte, statusBuf)); err == nil {
			sub = s
		}
	}
	return report{v: v, uid: sub.uid, gid: sub.gid, groups: sub.groups, pid: ev.pid, ppid: sub.ppid, path: path,
		parent: parent, dev: st.Dev, ino: st.Ino}
}

// queue hands a report to the audit loop without waiting for it to be
// stored: the exec has its answer already. A full queue drops it and
// counts the drop.
func (c *Controller) queue(r report) {
	select {
	case c.reports <- r:
	default:
		if c.stats.Dropped.Add(1)%1000 == 1 {
			c.log.Error("APPLICATION_BLOCKED events dropped: audit queue full", "dropped", c.stats.Dropped.Load())
		}
	}
}

// auditLoop writes the reports, coalescing repeats, until c.reports is
// closed; then it writes the repeat counts still open.
func (c *Controller) auditLoop() {
	open := map[coalesceKey]*pending{}
	tick := time.NewTicker(coalesceWindow / 4)
	defer tick.Stop()
	flush := func(now time.Time, all bool) {
		for k, p := range open {
			if !all && now.Sub(p.since) < coalesceWindow {
				continue
			}
			if p.repeats > 0 {
				c.emit(p.first, p.repeats)
			}
			delete(open, k)
		}
	}
	for {
		select {
		case r, ok := <-c.reports:
			if !ok {
				flush(time.Time{}, true)
				return
			}
			k := coalesceKey{uid: r.uid, dev: r.dev, ino: r.ino, path: r.path, blocked: r.v.blocked}
			if p := open[k]; p != nil {
				p.repeats++
				continue
			}
			if len(open) < 10000 {
				open[k] = &pending{first: r, since: c.opts.Now()}
			}
			c.emit(r, 0)
		case <-tick.C:
			flush(c.opts.Now(), false)
		}
	}
}

// emit writes one APPLICATION_BLOCKED event; repeats > 0 makes it the
// count of the same block seen again within the window.
func (c *Controller) emit(r report, repeats int) {
	now := c.opts.Now()
	sub := subject{uid: r.uid, gid: r.gid, groups: r.groups}
	sev, decision, effective := audit.Warning, "deny", "deny"
	if !r.v.blocked {
		sev, effective = audit.Info, "allow"
	}
	details := map[string]any{"pid": r.pid, "ppid": r.ppid, "uid": r.uid, "blocked": r.v.blocked, "mode": r.v.mode}
	if r.parent != "" {
		details["parent"] = r.parent
	}
	if repeats > 0 {
		details["repeats"] = repeats
		details["window"] = coalesceWindow.String()
	}
	if r.v.mode == policy.StatusMonitorNotify && repeats == 0 && c.opts.Notify != nil {
		payload, _ := json.Marshal(map[string]any{"type": "application", "user": c.names.user(r.uid, now),
			"machine": c.opts.Machine, "application": r.path, "decision": decision, "policy": r.v.policy, "time": now.UTC()})
		c.opts.Notify(payload)
	}
	c.opts.Audit.Emit(audit.Event{Type: audit.ApplicationBlocked, Severity: sev, Component: "appcontrol",
		UserInfo:   &audit.UserInfo{User: c.names.user(r.uid, now), Groups: c.names.groupNames(sub, now), PeerPID: r.pid},
		TargetInfo: &audit.TargetInfo{Kind: "exec", Path: r.path, Hash: r.v.sha256},
		Evaluation: &audit.Evaluation{Decision: decision, Effective: effective, Mode: r.v.mode, Policy: r.v.policy, Reason: r.v.reason},
		Details:    details})
}

func readlink(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlink(p, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
