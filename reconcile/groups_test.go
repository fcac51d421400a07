package reconcile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/state"
)

func leastPrivilegeJSON(status, group string, standing ...string) []byte {
	q := make([]string, len(standing))
	for i, s := range standing {
		q[i] = fmt.Sprintf("%q", s)
	}
	return fmt.Appendf(nil, `{"kind": "Policy", "id": "no-standing-admins", "spec": {
  "name": "No standing admins", "type": "LeastPrivilege", "status": %q, "controls": ["deny"],
  "leastPrivilege": {"adminGroups": [%q], "standingAdmins": [%s], "allowEmpty": true},
  "filters": {"machines": ["*"]}}}`, status, group, strings.Join(q, ", "))
}

func members(t testing.TB, group string) []string {
	t.Helper()
	gs, err := readGroups("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	return gs[group]
}

func TestLeastPrivilegeEnforceRemovesSelfAdded(t *testing.T) {
	needRoot(t, "gpasswd", "cvtsudoers")
	grp := testGroup(t)
	admin, intruder := testUser(t), testUser(t)
	run(t, "gpasswd", "-a", admin.Username, grp)
	run(t, "gpasswd", "-a", "root", grp)
	e, _ := privEnv(t, nil)
	e.apply(validated(t, leastPrivilegeJSON("enforce", grp, admin.Username))...)
	e.start()
	e.waitQuiet()

	run(t, "gpasswd", "-a", intruder.Username, grp)
	e.timeout = time.Second // the bound
	e.waitFor("self-added user removed", func() bool { return !slices.Contains(members(t, grp), intruder.Username) })
	e.timeout = 0
	e.waitQuiet()
	if got := members(t, grp); !slices.Contains(got, admin.Username) || !slices.Contains(got, "root") {
		t.Fatalf("members %v: the standing admin and root must stay", got)
	}
	field := "member:" + intruder.Username
	if !e.hasDrift(KindGroupMembership, grp, field, state.DriftCorrected) {
		t.Fatalf("no corrected GroupMembership drift:%s", fmtDrift(e.drift()))
	}
	e.waitFor("DRIFT_DETECTED and DRIFT_CORRECTED", func() bool {
		return e.hasEvent(audit.DriftDetected, grp) && e.hasEvent(audit.DriftCorrected, grp)
	})
	// The record names user and group: the removal can be undone from it.
	for _, ev := range e.events(audit.DriftDetected) {
		if ev.TargetInfo != nil && ev.TargetInfo.ID == grp {
			if ev.Details["field"] != field || !strings.Contains(fmt.Sprint(ev.Details["action"]), "gpasswd -a "+intruder.Username+" "+grp) {
				t.Fatalf("DRIFT_DETECTED details %v", ev.Details)
			}
		}
	}
}

func TestLeastPrivilegeMonitorOnlyReports(t *testing.T) {
	needRoot(t, "gpasswd", "cvtsudoers")
	grp := testGroup(t)
	intruder := testUser(t)
	e, _ := privEnv(t, nil)
	e.apply(validated(t, leastPrivilegeJSON("monitor", grp))...)
	e.start()
	e.waitQuiet()
	run(t, "gpasswd", "-a", intruder.Username, grp)
	field := "member:" + intruder.Username
	e.waitFor("drift reported", func() bool { return e.hasDrift(KindGroupMembership, grp, field, state.DriftUnresolved) })
	e.waitQuiet()
	if !slices.Contains(members(t, grp), intruder.Username) {
		t.Fatal("monitor removed the user")
	}
	e.waitFor("DRIFT_DETECTED audited", func() bool { return e.hasEvent(audit.DriftDetected, grp) })

	// The user leaves by themselves: the drift is settled.
	run(t, "gpasswd", "-d", intruder.Username, grp)
	e.waitFor("drift corrected", func() bool { return e.hasDrift(KindGroupMembership, grp, field, state.DriftCorrected) })
}

// A policy for other machines changes nothing here.
func TestLeastPrivilegeOtherMachine(t *testing.T) {
	needRoot(t, "gpasswd", "cvtsudoers")
	grp := testGroup(t)
	u := testUser(t)
	run(t, "gpasswd", "-a", u.Username, grp)
	e, _ := privEnv(t, nil)
	doc := strings.Replace(string(leastPrivilegeJSON("enforce", grp)), `"machines": ["*"]`, `"machines": ["wdn-grants-elsewhere-*"]`, 1)
	e.apply(validated(t, []byte(doc))...)
	e.start()
	e.waitQuiet()
	if !slices.Contains(members(t, grp), u.Username) {
		t.Fatal("a policy for other machines removed the user")
	}
	for _, r := range e.drift() {
		if r.Kind == KindGroupMembership || r.Kind == KindStandingPrivilege {
			t.Fatalf("drift for another machine's policy:%s", fmtDrift(e.drift()))
		}
	}
}

func TestStandingSudoRuleReported(t *testing.T) {
	needRoot(t, "gpasswd", "cvtsudoers", "visudo")
	dir := sudoersFolder(t)
	grp := testGroup(t)
	u, admin := testUser(t), testUser(t)
	rules := u.Username + " ALL=(ALL) /usr/bin/id\n" + admin.Username + " ALL=(ALL) ALL\n%" + grp + " ALL=(ALL) ALL\n"
	if err := os.WriteFile(filepath.Join(dir, "wdn-standing"), []byte(rules), 0o440); err != nil {
		t.Fatal(err)
	}
	e, _ := privEnv(t, nil)
	e.apply(validated(t, leastPrivilegeJSON("enforce", grp, admin.Username))...)
	e.start()
	key := standingPrefix + u.Username
	e.waitFor("standing rule reported", func() bool {
		return e.hasDrift(KindStandingPrivilege, key, "rule", state.DriftUnresolved)
	})
	e.waitQuiet()
	for _, r := range e.drift() {
		if r.Kind == KindStandingPrivilege && (r.Name == standingPrefix+admin.Username || r.Name == standingPrefix+"%"+grp || r.Name == standingPrefix+"root") {
			t.Errorf("reported what the policy allows: %s", fmtDrift([]state.DriftRecord{r}))
		}
	}
	if got := readFile(filepath.Join(dir, "wdn-standing")); got != rules {
		t.Fatalf("sudoers edited: %q", got)
	}
	// The rule removed by the administrator: settled at the next look.
	os.Remove(filepath.Join(dir, "wdn-standing"))
	e.m.Controller(GroupsController).Enqueue(key)
	e.waitFor("standing drift corrected", func() bool {
		return e.hasDrift(KindStandingPrivilege, key, "rule", state.DriftCorrected)
	})
}

func FuzzParseGroups(f *testing.F) {
	f.Add([]byte("root:x:0:\nsudo:x:27:alice,bob\n+nis\nbad line\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gs, err := parseGroups(data)
		if err != nil {
			return
		}
		for name, ms := range gs {
			if name == "" || strings.ContainsAny(name, ":\n") {
				t.Fatalf("group name %q", name)
			}
			for _, m := range ms {
				if m == "" || strings.ContainsAny(m, ",:\n") {
					t.Fatalf("member %q", m)
				}
			}
		}
	})
}
