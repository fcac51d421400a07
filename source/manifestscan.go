package source

import (
	"warden/plainjson"
	"warden/schema"
)

// scanManifest reads the plainest manifest, the one `warden bundle build`
// writes, in one pass over its bytes without a JSON library: an object of
// the five names, each once, an integer version, strings of printable
// ASCII without escapes, files an array of objects of path and sha256,
// JSON whitespace between tokens and nothing after the object. It answers
// as fastManifest does (FuzzScanManifestAgrees), and only for input that
// is valid UTF-8 and valid JSON, so parseManifest skips those checks for
// it. On anything else ok is false. The strings share one copy of data.
func scanManifest(data []byte) (m *schema.Manifest, present map[string]bool, ok bool) {
	sc := plainjson.New(string(data))
	m = &schema.Manifest{}
	present = make(map[string]bool, 5)
	ok = sc.Object(func(name string) bool {
		if present[name] {
			return false
		}
		present[name] = true
		var ok bool
		switch name {
		case "version":
			ok = sc.Int(&m.Version)
		case "created":
			m.Created, ok = sc.Str()
		case "expires":
			m.Expires, ok = sc.Str()
		case "keyId":
			m.KeyID, ok = sc.Str()
		case "files":
			// An entry takes at least 96 bytes (a hash of 64, two names).
			m.Files, ok = scanFiles(sc, len(data)/96)
		}
		return ok
	})
	if !ok || !sc.End() {
		return nil, nil, false
	}
	return m, present, true
}

// scanFiles reads an array of {"path": ..., "sha256": ...} objects (either
// name at most once, in any order, or absent); n sizes the slice.
func scanFiles(sc *plainjson.Scanner[string], n int) ([]schema.ManifestFile, bool) {
	out := make([]schema.ManifestFile, 0, n)
	ok := sc.Array(func() bool {
		var f schema.ManifestFile
		var path, sum bool
		ok := sc.Object(func(name string) bool {
			var ok bool
			switch {
			case name == "path" && !path:
				path = true
				f.Path, ok = sc.Str()
			case name == "sha256" && !sum:
				sum = true
				f.SHA256, ok = sc.Str()
			}
			return ok
		})
		out = append(out, f)
		return ok
	})
	return out, ok
}
