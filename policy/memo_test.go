package policy

import (
	"fmt"
	"testing"
)

// An unchanged document's compiled policy is shared by the next index; a
// changed one is compiled again, and decisions follow the new document.
func TestCompileSharesUnchangedPolicies(t *testing.T) {
	doc := func(id, app string) string {
		return fmt.Sprintf(`{"kind": "Policy", "id": %q, "spec": {"name": "n", "type": "PrivilegeElevation",
  "status": "enforce", "priority": 10, "controls": ["deny"], "filters": {"users": ["*"], "applications": [{"path": %q}]}}}`, id, app)
	}
	first, err := Compile(validated(t, doc("a", "/usr/bin/a"), doc("b", "/usr/bin/b")))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Compile(validated(t, doc("a", "/usr/bin/a"), doc("b", "/usr/bin/b2")))
	if err != nil {
		t.Fatal(err)
	}
	byID := func(ix *Index, id string) *compiled {
		for _, p := range ix.policies {
			if p.id == id {
				return p
			}
		}
		t.Fatalf("no policy %s", id)
		return nil
	}
	if byID(first, "a") != byID(second, "a") {
		t.Error("the unchanged policy was compiled again")
	}
	if byID(first, "b") == byID(second, "b") {
		t.Fatal("the changed policy was not compiled again")
	}
	if got := byID(second, "b").apps[0].path.src; got != "/usr/bin/b2" {
		t.Errorf("policy b matches %s, want /usr/bin/b2", got)
	}
}
