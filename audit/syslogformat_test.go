package audit

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSyslogMessage(t *testing.T) {
	e := &Event{ID: "5e0c", Seq: 1042, Time: time.Date(2026, 11, 30, 22, 41, 7, 123456789, time.UTC),
		Type: PolicyEvaluation, Severity: Warning, Component: "engine", Machine: "ws 17\n", PrevHash: "41ab", Hash: "9f2c",
		UserInfo:   &UserInfo{User: "alice"},
		Evaluation: &Evaluation{Decision: "deny", Effective: "deny", Policy: "deny|net=cat", Reason: "a\\b\nc"},
		Raw:        []byte(`{"seq":1042}`)}
	tests := []struct {
		name string
		cef  bool
		want string
	}{
		{"json", false, `<108>1 2026-11-30T22:41:07.123456Z ws17 warden 4711 POLICY_EVALUATION [warden@32473 seq="1042" hash="9f2c" prevHash="41ab" id="5e0c"] {"seq":1042}`},
		{"cef", true, `<108>1 2026-11-30T22:41:07.123456Z ws17 warden 4711 POLICY_EVALUATION [warden@32473 seq="1042" hash="9f2c" prevHash="41ab" id="5e0c"] ` +
			`CEF:0|warden|warden|1|POLICY_EVALUATION|POLICY_EVALUATION|6|rt=1796078467123 dvchost=ws 17\n externalId=5e0c cat=engine cs1Label=seq cs1=1042 ` +
			`cs2Label=hash cs2=9f2c cs3Label=prevHash cs3=41ab suser=alice act=deny cs5Label=policy cs5=deny|net\=cat reason=a\\b\nc`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &syslogTarget{cef: tc.cef, pid: "4711"}
			got := string(st.message(e))
			if got != tc.want {
				t.Fatalf("message\n got %s\nwant %s", got, tc.want)
			}
			framed := frame(nil, []byte(got))
			n, rest, _ := bytes.Cut(framed, []byte(" "))
			if l, _ := strconv.Atoi(string(n)); l != len(got) || string(rest) != got {
				t.Fatalf("frame = %q", framed[:20])
			}
		})
	}
}

func TestSDValueEscapes(t *testing.T) {
	if got := string(appendSDValue(nil, `a"b\c]d`)); got != `a\"b\\c\]d` {
		t.Fatalf("appendSDValue = %s", got)
	}
	if got := string(appendHeaderField(nil, strings.Repeat("x", 40), 32)); len(got) != 32 {
		t.Fatalf("MSGID not cut to 32: %d", len(got))
	}
	if got := string(appendHeaderField(nil, " \t", 255)); got != "-" {
		t.Fatalf("empty header field = %q, want -", got)
	}
}
