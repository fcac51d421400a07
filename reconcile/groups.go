package reconcile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"

	"warden/audit"
	"warden/policy"
	"warden/schema"
)

// Groups is the controller of LeastPrivilege policies (those with a
// leastPrivilege block whose machines filter selects this machine; status
// off ignored). Each admin group holds only
// the policies' standingAdmins: anyone else is removed with gpasswd -d
// (status enforce) or only reported (monitor), as drift of kind
// GroupMembership whose record names the user and the group, so a removal
// can be undone with gpasswd -a. root is never removed. Standing sudo
// rules that let a user or group run commands as root, other than warden's
// own grants, the admin groups and the standing admins, are reported as
// drift of kind StandingPrivilege: warden never edits sudoers.
//
// Its keys are the admin groups' names and sudoers:<principal> for the
// standing rules. It watches the group file's folder, so a user
// who adds themselves to an admin group is out within a second.
type Groups struct {
	m         *Manager
	ctrl      *Controller
	sudoers   string // main sudoers file, read with cvtsudoers
	groupFile string // /etc/group
	machine   string // matched against the policies' machines filter

	mu   sync.Mutex
	keys map[string]bool // every key named so far: a group a removed policy named settles too
}

var _ Reconciler = (*Groups)(nil)

// adminGroup is what the LeastPrivilege policies want of one group.
type adminGroup struct {
	allowed  map[string]bool
	enforce  bool     // some policy naming the group enforces
	policies []string // the policies naming it
}

// desired merges the LeastPrivilege policies: by group, who may stay.
// A user allowed by any policy stays; one enforcing policy makes the
// group enforced.
func (g *Groups) desired() (map[string]*adminGroup, error) {
	var existing map[string][]string
	out := map[string]*adminGroup{}
	for _, d := range g.m.store.Current().Docs {
		p := d.Policy()
		if p == nil || p.Type != "LeastPrivilege" || p.LeastPrivilege == nil || p.Status == "off" ||
			!policy.MatchesMachine(p.Filters.Machines, g.machine) {
			continue
		}
		groups := p.LeastPrivilege.AdminGroups
		if len(groups) == 0 {
			if existing == nil {
				var err error
				if existing, err = readGroups(g.groupFile); err != nil {
					return nil, err
				}
			}
			for _, n := range schema.DefaultAdminGroups {
				if _, ok := existing[n]; ok {
					groups = append(groups, n)
				}
			}
		}
		for _, n := range groups {
			ag := out[n]
			if ag == nil {
				ag = &adminGroup{allowed: map[string]bool{}}
				out[n] = ag
			}
			for _, u := range p.LeastPrivilege.StandingAdmins {
				ag.allowed[u] = true
			}
			ag.enforce = ag.enforce || p.Status == "enforce"
			ag.policies = append(ag.policies, d.ID)
		}
	}
	return out, nil
}

// Keys names the admin groups and, when there are any, the principals of
// standing sudo rules.
func (g *Groups) Keys(ctx context.Context) ([]string, error) {
	want, err := g.desired()
	var found map[string][]string
	if err == nil && len(want) > 0 {
		found, err = g.standing(want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys == nil {
		g.keys = map[string]bool{}
	}
	for n := range want {
		g.keys[n] = true
	}
	for who := range found {
		g.keys[standingPrefix+who] = true
	}
	keys := make([]string, 0, len(g.keys))
	for k := range g.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, err
}

// Reconcile brings one admin group to its standing admins, or reports the
// standing sudo rules.
func (g *Groups) Reconcile(ctx context.Context, key string) (Result, error) {
	want, err := g.desired()
	if err != nil {
		return Result{}, err
	}
	if strings.HasPrefix(key, standingPrefix) {
		return Result{}, g.reconcileStanding(ctx, key, want)
	}
	ag := want[key]
	if ag == nil {
		return Result{}, nil // no policy names the group (any more)
	}
	groups, err := readGroups(g.groupFile)
	if err != nil {
		return Result{}, err
	}
	var monitored []string
	for _, u := range groups[key] {
		if ag.allowed[u] || isRoot(u) {
			continue
		}
		t := &audit.TargetInfo{Kind: KindGroupMembership, ID: key}
		field := "member:" + u
		if !ag.enforce {
			ReportDrift(ctx, Drift{Kind: KindGroupMembership, ID: key, Field: field, Desired: "not a member (not in standingAdmins)",
				Actual: "member", Action: "none: monitor (gpasswd -d " + u + " " + key + " would remove it)", Target: t})
			monitored = append(monitored, u)
			continue
		}
		ReportDrift(ctx, Drift{Kind: KindGroupMembership, ID: key, Field: field, Desired: "not a member (not in standingAdmins)",
			Actual: "member", Action: "gpasswd -d " + u + " " + key + " (undo: gpasswd -a " + u + " " + key + ")", Target: t})
		out, err := exec.Command("gpasswd", "-d", u, key).CombinedOutput()
		if err != nil {
			return Result{}, fmt.Errorf("gpasswd -d %s %s: %w: %s", u, key, err, bytes.TrimSpace(out))
		}
		g.m.metrics.writes.WithLabelValues(GroupsController, "gpasswd").Inc()
		g.m.log.Info("removed from admin group", "user", u, "group", key, "policies", ag.policies)
	}
	if len(monitored) > 0 {
		return Result{}, TerminalError(fmt.Errorf("monitor: %s left in %s (policy %s is not enforcing)",
			strings.Join(monitored, ", "), key, strings.Join(ag.policies, ", ")))
	}
	return Result{}, nil
}

// standingPrefix starts the keys of standing sudo rules: sudoers:<user>
// or sudoers:%<group>, one key (and drift record) per principal, so that
// each is settled when its own rules go.
const standingPrefix = "sudoers:"

// standing lists the principals the active sudo rules let run commands as
// root, beside warden's grants, the admin groups and the standing admins:
// principal ("alice", "%ops", "#1005") -> the commands.
func (g *Groups) standing(want map[string]*adminGroup) (map[string][]string, error) {
	rules, err := activeRules(g.sudoers)
	if err != nil {
		return nil, err
	}
	grants, err := grantsInForce(g.m.store, "elevate", g.m.now())
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{}
	for _, ag := range want {
		for u := range ag.allowed {
			allowed[u] = true
		}
	}
	found := map[string][]string{}
	for _, r := range rules {
		if !r.asRoot() || slices.ContainsFunc(grantList(grants), r.isGrant) {
			continue
		}
		for _, u := range r.Users {
			if u.Negated {
				continue
			}
			var who string
			switch {
			case u.Kind == "username" && (isRoot(u.Value) || allowed[u.Value]):
			case u.Kind == "userid" && u.Value == "0":
			case u.Kind == "usergroup" && want[u.Value] != nil:
			case u.Kind == "username":
				who = u.Value
			case u.Kind == "usergroup":
				who = "%" + u.Value
			case u.Kind == "userid":
				who = "#" + u.Value
			default:
				who = u.Kind + ":" + u.Value
			}
			if who != "" {
				found[who] = append(found[who], r.commands())
			}
		}
	}
	return found, nil
}

// reconcileStanding reports the standing rules of one principal.
func (g *Groups) reconcileStanding(ctx context.Context, key string, want map[string]*adminGroup) error {
	if len(want) == 0 {
		return nil
	}
	found, err := g.standing(want)
	if err != nil {
		return err
	}
	who := strings.TrimPrefix(key, standingPrefix)
	cmds := found[who]
	if len(cmds) == 0 {
		return nil
	}
	slices.Sort(cmds)
	ReportDrift(ctx, Drift{Kind: KindStandingPrivilege, ID: key, Field: "rule", Desired: "no standing root rule",
		Actual: "may run as root: " + strings.Join(slices.Compact(cmds), "; "),
		Action: "none: warden never edits sudoers; remove the rule, or name the user in standingAdmins",
		Target: &audit.TargetInfo{Kind: KindStandingPrivilege, ID: key}})
	return TerminalError(fmt.Errorf("a standing sudo rule lets %s run commands as root", who))
}

// triggers watches the group file's folder (the file is replaced by a
// rename, so the folder, not the file) for the group file and sudoers.
func (g *Groups) triggers(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		g.m.log.Warn("cannot watch the group file; membership is checked at resync", "err", err)
		return
	}
	defer w.Close()
	dir, base := filepath.Split(g.groupFile)
	if err := w.Add(filepath.Clean(dir)); err != nil {
		g.m.log.Warn("cannot watch the group file; membership is checked at resync", "dir", dir, "err", err)
		return
	}
	sdir, sbase := filepath.Split(g.sudoers)
	if filepath.Clean(sdir) != filepath.Clean(dir) {
		w.Add(filepath.Clean(sdir))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			switch filepath.Base(ev.Name) {
			case base:
				g.ctrl.resync(ctx)
			case sbase, "sudoers.d":
				g.ctrl.resync(ctx)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			g.m.log.Warn("group file watch error; full resync", "err", err)
			g.ctrl.resync(ctx)
		}
	}
}

// readGroups reads the group file: members by group name. The format is
// the system's (group(5)): name:password:gid:member,member.
func readGroups(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseGroups(data)
}

func parseGroups(data []byte) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue // NIS compat entries are not local groups
		}
		f := strings.Split(line, ":")
		if len(f) != 4 || f[0] == "" {
			continue
		}
		var members []string
		for _, u := range strings.Split(f[3], ",") {
			if u = strings.TrimSpace(u); u != "" {
				members = append(members, u)
			}
		}
		out[f[0]] = members
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Join(errors.New("read group file"), err)
	}
	return out, nil
}

// isRoot reports whether the user name is root's (uid 0).
func isRoot(name string) bool {
	if name == "root" {
		return true
	}
	u, err := lookupUID(name)
	return err == nil && u == "0"
}
