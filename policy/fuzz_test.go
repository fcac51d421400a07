package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeRequest: any input is refused with a RequestError (or
// ErrRequestTooLarge) or accepted as a valid request that survives a round
// trip; nothing panics.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"user":"carol","groups":["staff"],"machine":"ws-17","sessionId":"s-1","action":"elevate","application":{"path":"/usr/bin/nc","commandLine":"nc -l 4444"}}`))
	f.Add([]byte(`{"user":"dave","action":"file-access","target":{"path":"/etc/shadow"},"time":"2025-06-02T10:00:00Z"}`))
	f.Add([]byte(`{"user":"x","action":"elevate","application":{"path":"/a/../b"}}`))
	f.Add([]byte(`{"user":"x","action":"elevate","application":{"path":"/a"},"mfaVerified":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(bytes.NewReader(data))
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) && !errors.Is(err, ErrRequestTooLarge) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if req.MFAVerified || req.Approved {
			t.Fatal("a client set a flag only the caller may set")
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequest(bytes.NewReader(again)); err != nil {
			t.Fatalf("a decoded request does not decode again: %v\n%s", err, again)
		}
	})
}

// FuzzGlob checks the automaton against the regular-expression restatement
// of the syntax, in both modes, with variables.
func FuzzGlob(f *testing.F) {
	seeds := [][3]string{
		{"/usr/bin/nc*", "/usr/bin/ncat", "carol"},
		{"/usr/**/bin/*", "/usr/local/bin/x", "carol"},
		{"**/x", "/a/b/x", "root"},
		{"${HOME}/**", "/root/a", "root"},
		{"/home/${USER}/?", "/home/carol/a", "carol"},
		{"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaa", "x"},
		{"/opt/***/x", "/opt/x", "x"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, s, user string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(s) || !utf8.ValidString(user) || len(pattern) > 200 || len(s) > 400 {
			t.Skip()
		}
		v := vars{user: user, machine: "m-1"}
		for _, path := range []bool{true, false} {
			g, err := compileGlob(pattern, path)
			if err != nil {
				if !strings.Contains(pattern, "${") {
					t.Fatalf("compileGlob(%q): %v", pattern, err)
				}
				return
			}
			got := g.match(s, v)
			if want := referenceMatch(t, pattern, path, v, s); got != want {
				t.Fatalf("match(%q, %q, path=%v, user=%q) = %v, reference says %v", pattern, s, path, user, got, want)
			}
		}
	})
}
