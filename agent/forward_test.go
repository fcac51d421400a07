package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditForwardFromSettings applies Settings with a file target through
// the API: the agent's events appear in the NDJSON file, the status names
// the target with its cursor, and /metrics has the lag gauge.
func TestAuditForwardFromSettings(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	c := adminClient(t, root)
	out := filepath.Join(t.TempDir(), "siem", "audit.ndjson")
	settings := `{"kind": "Settings", "id": "agent", "spec": {"audit": {"forward": [{"type": "file", "path": "` + out + `"}]}}}`
	if code, body := do(t, c, "PUT", "https://"+info.API+"/api/v1/desired/Settings/agent", settings); code != 200 {
		t.Fatalf("PUT Settings = %d %s", code, body)
	}
	// The PUT itself is audited (ADMIN_ACTION) after AGENT_STARTED: both
	// must reach the file, with their sequence numbers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(out)
		if bytes.Contains(data, []byte(`"type":"AGENT_STARTED"`)) && bytes.Contains(data, []byte(`"type":"ADMIN_ACTION"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after 10 s: %q", out, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var status struct {
		AuditForward []struct {
			Target    string `json:"target"`
			Cursor    uint64 `json:"cursor"`
			Connected bool   `json:"connected"`
		} `json:"auditForward"`
	}
	_, body := do(t, c, "GET", "https://"+info.API+"/api/v1/status", "")
	if err := json.Unmarshal([]byte(body), &status); err != nil || len(status.AuditForward) != 1 ||
		status.AuditForward[0].Target != "file:"+out || !status.AuditForward[0].Connected {
		t.Fatalf("status auditForward = %s", body)
	}
	if _, body := do(t, c, "GET", "https://"+info.API+"/metrics", ""); !strings.Contains(body, `warden_audit_forward_lag_events{target="file:`+out+`"}`) {
		t.Fatalf("/metrics has no lag gauge for the target")
	}
}
