package policy

import "strconv"

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
	d := fastDecoder{data: data}
	var req Request
	ok := d.object(func(key []byte) bool {
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
			return d.object(func(key []byte) bool {
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
			return d.object(func(key []byte) bool {
				switch string(key) {
				case "path":
					return d.str(&t.Path)
				case "write":
					return d.bool(&t.Write)
				}
				return false
			})
		}
		return false
	})
	d.space()
	if !ok || d.i != len(d.data) {
		return nil, false
	}
	return &req, true
}

type fastDecoder struct {
	data []byte
	i    int
}

func (d *fastDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c.
func (d *fastDecoder) next(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with the
// position at its value.
func (d *fastDecoder) object(field func(key []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.raw()
		if !ok || !d.next(':') || !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// str reads a string of printable ASCII without escapes.
func (d *fastDecoder) str(s *string) bool {
	b, ok := d.raw()
	if ok {
		*s = string(b)
	}
	return ok
}

// raw is str's bytes, in place.
func (d *fastDecoder) raw() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		if c == '"' {
			d.i++
			return d.data[start : d.i-1], true
		}
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

func (d *fastDecoder) strings(ss *[]string) bool {
	if !d.next('[') {
		return false
	}
	out := []string{}
	if !d.next(']') {
		for {
			var s string
			if !d.str(&s) {
				return false
			}
			out = append(out, s)
			if d.next(']') {
				break
			}
			if !d.next(',') {
				return false
			}
		}
	}
	*ss = out
	return true
}

func (d *fastDecoder) bool(b *bool) bool {
	d.space()
	rest := d.data[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*b, d.i = true, d.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*b, d.i = false, d.i+5
	default:
		return false
	}
	return d.delimited()
}

// int reads an integer of at most 18 digits (no fraction, no exponent).
func (d *fastDecoder) int(n *int) bool {
	d.space()
	start := d.i
	if d.i < len(d.data) && d.data[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		d.i++
	}
	if nd := d.i - digits; nd == 0 || nd > 18 || (nd > 1 && d.data[digits] == '0') || !d.delimited() {
		return false
	}
	v, err := strconv.Atoi(string(d.data[start:d.i]))
	*n = v
	return err == nil
}

// delimited reports whether a literal ends here (white space, a comma,
// the end of an object or list): "truex" or "12a" is not a value.
func (d *fastDecoder) delimited() bool {
	if d.i == len(d.data) {
		return true
	}
	switch d.data[d.i] {
	case ' ', '\t', '\n', '\r', ',', '}', ']':
		return true
	}
	return false
}
