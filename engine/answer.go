package engine

import (
	"strconv"
	"time"
)

// appendJSON appends r as api.WriteJSON writes it (encoding/json's
// Encoder, HTML characters not escaped, a newline after), without
// reflection, for the answer every decision sends. ok is false for what
// it leaves to the encoder: an explanation, a string that is not plain
// printable ASCII or holds a quote or backslash, a time Marshal refuses.
// TestAnswerIsEncoder and FuzzAnswerJSON hold it to the encoder.
func (r *Result) appendJSON(dst []byte) ([]byte, bool) {
	if r.Explain != nil {
		return dst, false
	}
	ok := true
	str := func(s string) {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				ok = false
				return
			}
		}
		dst = append(dst, '"')
		dst = append(dst, s...)
		dst = append(dst, '"')
	}
	field := func(name, s string) { // omitempty
		if s != "" {
			dst = append(dst, `,"`...)
			dst = append(dst, name...)
			dst = append(dst, `":`...)
			str(s)
		}
	}
	tm := func(name string, t *time.Time) {
		if t == nil {
			return
		}
		_, off := t.Zone()
		if y := t.Year(); y < 0 || y > 9999 || off <= -24*3600 || off >= 24*3600 {
			ok = false
			return
		}
		dst = append(dst, `,"`...)
		dst = append(dst, name...)
		dst = append(dst, `":"`...)
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	d := &r.Decision
	dst = append(dst, `{"decision":`...)
	str(d.Decision)
	dst = append(dst, `,"effective":`...)
	str(d.Effective)
	dst = append(dst, `,"mode":`...)
	str(d.Mode)
	field("policy", d.Policy)
	field("enforcedBy", d.EnforcedBy)
	dst = append(dst, `,"matched":`...)
	if d.Matched == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, m := range d.Matched {
			if i > 0 {
				dst = append(dst, ',')
			}
			str(m)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"reason":`...)
	str(d.Reason)
	if d.DurationSeconds != 0 {
		dst = append(dst, `,"durationSeconds":`...)
		dst = strconv.AppendInt(dst, int64(d.DurationSeconds), 10)
	}
	field("redirectTo", d.RedirectTo)
	if d.Notify {
		dst = append(dst, `,"notify":true`...)
	}
	field("approvalId", r.ApprovalID)
	field("grantId", r.GrantID)
	tm("grantExpiresAt", r.GrantExpiresAt)
	field("mfa", r.MFA)
	tm("mfaLockedUntil", r.MFALockedUntil)
	return append(dst, "}\n"...), ok
}
