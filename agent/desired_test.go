package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func adminClient(t testing.TB, root string) *http.Client {
	t.Helper()
	certs := filepath.Join(root, "certs")
	return tlsClient(t, root, pair(t, must(os.ReadFile(filepath.Join(certs, "admin.pem"))), must(os.ReadFile(filepath.Join(certs, "admin-key.pem")))))
}

func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDesiredLocalChangesAreAuditedAndMaterialized(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	c := adminClient(t, root)
	base := "https://" + info.API + "/api/v1/desired"
	doc := `{"kind": "Policy", "id": "deny-netcat", "spec": {"name": "Block netcat", "type": "PrivilegeElevation",
	 "status": "enforce", "priority": 100, "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/nc*"}]}}}`
	if code, body := do(t, c, "PUT", base+"/Policy/deny-netcat", doc); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	if code, body := do(t, c, "GET", base+"/policies/deny-netcat", ""); code != 200 || !strings.Contains(body, "Block netcat") {
		t.Fatalf("GET = %d %s", code, body)
	}
	if code, body := do(t, c, "PUT", base+"/Policy/other-id", doc); code != 400 {
		t.Fatalf("PUT under another id = %d %s; want 400", code, body)
	}
	bad := strings.Replace(doc, `"priority": 100`, `"priority": 100, "durationSeconds": 30`, 1)
	if code, body := do(t, c, "PUT", base+"/Policy/deny-netcat", bad); code != 400 || !strings.Contains(body, "durationSeconds") {
		t.Fatalf("PUT invalid = %d %s; want 400 naming durationSeconds", code, body)
	}
	// The controllers materialize the document.
	path := filepath.Join(root, "policies", "deny-netcat.json")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not materialized", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := do(t, c, "DELETE", base+"/Policy/deny-netcat", ""); code != 200 {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	if code, _ := do(t, c, "GET", base+"/Policy/deny-netcat", ""); code != 404 {
		t.Fatalf("GET after DELETE = %d; want 404", code)
	}
	_, body := do(t, c, "GET", "https://"+info.API+"/api/v1/audit?type=ADMIN_ACTION", "")
	var out struct {
		Events []struct {
			Details map[string]any `json:"details"`
		} `json:"events"`
	}
	json.Unmarshal([]byte(body), &out)
	// The two refused PUTs are audited too (result refused, with the
	// reason), like a refused bundle; the changes are the put and delete.
	var done []map[string]any
	refused := 0
	for _, e := range out.Events {
		if e.Details["result"] == "refused" {
			refused++
			continue
		}
		done = append(done, e.Details)
	}
	if len(done) != 2 || done[0]["action"] != "put" || done[1]["action"] != "delete" || refused != 2 {
		t.Fatalf("ADMIN_ACTION events = %s; want put then delete, and the two refusals", body)
	}
	if code, body := do(t, c, "GET", "https://"+info.API+"/metrics", ""); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d", code)
	}
}

func TestAuditFollowStreamsNewEvents(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	c := adminClient(t, root)
	resp, err := c.Get("https://" + info.API + "/api/v1/audit?follow=true&type=ADMIN_ACTION")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("follow = %d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	doc := `{"kind": "Approver", "id": "oncall", "spec": {"name": "On call", "users": ["alice"], "policies": ["*"]}}`
	if code, body := do(t, c, "PUT", "https://"+info.API+"/api/v1/desired/Approver/oncall", doc); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	select {
	case l := <-lines:
		if !strings.Contains(l, `"ADMIN_ACTION"`) || !strings.Contains(l, `"oncall"`) {
			t.Fatalf("streamed %s; want the ADMIN_ACTION for oncall", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event streamed within 5 s")
	}
	// Stopping the agent ends the stream at once rather than holding up
	// the graceful shutdown.
	start := time.Now()
	a.stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %s with a stream open", d)
	}
	for range lines {
	}
}

func TestPluginRoutes(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	admin := adminClient(t, root)
	base := "https://" + info.API + "/api/v1/plugins"
	if code, body := do(t, admin, "GET", base, ""); code != 200 || !strings.Contains(body, `"plugins":[]`) {
		t.Fatalf("GET plugins = %d %s", code, body)
	}
	if code, body := do(t, admin, "POST", base+"/nope/restart", "{}"); code != 404 {
		t.Fatalf("restart of an unknown plugin = %d %s; want 404", code, body)
	}
	pc, pk, _, err := a.ca.Issue("plugin", "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plugin := tlsClient(t, root, pair(t, pc, pk))
	if code, _ := do(t, plugin, "GET", base, ""); code != 200 {
		t.Fatalf("plugin GET plugins = %d; want 200", code)
	}
	if code, _ := do(t, plugin, "POST", base+"/heartbeat/restart", "{}"); code != 403 {
		t.Fatalf("plugin POST restart = %d; want 403", code)
	}
}
