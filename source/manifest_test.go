package source

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"warden/schema"
)

// The Go manifest check and schema/manifest.cue must agree.
func TestManifestAgreesWithSchema(t *testing.T) {
	for _, tc := range manifestCases() {
		t.Run(tc.name, func(t *testing.T) {
			_, goErr := parseManifest([]byte(tc.doc))
			_, cueErr := schema.ValidateManifest(ManifestFile, []byte(tc.doc))
			if (goErr == nil) != (cueErr == nil) {
				t.Errorf("Go check says %v, CUE schema says %v", goErr, cueErr)
			}
		})
	}
}

// FuzzManifestAgreesWithSchema is the test above on arbitrary input: the Go
// check of manifest.json accepts exactly what schema/manifest.cue accepts.
// Seeds: the cases above and testdata/fuzz/FuzzManifestAgreesWithSchema.
func FuzzManifestAgreesWithSchema(f *testing.F) {
	for _, tc := range manifestCases() {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, goErr := parseManifest(doc)
		_, cueErr := schema.ValidateManifest(ManifestFile, doc)
		if (goErr == nil) != (cueErr == nil) {
			t.Errorf("%q: Go check says %v, CUE schema says %v", doc, goErr, cueErr)
		}
	})
}

type manifestCase struct{ name, doc string }

func manifestCases() []manifestCase {
	h := strings.Repeat("ab", 32)
	ok := `{"version": 1, "created": "2025-01-01T00:00:00Z", "keyId": "` + h + `", "files": [{"path": "policies/a.json", "sha256": "` + h + `"}]}`
	return []manifestCase{
		{"valid", ok},
		{"valid with expires", strings.Replace(ok, `"keyId"`, `"expires": "2026-01-01T00:00:00+02:00", "keyId"`, 1)},
		{"no files", `{"version": 1, "created": "2025-01-01T00:00:00Z", "keyId": "` + h + `", "files": []}`},
		{"version 0", strings.Replace(ok, `"version": 1`, `"version": 0`, 1)},
		{"version missing", strings.Replace(ok, `"version": 1,`, ``, 1)},
		{"version text", strings.Replace(ok, `"version": 1`, `"version": "1"`, 1)},
		{"bad created", strings.Replace(ok, `2025-01-01T00:00:00Z`, `yesterday`, 1)},
		{"created missing", strings.Replace(ok, `"created": "2025-01-01T00:00:00Z",`, ``, 1)},
		{"bad expires", strings.Replace(ok, `"keyId"`, `"expires": "2026-01-01", "keyId"`, 1)},
		{"upper-case key id", strings.Replace(ok, `"keyId": "`+h, `"keyId": "`+strings.ToUpper(h), 1)},
		{"short hash", strings.Replace(ok, `"sha256": "`+h, `"sha256": "abc`, 1)},
		{"dot-dot path", strings.Replace(ok, `policies/a.json`, `policies/../a.json`, 1)},
		{"absolute path", strings.Replace(ok, `policies/a.json`, `/policies/a.json`, 1)},
		{"unknown field", strings.Replace(ok, `"version": 1`, `"version": 1, "signer": "me"`, 1)},
		{"unknown file field", strings.Replace(ok, `"path":`, `"mode": 420, "path":`, 1)},
		{"not json", `{"version": 1,`},
		{"files null", `{"version": 1, "created": "2025-01-01T00:00:00Z", "keyId": "` + h + `", "files": null}`},
		{"field name in other case", strings.Replace(ok, `"version"`, `"Version"`, 1)},
		{"file field name in other case", strings.Replace(ok, `"path"`, `"pAth"`, 1)},
		{"file field twice", strings.Replace(ok, `"path":`, `"path": "policies/b.json", "path":`, 1)},
		{"not UTF-8", strings.Replace(ok, `policies/a.json`, "policies/\xff.json", 1)},
		{"version twice", strings.Replace(ok, `"version": 1`, `"version": 1, "version": 2`, 1)},
		{"expires null", strings.Replace(ok, `"keyId"`, `"expires": null, "keyId"`, 1)},
		{"version 1.0", strings.Replace(ok, `"version": 1`, `"version": 1.0`, 1)},
		{"version 1e3", strings.Replace(ok, `"version": 1`, `"version": 1e3`, 1)},
		{"not an object", `[]`},
		{"stray bracket after", ok + `]`},
		{"stray brace after", ok + `}`},
		{"second object after", ok + ` {}`},
		{"file entry null", strings.Replace(ok, `"files": [`, `"files": [null, `, 1)},
	}
}

// FuzzFastManifestAgrees holds parseManifest's quick reading of a plain
// manifest (fastManifest) to encoding/json's: whatever it answers for, it
// answers as decodeManifest does. Seeds: the cases above.
func FuzzFastManifestAgrees(f *testing.F) {
	for _, tc := range manifestCases() {
		f.Add([]byte(tc.doc))
	}
	f.Add([]byte(`{"version": -0, "created": "", "keyId": "", "files": []}`))
	f.Add([]byte(`{"version": 9223372036854775808, "created": "", "keyId": "", "files": []}`))
	f.Add([]byte(`{"version": 1, "created": "a\u0062", "keyId": "", "files": {"path": "x"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !utf8.Valid(doc) || !gjson.ValidBytes(doc) {
			return // parseManifest refuses these before either reads them
		}
		fast, present, ok := fastManifest(doc)
		if !ok {
			return
		}
		slow, err := decodeManifest(doc)
		if err != nil {
			t.Fatalf("%q: fastManifest read %+v, encoding/json refuses: %v", doc, fast, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fastManifest read %+v, encoding/json %+v", doc, fast, slow)
		}
		var issues []string
		names := manifestNames(doc, func(field, format string, args ...any) { issues = append(issues, field) })
		if issues != nil || !reflect.DeepEqual(names, present) {
			t.Fatalf("%q: fastManifest read names %v, manifestNames %v with issues %v", doc, present, names, issues)
		}
	})
}

// Every case reads the same through parseManifest with and without the
// quick reading, errors included.
func TestFastManifestSameErrors(t *testing.T) {
	for _, tc := range manifestCases() {
		doc := []byte(tc.doc)
		if !utf8.Valid(doc) || !gjson.ValidBytes(doc) {
			continue // refused before either reads it
		}
		fast, _, ok := fastManifest(doc)
		slow, err := decodeManifest(doc)
		if ok && (err != nil || !reflect.DeepEqual(fast, slow)) {
			t.Errorf("%s: fast %+v, encoding/json %+v (%v)", tc.name, fast, slow, err)
		}
	}
	h := strings.Repeat("ab", 32)
	plain := `{"version": 7, "created": "2025-01-01T00:00:00Z", "keyId": "` + h + `", "files": [{"path": "policies/a.json", "sha256": "` + h + `"}]}`
	if _, _, ok := fastManifest([]byte(plain)); !ok {
		t.Errorf("a plain manifest is not read by the quick path")
	}
}
