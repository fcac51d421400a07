package agent

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"warden/fulldisk"
)

// On a full disk an admin change is refused with 503 audit_unavailable
// and does not happen; status and metrics say audit is unavailable; once
// space returns the same agent accepts changes again.
func TestFullDiskRefusesAuditedChanges(t *testing.T) {
	fs := fulldisk.Mount(t, 48<<20)
	root := fs.Dir
	_, info := startAgent(t, root)
	c := adminClient(t, root)
	base := "https://" + info.API
	put := func(id string) (int, string) {
		doc := fmt.Sprintf(`{"kind": "Policy", "id": %q, "spec": {"name": %q, "type": "PrivilegeElevation",
		 "status": "enforce", "priority": 100, "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/nc*"}]}}}`,
			id, strings.Repeat("x", 200))
		return do(t, c, "PUT", base+"/api/v1/desired/Policy/"+id, doc)
	}
	if code, body := put("before"); code != 200 {
		t.Fatalf("PUT before filling = %d %s", code, body)
	}

	fs.Fill()
	refused := ""
	for i := 0; i < 100 && refused == ""; i++ { // free pages in the file may take a few
		id := "full-" + strconv.Itoa(i)
		code, body := put(id)
		switch {
		case code == 503:
			if !strings.Contains(body, `"code":"audit_unavailable"`) {
				t.Fatalf("503 body %s; want code audit_unavailable", body)
			}
			refused = id
		case code != 200:
			t.Fatalf("PUT on a full disk = %d %s; want 200 or 503", code, body)
		}
	}
	if refused == "" {
		t.Fatal("no PUT was refused on a full disk")
	}
	if code, _ := do(t, c, "GET", base+"/api/v1/desired/Policy/"+refused, ""); code != 404 {
		t.Fatalf("the refused change was applied (GET = %d)", code)
	}
	// A decision is not answered when its POLICY_EVALUATION cannot be stored.
	decided := false
	for i := 0; i < 100 && !decided; i++ {
		code, body := do(t, c, "POST", base+"/api/v1/evaluate",
			`{"user": "ivan", "machine": "ws-1", "action": "elevate", "application": {"path": "/usr/bin/nc"}}`)
		switch {
		case code == 503 && strings.Contains(body, `"code":"audit_unavailable"`):
			decided = true
		case code != 200:
			t.Fatalf("evaluate on a full disk = %d %s; want 200 or 503 audit_unavailable", code, body)
		}
	}
	if !decided {
		t.Fatal("no evaluation was refused on a full disk")
	}
	var st struct {
		Audit struct {
			OK       bool   `json:"ok"`
			Failures uint64 `json:"failures"`
		} `json:"audit"`
	}
	_, body := do(t, c, "GET", base+"/api/v1/status", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Audit.OK || st.Audit.Failures == 0 {
		t.Fatalf("status on a full disk: %s; want audit not ok with failures", body)
	}
	_, metrics := do(t, c, "GET", base+"/metrics", "")
	if m := regexp.MustCompile(`(?m)^warden_audit_write_failures_total ([0-9.e+]+)$`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Fatalf("metrics: warden_audit_write_failures_total = %v; want > 0", m)
	}

	fs.Free()
	if code, body := put("after"); code != 200 {
		t.Fatalf("PUT after space returned = %d %s; want 200 without a restart", code, body)
	}
	_, body = do(t, c, "GET", base+"/api/v1/status", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil || !st.Audit.OK {
		t.Fatalf("status after recovery: %s; want audit ok", body)
	}
	if code, body := do(t, c, "GET", base+"/api/v1/audit/verify", ""); code != 200 || !strings.Contains(body, `"intact":true`) {
		t.Fatalf("verify after the full disk = %d %s", code, body)
	}
}
