package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendCanonical appends e's canonical JSON (with Hash as it is) to dst:
// byte for byte what encoding/json's Marshal writes for an Event (fields
// in declaration order, omitempty, map keys sorted, strings escaped as
// Marshal escapes them, HTML characters included), without reflection.
// Every decision seals one event on the writer's goroutine, where Marshal
// was most of the seal's CPU. ok is false for what it does not write
// itself (a time Marshal refuses, a details value it cannot marshal): the caller marshals instead.
// TestCanonicalIsMarshal and FuzzCanonical hold it to Marshal.
func appendCanonical(dst []byte, e *Event) ([]byte, bool) {
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return dst, false
	}
	if _, off := e.Time.Zone(); off <= -24*3600 || off >= 24*3600 {
		return dst, false
	}
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.AppendFormat(dst, "2006-01-02T15:04:05.999999999Z07:00")
	dst = append(dst, `","type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"severity":`...)
	dst = appendString(dst, e.Severity)
	dst = append(dst, `,"component":`...)
	dst = appendString(dst, e.Component)
	if u := e.UserInfo; u != nil {
		dst = append(dst, `,"user_info":{`...)
		n := len(dst)
		dst = appendField(dst, n, "user", u.User)
		if len(u.Groups) > 0 {
			dst = appendKey(dst, n, "groups")
			dst = appendStrings(dst, u.Groups)
		}
		dst = appendField(dst, n, "sessionId", u.SessionID)
		dst = appendField(dst, n, "identity", u.Identity)
		dst = appendField(dst, n, "peerAddr", u.PeerAddr)
		if u.PeerPID != 0 {
			dst = appendKey(dst, n, "peerPid")
			dst = strconv.AppendInt(dst, int64(u.PeerPID), 10)
		}
		dst = appendField(dst, n, "peerExe", u.PeerExe)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"machine":`...)
	dst = appendString(dst, e.Machine)
	if t := e.TargetInfo; t != nil {
		dst = append(dst, `,"target_info":{`...)
		n := len(dst)
		dst = appendField(dst, n, "kind", t.Kind)
		dst = appendField(dst, n, "id", t.ID)
		dst = appendField(dst, n, "path", t.Path)
		dst = appendField(dst, n, "sha256", t.Hash)
		dst = append(dst, '}')
	}
	if v := e.Evaluation; v != nil {
		dst = append(dst, `,"policy_evaluation_status":{"decision":`...)
		dst = appendString(dst, v.Decision)
		dst = append(dst, `,"effective":`...)
		dst = appendString(dst, v.Effective)
		dst = appendField(dst, 0, "mode", v.Mode)
		dst = appendField(dst, 0, "policy", v.Policy)
		if len(v.Matched) > 0 {
			dst = append(dst, `,"matched":`...)
			dst = appendStrings(dst, v.Matched)
		}
		dst = appendField(dst, 0, "reason", v.Reason)
		dst = append(dst, '}')
	}
	if len(e.Details) > 0 {
		dst = append(dst, `,"details":`...)
		var ok bool
		if dst, ok = appendDetails(dst, e.Details); !ok {
			return dst, false
		}
	}
	dst = append(dst, `,"prev_hash":`...)
	dst = appendString(dst, e.PrevHash)
	dst = append(dst, `,"hash":`...)
	dst = appendString(dst, e.Hash)
	return append(dst, '}'), true
}

// appendKey writes `"name":`, after a comma unless it is the first field
// of the object that starts at first.
func appendKey(dst []byte, first int, name string) []byte {
	if len(dst) != first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// appendField writes an omitempty string field.
func appendField(dst []byte, first int, name, v string) []byte {
	if v == "" {
		return dst
	}
	return appendString(appendKey(dst, first, name), v)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// appendDetails writes a map as Marshal does: keys sorted, each value as
// Marshal writes it alone (strings, booleans and integers directly).
func appendDetails(dst []byte, d map[string]any) ([]byte, bool) {
	var buf [16]string
	keys := buf[:0]
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		switch v := d[k].(type) {
		case string:
			dst = appendString(dst, v)
		case bool:
			dst = strconv.AppendBool(dst, v)
		case int:
			dst = strconv.AppendInt(dst, int64(v), 10)
		case int64:
			dst = strconv.AppendInt(dst, v, 10)
		case uint64:
			dst = strconv.AppendUint(dst, v, 10)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return dst, false
			}
			dst = append(dst, b...)
		}
	}
	return append(dst, '}'), true
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string encoding with HTML escaping on
// (what Marshal does): quotes, backslashes and control characters
// escaped, <, > and & as \u003c, \u003e and \u0026, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
