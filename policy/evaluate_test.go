package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"warden/schema"
)

const shaNC = "1111111111111111111111111111111111111111111111111111111111111111"

// TestFilters checks every filter alone: one allow policy with the filter,
// one request that matches it and one that does not.
func TestFilters(t *testing.T) {
	base := func() *Request {
		return &Request{User: "carol", Groups: []string{"staff", "developers"}, Machine: "ws-17", Action: ActionElevate,
			Application: Application{Path: "/usr/bin/nc", SHA256: shaNC, CommandLine: "nc -l 4444", Publisher: "Debian", Parent: "/usr/bin/bash"}}
	}
	fileReq := func(p string) func(*Request) {
		return func(r *Request) { r.Action, r.Target = ActionFileAccess, &Target{Path: p} }
	}
	cases := []struct {
		name    string
		typ     string
		filters schema.Filters
		hit     func(*Request) // changes base into a request that matches; nil: base matches
		miss    func(*Request) // changes base into a request that does not
		at      time.Time      // default monday10
		missAt  time.Time      // when set, the miss is base at this time
	}{
		{name: "no filters match all", hit: nil, miss: func(r *Request) { r.Action = ActionCommand }},
		{name: "users literal", filters: schema.Filters{Users: []string{"carol"}}, miss: func(r *Request) { r.User = "dave" }},
		{name: "users glob", filters: schema.Filters{Users: []string{"adm-*"}}, hit: func(r *Request) { r.User = "adm-x" }},
		{name: "users case exact", filters: schema.Filters{Users: []string{"Carol"}}, hit: func(r *Request) { r.User = "Carol" }},
		{name: "groups any of", filters: schema.Filters{Groups: []string{"ops", "developers"}}, miss: func(r *Request) { r.Groups = []string{"staff"} }},
		{name: "groups none in request", filters: schema.Filters{Groups: []string{"*"}}, miss: func(r *Request) { r.Groups = nil }},
		{name: "machines", filters: schema.Filters{Machines: []string{"ws-*"}}, miss: func(r *Request) { r.Machine = "srv-1" }},
		{name: "machines variable", filters: schema.Filters{Users: []string{"${MACHINE}-admin"}}, hit: func(r *Request) { r.User = "ws-17-admin" }},
		{name: "application path", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/bin/nc*"}}},
			miss: func(r *Request) { r.Application.Path = "/usr/local/bin/nc" }},
		{name: "application path dirs", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/**/nc"}}},
			hit: func(r *Request) { r.Application.Path = "/usr/local/sbin/nc" }, miss: func(r *Request) { r.Application.Path = "/usrx/nc" }},
		{name: "application sha256 only", filters: schema.Filters{Applications: []schema.ApplicationFilter{{SHA256: shaNC}}},
			miss: func(r *Request) { r.Application.SHA256 = strings.Repeat("2", 64) }},
		{name: "application sha256 absent", filters: schema.Filters{Applications: []schema.ApplicationFilter{{SHA256: shaNC}}},
			miss: func(r *Request) { r.Application.SHA256 = "" }},
		{name: "application path and sha256", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/usr/bin/nc", SHA256: shaNC}}},
			miss: func(r *Request) { r.Application.SHA256 = strings.Repeat("2", 64) }},
		{name: "application command line", filters: schema.Filters{Applications: []schema.ApplicationFilter{{CommandLine: "nc -l *"}}},
			miss: func(r *Request) { r.Application.CommandLine = "nc example.com 80" }},
		{name: "application publisher", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Publisher: "Debian"}}},
			miss: func(r *Request) { r.Application.Publisher = "Evil Corp" }},
		{name: "application parent", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Parent: "/usr/bin/*sh"}}},
			miss: func(r *Request) { r.Application.Parent = "/usr/bin/python3" }},
		{name: "applications any of", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/bin/x"}, {Path: "/usr/bin/nc"}}},
			miss: func(r *Request) { r.Application.Path = "/bin/y" }},
		{name: "application home variable", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "${HOME}/bin/*"}}},
			hit: func(r *Request) { r.Application.Path = "/home/carol/bin/tool" }, miss: func(r *Request) { r.Application.Path = "/home/dave/bin/tool" }},
		{name: "application user variable", filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "/srv/${USER}/*"}}},
			hit: func(r *Request) { r.Application.Path = "/srv/carol/run" }, miss: func(r *Request) { r.Application.Path = "/srv/dave/run" }},
		{name: "folders of the application", filters: schema.Filters{Folders: []string{"/usr/bin"}},
			miss: func(r *Request) { r.Application.Path = "/usr/binx/nc" }},
		{name: "folders match the folder itself", typ: "FileAccess", filters: schema.Filters{Folders: []string{"/etc/ssh/"}},
			hit: fileReq("/etc/ssh"), miss: fileReq("/etc/sshd")},
		{name: "folders of the target", typ: "FileAccess", filters: schema.Filters{Folders: []string{"${HOME}"}},
			hit: fileReq("/home/carol/.ssh/id_ed25519"), miss: fileReq("/home/dave/.ssh/id_ed25519")},
		{name: "folders root", typ: "FileAccess", filters: schema.Filters{Folders: []string{"/"}},
			hit: fileReq("/etc/shadow"), miss: func(r *Request) { r.Action = ActionElevate }},
		{name: "type command line", typ: "CommandLine", hit: func(r *Request) { r.Action = ActionCommand }},
		{name: "type least privilege is elevate", typ: "LeastPrivilege", miss: func(r *Request) { r.Action = ActionCommand }},
		{name: "time days", filters: schema.Filters{Time: &schema.TimeWindow{Days: []string{"mon", "tue"}}},
			missAt: monday10.AddDate(0, 0, 5)},
		{name: "time from to", filters: schema.Filters{Time: &schema.TimeWindow{From: "09:00", To: "17:00"}},
			missAt: monday10.Add(7 * time.Hour)},
		{name: "time to is exclusive", filters: schema.Filters{Time: &schema.TimeWindow{From: "09:00", To: "10:00"}},
			at: monday10.Add(-time.Minute), missAt: monday10},
		{name: "time across midnight", filters: schema.Filters{Time: &schema.TimeWindow{From: "22:00", To: "06:00"}},
			at: monday10.Add(-7 * time.Hour), missAt: monday10},
		{name: "time zone", filters: schema.Filters{Time: &schema.TimeWindow{From: "11:00", To: "13:00", TimeZone: "Europe/Berlin"}},
			at: monday10, missAt: monday10.Add(-2 * time.Hour)}, // 12:00 and 10:00 in Berlin (CEST)
		{name: "time zone changes the day", filters: schema.Filters{Time: &schema.TimeWindow{Days: []string{"tue"}, TimeZone: "Pacific/Auckland"}},
			at: monday10.Add(13 * time.Hour), missAt: monday10.Add(-11 * time.Hour)},
		{name: "time not before", filters: schema.Filters{Time: &schema.TimeWindow{NotBefore: "2025-06-01T00:00:00Z"}},
			missAt: time.Date(2025, 5, 31, 23, 59, 59, 0, time.UTC)},
		{name: "time not after", filters: schema.Filters{Time: &schema.TimeWindow{NotAfter: "2025-06-02T10:00:00Z"}},
			missAt: monday10.Add(time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ix := mustCompile(t, []*schema.Document{policyDoc("p", schema.PolicySpec{Type: tc.typ, Controls: []string{"allow"}, Filters: tc.filters})})
			at := tc.at
			if at.IsZero() {
				at = monday10
			}
			hit := base()
			if tc.hit != nil {
				tc.hit(hit)
			}
			if d := ix.Evaluate(hit, at); d.Decision != Allow || d.Policy != "p" {
				t.Errorf("matching request: got %+v, want allow by p", d)
			}
			if tc.miss == nil && tc.missAt.IsZero() {
				return
			}
			miss, missAt := base(), tc.missAt
			if tc.miss != nil {
				tc.miss(miss)
			}
			if missAt.IsZero() {
				missAt = at
			}
			if d := ix.Evaluate(miss, missAt); d.Decision != Deny || d.Policy != "" {
				t.Errorf("other request: got %+v, want the default deny", d)
			}
		})
	}
}

// TestPrecedence: the most restrictive matching policy decides, ties go to
// the higher priority, then to the smaller id.
func TestPrecedence(t *testing.T) {
	type pol struct {
		id       string
		controls []string
		priority int
	}
	cases := []struct {
		name     string
		policies []pol
		decision string
		policy   string
		matched  []string
	}{
		{"deny beats approval", []pol{{"a", []string{"approval"}, 9}, {"d", []string{"deny"}, 0}}, Deny, "d", []string{"d", "a"}},
		{"approval beats mfa", []pol{{"m", []string{"mfa"}, 9}, {"a", []string{"approval"}, 0}}, Approval, "a", []string{"a", "m"}},
		{"mfa beats justification", []pol{{"j", []string{"allow", "justification"}, 9}, {"m", []string{"allow", "mfa"}, 0}}, MFA, "m", []string{"m", "j"}},
		{"justification beats redirect", []pol{{"r", []string{"redirect"}, 9}, {"j", []string{"justification"}, 0}}, Justification, "j", []string{"j", "r"}},
		{"redirect beats allow", []pol{{"a", []string{"allow"}, 9}, {"r", []string{"redirect"}, 0}}, Redirect, "r", []string{"r", "a"}},
		{"tie goes to priority", []pol{{"a", []string{"deny"}, 1}, {"b", []string{"deny"}, 2}}, Deny, "b", []string{"b", "a"}},
		{"then to the id", []pol{{"b", []string{"allow"}, 1}, {"a", []string{"allow"}, 1}}, Allow, "a", []string{"a", "b"}},
		{"deny and allow in one policy", []pol{{"x", []string{"allow", "deny"}, 0}}, Deny, "x", []string{"x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var docs []*schema.Document
			for _, p := range tc.policies {
				docs = append(docs, policyDoc(p.id, schema.PolicySpec{Controls: p.controls, Priority: p.priority, Redirect: &schema.Redirect{To: "/usr/bin/safe"}}))
			}
			d := mustCompile(t, docs).Evaluate(elevate("carol", nil, "/usr/bin/x"), monday10)
			if d.Decision != tc.decision || d.Effective != tc.decision || d.Policy != tc.policy || !slices.Equal(d.Matched, tc.matched) {
				t.Errorf("got %+v, want %s by %s, matched %v", d, tc.decision, tc.policy, tc.matched)
			}
		})
	}
}

// TestControls: what each control answers before and after its second step.
func TestControls(t *testing.T) {
	cases := []struct {
		name     string
		controls []string
		req      func(*Request)
		want     string
		redirect string
		duration int
	}{
		{"allow", []string{"allow"}, nil, Allow, "", 600},
		{"deny", []string{"deny"}, nil, Deny, "", 0},
		{"justification missing", []string{"allow", "justification"}, nil, Justification, "", 0},
		{"justification blank", []string{"allow", "justification"}, func(r *Request) { r.Justification = "  \t" }, Justification, "", 0},
		{"justification given", []string{"allow", "justification"}, func(r *Request) { r.Justification = "INC-42" }, Allow, "", 600},
		{"justification alone", []string{"justification"}, func(r *Request) { r.Justification = "INC-42" }, Allow, "", 600},
		{"mfa unverified", []string{"allow", "mfa"}, func(r *Request) { r.MFACode = "123456" }, MFA, "", 0},
		{"mfa verified", []string{"allow", "mfa"}, func(r *Request) { r.MFAVerified = true }, Allow, "", 600},
		{"approval pending", []string{"allow", "approval"}, nil, Approval, "", 0},
		{"approval granted", []string{"allow", "approval"}, func(r *Request) { r.Approved = true }, Allow, "", 600},
		{"approval then mfa", []string{"approval", "mfa"}, func(r *Request) { r.Approved = true }, MFA, "", 0},
		{"mfa then justification", []string{"mfa", "justification"}, func(r *Request) { r.MFAVerified = true }, Justification, "", 0},
		{"all steps done", []string{"approval", "mfa", "justification"}, func(r *Request) { r.Approved, r.MFAVerified, r.Justification = true, true, "x" }, Allow, "", 600},
		{"redirect", []string{"redirect"}, nil, Redirect, "/usr/bin/gnome-control-center-lite", 0},
		{"redirect after justification", []string{"justification", "redirect"}, func(r *Request) { r.Justification = "x" }, Redirect, "/usr/bin/gnome-control-center-lite", 0},
		{"deny ignores steps", []string{"deny", "mfa"}, func(r *Request) { r.MFAVerified = true }, Deny, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := schema.PolicySpec{Controls: tc.controls, DurationSeconds: 600, Redirect: &schema.Redirect{To: "/usr/bin/gnome-control-center-lite"}}
			ix := mustCompile(t, []*schema.Document{policyDoc("p", spec)})
			req := elevate("carol", nil, "/usr/bin/x")
			if tc.req != nil {
				tc.req(req)
			}
			d := ix.Evaluate(req, monday10)
			if d.Decision != tc.want || d.Effective != tc.want || d.RedirectTo != tc.redirect || d.DurationSeconds != tc.duration {
				t.Errorf("got %+v, want %s redirect %q duration %d", d, tc.want, tc.redirect, tc.duration)
			}
		})
	}
}

// TestStatus: enforce decides; monitor and monitor-notify report what they
// would decide and let the request through, unless an enforcing policy
// decides otherwise; off is ignored.
func TestStatus(t *testing.T) {
	type pol struct {
		id, status string
		controls   []string
	}
	cases := []struct {
		name                      string
		policies                  []pol
		decision, effective, mode string
		policy, enforcedBy        string
		notify                    bool
	}{
		{"enforce deny", []pol{{"d", "enforce", []string{"deny"}}}, Deny, Deny, "enforce", "d", "d", false},
		{"monitor deny alone", []pol{{"d", "monitor", []string{"deny"}}}, Deny, Allow, "monitor", "d", "", false},
		{"monitor-notify deny alone", []pol{{"d", "monitor-notify", []string{"deny"}}}, Deny, Allow, "monitor-notify", "d", "", true},
		{"monitor justification alone", []pol{{"j", "monitor", []string{"allow", "justification"}}}, Justification, Allow, "monitor", "j", "", false},
		{"monitor deny over enforce allow", []pol{{"a", "enforce", []string{"allow"}}, {"d", "monitor", []string{"deny"}}}, Deny, Allow, "monitor", "d", "a", false},
		{"monitor deny over enforce mfa", []pol{{"m", "enforce", []string{"mfa"}}, {"d", "monitor-notify", []string{"deny"}}}, Deny, MFA, "monitor-notify", "d", "m", true},
		{"monitor never loosens enforce", []pol{{"d", "enforce", []string{"deny"}}, {"a", "monitor", []string{"allow"}}}, Deny, Deny, "enforce", "d", "d", false},
		{"equal rank: enforce decides", []pol{{"z", "enforce", []string{"deny"}}, {"a", "monitor", []string{"deny"}}}, Deny, Deny, "enforce", "z", "z", false},
		{"off is ignored", []pol{{"d", "off", []string{"deny"}}, {"a", "enforce", []string{"allow"}}}, Allow, Allow, "enforce", "a", "a", false},
		{"off alone is no match", []pol{{"a", "off", []string{"allow"}}}, Deny, Deny, "enforce", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var docs []*schema.Document
			for _, p := range tc.policies {
				docs = append(docs, policyDoc(p.id, schema.PolicySpec{Status: p.status, Controls: p.controls}))
			}
			d := mustCompile(t, docs).Evaluate(elevate("carol", nil, "/usr/bin/x"), monday10)
			if d.Decision != tc.decision || d.Effective != tc.effective || d.Mode != tc.mode || d.Policy != tc.policy || d.EnforcedBy != tc.enforcedBy || d.Notify != tc.notify {
				t.Errorf("got %+v\nwant decision %s effective %s mode %s policy %q enforcedBy %q notify %v",
					d, tc.decision, tc.effective, tc.mode, tc.policy, tc.enforcedBy, tc.notify)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name string
		docs []*schema.Document
		want string
	}{
		{"duplicate id", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"allow"}}), policyDoc("p", schema.PolicySpec{Controls: []string{"deny"}})}, "policies/p.json: id: duplicate id"},
		{"not a policy", []*schema.Document{{Kind: schema.KindApprover, ID: "a", Spec: &schema.ApproverSpec{}}}, "Approver/a: not a Policy"},
		{"unknown variable", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"allow"}, Filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: "${HOMEDIR}/x"}}}})}, "spec.filters.applications[0].path"},
		{"redirect without to", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"redirect"}})}, "spec.redirect.to"},
		{"from equals to", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"allow"}, Filters: schema.Filters{Time: &schema.TimeWindow{From: "09:00", To: "09:00"}}})}, "spec.filters.time"},
		{"unknown time zone", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"allow"}, Filters: schema.Filters{Time: &schema.TimeWindow{TimeZone: "Mars/Olympus"}}})}, "timeZone"},
		{"unknown type", []*schema.Document{policyDoc("p", schema.PolicySpec{Type: "Magic", Controls: []string{"allow"}})}, "spec.type"},
		{"unknown control", []*schema.Document{policyDoc("p", schema.PolicySpec{Controls: []string{"maybe"}})}, "spec.controls[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.docs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
			// Check, which sources ask before they commit, refuses with
			// the same errors.
			if cerr := Check(tc.docs); cerr == nil || err == nil || cerr.Error() != err.Error() {
				t.Errorf("Check: %v, Compile: %v; want the same error", cerr, err)
			}
		})
	}
	if err := Check(validated(t, acceptanceDocs...)); err != nil {
		t.Errorf("Check of the acceptance policies: %v", err)
	}
}

func TestExplain(t *testing.T) {
	docs := validated(t, append(acceptanceDocs,
		`{"kind":"Policy","id":"old","spec":{"name":"old","type":"PrivilegeElevation","status":"off","controls":["allow"],"filters":{}}}`,
		`{"kind":"Policy","id":"files","spec":{"name":"files","type":"FileAccess","status":"enforce","controls":["allow"],"filters":{}}}`)...)
	ix := mustCompile(t, docs)
	req := elevate("dave", []string{"staff"}, "/usr/bin/apt-get")
	d := ix.EvaluateExplain(req, monday10)
	plain := ix.Evaluate(req, monday10)
	if d.Decision != plain.Decision || d.Policy != plain.Policy {
		t.Fatalf("EvaluateExplain decided %+v, Evaluate %+v", d, plain)
	}
	got := map[string]PolicyExplain{}
	for _, pe := range d.Explain.Policies {
		got[pe.Policy] = pe
	}
	if len(got) != 3 {
		t.Fatalf("explained %v, want deny-netcat, dev-tools and old (not the FileAccess one)", d.Explain.Policies)
	}
	filter := func(id, name string) FilterExplain {
		for _, f := range got[id].Filters {
			if f.Filter == name {
				return f
			}
		}
		t.Fatalf("%s: no filter %s in %+v", id, name, got[id])
		return FilterExplain{}
	}
	if f := filter("dev-tools", "groups"); f.Matched || !strings.Contains(f.Detail, "developers") {
		t.Errorf("dev-tools groups: %+v", f)
	}
	if f := filter("dev-tools", "applications"); !f.Matched {
		t.Errorf("dev-tools applications: %+v", f)
	}
	if f := filter("deny-netcat", "applications"); f.Matched || !strings.Contains(f.Detail, "path") {
		t.Errorf("deny-netcat applications: %+v", f)
	}
	if f := filter("deny-netcat", "users"); !f.Matched {
		t.Errorf("deny-netcat users: %+v", f)
	}
	if f := filter("old", "status"); f.Matched || got["old"].Matched {
		t.Errorf("an off policy explained as matching: %+v", got["old"])
	}
}
