package schema

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestLeastPrivilegeSpec(t *testing.T) {
	policy := func(typ, lp string) []byte {
		return []byte(`{"kind": "Policy", "id": "no-standing-admins", "spec": {"name": "n", "type": "` + typ +
			`", "status": "enforce", "controls": ["deny"], ` + lp + ` "filters": {"machines": ["*"]}}}`)
	}
	cases := []struct {
		name, typ, lp string
		path, msg     string // the issue expected; "" is valid
	}{
		{"break-glass admin", "LeastPrivilege", `"leastPrivilege": {"adminGroups": ["sudo", "wheel"], "standingAdmins": ["breakglass"]},`, "", ""},
		{"empty refused", "LeastPrivilege", `"leastPrivilege": {"adminGroups": ["sudo"], "standingAdmins": []},`,
			"spec.leastPrivilege.standingAdmins", "would leave the admin groups with no member"},
		{"left out is empty", "LeastPrivilege", `"leastPrivilege": {},`,
			"spec.leastPrivilege.standingAdmins", "allowEmpty: true"},
		{"empty allowed", "LeastPrivilege", `"leastPrivilege": {"standingAdmins": [], "allowEmpty": true},`, "", ""},
		{"no block", "LeastPrivilege", ``, "", ""},
		{"other type", "PrivilegeElevation", `"leastPrivilege": {"standingAdmins": ["a"]},`,
			"spec.leastPrivilege", `only on a policy of type "LeastPrivilege"`},
		{"bad group name", "LeastPrivilege", `"leastPrivilege": {"adminGroups": ["a:b"], "standingAdmins": ["a"]},`,
			"spec.leastPrivilege.adminGroups[0]", "out of bound"},
		{"unknown field", "LeastPrivilege", `"leastPrivilege": {"standingAdmins": ["a"], "admins": ["b"]},`,
			"spec.leastPrivilege.admins", "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Validate("p.json", policy(c.typ, c.lp))
			if c.path == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if lp := d.Policy().LeastPrivilege; lp != nil && lp.StandingAdmins == nil {
					t.Fatal("standingAdmins decoded as nil, want the default []")
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if !slices.ContainsFunc(errs, func(is Issue) bool {
				return is.File == "p.json" && is.Path == c.path && strings.Contains(is.Msg, c.msg)
			}) {
				t.Fatalf("issues %v, want one at %s saying %q", errs, c.path, c.msg)
			}
		})
	}
}

func TestEnforcementSettings(t *testing.T) {
	doc := func(dir string) []byte {
		return []byte(`{"kind": "Settings", "id": "agent", "spec": {"enforcement": {"sudoersDir": "` + dir + `"}}}`)
	}
	d, err := Validate("s.json", doc("/etc/sudoers.d"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Settings().Enforcement.SudoersDir; got != "/etc/sudoers.d" {
		t.Fatalf("sudoersDir = %q", got)
	}
	for _, bad := range []string{"etc/sudoers.d", "/etc/../tmp", "/etc/sudoers.d/.."} {
		if _, err := Validate("s.json", doc(bad)); err == nil || !strings.Contains(err.Error(), "spec.enforcement.sudoersDir") {
			t.Errorf("sudoersDir %q: err = %v, want an issue at spec.enforcement.sudoersDir", bad, err)
		}
	}
}
