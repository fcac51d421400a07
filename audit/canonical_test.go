package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// marshalled is what encoding/json writes for e with Hash empty: the
// bytes the hash chain was defined over, which appendCanonical must keep.
func marshalled(t testing.TB, e Event) []byte {
	t.Helper()
	e.Hash = ""
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var canonicalCases = []struct {
	name string
	ev   Event
}{
	{"minimal", Event{Type: PolicyEvaluation}},
	{"decision", Event{ID: "0a1b2c", Seq: 42, Time: time.Date(2026, 12, 1, 2, 3, 4, 500600, time.UTC),
		Type: PolicyEvaluation, Severity: Warning, Component: "engine",
		UserInfo:   &UserInfo{User: "carol", Groups: []string{"staff", "developers"}, SessionID: "s-1", Identity: "plugin/pam"},
		Machine:    "ws-17",
		TargetInfo: &TargetInfo{Kind: "elevate", Path: "/usr/bin/apt-get", Hash: "ab12"},
		Evaluation: &Evaluation{Decision: "deny", Effective: "deny", Mode: "enforce", Policy: "dev-tools",
			Matched: []string{"p-1", "p-2"}, Reason: "no policy matched"},
		Details:  map[string]any{"machine": "ws-17", "attested": false, "requestedSeconds": 900, "commandLine": "apt-get install x"},
		PrevHash: "ffee", Hash: "ignored"}},
	{"empty structs and lists", Event{Time: time.Unix(0, 0), UserInfo: &UserInfo{Groups: []string{}},
		TargetInfo: &TargetInfo{}, Evaluation: &Evaluation{Matched: []string{}}, Details: map[string]any{}}},
	{"peer", Event{UserInfo: &UserInfo{PeerAddr: "127.0.0.1:5", PeerPID: -7, PeerExe: "/bin/x"}}},
	{"escapes", Event{Type: "a\"b\\c\n\r\t\b\f\x00\x1f\x7f<>&", Component: "\u2028\u2029é€😀",
		Machine: "bad \xff\xfe utf-8 \xe2\x82", Details: map[string]any{"<k>": "v&", "": "", "é": "\x01"}}},
	{"detail values", Event{Details: map[string]any{"n": nil, "f": 1.5, "big": 1e21, "i64": int64(-3), "u": uint64(1 << 63),
		"list": []string{"a"}, "nested": map[string]any{"z": 1, "a": []any{true, "x"}}, "t": time.Unix(1, 2).UTC(),
		"raw": json.RawMessage(`{"b":1, "a":2}`)}}},
	{"zone", Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -(5*3600+30*60)))}},
}

func TestCanonicalIsMarshal(t *testing.T) {
	for _, tt := range canonicalCases {
		t.Run(tt.name, func(t *testing.T) {
			got, want := tt.ev.canonical(), marshalled(t, tt.ev)
			if !bytes.Equal(got, want) {
				t.Errorf("canonical:\n got %s\nwant %s", got, want)
			}
			// The stored form is Marshal's of the sealed event.
			e := tt.ev
			stored := e.seal()
			if want, _ := json.Marshal(&e); !bytes.Equal(stored, want) {
				t.Errorf("sealed:\n got %s\nwant %s", stored, want)
			}
			if e.computeHash() != e.Hash {
				t.Errorf("hash %s does not verify", e.Hash)
			}
		})
	}
}

// A time Marshal refuses falls back to Marshal (as before: its error is
// the event's, not the encoder's).
func TestCanonicalOutOfRangeTime(t *testing.T) {
	e := Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, ok := appendCanonical(nil, &e); ok {
		t.Error("year 10000 encoded; Marshal refuses it")
	}
	e.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600))
	if _, ok := appendCanonical(nil, &e); ok {
		t.Error("offset of 25 h encoded; Marshal refuses it")
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("id", "POLICY_EVALUATION", "carol", "staff", "/usr/bin/x", "k", "v", int64(1), uint64(3), 7)
	f.Add("\xff<&>", "\u2028", "a\"b", "\\", "\x00\n", "é", "😀\xe2", int64(-1), uint64(1<<63), -1)
	f.Fuzz(func(t *testing.T, id, typ, user, group, path, key, val string, nanos int64, seq uint64, pid int) {
		e := Event{ID: id, Seq: seq, Time: time.Unix(0, nanos).UTC(), Type: typ, Severity: Info, Component: val,
			UserInfo:   &UserInfo{User: user, Groups: []string{group, key}, SessionID: val, PeerPID: pid},
			Machine:    path,
			TargetInfo: &TargetInfo{Kind: typ, Path: path},
			Evaluation: &Evaluation{Decision: val, Effective: key, Policy: id, Matched: []string{user}, Reason: group},
			Details:    map[string]any{key: val, user: pid, "x" + key: group == "", id: nanos},
			PrevHash:   group}
		if got, want := e.canonical(), marshalled(t, e); !bytes.Equal(got, want) {
			t.Fatalf("canonical:\n got %s\nwant %s", got, want)
		}
	})
}

// Inner benchmark: sealing a decision's event, and Marshal doing the
// canonical bytes as before.
func BenchmarkSeal(b *testing.B) {
	ev := canonicalCases[1].ev
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := ev
			e.seal()
		}
	})
	b.Run("canonical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev.canonical()
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := ev
			json.Marshal(&e)
		}
	})
}
