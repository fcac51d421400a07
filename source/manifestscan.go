package source

import (
	"strconv"

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
	sc := manifestScanner{src: string(data)}
	m = &schema.Manifest{}
	present = make(map[string]bool, 5)
	if !sc.skip('{') {
		return nil, nil, false
	}
	for first := true; ; first = false {
		if sc.skip('}') {
			break
		}
		if !first && !sc.skip(',') {
			return nil, nil, false
		}
		name, ok := sc.str()
		if !ok || present[name] || !sc.skip(':') {
			return nil, nil, false
		}
		present[name] = true
		switch name {
		case "version":
			ok = sc.integer(&m.Version)
		case "created":
			m.Created, ok = sc.str()
		case "expires":
			m.Expires, ok = sc.str()
		case "keyId":
			m.KeyID, ok = sc.str()
		case "files":
			// An entry takes at least 96 bytes (a hash of 64, two names).
			m.Files, ok = sc.files(len(data) / 96)
		default:
			ok = false
		}
		if !ok {
			return nil, nil, false
		}
	}
	sc.space()
	return m, present, sc.i == len(sc.src)
}

type manifestScanner struct {
	src string
	i   int
}

func (sc *manifestScanner) space() {
	for sc.i < len(sc.src) {
		switch sc.src[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// skip consumes c, after whitespace, if it is next.
func (sc *manifestScanner) skip(c byte) bool {
	sc.space()
	if sc.i < len(sc.src) && sc.src[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII other than '\\'.
func (sc *manifestScanner) str() (string, bool) {
	if !sc.skip('"') {
		return "", false
	}
	start := sc.i
	for ; sc.i < len(sc.src); sc.i++ {
		switch c := sc.src[sc.i]; {
		case c == '"':
			sc.i++
			return sc.src[start : sc.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
	}
	return "", false
}

// integer reads -?(0|[1-9][0-9]*) that fits an int64.
func (sc *manifestScanner) integer(dst *int64) bool {
	sc.space()
	start := sc.i
	if sc.i < len(sc.src) && sc.src[sc.i] == '-' {
		sc.i++
	}
	digits := sc.i
	for sc.i < len(sc.src) && sc.src[sc.i] >= '0' && sc.src[sc.i] <= '9' {
		sc.i++
	}
	if sc.i == digits || sc.src[digits] == '0' && sc.i-digits > 1 {
		return false
	}
	if sc.i < len(sc.src) {
		switch sc.src[sc.i] {
		case '.', 'e', 'E':
			return false
		}
	}
	v, err := strconv.ParseInt(sc.src[start:sc.i], 10, 64)
	*dst = v
	return err == nil
}

// files reads an array of {"path": ..., "sha256": ...} objects (either
// name at most once, in any order, or absent); n sizes the slice.
func (sc *manifestScanner) files(n int) ([]schema.ManifestFile, bool) {
	if !sc.skip('[') {
		return nil, false
	}
	out := make([]schema.ManifestFile, 0, n)
	for first := true; ; first = false {
		if sc.skip(']') {
			return out, true
		}
		if !first && !sc.skip(',') || !sc.skip('{') {
			return nil, false
		}
		var f schema.ManifestFile
		var path, sum bool
		for firstName := true; ; firstName = false {
			if sc.skip('}') {
				break
			}
			if !firstName && !sc.skip(',') {
				return nil, false
			}
			name, ok := sc.str()
			if !ok || !sc.skip(':') {
				return nil, false
			}
			switch {
			case name == "path" && !path:
				path = true
				f.Path, ok = sc.str()
			case name == "sha256" && !sum:
				sum = true
				f.SHA256, ok = sc.str()
			default:
				ok = false
			}
			if !ok {
				return nil, false
			}
		}
		out = append(out, f)
	}
}
