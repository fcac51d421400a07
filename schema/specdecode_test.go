package schema

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"cuelang.org/go/cue"
)

// specCases are documents whose specs exercise every field and default of
// the kinds decodeSpec decodes from JSON (policies, approvers).
var specCases = []string{
	`{"kind": "Policy", "id": "min", "spec": {"name": "n", "type": "PrivilegeElevation", "status": "enforce", "controls": ["deny"], "filters": {}}}`,
	`{"kind": "Policy", "id": "all", "spec": {"name": "n", "description": "d\u00e9j\u00e0 \"q\"", "type": "FileAccess", "status": "monitor-notify",
	  "priority": 10000, "controls": ["allow", "justification", "mfa", "approval"], "durationSeconds": 86400, "redirect": {"to": "/usr/bin/x"},
	  "filters": {"users": ["*", "${USER}"], "groups": ["g"], "machines": ["ws-*"], "folders": ["${HOME}/x"],
	    "applications": [{"path": "/usr/bin/a*", "sha256": "` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `", "commandLine": "a *", "publisher": "p", "parent": "/bin/sh"}],
	    "time": {"days": ["mon", "fri"], "from": "08:00", "to": "18:30", "timeZone": "Europe/Paris", "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2027-01-01T00:00:00Z"}}}}`,
	`{"kind": "Policy", "id": "lp", "spec": {"name": "n", "type": "LeastPrivilege", "status": "enforce", "controls": ["deny"],
	  "leastPrivilege": {"adminGroups": ["sudo"], "allowEmpty": true}, "filters": {"machines": ["*"]}}}`,
	`{"kind": "Policy", "id": "lp2", "spec": {"name": "n", "type": "LeastPrivilege", "status": "monitor", "controls": ["deny"],
	  "leastPrivilege": {"standingAdmins": ["breakglass"]}, "filters": {}}}`,
	`{"kind": "Approver", "id": "a", "spec": {"name": "IT", "users": ["alice", "bob"], "policies": ["*"]}}`,
}

// bothDecodings validates data and returns its spec as decodeSpec and as
// CUE's Decode produce it; ok is false when the document is invalid or of
// a kind decodeSpec leaves to CUE.
func bothDecodings(t testing.TB, data []byte) (fast, slow any, ok bool) {
	t.Helper()
	if precheck(data) != nil {
		return nil, nil, false
	}
	tree, err := jsonTree(data)
	if err != nil {
		return nil, nil, false
	}
	obj, _ := tree.(map[string]any)
	kind, _ := obj["kind"].(string)
	if kind != KindPolicy && kind != KindApprover {
		return nil, nil, false
	}
	v := borrow()
	defer giveBack(v)
	val, err := v.unify("doc.json", tree, v.defs[kind])
	if err != nil {
		return nil, nil, false
	}
	if fast, err = decodeSpec(kind, data, val); err != nil {
		t.Fatalf("JSON decoding of a valid document: %v\n%s", err, data)
	}
	if slow, err = decodeSpecCUE(kind, val); err != nil {
		t.Fatalf("CUE decoding of a valid document: %v\n%s", err, data)
	}
	return fast, slow, true
}

// TestSpecDecodeAgrees: for every valid policy and approver here and in
// fixtures/, the JSON decoding gives exactly CUE's. A default added to the
// schema that Go's zero value does not express fails it.
func TestSpecDecodeAgrees(t *testing.T) {
	docs := specCases
	for _, dir := range []string{"policies", "approvers"} {
		files, _ := filepath.Glob(filepath.Join("..", "fixtures", "desired", dir, "*.json"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(data))
		}
	}
	checked := 0
	for _, doc := range docs {
		fast, slow, ok := bothDecodings(t, []byte(doc))
		if !ok {
			t.Errorf("not a valid policy or approver: %s", doc)
			continue
		}
		checked++
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("decodings differ for %s:\nJSON %+v\nCUE  %+v", doc, fast, slow)
		}
	}
	if checked < 10 {
		t.Errorf("only %d documents checked", checked)
	}
}

func FuzzSpecDecodeAgrees(f *testing.F) {
	for _, doc := range specCases {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow, ok := bothDecodings(t, data)
		if ok && !reflect.DeepEqual(fast, slow) {
			t.Errorf("decodings differ for %s:\nJSON %+v\nCUE  %+v", data, fast, slow)
		}
	})
}

// decodeSpecCUE is CUE's decoding of a validated document's spec, which
// decodeSpec stands in for on policies and approvers (for the tests that
// compare the two).
func decodeSpecCUE(kind string, val cue.Value) (any, error) {
	spec, err := newSpec(kind)
	if err != nil {
		return nil, err
	}
	return spec, val.LookupPath(cue.ParsePath("spec")).Decode(spec)
}
