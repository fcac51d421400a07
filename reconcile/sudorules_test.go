package reconcile

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The parser against real cvtsudoers output of a sudoers file with
// aliases, negation, a uid and the default runas.
func TestParseSudoersJSONFromCvtsudoers(t *testing.T) {
	if _, err := exec.LookPath("cvtsudoers"); err != nil {
		t.Skip("needs cvtsudoers (sudo is in .ci/packages.d)")
	}
	src := filepath.Join(t.TempDir(), "sudoers")
	os.WriteFile(src, []byte(`User_Alias OPS = alice, %ops
Runas_Alias RA = root, bob
Cmnd_Alias SH = /bin/sh, sha256:a3d987dd3f9ec0610dc13b7fdccef84895628065434f44247a65ef0d2a341b3c /usr/bin/id
OPS ALL = (RA) NOPASSWD: SH, !/bin/bash
#1005 ALL = (ALL) ALL
carol ALL = /usr/bin/ls
dave ALL = (bob) ALL
`), 0o440)
	out, err := exec.Command("cvtsudoers", "-f", "json", src).Output()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := parseSudoersJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 4 {
		t.Fatalf("%d rules, want 4: %+v", len(rules), rules)
	}
	ops := rules[0]
	if len(ops.Users) != 2 || ops.Users[1] != (sudoMember{Kind: "usergroup", Value: "ops"}) || !ops.NoPasswd || !ops.asRoot() {
		t.Errorf("OPS rule: %+v", ops)
	}
	if got := ops.commands(); got != "!/bin/bash, /bin/sh, /usr/bin/id" {
		t.Errorf("OPS commands %q", got)
	}
	if ops.Commands[1].SHA256 == "" {
		t.Errorf("digest lost: %+v", ops.Commands)
	}
	if u := rules[1].Users[0]; u != (sudoMember{Kind: "userid", Value: "1005"}) || !rules[1].asRoot() || rules[1].NoPasswd {
		t.Errorf("#1005 rule: %+v", rules[1])
	}
	if !rules[2].asRoot() {
		t.Errorf("carol's rule (default runas root) not as root: %+v", rules[2])
	}
	if rules[3].asRoot() {
		t.Errorf("dave's rule (runas bob) as root: %+v", rules[3])
	}
}

func FuzzParseSudoersJSON(f *testing.F) {
	f.Add([]byte(`{"User_Aliases": {"A": [{"useralias": "A"}]}, "User_Specs": [{"User_List": [{"useralias": "A", "negated": true}], "Cmnd_Specs": [{"Commands": [{"command": "ALL"}]}]}]}`))
	f.Add([]byte(`{"User_Specs": [{"User_List": [{"username": "root"}], "Cmnd_Specs": [{"runasusers": [{"runasalias": "X"}], "Options": [{"authenticate": false}], "Commands": [{"cmndalias": "Y"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := parseSudoersJSON(data)
		if err != nil {
			return
		}
		for _, r := range rules {
			r.asRoot()
			r.commands()
		}
	})
}
