package state

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"warden/schema"
)

// openT opens a store in dir (KeeperStorage layout) and closes it at the
// end of the test.
func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func keeperDir(t testing.TB) string {
	return filepath.Join(t.TempDir(), "KeeperStorage")
}

// mustValidate turns JSON into a validated document, as sources do.
func mustValidate(t testing.TB, doc string) *schema.Document {
	t.Helper()
	d, err := schema.Validate("test.json", []byte(doc))
	if err != nil {
		t.Fatalf("Validate(%s): %v", doc, err)
	}
	return d
}

// policyJSON is a ~400-byte policy whose name carries tag, so a test can
// tell which generation a document was written by.
func policyJSON(id, tag string) string {
	return fmt.Sprintf(`{"kind": "Policy", "id": %q, "spec": {
  "name": "Developers may elevate package tools [%s]", "type": "PrivilegeElevation",
  "status": "enforce", "priority": 50, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"users": ["*"], "groups": ["developers", "ops"], "machines": ["ws-*"],
              "applications": [{"path": "/usr/bin/apt*", "commandLine": "apt install *"}]}}}`, id, tag)
}

// restoredPolicy builds the same document as policyJSON without a CUE
// evaluation (schema.Restore), for tests and benchmarks that need many.
func restoredPolicy(t testing.TB, id, tag string) *schema.Document {
	t.Helper()
	spec := schema.PolicySpec{
		Name: "Developers may elevate package tools [" + tag + "]", Type: "PrivilegeElevation",
		Status: "enforce", Priority: 50, Controls: []string{"allow", "justification"}, DurationSeconds: 900,
		Filters: schema.Filters{Users: []string{"*"}, Groups: []string{"developers", "ops"}, Machines: []string{"ws-*"},
			Applications: []schema.ApplicationFilter{{Path: "/usr/bin/apt*", CommandLine: "apt install *"}}},
	}
	sj, _ := json.Marshal(spec)
	d, err := schema.Restore(schema.KindPolicy, id, []byte(policyJSON(id, tag)), sj)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// generationDocs is a generation of n policies, each tagged "gen-TAG".
func generationDocs(t testing.TB, n int, tag string) []*schema.Document {
	docs := make([]*schema.Document, n)
	for i := range docs {
		docs[i] = restoredPolicy(t, fmt.Sprintf("policy-%05d", i), tag)
	}
	return docs
}

// tagOf extracts the tag policyJSON put into a document's name.
func tagOf(d *schema.Document) string {
	name := d.Policy().Name
	i := strings.LastIndex(name, "[")
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(name[i+1:], "]")
}
