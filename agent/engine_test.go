package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
)

// Over the HTTPS API the engine names the certificate: a plugin's
// evaluation is recorded as plugin/ID and gets no explanation and no
// grant; an admin's approval is recorded as the admin certificate, and a
// body naming an approver is refused.
func TestEngineOverHTTPNamesTheCertificate(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	admin := adminClient(t, root)
	api := "https://" + info.API + "/api/v1"
	for id, doc := range map[string]string{
		"Policy/db-admin": `{"kind": "Policy", "id": "db-admin", "spec": {"name": "DB admin", "type": "PrivilegeElevation",
		 "status": "enforce", "controls": ["allow", "approval"], "durationSeconds": 600,
		 "filters": {"applications": [{"path": "/usr/bin/psql"}]}}}`,
		"Approver/dba": `{"kind": "Approver", "id": "dba", "spec": {"name": "DBAs", "users": ["alice"], "policies": ["db-*"]}}`,
	} {
		if code, body := do(t, admin, "PUT", api+"/desired/"+id, doc); code != 200 {
			t.Fatalf("PUT %s = %d %s", id, code, body)
		}
	}
	pc, pk, _, err := a.ca.Issue("plugin", "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plugin := tlsClient(t, root, pair(t, pc, pk))
	const ask = `{"user": "carol", "machine": "ws-1", "action": "elevate", "application": {"path": "/usr/bin/psql"}}`
	if code, body := do(t, plugin, "POST", api+"/evaluate?explain=true", ask); code != 403 {
		t.Fatalf("plugin asking for explain = %d %s; want 403", code, body)
	}
	var res engine.Result
	deadline := time.Now().Add(5 * time.Second)
	for res.ApprovalID == "" && time.Now().Before(deadline) {
		_, body := do(t, plugin, "POST", api+"/evaluate", ask)
		json.Unmarshal([]byte(body), &res)
		time.Sleep(20 * time.Millisecond)
	}
	if res.Effective != "approval" || res.ApprovalID == "" {
		t.Fatalf("plugin evaluate: %+v; want a pending approval", res)
	}
	evs, _, _ := audit.Query(a.store, audit.Filter{Types: []string{audit.PolicyEvaluation}})
	if len(evs) == 0 || evs[len(evs)-1].UserInfo.Identity != "plugin/heartbeat" {
		t.Fatalf("POLICY_EVALUATION does not name plugin/heartbeat: %+v", evs)
	}
	approve := api + "/approvals/" + res.ApprovalID + "/approve"
	if code, body := do(t, admin, "POST", approve, `{"approver": "alice"}`); code != 400 || !strings.Contains(body, "admin/cli") {
		t.Fatalf("approve naming alice in the body = %d %s; want 400", code, body)
	}
	if code, _ := do(t, plugin, "POST", approve, `{}`); code != 403 {
		t.Fatalf("plugin approving = %d; want 403 (admin route)", code)
	}
	code, body := do(t, admin, "POST", approve, `{"reason": "ticket 7"}`)
	var ap engine.Approval
	json.Unmarshal([]byte(body), &ap)
	if code != 200 || ap.State != "approved" || ap.DecidedBy != "admin/cli" {
		t.Fatalf("admin approve = %d %s; want approved by admin/cli", code, body)
	}
	_, body = do(t, plugin, "POST", api+"/evaluate", ask)
	res = engine.Result{}
	json.Unmarshal([]byte(body), &res)
	if res.Effective != "allow" || res.GrantID != "" {
		t.Fatalf("after approval: %s; want allow with no grant (HTTP decisions change nothing)", body)
	}
	if _, body := do(t, admin, "GET", api+"/grants", ""); !strings.Contains(body, `"grants":[]`) {
		t.Fatalf("grants after an HTTP allow: %s; want none", body)
	}
}
