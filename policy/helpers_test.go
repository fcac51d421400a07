package policy

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"warden/schema"
)

// validated turns Policy JSON documents into validated schema documents,
// the way a generation reaches Compile.
func validated(t testing.TB, docs ...string) []*schema.Document {
	t.Helper()
	var out []*schema.Document
	for i, js := range docs {
		d, err := schema.Validate(fmt.Sprintf("doc%d.json", i), []byte(js))
		if err != nil {
			t.Fatalf("validate %s: %v", js, err)
		}
		out = append(out, d)
	}
	return out
}

// policyDoc builds a Policy document without CUE, for tests that need many.
func policyDoc(id string, spec schema.PolicySpec) *schema.Document {
	if spec.Name == "" {
		spec.Name = id
	}
	if spec.Type == "" {
		spec.Type = "PrivilegeElevation"
	}
	if spec.Status == "" {
		spec.Status = StatusEnforce
	}
	raw, _ := json.Marshal(map[string]any{"kind": "Policy", "id": id, "spec": spec})
	return &schema.Document{Kind: schema.KindPolicy, ID: id, Spec: &spec, Raw: raw}
}

func mustCompile(t testing.TB, docs []*schema.Document) *Index {
	t.Helper()
	ix, err := Compile(docs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return ix
}

// monday10 is a Monday, 10:00 UTC.
var monday10 = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)

// acceptanceDocs are the documents of DESIGN.md and the acceptance check.
var acceptanceDocs = []string{
	`{"kind": "Policy", "id": "deny-netcat", "spec": {"name": "Block netcat", "type": "PrivilegeElevation",
	 "status": "enforce", "priority": 100, "controls": ["deny"],
	 "filters": {"users": ["*"], "machines": ["*"], "applications": [{"path": "/usr/bin/nc*"}]}}}`,
	`{"kind": "Policy", "id": "dev-tools", "spec": {"name": "Developers may elevate package tools",
	 "type": "PrivilegeElevation", "status": "enforce", "priority": 50, "controls": ["allow", "justification"],
	 "durationSeconds": 900, "filters": {"groups": ["developers"], "applications": [{"path": "/usr/bin/apt*"}]}}}`,
}

func elevate(user string, groups []string, app string) *Request {
	return &Request{User: user, Groups: groups, Machine: "ws-17", Action: ActionElevate, Application: Application{Path: app}}
}
