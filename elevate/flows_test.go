package elevate_test

import (
	"encoding/base32"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"warden/audit"
	"warden/policy"
)

func TestJustification(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "why")
	a.policy(t, "el-why", `{"name": "id with a reason", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow", "justification"], "filters": {"users": ["wdn-elevate-why"], "applications": [{"path": "/usr/bin/id"}]}}`)
	// No terminal and no --reason: refused, saying how.
	if out, errs, code := a.warden(t, u, "", "elevate", "--", "/usr/bin/id", "-u"); code != 1 || out != "" || !strings.Contains(errs, "--reason") {
		t.Fatalf("without a reason: code %d, stdout %q, stderr %q", code, out, errs)
	}
	if out, errs, code := a.warden(t, u, "", "elevate", "--reason", "ticket 42", "--", "/usr/bin/id", "-u"); code != 0 || out != "0\n" {
		t.Fatalf("with --reason: code %d, stdout %q, stderr %q", code, out, errs)
	}
	// On a terminal the agent asks; the answer is audited with the request.
	out, code := a.rawAs(t, u, `{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"tty":true}`, "rotating the logs")
	if code != 0 || !strings.Contains(out, `"prompt":"justification"`) {
		t.Fatalf("prompted: code %d, out %s", code, out)
	}
	for _, why := range []string{"ticket 42", "rotating the logs"} {
		a.waitEvent(t, audit.PolicyEvaluation, func(e audit.Event) bool {
			return e.Details["justification"] == why && e.Evaluation.Effective == "allow" && e.UserInfo.User == u.Name
		})
	}
}

// enroll enrolls user for MFA and returns the TOTP secret.
func (a *testAgent) enroll(t *testing.T, user string) []byte {
	t.Helper()
	code, body := a.call(t, "POST", "/api/v1/mfa/"+user+"/enroll", "{}")
	if code != 200 {
		t.Fatalf("enroll: %d %s", code, body)
	}
	var out struct{ OTPAuth string }
	json.Unmarshal(body, &out)
	u, err := url.Parse(out.OTPAuth)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Query().Get("secret"))
	if err != nil {
		t.Fatalf("secret of %s: %v", out.OTPAuth, err)
	}
	return secret
}

func TestMFA(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "mfa")
	a.policy(t, "el-mfa", `{"name": "id with MFA", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow", "mfa"], "filters": {"users": ["wdn-elevate-mfa"], "applications": [{"path": "/usr/bin/id"}]}}`)
	secret := a.enroll(t, u.Name)
	msg := `{"v":1,"type":"elevate","argv":["/usr/bin/id","-u"],"tty":true}`
	// Without a terminal there is no way to give a code.
	if _, errs, code := a.warden(t, u, "", "elevate", "--", "/usr/bin/id", "-u"); code != 1 || !strings.Contains(errs, "MFA code") {
		t.Fatalf("MFA without a terminal: code %d, stderr %q", code, errs)
	}
	good := policy.TOTPCode(secret, time.Now())
	if out, code := a.rawAs(t, u, msg, "000000", good); code != 0 || !strings.Contains(out, "wrong code") || !strings.Contains(out, "0\n") {
		t.Fatalf("a wrong then a right code: code %d, out %s", code, out)
	}
	// The verified code was for that request: another request cannot use
	// it, and three tries are all a request gets.
	out, code := a.rawAs(t, u, msg, good, good, good, good)
	if code != 1 || strings.Contains(out, `"type":"started"`) || !strings.Contains(out, "3 wrong MFA codes") {
		t.Fatalf("the same code for a second request: code %d, out %s", code, out)
	}
	// 1 + 3 failures so far; the fifth locks the user's MFA.
	out, code = a.rawAs(t, u, msg, "111111", "222222")
	if code != 1 || !strings.Contains(out, "locked") {
		t.Fatalf("fifth failure: code %d, out %s; want locked", code, out)
	}
	a.waitEvent(t, audit.MFALocked, func(e audit.Event) bool { return e.UserInfo.User == u.Name })
	if n := len(a.events(t, audit.MFAFailed)); n != 5 {
		t.Fatalf("%d MFA_FAILED events, want 5", n)
	}
	next := policy.TOTPCode(secret, time.Now().Add(30*time.Second))
	if out, code := a.rawAs(t, u, msg, next); code != 1 || !strings.Contains(out, "locked") || strings.Contains(out, `"type":"prompt"`) {
		t.Fatalf("while locked: code %d, out %s; want refused without a prompt", code, out)
	}
}

var approvalID = regexp.MustCompile(`request ([0-9a-f]{6,})`)

func TestApproval(t *testing.T) {
	a := startAgent(t)
	req := newUser(t, "req")
	approver := newUser(t, "ok", "wdn-elevate-approvers")
	other := newUser(t, "no")
	a.put(t, "Approver", "el-approvers", `{"name": "test approvers", "users": ["wdn-elevate-req"], "groups": ["wdn-elevate-approvers"], "policies": ["el-ask"]}`)
	a.policy(t, "el-ask", `{"name": "id after approval", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["allow", "approval"], "filters": {"users": ["wdn-elevate-req"], "applications": [{"path": "/usr/bin/id"}]}}`)

	_, errs, code := a.warden(t, req, "", "elevate", "--no-wait", "--", "/usr/bin/id", "-u")
	m := approvalID.FindStringSubmatch(errs)
	if code != 75 || m == nil {
		t.Fatalf("--no-wait: code %d, stderr %q; want 75 and the request id", code, errs)
	}
	id := m[1]
	a.waitEvent(t, audit.ApprovalRequested, func(e audit.Event) bool { return strings.Contains(js(e), id) })
	// The requester cannot approve their own request, nor can a user no
	// Approver document names; both refusals are audited.
	for _, u := range []testUser{req, other} {
		if _, errs, code := a.warden(t, u, "", "approvals", "approve", id); code != 1 {
			t.Fatalf("%s approving: code %d, stderr %q; want 1", u.Name, code, errs)
		}
		a.waitEvent(t, audit.AuthorizationFailed, func(e audit.Event) bool {
			return strings.Contains(js(e), u.Name) && strings.Contains(js(e), id)
		})
	}
	if out, errs, code := a.warden(t, other, "", "approvals", "list"); code != 0 || strings.Contains(out, id) {
		t.Fatalf("a non-approver's list: code %d, out %q, stderr %q; want it without %s", code, out, errs, id)
	}
	if out, errs, code := a.warden(t, approver, "", "approvals", "list"); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("the approver's list: code %d, out %q, stderr %q; want %s", code, out, errs, id)
	}
	if out, errs, code := a.warden(t, approver, "", "approvals", "list", "-o", "json"); code != 0 || !strings.Contains(out, `"id": "`+id+`"`) {
		t.Fatalf("the approver's list as JSON: code %d, out %q, stderr %q; want %s", code, out, errs, id)
	}
	// The requester waits; the approver approves; the command runs.
	cmd := req.as(wardenBin, "--root", a.root, "elevate", "--", "/usr/bin/id", "-u")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "waiting for approval") })
	if out, errs, code := a.warden(t, approver, "", "approvals", "approve", id, "--reason", "on call"); code != 0 || !strings.Contains(out, "approved") {
		t.Fatalf("approve: code %d, out %q, stderr %q", code, out, errs)
	}
	if err := cmd.Wait(); err != nil || stdout.String() != "0\n" {
		t.Fatalf("the waiting request: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
	// The approval covers that command line, not another one.
	if _, errs, code := a.warden(t, req, "", "elevate", "--no-wait", "--", "/usr/bin/id", "-g"); code != 75 || strings.Contains(errs, id) {
		t.Fatalf("another command line: code %d, stderr %q; want a new pending request", code, errs)
	}
	if out, _, code := a.warden(t, req, "", "elevate", "--", "/usr/bin/id", "-u"); code != 0 || out != "0\n" {
		t.Fatalf("the approved command again: code %d, out %q", code, out)
	}
}

func TestRedirectAndNotify(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "redir")
	a.policy(t, "el-redirect", `{"name": "whoami goes to id", "type": "PrivilegeElevation", "status": "enforce",
		"controls": ["redirect"], "redirect": {"to": "/usr/bin/id"},
		"filters": {"users": ["wdn-elevate-redir"], "applications": [{"path": "/usr/bin/whoami"}]}}`)
	a.policy(t, "el-notify", `{"name": "tell about uname", "type": "PrivilegeElevation", "status": "monitor-notify",
		"controls": ["deny"], "filters": {"users": ["wdn-elevate-redir"], "applications": [{"path": "/usr/bin/uname"}]}}`)
	out, errs, code := a.warden(t, u, "", "elevate", "--", "/usr/bin/whoami", "-u")
	if code != 0 || out != "0\n" || !strings.Contains(errs, "redirects /usr/bin/whoami to /usr/bin/id") {
		t.Fatalf("redirect: code %d, stdout %q, stderr %q", code, out, errs)
	}
	a.waitEvent(t, audit.ElevationStarted, func(e audit.Event) bool {
		return e.TargetInfo.Path == "/usr/bin/id" && e.Details["policy"] == "el-redirect"
	})
	out, errs, code = a.warden(t, u, "", "elevate", "--", "/usr/bin/uname", "-s")
	if code != 0 || out != "Linux\n" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "el-notify") || !strings.Contains(errs, "deny") {
		t.Fatalf("monitor-notify: code %d, stdout %q, stderr %q; want it run and one notice", code, out, errs)
	}
}

func TestAccess(t *testing.T) {
	a := startAgent(t)
	u := newUser(t, "acl")
	dir := rootOnlyDir(t)
	file := filepath.Join(dir, "report.txt")
	os.WriteFile(file, []byte("secret"), 0o600)
	os.Symlink(file, filepath.Join(dir, "link"))
	a.policy(t, "el-files", `{"name": "reports", "type": "FileAccess", "status": "enforce", "durationSeconds": 600,
		"controls": ["allow", "justification"], "filters": {"users": ["wdn-elevate-acl"], "folders": ["`+dir+`"]}}`)
	if _, errs, code := a.warden(t, u, "", "access", file); code != 1 || !strings.Contains(errs, "--reason") {
		t.Fatalf("access without a reason: code %d, stderr %q", code, errs)
	}
	out, errs, code := a.warden(t, u, "", "access", "--write", "--for", "5m", "--reason", "quarterly", filepath.Join(dir, "link"))
	if code != 0 || !strings.Contains(out, "write access to "+file+" granted until") {
		t.Fatalf("access: code %d, stdout %q, stderr %q", code, out, errs)
	}
	grants := a.grants(t)
	var found bool
	for _, g := range grants {
		if g.User == u.Name && g.Scope == file {
			found = true
			if !g.Attested || g.UID != u.UID || g.Access != "write" || time.Until(g.ExpiresAt) > 5*time.Minute+time.Second {
				t.Fatalf("grant = %+v; want attested, uid %d, write, at most 5 minutes", g, u.UID)
			}
		}
	}
	if !found {
		t.Fatalf("no grant for %s on %s in %+v", u.Name, file, grants)
	}
	if _, errs, code := a.warden(t, u, "", "access", "--reason", "x", "/etc/shadow"); code != 1 || !strings.Contains(errs, "denied") {
		t.Fatalf("access outside the policy: code %d, stderr %q", code, errs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// js is an event as JSON, to look for names and ids anywhere in it.
func js(e audit.Event) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
