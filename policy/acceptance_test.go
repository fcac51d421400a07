package policy

import (
	"strings"
	"testing"
)

// TestAcceptanceEval is the acceptance check `eval`, in process.
func TestAcceptanceEval(t *testing.T) {
	ix := mustCompile(t, validated(t, acceptanceDocs...))
	cases := []struct {
		name      string
		req       string
		decision  string
		effective string
		policy    string
		duration  int
	}{
		{"netcat denied", `{"user":"carol","groups":["staff"],"machine":"ws-17","sessionId":"s-1","action":"elevate","application":{"path":"/usr/bin/nc","commandLine":"nc -l 4444"}}`,
			Deny, Deny, "deny-netcat", 0},
		{"dev tools need a justification", `{"user":"dave","groups":["developers"],"machine":"ws-17","sessionId":"s-2","action":"elevate","application":{"path":"/usr/bin/apt-get","commandLine":"apt-get install jq"}}`,
			Justification, Justification, "dev-tools", 0},
		{"dev tools with a justification", `{"user":"dave","groups":["developers"],"machine":"ws-17","sessionId":"s-2","action":"elevate","application":{"path":"/usr/bin/apt-get"},"justification":"install jq for INC-42"}`,
			Allow, Allow, "dev-tools", 900},
		{"no policy matches", `{"user":"erin","groups":["staff"],"machine":"ws-17","sessionId":"s-3","action":"elevate","application":{"path":"/usr/bin/vim"}}`,
			Deny, Deny, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest(strings.NewReader(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			d := ix.Evaluate(req, monday10)
			if d.Decision != tc.decision || d.Effective != tc.effective || d.Policy != tc.policy || d.DurationSeconds != tc.duration {
				t.Errorf("got %+v, want decision %s effective %s policy %q duration %d", d, tc.decision, tc.effective, tc.policy, tc.duration)
			}
			if d.Mode != StatusEnforce || d.Reason == "" {
				t.Errorf("got mode %q reason %q", d.Mode, d.Reason)
			}
		})
	}
}
