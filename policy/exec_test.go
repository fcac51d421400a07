package policy

import (
	"strings"
	"testing"

	"warden/schema"
)

// TestExecSeparateFromElevation checks that ApplicationControl and
// PrivilegeElevation policies never take part in each other's decisions.
func TestExecSeparateFromElevation(t *testing.T) {
	ix := mustCompile(t, []*schema.Document{
		policyDoc("no-nc-exec", schema.PolicySpec{Type: TypeApplicationControl, Controls: []string{Deny},
			Filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/bin/nc*"}}}}),
		policyDoc("elevate-nc", schema.PolicySpec{Controls: []string{Allow},
			Filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/bin/nc*"}}}}),
		policyDoc("no-vim-elevate", schema.PolicySpec{Controls: []string{Deny},
			Filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/bin/vim"}}}}),
	})
	cases := []struct {
		name, action, app, effective, policy string
	}{
		{"elevation ignores the exec deny", ActionElevate, "/usr/bin/nc", Allow, "elevate-nc"},
		{"exec ignores the elevation allow", ActionExec, "/usr/bin/nc", Deny, "no-nc-exec"},
		{"exec ignores the elevation deny", ActionExec, "/usr/bin/vim", Deny, ""},
		{"elevation deny still applies", ActionElevate, "/usr/bin/vim", Deny, "no-vim-elevate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := &Request{User: "carol", Machine: "ws-17", Action: c.action, Application: Application{Path: c.app}}
			if err := req.Validate(); err != nil {
				t.Fatal(err)
			}
			d := ix.Evaluate(req, monday10)
			if d.Effective != c.effective || d.Policy != c.policy {
				t.Errorf("got effective %s policy %q (matched %v), want %s %q", d.Effective, d.Policy, d.Matched, c.effective, c.policy)
			}
		})
	}
}

// TestExecPolicyRules checks that Compile names what an ApplicationControl
// policy cannot use at exec time.
func TestExecPolicyRules(t *testing.T) {
	cases := []struct {
		name string
		spec schema.PolicySpec
		want string // "" means it compiles
	}{
		{"allow and deny", schema.PolicySpec{Controls: []string{Allow}}, ""},
		{"mfa", schema.PolicySpec{Controls: []string{MFA}}, `spec.controls[0]: ApplicationControl policies allow or deny; "mfa"`},
		{"duration", schema.PolicySpec{Controls: []string{Allow}, DurationSeconds: 600}, "spec.durationSeconds: not used"},
		{"command line", schema.PolicySpec{Controls: []string{Deny}, Filters: schema.Filters{
			Applications: []schema.ApplicationFilter{{Path: "/bin/sh", CommandLine: "sh -c *"}}}},
			"spec.filters.applications[0].commandLine: not known at exec time"},
		{"parent", schema.PolicySpec{Controls: []string{Deny}, Filters: schema.Filters{
			Applications: []schema.ApplicationFilter{{Parent: "/bin/bash"}}}},
			"spec.filters.applications[0].parent: not known at exec time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Type = TypeApplicationControl
			_, err := Compile([]*schema.Document{policyDoc("ac", c.spec)})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Compile: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Compile error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestProfileAndExecCovers(t *testing.T) {
	ac := func(id string, status string, f schema.Filters, controls ...string) *schema.Document {
		return policyDoc(id, schema.PolicySpec{Type: TypeApplicationControl, Status: status, Controls: controls, Filters: f})
	}
	bin := schema.Filters{Folders: []string{"/usr/bin"}}
	ix := mustCompile(t, []*schema.Document{
		ac("bin", StatusEnforce, bin, Allow),
		ac("sbin-admins", StatusEnforce, schema.Filters{Users: []string{"root"}, Folders: []string{"/usr/sbin"}}, Allow),
		ac("hash", StatusMonitor, schema.Filters{Applications: []schema.ApplicationFilter{{SHA256: shaNC}}}, Deny),
		ac("off", StatusOff, schema.Filters{}, Deny),
		policyDoc("elev", schema.PolicySpec{Controls: []string{Allow}, Filters: schema.Filters{Folders: []string{"/usr/sbin"}}}),
	})
	pr := ix.Profile(ActionExec)
	if want := (Profile{Policies: 3, Enforcing: 2, SHA256: true}); pr != want {
		t.Errorf("Profile(exec) = %+v, want %+v", pr, want)
	}
	if pr := ix.Profile(ActionElevate); pr.SHA256 || pr.Policies != 1 {
		t.Errorf("Profile(elevate) = %+v, want 1 policy without sha256", pr)
	}
	if !ix.ExecCovers("/usr/bin", monday10) {
		t.Error("/usr/bin: an enforce allow on the folder for everyone should cover it")
	}
	if ix.ExecCovers("/usr/sbin", monday10) {
		t.Error("/usr/sbin: an allow for root only (and an elevation policy) should not cover it")
	}
}

func TestAllowListWarnings(t *testing.T) {
	settings := func(def string) string {
		return `{"kind": "Settings", "id": "agent", "spec": {"applicationControl": {"default": "` + def + `"}}}`
	}
	system := `{"kind": "Policy", "id": "system", "spec": {"name": "system", "type": "ApplicationControl",
		"status": "enforce", "controls": ["allow"], "filters": {"folders": ["/usr/bin", "/usr/sbin"]}}}`
	monitored := `{"kind": "Policy", "id": "system", "spec": {"name": "system", "type": "ApplicationControl",
		"status": "monitor", "controls": ["allow"], "filters": {"folders": ["/usr/bin", "/usr/sbin"]}}}`
	cases := []struct {
		name string
		docs []string
		want int
	}{
		{"deny list needs nothing", []string{settings("allow")}, 0},
		{"no settings", []string{system}, 0},
		{"allow list without system dirs", []string{settings("deny")}, 2},
		{"allow list with system dirs", []string{settings("deny"), system}, 0},
		{"monitor does not cover", []string{settings("deny"), monitored}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := AllowListWarnings(validated(t, c.docs...), monday10)
			if len(got) != c.want {
				t.Errorf("got %d warnings %q, want %d", len(got), got, c.want)
			}
		})
	}
}

// TestExecMayMatch: a file no ApplicationControl policy could match for
// anyone is what the exec controller lets the kernel answer by itself, so
// every filter that is about the caller (users, groups, machines, time)
// must count as matching, and a variable or an unknown sha256 too.
func TestExecMayMatch(t *testing.T) {
	apps := func(a ...schema.ApplicationFilter) schema.Filters { return schema.Filters{Applications: a} }
	cases := []struct {
		name   string
		status string
		f      schema.Filters
		path   string
		sum    string
		want   bool
	}{
		{"no filter on the file", StatusEnforce, schema.Filters{Users: []string{"alice"}}, "/usr/bin/true", "", true},
		{"path of another program", StatusEnforce, apps(schema.ApplicationFilter{Path: "/usr/bin/nc*"}), "/usr/bin/true", "", false},
		{"path of this program, for one user", StatusEnforce, schema.Filters{Users: []string{"alice"}, Applications: []schema.ApplicationFilter{{Path: "/usr/bin/tr*"}}}, "/usr/bin/true", "", true},
		{"on one machine", StatusEnforce, schema.Filters{Machines: []string{"nowhere"}, Folders: []string{"/usr/bin"}}, "/usr/bin/true", "", true},
		{"within a time window", StatusEnforce, schema.Filters{Time: &schema.TimeWindow{Days: []string{"sat"}}, Folders: []string{"/usr/bin"}}, "/usr/bin/true", "", true},
		{"monitor counts", StatusMonitor, apps(schema.ApplicationFilter{Path: "/usr/bin/true"}), "/usr/bin/true", "", true},
		{"off does not", StatusOff, apps(schema.ApplicationFilter{Path: "/usr/bin/true"}), "/usr/bin/true", "", false},
		{"folder of this program", StatusEnforce, schema.Filters{Folders: []string{"/usr"}}, "/usr/bin/true", "", true},
		{"another folder", StatusEnforce, schema.Filters{Folders: []string{"/home"}}, "/usr/bin/true", "", false},
		{"path matches, folder does not", StatusEnforce, schema.Filters{Folders: []string{"/home"}, Applications: []schema.ApplicationFilter{{Path: "/usr/bin/true"}}}, "/usr/bin/true", "", false},
		{"path with ${HOME}", StatusEnforce, apps(schema.ApplicationFilter{Path: "${HOME}/bin/*"}), "/usr/bin/true", "", true},
		{"folder with ${USER}", StatusEnforce, schema.Filters{Folders: []string{"/srv/${USER}"}}, "/usr/bin/true", "", true},
		{"sha256 not known", StatusEnforce, apps(schema.ApplicationFilter{SHA256: shaNC}), "/usr/bin/true", "", true},
		{"sha256 of another file", StatusEnforce, apps(schema.ApplicationFilter{SHA256: shaNC}), "/usr/bin/true", strings.Repeat("2", 64), false},
		{"sha256 of this file", StatusEnforce, apps(schema.ApplicationFilter{SHA256: shaNC}), "/usr/bin/true", shaNC, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ix := mustCompile(t, []*schema.Document{policyDoc("ac", schema.PolicySpec{Type: TypeApplicationControl,
				Status: c.status, Controls: []string{Deny}, Filters: c.f})})
			if got := ix.ExecMayMatch(c.path, c.sum); got != c.want {
				t.Errorf("ExecMayMatch(%s, %q) = %v, want %v", c.path, c.sum, got, c.want)
			}
		})
	}
	elevation := mustCompile(t, []*schema.Document{policyDoc("elev", schema.PolicySpec{Controls: []string{Deny}})})
	if elevation.ExecMayMatch("/usr/bin/true", "") {
		t.Error("an elevation policy took part in ExecMayMatch")
	}
}
