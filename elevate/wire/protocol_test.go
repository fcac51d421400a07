package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"elevate", `{"v":1,"type":"elevate","argv":["/usr/bin/id"]}`, ""},
		{"no version", `{"type":"elevate","argv":["/usr/bin/id"]}`, "unsupported protocol version 0"},
		{"future version", `{"v":2,"type":"elevate","argv":["id"]}`, "unsupported protocol version 2"},
		{"identity claimed", `{"v":1,"type":"elevate","argv":["id"],"user":"root"}`, `unknown field "user"`},
		{"no command", `{"v":1,"type":"elevate"}`, "argv: a command is required"},
		{"empty command", `{"v":1,"type":"elevate","argv":[""]}`, "argv: a command is required"},
		{"NUL in argv", `{"v":1,"type":"elevate","argv":["id","a\u0000b"]}`, "argv[1]: contains a NUL byte"},
		{"unknown type", `{"v":1,"type":"shell"}`, `type: unknown "shell"`},
		{"trailing data", `{"v":1,"type":"answer"} {}`, "data after the JSON object"},
		{"access without path", `{"v":1,"type":"access"}`, "path: required"},
		{"long reason", `{"v":1,"type":"answer","reason":"` + strings.Repeat("r", maxText+1) + `"}`, "reason: longer than"},
		{"signal out of range", `{"v":1,"type":"signal","signal":99}`, "out of range"},
		{"not json", `elevate /bin/sh`, "message:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Decode(%s) = %v; want no error", tc.in, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Decode(%s) = %v; want an error containing %q", tc.in, err, tc.err)
			}
		})
	}
	if _, err := Decode(make([]byte, MaxMessage+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to a
// message it accepts again (the agent and client agree on the format).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"env":["TERM=xterm"],"tty":true}`,
		`{"v":1,"type":"access","path":"/srv/x","write":true,"seconds":600,"reason":"fix"}`,
		`{"v":1,"type":"approvals-decide","id":"abc","approve":true}`,
		`{"v":1,"type":"signal","signal":2}`,
		`{"v":1,"type":"exit","code":130,"signal":2}`,
		`{"v":1,"type":"result","data":{"a":[1,2]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(again); err != nil && len(again) <= MaxMessage {
			t.Fatalf("accepted %q, but not its re-encoding %q: %v", data, again, err)
		}
	})
}
