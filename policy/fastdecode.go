package policy

import "warden/plainjson"

// decodeFast decodes the common request without reflection: an object of
// the known keys, spelled exactly, whose values are plain ASCII strings
// (no escapes), lists of them, the application and target objects,
// true/false and small integers. It reports false for anything else
// (another key or spelling, an escape, a byte outside printable ASCII,
// null, a number it does not read, "time", bad syntax), and DecodeRequest
// then decodes with encoding/json, whose answers and errors stay the
// ones callers see: what decodeFast accepts, encoding/json decodes to the
// same Request (FuzzDecodeFast holds it to that), including a repeated
// key (the last wins; objects merge, as encoding/json does).
func decodeFast(data []byte) (*Request, bool) {
	d := fastDecoder{plainjson.New(data)}
	var req Request
	ok := d.Object(func(key []byte) bool {
		switch string(key) {
		case "user":
			return d.str(&req.User)
		case "groups":
			return d.strings(&req.Groups)
		case "machine":
			return d.str(&req.Machine)
		case "sessionId":
			return d.str(&req.SessionID)
		case "action":
			return d.str(&req.Action)
		case "justification":
			return d.str(&req.Justification)
		case "mfaCode":
			return d.str(&req.MFACode)
		case "requestedSeconds":
			return d.int(&req.RequestedSeconds)
		case "application":
			a := &req.Application
			return d.Object(func(key []byte) bool {
				switch string(key) {
				case "path":
					return d.str(&a.Path)
				case "sha256":
					return d.str(&a.SHA256)
				case "commandLine":
					return d.str(&a.CommandLine)
				case "publisher":
					return d.str(&a.Publisher)
				case "parent":
					return d.str(&a.Parent)
				}
				return false
			})
		case "target":
			if req.Target == nil {
				req.Target = new(Target)
			}
			t := req.Target
			return d.Object(func(key []byte) bool {
				switch string(key) {
				case "path":
					return d.str(&t.Path)
				case "write":
					return d.Bool(&t.Write)
				}
				return false
			})
		}
		return false
	})
	if !ok || !d.End() {
		return nil, false
	}
	return &req, true
}

// fastDecoder is a plainjson.Scanner with the setters decodeFast needs.
type fastDecoder struct{ *plainjson.Scanner[[]byte] }

// str reads a string into s.
func (d fastDecoder) str(s *string) bool {
	b, ok := d.Str()
	if ok {
		*s = string(b)
	}
	return ok
}

// strings reads a list of strings into ss (an empty list, not nil, for []).
func (d fastDecoder) strings(ss *[]string) bool {
	out := []string{}
	ok := d.Array(func() bool {
		var s string
		if !d.str(&s) {
			return false
		}
		out = append(out, s)
		return true
	})
	if ok {
		*ss = out
	}
	return ok
}

// int reads an integer of at most 18 digits into n.
func (d fastDecoder) int(n *int) bool {
	var v int64
	if !d.Int(&v) {
		return false
	}
	*n = int(v)
	return true
}
