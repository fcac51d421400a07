package policy

import (
	"testing"
	"time"

	"warden/schema"
)

// A LeastPrivilege policy that manages the admin groups (DESIGN.md's
// example: deny, no application filter) is not an elevation policy: it
// must not refuse every elevation.
func TestLeastPrivilegeGroupsPolicyDecidesNoRequest(t *testing.T) {
	lp, err := schema.Validate("lp.json", []byte(`{"kind": "Policy", "id": "no-standing-admins", "spec": {
  "name": "No standing admins but break-glass", "type": "LeastPrivilege",
  "status": "enforce", "controls": ["deny"],
  "leastPrivilege": {"adminGroups": ["sudo", "wheel"], "standingAdmins": ["breakglass"]},
  "filters": {"machines": ["*"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	allow, err := schema.Validate("allow.json", []byte(`{"kind": "Policy", "id": "allow-id", "spec": {
  "name": "id", "type": "PrivilegeElevation", "status": "enforce", "controls": ["allow"],
  "filters": {"applications": [{"path": "/usr/bin/id"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := Compile([]*schema.Document{lp, allow})
	if err != nil {
		t.Fatal(err)
	}
	d := ix.Evaluate(&Request{User: "carol", Action: ActionElevate, Application: Application{Path: "/usr/bin/id"}}, time.Now())
	if d.Effective != Allow || d.Policy != "allow-id" {
		t.Fatalf("decision %+v, want allow by allow-id", d)
	}
}

func TestMatchesMachine(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		machine  string
		want     bool
	}{
		{nil, "ws-17", true},
		{[]string{"*"}, "ws-17", true},
		{[]string{"srv-*"}, "ws-17", false},
		{[]string{"srv-*", "ws-*"}, "ws-17", true},
		{[]string{"ws-17"}, "ws-17", true},
		{[]string{"ws-1"}, "ws-17", false},
	} {
		if got := MatchesMachine(c.patterns, c.machine); got != c.want {
			t.Errorf("MatchesMachine(%q, %q) = %v, want %v", c.patterns, c.machine, got, c.want)
		}
	}
}
