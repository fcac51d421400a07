package policy

import (
	"fmt"
	"time"

	"warden/schema"
)

// checkExecPolicy reports what an ApplicationControl policy sets that the
// exec path cannot honour: at exec time the kernel gives a file, a process
// and its credentials, not a command line, a publisher or a lasting grant.
func checkExecPolicy(s *schema.PolicySpec, fail func(field, format string, args ...any)) {
	for i, c := range s.Controls {
		if c != Allow && c != Deny {
			fail(fmt.Sprintf("controls[%d]", i), "ApplicationControl policies allow or deny; %q is not possible at exec time", c)
		}
	}
	if s.DurationSeconds != 0 {
		fail("durationSeconds", "not used by ApplicationControl policies (an exec is allowed or denied, nothing lasts)")
	}
	if s.Redirect != nil {
		fail("redirect", "not used by ApplicationControl policies")
	}
	for i, a := range s.Filters.Applications {
		field := fmt.Sprintf("filters.applications[%d]", i)
		for _, f := range [...]struct{ name, v string }{{"commandLine", a.CommandLine}, {"publisher", a.Publisher}, {"parent", a.Parent}} {
			if f.v != "" {
				fail(field+"."+f.name, "not known at exec time; ApplicationControl matches path and sha256")
			}
		}
	}
}

// Profile is what an Index holds for one action, for callers that decide
// what to gather before they ask (the exec controller hashes a file only
// when some policy could match on its sha256).
type Profile struct {
	// Policies counts the policies of the action that are not off.
	Policies int
	// Enforcing counts those with status enforce.
	Enforcing int
	// SHA256 is set when one of them filters on an application's sha256.
	SHA256 bool
	// TimeWindows is set when one of them has a time filter: its decision
	// for the same request can change with the clock.
	TimeWindows bool
	// Groups is set when one of them filters on groups.
	Groups bool
}

// Profile describes the policies of action.
func (ix *Index) Profile(action string) Profile {
	var pr Profile
	a, ok := actionIndex[action]
	if !ok {
		return pr
	}
	for _, i := range ix.buckets[a].all {
		p := ix.policies[i]
		pr.Policies++
		if !p.monitor {
			pr.Enforcing++
		}
		if p.window != nil {
			pr.TimeWindows = true
		}
		if len(p.groups) > 0 {
			pr.Groups = true
		}
		for _, m := range p.apps {
			if m.sha256 != "" {
				pr.SHA256 = true
			}
		}
	}
	return pr
}

// ExecCovers reports whether an enforcing ApplicationControl policy allows
// every user on every machine to run programs directly in dir, judged at
// now: what an allow list (Settings applicationControl.default "deny")
// needs for the system's own folders. A policy limited to some users,
// groups or machines, or to a sha256, does not cover dir.
func (ix *Index) ExecCovers(dir string, now time.Time) bool {
	req := Request{User: "\x00any-user", Machine: "\x00any-machine", Action: ActionExec,
		Application: Application{Path: dir + "/\x00any-program"}}
	d := ix.Evaluate(&req, now)
	return d.EnforcedBy != "" && d.Effective == Allow
}

// SystemDirs are the folders an allow list must cover for the machine to
// keep working (`warden validate` warns when one is not).
var SystemDirs = []string{"/usr/bin", "/usr/sbin"}

// AllowListWarnings looks at a set of documents as one generation: when
// its Settings make application control an allow list (default "deny",
// or "monitor" while one is rolled out),
// it names each of SystemDirs that no enforcing ApplicationControl allow
// policy covers for every user (ExecCovers), judged at now. Policies that
// do not compile are left out (Compile reports them).
func AllowListWarnings(docs []*schema.Document, now time.Time) []string {
	var set *schema.SettingsSpec
	var policies []*schema.Document
	for _, d := range docs {
		switch {
		case d.Kind == schema.KindSettings:
			set = d.Settings()
		case d.Kind == schema.KindPolicy && d.Policy() != nil && d.Policy().Type == TypeApplicationControl:
			if _, err := Compile([]*schema.Document{d}); err == nil {
				policies = append(policies, d)
			}
		}
	}
	if set == nil || (set.ApplicationControl.Default != Deny && set.ApplicationControl.Default != "monitor") {
		return nil
	}
	ix, err := Compile(policies)
	if err != nil { // duplicate ids; Compile's own report names them
		return nil
	}
	var out []string
	for _, dir := range SystemDirs {
		if !ix.ExecCovers(dir, now) {
			out = append(out, fmt.Sprintf("settings: spec.applicationControl.default is %s (an allow list) but no enforcing ApplicationControl policy allows every user to run programs in %s", set.ApplicationControl.Default, dir))
		}
	}
	return out
}

// ExecMayMatch reports whether an ApplicationControl policy that is not
// off could match an exec of the file at path whose content has the given
// sha256 ("" when not known), for any user, group, machine or time of
// day: only the file's own filters (applications and folders) are judged,
// and a pattern with a variable (${USER}, ${HOME}, ${MACHINE}), or a
// sha256 filter when the sum is not known, counts as matching. When it
// reports false, every exec of that file at that path gets the same
// answer, the controller's default, whoever runs it (the exec controller
// lets the kernel answer such files itself).
func (ix *Index) ExecMayMatch(path, sha256 string) bool {
	a, ok := actionIndex[ActionExec]
	if !ok {
		return true
	}
	for _, i := range ix.buckets[a].all {
		if ix.policies[i].mayMatchFile(path, sha256) {
			return true
		}
	}
	return false
}

func (p *compiled) mayMatchFile(path, sum string) bool {
	apps := len(p.apps) == 0
	for k := range p.apps {
		m := &p.apps[k]
		// commandLine, publisher and parent are refused for exec policies
		// (checkExecPolicy); were one there, it would not narrow this.
		if (m.path == nil || m.path.vars || m.path.match(path, vars{})) &&
			(m.sha256 == "" || sum == "" || m.sha256 == sum) {
			apps = true
			break
		}
	}
	if !apps {
		return false
	}
	if len(p.folders) == 0 {
		return true
	}
	for i := range p.folders {
		f := &p.folders[i]
		if f.self.vars || f.below.vars || f.self.match(path, vars{}) || f.below.match(path, vars{}) {
			return true
		}
	}
	return false
}
