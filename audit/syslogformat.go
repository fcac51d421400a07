package audit

import (
	"strconv"
	"strings"
)

// syslogFacility is RFC 5424's "log audit" (13).
const syslogFacility = 13

// sdID names warden's structured data element. 32473 is the private
// enterprise number RFC 5612 reserves for documentation; a receiver only
// needs the name to be stable.
const sdID = "warden@32473"

// syslogSeverity maps an event severity to RFC 5424's.
func syslogSeverity(sev string) int {
	switch sev {
	case Critical:
		return 2
	case Warning:
		return 4
	}
	return 6
}

// message is one RFC 5424 message:
//
//	<PRI>1 TIMESTAMP HOSTNAME warden PROCID TYPE [warden@32473 seq="N" hash="H" prevHash="P" id="ID"] MSG
//
// MSG is the event as stored (its JSON, byte for byte, so a receiver can
// recompute the hash) or, with format cef, a CEF line.
func (t *syslogTarget) message(e *Event) []byte {
	b := make([]byte, 0, 256+len(e.Raw))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(syslogFacility*8+syslogSeverity(e.Severity)), 10)
	b = append(b, ">1 "...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = appendHeaderField(b, e.Machine, 255)
	b = append(b, " warden "...)
	b = append(b, t.pid...)
	b = append(b, ' ')
	b = appendHeaderField(b, e.Type, 32)
	b = append(b, " ["+sdID+" seq=\""...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `" hash="`...)
	b = appendSDValue(b, e.Hash)
	b = append(b, `" prevHash="`...)
	b = appendSDValue(b, e.PrevHash)
	b = append(b, `" id="`...)
	b = appendSDValue(b, e.ID)
	b = append(b, `"] `...)
	if t.cef {
		return appendCEF(b, e)
	}
	return append(b, e.Raw...)
}

// appendHeaderField appends s as a header field: printable US-ASCII
// without spaces, at most n bytes, "-" when empty.
func appendHeaderField(b []byte, s string, n int) []byte {
	start := len(b)
	for i := 0; i < len(s) && len(b)-start < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b = append(b, c)
		}
	}
	if len(b) == start {
		b = append(b, '-')
	}
	return b
}

// appendSDValue escapes '"', '\' and ']' (RFC 5424 6.3.3).
func appendSDValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// cefSeverity maps an event severity to CEF's 0-10.
func cefSeverity(sev string) string {
	switch sev {
	case Critical:
		return "9"
	case Warning:
		return "6"
	}
	return "3"
}

// appendCEF appends the event as ArcSight CEF:
//
//	CEF:0|warden|warden|1|TYPE|TYPE|SEV|rt=MS dvchost=... suser=... cs1Label=seq cs1=N ...
//
// The sequence number and hashes are custom strings, so the chain can be
// checked from CEF too (the full event is in the JSON format).
func appendCEF(b []byte, e *Event) []byte {
	b = append(b, "CEF:0|warden|warden|1|"...)
	b = appendCEFHeader(b, e.Type)
	b = append(b, '|')
	b = appendCEFHeader(b, e.Type)
	b = append(b, '|')
	b = append(b, cefSeverity(e.Severity)...)
	b = append(b, "|rt="...)
	b = strconv.AppendInt(b, e.Time.UnixMilli(), 10)
	ext := func(k, v string) {
		if v == "" {
			return
		}
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '=')
		b = appendCEFValue(b, v)
	}
	ext("dvchost", e.Machine)
	ext("externalId", e.ID)
	ext("cat", e.Component)
	ext("cs1Label", "seq")
	ext("cs1", strconv.FormatUint(e.Seq, 10))
	ext("cs2Label", "hash")
	ext("cs2", e.Hash)
	ext("cs3Label", "prevHash")
	ext("cs3", e.PrevHash)
	if u := e.UserInfo; u != nil {
		ext("suser", u.User)
		ext("suid", u.Identity)
		if u.PeerPID != 0 {
			ext("spid", strconv.Itoa(u.PeerPID))
		}
		ext("sproc", u.PeerExe)
	}
	if ti := e.TargetInfo; ti != nil {
		ext("filePath", ti.Path)
		ext("fileHash", ti.Hash)
		ext("cs4Label", "target")
		ext("cs4", strings.Trim(ti.Kind+"/"+ti.ID, "/"))
	}
	if ev := e.Evaluation; ev != nil {
		ext("act", ev.Effective)
		ext("cs5Label", "policy")
		ext("cs5", ev.Policy)
		ext("reason", ev.Reason)
	}
	return b
}

// appendCEFHeader escapes '|' and '\' in a header field.
func appendCEFHeader(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '|' || c == '\\' {
			b = append(b, '\\', c)
		} else if c >= 32 {
			b = append(b, c)
		}
	}
	return b
}

// appendCEFValue escapes '=', '\' and line breaks in an extension value.
func appendCEFValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '=', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
