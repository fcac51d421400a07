package source

import (
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"warden/schema"
)

// FuzzScanManifestAgrees: whatever scanManifest answers for is valid UTF-8
// and valid JSON (parseManifest skips those checks for it), and reads as
// fastManifest reads it, names present included (FuzzFastManifestAgrees
// holds fastManifest to encoding/json). Seeds: the manifest cases and a
// built bundle's manifest.
func FuzzScanManifestAgrees(f *testing.F) {
	for _, tc := range manifestCases() {
		f.Add([]byte(tc.doc))
	}
	b := mustRead(f, targz(f, craft(f, newKey(f), schema.Manifest{Version: 3, Expires: "2030-01-01T00:00:00Z"}, docFiles(nil))))
	f.Add(b.Manifest)
	f.Add([]byte(`{"version": -0, "created": "", "keyId": "", "files": [{}, {"sha256": "x", "path": "y"}]}`))
	f.Add([]byte(`{"version": 01, "created": "", "keyId": "", "files": []}`))
	f.Add([]byte(`{"version": 1e3, "created": "", "keyId": "", "files": []} `))
	f.Fuzz(func(t *testing.T, doc []byte) {
		m, present, ok := scanManifest(doc)
		if !ok {
			return
		}
		if !utf8.Valid(doc) || !gjson.ValidBytes(doc) {
			t.Fatalf("%q: scanManifest read %+v from input that is not valid UTF-8 and JSON", doc, m)
		}
		fm, fpresent, fok := fastManifest(doc)
		if !fok {
			t.Fatalf("%q: scanManifest read %+v, fastManifest does not answer", doc, m)
		}
		if !reflect.DeepEqual(m, fm) || !reflect.DeepEqual(present, fpresent) {
			t.Fatalf("%q: scanManifest read %+v %v, fastManifest %+v %v", doc, m, present, fm, fpresent)
		}
	})
}

// A built bundle's manifest is read by scanManifest; what it does not
// take goes the way it went before.
func TestScanManifest(t *testing.T) {
	b := mustRead(t, targz(t, craft(t, newKey(t), schema.Manifest{Version: 3}, docFiles(nil))))
	if _, _, ok := scanManifest(b.Manifest); !ok {
		t.Fatalf("a built manifest is not read by scanManifest:\n%s", b.Manifest)
	}
	for _, doc := range []string{
		`{"version": 1, "created": "x", "keyId": "k", "files": []} x`,
		`{"version": 1.0, "created": "x", "keyId": "k", "files": []}`,
		`{"version": 1, "created": "\u0078", "keyId": "k", "files": []}`,
		`{"version": 1, "created": "é", "keyId": "k", "files": []}`,
		`{"version": 1, "created": "x", "keyId": "k", "files": [{"path": "a", "path": "b"}]}`,
		`{"version": 1, "created": "x", "keyId": "k", "files": [], "extra": 1}`,
		`{"version": 1, "version": 2, "created": "x", "keyId": "k", "files": []}`,
		`{"version": 1, "created": "x", "keyId": "k", "files": [],}`,
	} {
		if m, _, ok := scanManifest([]byte(doc)); ok {
			t.Errorf("%s: read as %+v, want not answered", doc, m)
		}
	}
}

func mustRead(t testing.TB, data []byte) *Bundle {
	t.Helper()
	b, err := ReadBundleBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
