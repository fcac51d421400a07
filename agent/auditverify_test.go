package agent

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"warden/api"
	"warden/pki"
	"warden/state"
)

// GET /api/v1/audit/verify walks the chain of the running agent's store: it
// says intact, and after a forged event is slipped into the store, where
// the chain breaks. A plugin may not ask.
func TestAuditVerifyOverAPI(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	admin := adminClient(t, root)
	url := "https://" + info.API + "/api/v1/audit/verify"

	verify := func() api.VerifyAnswer {
		t.Helper()
		code, body := get(t, admin, url)
		var ans api.VerifyAnswer
		if code != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil {
			t.Fatalf("GET audit/verify: %d %s", code, body)
		}
		return ans
	}
	if ans := verify(); !ans.Intact || ans.Events == 0 {
		t.Fatalf("fresh agent: %+v, want an intact chain of its start-up events", ans)
	}

	last, ok, err := a.store.LastAudit()
	if err != nil || !ok {
		t.Fatalf("LastAudit: %v %v", ok, err)
	}
	forged := []byte(`{"seq": ` + strconv.FormatUint(last.Seq+1, 10) + `, "type": "AGENT_STARTED", "hash": "00", "prev_hash": "00"}`)
	if err := a.store.AppendAudit([]state.AuditEntry{{Seq: last.Seq + 1, Data: forged}}); err != nil {
		t.Fatal(err)
	}
	if ans := verify(); ans.Intact || ans.BrokenAt != last.Seq+1 || ans.Reason == "" {
		t.Fatalf("after a forged event: %+v, want broken at %d", ans, last.Seq+1)
	}

	pc, pk, _, err := a.ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, tlsClient(t, root, pair(t, pc, pk)), url); code != http.StatusForbidden {
		t.Errorf("plugin: %d, want 403", code)
	}
}
