package source

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"warden/schema"

	"github.com/tidwall/gjson"
)

// MaxManifestSize bounds manifest.json, which lists every file: 10,000
// files with the longest ids make about 2 MB of it, over the 1 MiB that
// any other entry may have.
const MaxManifestSize = 4 << 20

var timeRe = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// isSHA256 is #SHA256: lower-case hex, 64 digits. (Loops, not regexps:
// they run 20,000 times per large manifest.)
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isCleanPath is the manifest's path rule: segments of [A-Za-z0-9._-]
// joined by "/", none of them "..".
func isCleanPath(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if seg := p[start:i]; seg == "" || seg == ".." {
				return false
			}
			start = i + 1
			continue
		}
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseManifest checks manifest.json against the rules of
// schema/manifest.cue (#Manifest), in Go: a CUE evaluation of a
// 10,000-file manifest costs a quarter of a second, most of the budget
// for applying a changed bundle, and schema.ValidateManifest refuses
// input over 1 MiB. TestManifestAgreesWithSchema keeps the two in step.
// The error lists every broken rule as "manifest.json: field: rule".
func parseManifest(data []byte) (*schema.Manifest, error) {
	var errs schema.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, schema.Issue{File: ManifestFile, Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	// The plainest manifest is read in one pass (valid UTF-8 and JSON by
	// what scanManifest accepts); any other goes through the checks below.
	m, present, ok := scanManifest(data)
	if !ok && !utf8.Valid(data) {
		return nil, schema.Errors{{File: ManifestFile, Msg: schema.ErrNotUTF8.Error()}}
	}
	// One JSON value and nothing after it: the decoder below stops at the
	// end of the object and would not see a stray "]" or "}" there.
	if !ok && !gjson.ValidBytes(data) {
		return nil, schema.Errors{{File: ManifestFile, Msg: "not a valid manifest: not valid JSON"}}
	}
	if !ok {
		m, present, ok = fastManifest(data)
	}
	if !ok {
		// Anything unusual goes the way it always went, for the same
		// errors in the same order. (What fastManifest reads, manifestNames
		// finds nothing wrong with: each name known, and there once.)
		var err error
		if m, err = decodeManifest(data); err != nil {
			return nil, err
		}
		present = manifestNames(data, bad)
	}
	for _, f := range []string{"version", "created", "keyId", "files"} {
		if !present[f] {
			bad(f, "required field is missing")
		}
	}
	if m.Version < 1 {
		bad("version", "invalid value %d (out of bound >=1)", m.Version)
	}
	if present["created"] && !validTime(m.Created) {
		bad("created", "invalid value %q (not an RFC 3339 time)", m.Created)
	}
	if present["expires"] && !validTime(m.Expires) {
		bad("expires", "invalid value %q (not an RFC 3339 time)", m.Expires)
	}
	if present["keyId"] && !isSHA256(m.KeyID) {
		bad("keyId", "invalid value %q (not a lower-case hex SHA-256)", m.KeyID)
	}
	for i, f := range m.Files {
		if !isCleanPath(f.Path) {
			bad(fmt.Sprintf("files[%d].path", i), "invalid value %q (not a clean relative path)", f.Path)
		}
		if !isSHA256(f.SHA256) {
			bad(fmt.Sprintf("files[%d].sha256", i), "invalid value %q (not a lower-case hex SHA-256)", f.SHA256)
		}
	}
	if errs != nil {
		return nil, errs
	}
	return m, nil
}

// decodeManifest decodes manifest.json with encoding/json, refusing
// unknown fields and anything after the object.
func decodeManifest(data []byte) (*schema.Manifest, error) {
	var m schema.Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, schema.Errors{{File: ManifestFile, Msg: "not a valid manifest: " + err.Error()}}
	}
	if dec.More() {
		return nil, schema.Errors{{File: ManifestFile, Msg: "not a valid manifest: data after the object"}}
	}
	return &m, nil
}

// fastManifest reads manifest.json (valid JSON, checked by the caller)
// with the one pass of gjson, in a fraction of decodeManifest's time
// (a 10,000-file manifest is most of what a bundle that changed a little
// costs to read). It answers only for the plain shape every manifest
// builder writes: an object of the five names, each once, an integer
// version, strings without escapes, files an array of objects of path and
// sha256. On anything else ok is false and the caller decodes with
// encoding/json, whose answer FuzzFastManifestAgrees holds this one to.
func fastManifest(data []byte) (m *schema.Manifest, present map[string]bool, ok bool) {
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return nil, nil, false
	}
	m = &schema.Manifest{}
	ok = true
	str := func(v gjson.Result, dst *string) bool {
		if v.Type != gjson.String || len(v.Raw) < 2 || strings.IndexByte(v.Raw, '\\') >= 0 {
			return false
		}
		*dst = v.Raw[1 : len(v.Raw)-1]
		return true
	}
	present = map[string]bool{}
	root.ForEach(func(k, v gjson.Result) bool {
		name := strings.Trim(k.Raw, `"`)
		if present[name] {
			ok = false
			return false
		}
		present[name] = true
		switch k.Raw {
		case `"version"`:
			ok = v.Type == gjson.Number && isDigits(strings.TrimPrefix(v.Raw, "-"))
			if ok {
				var err error
				m.Version, err = strconv.ParseInt(v.Raw, 10, 64)
				ok = err == nil
			}
		case `"created"`:
			ok = str(v, &m.Created)
		case `"expires"`:
			ok = str(v, &m.Expires)
		case `"keyId"`:
			ok = str(v, &m.KeyID)
		case `"files"`:
			if !v.IsArray() {
				ok = false
				return false
			}
			m.Files = make([]schema.ManifestFile, 0, 64)
			v.ForEach(func(_, f gjson.Result) bool {
				var e schema.ManifestFile
				var path, sum bool
				ok = f.IsObject()
				f.ForEach(func(k, v gjson.Result) bool {
					switch {
					case k.Raw == `"path"` && !path:
						path, ok = true, str(v, &e.Path)
					case k.Raw == `"sha256"` && !sum:
						sum, ok = true, str(v, &e.SHA256)
					default:
						ok = false
					}
					return ok
				})
				m.Files = append(m.Files, e)
				return ok
			})
		default:
			ok = false
		}
		return ok
	})
	return m, present, ok
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// manifestNames checks the names in manifest.json as #Manifest does, which
// encoding/json does not: exactly (it fills Path from "pAth"), and once per
// object (it lets the last of two win). It also refuses "files": null,
// which decodes as no files. It returns the top-level names present.
func manifestNames(data []byte, bad func(field, format string, args ...any)) map[string]bool {
	present := map[string]bool{}
	gjson.ParseBytes(data).ForEach(func(k, v gjson.Result) bool {
		switch {
		case present[k.Str]:
			bad(k.Str, "duplicate key")
		case !slices.Contains([]string{"version", "created", "expires", "keyId", "files"}, k.Str):
			bad(k.Str, "field not allowed (unknown field)")
		}
		present[k.Str] = true
		if k.Str != "files" {
			return true
		}
		if v.Type == gjson.Null {
			bad("files", "invalid value null (not a list)")
		}
		i := 0
		v.ForEach(func(_, f gjson.Result) bool {
			var path, sum bool
			f.ForEach(func(k, _ gjson.Result) bool {
				field := func() string { return fmt.Sprintf("files[%d].%s", i, k.Str) }
				switch {
				case k.Str == "path" && !path:
					path = true
				case k.Str == "sha256" && !sum:
					sum = true
				case k.Str == "path" || k.Str == "sha256":
					bad(field(), "duplicate key")
				default:
					bad(field(), "field not allowed (unknown field)")
				}
				return true
			})
			i++
			return true
		})
		return true
	})
	return present
}

func validTime(s string) bool {
	if !timeRe.MatchString(s) {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}
