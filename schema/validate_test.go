package schema

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// designExamples are the documents of DESIGN.md, "Documents by example",
// verbatim except for the plugin's sha256, which there is a placeholder.
var designExamples = map[string]string{
	"policies/deny-netcat.json": `{"kind": "Policy", "id": "deny-netcat", "spec": {
  "name": "Block netcat", "type": "PrivilegeElevation", "status": "enforce",
  "priority": 100, "controls": ["deny"],
  "filters": {"users": ["*"], "machines": ["*"],
              "applications": [{"path": "/usr/bin/nc*"}]}}}`,
	"policies/dev-tools.json": `{"kind": "Policy", "id": "dev-tools", "spec": {
  "name": "Developers may elevate package tools", "type": "PrivilegeElevation",
  "status": "enforce", "priority": 50, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"groups": ["developers"], "applications": [{"path": "/usr/bin/apt*"}]}}}`,
	"approvers/it-oncall.json": `{"kind": "Approver", "id": "it-oncall", "spec": {
  "name": "IT on call", "users": ["alice", "bob"], "policies": ["*"]}}`,
	"plugins/heartbeat.json": `{"kind": "Plugin", "id": "heartbeat", "spec": {
  "executable": "Plugins/heartbeat/heartbeat", "args": ["--interval", "1s"],
  "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "autostart": true,
  "restart": {"policy": "always", "backoffSeconds": 1, "maxRestarts": 10}}}`,
	"jobs/inventory.json": `{"kind": "Job", "id": "inventory", "spec": {
  "trigger": {"schedule": "*/5 * * * *"},
  "tasks": [{"command": "/usr/bin/uname", "args": ["-a"], "timeoutSeconds": 30}]}}`,
	"settings.json": `{"kind": "Settings", "id": "agent", "spec": {
  "allowedHosts": ["localhost", "127.0.0.1"],
  "logging": {"level": "Information", "retentionDays": 15},
  "alternativeSignatures": [],
  "certificate": {"rotateBeforeDays": 10},
  "backend": {"url": "https://backend.example/v1", "pollSeconds": 60}}}`,
}

func TestDesignExamplesValidate(t *testing.T) {
	for name, doc := range designExamples {
		t.Run(name, func(t *testing.T) {
			d, err := Validate(name, []byte(doc))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if string(d.Raw) != doc {
				t.Errorf("Raw is not the input")
			}
		})
	}
}

// TestDecodedSpecs checks that what Validate returns is typed and carries
// the defaults of the schema.
func TestDecodedSpecs(t *testing.T) {
	get := func(name string) *Document {
		t.Helper()
		d, err := Validate(name, []byte(designExamples[name]))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	p := get("policies/dev-tools.json").Policy()
	if p == nil || p.DurationSeconds != 900 || p.Priority != 50 || p.Type != "PrivilegeElevation" ||
		strings.Join(p.Controls, ",") != "allow,justification" || p.Filters.Applications[0].Path != "/usr/bin/apt*" {
		t.Errorf("dev-tools spec = %+v", p)
	}
	pl := get("plugins/heartbeat.json").Plugin()
	if pl == nil || pl.Restart.Policy != "always" || pl.Restart.MaxRestarts != 10 || !pl.Autostart {
		t.Errorf("heartbeat spec = %+v", pl)
	}
	j := get("jobs/inventory.json").Job()
	if j == nil || !j.Enabled || j.Priority != 5 || j.Concurrency != "forbid" || j.Tasks[0].TimeoutSeconds != 30 {
		t.Errorf("inventory spec = %+v (want defaults enabled, priority 5, concurrency forbid)", j)
	}
	s := get("settings.json").Settings()
	if s == nil || s.Backend == nil || s.Backend.URL != "https://backend.example/v1" || s.Certificate.RotateBeforeDays != 10 {
		t.Errorf("settings spec = %+v", s)
	}
	a := get("approvers/it-oncall.json")
	if a.Kind != KindApprover || a.ID != "it-oncall" || a.Key() != "Approver/it-oncall" || a.Approver().Users[1] != "bob" {
		t.Errorf("approver = %+v", a)
	}
	// Defaults where a document leaves fields out.
	d, err := Validate("p.json", []byte(`{"kind":"Policy","id":"p","spec":{"name":"n","type":"FileAccess","status":"off","controls":["deny"],"filters":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Policy().Priority != 0 {
		t.Errorf("default priority = %d, want 0", d.Policy().Priority)
	}
}

// withDoc returns a DESIGN example with one JSON edit applied: set is a
// dotted path into the document and its new raw JSON value ("" deletes).
func withDoc(t *testing.T, name, path, value string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(designExamples[name]), &m); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(path, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	last := parts[len(parts)-1]
	if value == "" {
		delete(cur, last)
	} else {
		var v any
		if err := json.Unmarshal([]byte(value), &v); err != nil {
			t.Fatalf("bad test value %s: %v", value, err)
		}
		cur[last] = v
	}
	out, _ := json.Marshal(m)
	return string(out)
}

const (
	policy   = "policies/dev-tools.json"
	plugin   = "plugins/heartbeat.json"
	job      = "jobs/inventory.json"
	settings = "settings.json"
	approver = "approvers/it-oncall.json"
)

// TestRules: every rule of DESIGN.md is enforced, and the message names the
// file, the field path and the rule. want is a regexp matched against one
// line of the error; "" means the document must validate.
func TestRules(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		path, val string
		want      string
	}{
		// id pattern
		{"id upper case", policy, "id", `"Dev-Tools"`, `^policies/dev-tools.json: id: invalid value "Dev-Tools" \(out of bound =~"\^\[a-z0-9\]\[a-z0-9-\]\{0,62\}\$"\)$`},
		{"id underscore", policy, "id", `"dev_tools"`, `^policies/dev-tools.json: id: invalid value "dev_tools"`},
		{"id leading dash", policy, "id", `"-dev"`, `^policies/dev-tools.json: id: invalid value "-dev"`},
		{"id empty", policy, "id", `""`, `^policies/dev-tools.json: id: invalid value ""`},
		{"id 64 chars", policy, "id", `"` + strings.Repeat("a", 64) + `"`, `^policies/dev-tools.json: id: invalid value`},
		{"id 63 chars", policy, "id", `"` + strings.Repeat("a", 63) + `"`, ""},
		{"id number", policy, "id", `7`, `^policies/dev-tools.json: id: .*mismatched types int and string`},
		{"id missing", policy, "id", ``, `^policies/dev-tools.json: id: required field is missing`},
		// durationSeconds 60..86400
		{"duration 30", policy, "spec.durationSeconds", `30`, `^policies/dev-tools.json: spec.durationSeconds: invalid value 30 \(out of bound >=60\)$`},
		{"duration 59", policy, "spec.durationSeconds", `59`, `^policies/dev-tools.json: spec.durationSeconds: invalid value 59 \(out of bound >=60\)$`},
		{"duration 60", policy, "spec.durationSeconds", `60`, ""},
		{"duration 86400", policy, "spec.durationSeconds", `86400`, ""},
		{"duration 86401", policy, "spec.durationSeconds", `86401`, `^policies/dev-tools.json: spec.durationSeconds: invalid value 86401 \(out of bound <=86400\)$`},
		{"duration float", policy, "spec.durationSeconds", `90.5`, `^policies/dev-tools.json: spec.durationSeconds: .*mismatched types int and float`},
		{"duration string", policy, "spec.durationSeconds", `"900"`, `^policies/dev-tools.json: spec.durationSeconds: .*mismatched types int and string`},
		// enums
		{"status bad", policy, "spec.status", `"on"`, `^policies/dev-tools.json: spec.status: invalid value "on" \(must be one of "enforce", "monitor", "monitor-notify", "off"\)$`},
		{"status not a string", policy, "spec.status", `true`, `^policies/dev-tools.json: spec.status: invalid value true \(must be one of "enforce", "monitor", "monitor-notify", "off"\)$`},
		{"type not a string", policy, "spec.type", `5`, `^policies/dev-tools.json: spec.type: invalid value 5 \(must be one of "ApplicationControl", "CommandLine", "FileAccess", "LeastPrivilege", "PrivilegeElevation"\)$`},
		{"control prefix", policy, "spec.controls", `["allowed"]`, `^policies/dev-tools.json: spec.controls\[0\]: invalid value "allowed" \(must be one of`},
		{"status monitor-notify", policy, "spec.status", `"monitor-notify"`, ""},
		{"status off", policy, "spec.status", `"off"`, ""},
		{"type bad", policy, "spec.type", `"Elevation"`, `^policies/dev-tools.json: spec.type: invalid value "Elevation" \(must be one of .*"PrivilegeElevation"`},
		{"type LeastPrivilege", policy, "spec.type", `"LeastPrivilege"`, ""},
		{"control bad", policy, "spec.controls", `["allow", "permit"]`, `^policies/dev-tools.json: spec.controls\[1\]: invalid value "permit" \(must be one of "allow", "approval", "deny", "justification", "mfa", "redirect"\)$`},
		{"controls empty", policy, "spec.controls", `[]`, `^policies/dev-tools.json: spec.controls: `},
		{"controls all", policy, "spec.controls", `["allow","deny","mfa","approval","justification","redirect"]`, ""},
		{"controls case", policy, "spec.controls", `["Deny"]`, `spec.controls\[0\]: invalid value "Deny"`},
		{"priority negative", policy, "spec.priority", `-1`, `^policies/dev-tools.json: spec.priority: invalid value -1 \(out of bound >=0\)$`},
		{"priority too high", policy, "spec.priority", `20000`, `^policies/dev-tools.json: spec.priority: invalid value 20000 \(out of bound <=10000\)$`},
		{"priority float", policy, "spec.priority", `1.5`, `^policies/dev-tools.json: spec.priority: .*mismatched types float and int`},
		{"controls missing", policy, "spec.controls", ``, `^policies/dev-tools.json: spec.controls: required field is missing \(a list of at least one "allow" \| "deny"`},
		{"day bad", policy, "spec.filters.time", `{"days": ["monday"]}`, `spec.filters.time.days\[0\]: invalid value "monday"`},
		{"time of day bad", policy, "spec.filters.time", `{"from": "25:00"}`, `spec.filters.time.from: invalid value "25:00"`},
		{"app sha256 bad", policy, "spec.filters.applications", `[{"sha256": "xyz"}]`, `spec.filters.applications\[0\].sha256: invalid value "xyz"`},
		// unknown fields
		{"unknown top level", policy, "extra", `1`, `^policies/dev-tools.json: extra: field not allowed \(unknown field\)$`},
		{"unknown spec field", policy, "spec.durationSecs", `900`, `^policies/dev-tools.json: spec.durationSecs: field not allowed \(unknown field\)$`},
		{"unknown filter", policy, "spec.filters.usres", `["x"]`, `^policies/dev-tools.json: spec.filters.usres: field not allowed \(unknown field\)$`},
		{"unknown plugin field", plugin, "spec.restart.delay", `1`, `^plugins/heartbeat.json: spec.restart.delay: field not allowed`},
		{"unknown job field", job, "spec.trigger.cron", `"* * * * *"`, `^jobs/inventory.json: spec.trigger.cron: field not allowed`},
		{"unknown settings field", settings, "spec.allowedHost", `["x"]`, `^settings.json: spec.allowedHost: field not allowed`},
		{"unknown approver field", approver, "spec.user", `["x"]`, `^approvers/it-oncall.json: spec.user: field not allowed`},
		// required fields
		{"policy name missing", policy, "spec.name", ``, `^policies/dev-tools.json: spec.name: required field is missing`},
		{"policy filters missing matches all", policy, "spec.filters", ``, ""},
		{"approver users empty", approver, "spec.users", `[]`, `^approvers/it-oncall.json: spec.users: empty, and no spec.groups: an Approver names at least one user or group$`},
		{"approver groups", approver, "spec.groups", `["dba"]`, ""},
		{"approver group empty name", approver, "spec.groups", `[""]`, `^approvers/it-oncall.json: spec.groups\[0\]: `},
		// certificate.password
		{"password set", settings, "spec.certificate.password", `"hunter2"`, `^settings.json: spec.certificate.password: must not be set`},
		{"password number", settings, "spec.certificate.password", `1234`, `^settings.json: spec.certificate.password: must not be set`},
		{"password empty", settings, "spec.certificate.password", `""`, ""},
		{"settings id", settings, "id", `"other"`, `^settings.json: id: .*"agent"`},
		{"settings id missing", settings, "id", ``, `^settings.json: id: required field is missing$`},
		{"settings spec missing", settings, "spec", ``, `^settings.json: spec: required field is missing$`},
		{"settings spec empty", settings, "spec", `{}`, ""},
		{"backend url scheme", settings, "spec.backend.url", `"ftp://x"`, `^settings.json: spec.backend.url: invalid value "ftp://x"`},
		{"backend url plain http", settings, "spec.backend.url", `"http://backend.example/v1"`, `^settings.json: spec.backend.url: invalid value "http://backend.example/v1"`},
		{"backend url plain http lookalike", settings, "spec.backend.url", `"http://127.0.0.1.evil.example/v1"`, `spec.backend.url: invalid value`},
		{"backend url plain http loopback", settings, "spec.backend.url", `"http://127.0.0.1:8443/v1"`, ""},
		{"backend url plain http localhost", settings, "spec.backend.url", `"http://localhost/v1"`, ""},
		{"backend url plain http ipv6 loopback", settings, "spec.backend.url", `"http://[::1]:8443"`, ""},
		// Plugin executable stays below Plugins/
		{"exe absolute", plugin, "spec.executable", `"/usr/bin/heartbeat"`, `^plugins/heartbeat.json: spec.executable: invalid value "/usr/bin/heartbeat"`},
		{"exe dotdot", plugin, "spec.executable", `"Plugins/../bin/sh"`, `^plugins/heartbeat.json: spec.executable: invalid value "Plugins/../bin/sh"`},
		{"exe dotdot deep", plugin, "spec.executable", `"Plugins/a/../../bin/sh"`, `spec.executable: invalid value`},
		{"exe dotdot end", plugin, "spec.executable", `"Plugins/a/.."`, `spec.executable: invalid value`},
		{"exe parent first", plugin, "spec.executable", `"../Plugins/x"`, `spec.executable: invalid value`},
		{"exe other folder", plugin, "spec.executable", `"Jobs/x"`, `spec.executable: invalid value`},
		{"exe lower case", plugin, "spec.executable", `"plugins/x"`, `spec.executable: invalid value`},
		{"exe folder only", plugin, "spec.executable", `"Plugins/"`, `spec.executable: invalid value`},
		{"exe double slash", plugin, "spec.executable", `"Plugins//etc/x"`, `spec.executable: invalid value`},
		{"exe dots in name ok", plugin, "spec.executable", `"Plugins/hb/hb..v2"`, ""},
		{"exe nested ok", plugin, "spec.executable", `"Plugins/heartbeat/bin/heartbeat"`, ""},
		{"exe missing", plugin, "spec.executable", ``, `^plugins/heartbeat.json: spec.executable: required field is missing`},
		{"restart policy", plugin, "spec.restart.policy", `"sometimes"`, `^plugins/heartbeat.json: spec.restart.policy: invalid value "sometimes" \(must be one of`},
		{"plugin sha256", plugin, "spec.sha256", `"ABC"`, `spec.sha256: invalid value "ABC"`},
		// cron syntax of a job schedule
		{"cron 4 fields", job, "spec.trigger.schedule", `"*/5 * * *"`, `^jobs/inventory.json: spec.trigger.schedule: invalid value "\*/5 \* \* \*" \(does not match the 5-field cron pattern\)$`},
		{"cron 6 fields", job, "spec.trigger.schedule", `"0 */5 * * * *"`, `spec.trigger.schedule: invalid value .*5-field cron`},
		{"cron minute 60", job, "spec.trigger.schedule", `"60 * * * *"`, `spec.trigger.schedule: invalid value`},
		{"cron hour 24", job, "spec.trigger.schedule", `"0 24 * * *"`, `spec.trigger.schedule: invalid value`},
		{"cron day 0", job, "spec.trigger.schedule", `"0 0 0 * *"`, `spec.trigger.schedule: invalid value`},
		{"cron month 13", job, "spec.trigger.schedule", `"0 0 1 13 *"`, `spec.trigger.schedule: invalid value`},
		{"cron weekday 7", job, "spec.trigger.schedule", `"0 0 * * 7"`, `spec.trigger.schedule: invalid value`},
		{"cron step 0", job, "spec.trigger.schedule", `"*/0 * * * *"`, `spec.trigger.schedule: invalid value`},
		{"cron words", job, "spec.trigger.schedule", `"every five minutes"`, `spec.trigger.schedule: invalid value`},
		{"cron empty", job, "spec.trigger.schedule", `""`, `spec.trigger.schedule: invalid value`},
		{"cron ranges lists", job, "spec.trigger.schedule", `"0,30 8-18/2 1-15 jan-jun mon-fri"`, ""},
		{"cron names upper", job, "spec.trigger.schedule", `"0 0 * DEC SUN"`, ""},
		{"cron shorthand", job, "spec.trigger.schedule", `"@daily"`, ""},
		{"cron bad shorthand", job, "spec.trigger.schedule", `"@sometimes"`, `spec.trigger.schedule: invalid value`},
		{"task relative command", job, "spec.tasks", `[{"command": "uname"}]`, `spec.tasks\[0\].command: invalid value "uname"`},
		{"task timeout 0", job, "spec.tasks", `[{"command": "/bin/true", "timeoutSeconds": 0}]`, `^jobs/inventory.json: spec.tasks\[0\].timeoutSeconds: invalid value 0 \(out of bound >=1\)$`},
		{"tasks empty", job, "spec.tasks", `[]`, `spec.tasks: `},
		// kind
		{"kind unknown", policy, "kind", `"Polcy"`, `^policies/dev-tools.json: kind: invalid value "Polcy" \(must be one of Settings, Policy, Approver, Plugin, Job\)$`},
		{"kind missing", policy, "kind", ``, `^policies/dev-tools.json: kind: invalid value \(missing\)`},
		{"kind number", policy, "kind", `1`, `^policies/dev-tools.json: kind: invalid value 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := withDoc(t, tc.file, tc.path, tc.val)
			_, err := Validate(tc.file, []byte(doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate(%s) = %v, want valid", doc, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%s) = nil, want error matching %s", doc, tc.want)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			re := regexp.MustCompile(tc.want)
			for _, line := range strings.Split(err.Error(), "\n") {
				if re.MatchString(line) {
					return
				}
			}
			t.Errorf("Validate(%s):\ngot  %v\nwant a line matching %s", doc, err, tc.want)
		})
	}
}

// TestEveryErrorReported: one document with several broken rules gets one
// issue per rule, sorted by path, not only the first.
func TestEveryErrorReported(t *testing.T) {
	doc := `{"kind": "Policy", "id": "Bad_Id", "spec": {"name": "x", "type": "Nope",
	  "status": "on", "controls": ["permit"], "durationSeconds": 5, "filters": {"usres": []}}}`
	_, err := Validate("policies/bad.json", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want Errors", err)
	}
	var paths []string
	for _, is := range errs {
		if is.File != "policies/bad.json" {
			t.Errorf("issue %v names file %q", is, is.File)
		}
		paths = append(paths, is.Path)
	}
	want := "id spec.controls[0] spec.durationSeconds spec.filters.usres spec.status spec.type"
	if got := strings.Join(paths, " "); got != want {
		t.Errorf("paths = %s\nwant    %s\nerror:\n%v", got, want, err)
	}
}

func TestManifest(t *testing.T) {
	good := `{"version": 3, "created": "2025-01-02T03:04:05Z", "keyId": "` + strings.Repeat("ab", 32) + `",
	  "files": [{"path": "policies/deny-netcat.json", "sha256": "` + strings.Repeat("0f", 32) + `"}]}`
	m, err := ValidateManifest("manifest.json", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 3 || len(m.Files) != 1 || m.Files[0].Path != "policies/deny-netcat.json" {
		t.Errorf("manifest = %+v", m)
	}
	bad := []struct{ name, doc, want string }{
		{"dotdot", strings.Replace(good, "policies/deny", "../deny", 1), "files[0].path"},
		{"absolute", strings.Replace(good, "policies/deny", "/etc/deny", 1), "files[0].path"},
		{"version 0", strings.Replace(good, `"version": 3`, `"version": 0`, 1), "version"},
		{"unknown", strings.Replace(good, `"version": 3`, `"version": 3, "signer": "x"`, 1), "signer: field not allowed"},
		{"bad time", strings.Replace(good, "2025-01-02T03:04:05Z", "yesterday", 1), "created"},
	}
	for _, tc := range bad {
		if _, err := ValidateManifest("manifest.json", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), "manifest.json: "+tc.want) {
			t.Errorf("%s: err = %v, want it to name manifest.json: %s", tc.name, err, tc.want)
		}
	}
}

func TestRestore(t *testing.T) {
	for name, doc := range designExamples {
		d, err := Validate(name, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		spec, err := json.Marshal(d.Spec)
		if err != nil {
			t.Fatal(err)
		}
		resetCache() // make Restore decode rather than hit the cache
		r, err := Restore(d.Kind, d.ID, d.Raw, spec)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != d.Kind || r.ID != d.ID || r.Hash != d.Hash || string(r.Raw) != string(d.Raw) {
			t.Errorf("%s: restored %+v, want %+v", name, r, d)
		}
		got, _ := json.Marshal(r.Spec)
		if string(got) != string(spec) {
			t.Errorf("%s: restored spec %s, want %s", name, got, spec)
		}
	}
	if _, err := Restore("Nope", "x", []byte("{}"), []byte("{}")); err == nil {
		t.Error("Restore of an unknown kind succeeded")
	}
}

// TestSourceCompiles: the exported schema (warden schema export) is one
// self-contained CUE file that checks the DESIGN examples as cue vet would.
func TestSourceCompiles(t *testing.T) {
	src := string(Source())
	if strings.Count(src, "\npackage ") != 1 {
		t.Errorf("Source holds %d package clauses, want 1", strings.Count(src, "\npackage "))
	}
	for _, k := range append([]string{"Manifest"}, Kinds...) {
		if !strings.Contains(src, "\n#"+k+": {") {
			t.Errorf("Source lacks #%s", k)
		}
	}
	v := newValidator() // panics if Source does not compile
	for name, doc := range designExamples {
		tree, err := jsonTree([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		m := tree.(map[string]any)
		val := v.defs[m["kind"].(string)].Unify(v.ctx.Encode(m))
		if err := val.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// An Approver may name only groups.
func TestApproverGroupsOnly(t *testing.T) {
	doc := `{"kind": "Approver", "id": "dba", "spec": {"name": "DBAs", "groups": ["dba"], "policies": ["db-*"]}}`
	d, err := Validate("approvers/dba.json", []byte(doc))
	if err != nil || len(d.Approver().Groups) != 1 {
		t.Fatalf("Validate = %+v, %v; want valid with group dba", d, err)
	}
}
