package reconcile

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"warden/audit"
	"warden/engine"
	"warden/policy"
)

// The whole path with the real engine: an attested request allowed by a
// policy with durationSeconds creates a grant (the caller asks for
// grantSeconds),
// the controllers make it true on the machine, and the engine's own
// wall-clock timer expires it. The same request by a certificate caller
// (the HTTPS API) changes nothing on the machine.
func TestEngineGrantsTakeEffectAndExpire(t *testing.T) {
	// Long enough that the controllers have written both grants before they
	// expire, with the whole suite running under -race on two busy cores (3 s
	// was not, once: the grant expired before the sudoers controller ran).
	const grantSeconds = 8
	needRoot(t, "sudo", "visudo", "cvtsudoers", "setpriv", "setfacl", "getfacl")
	dir := sudoersFolder(t)
	path, _ := secretFile(t)
	u := testUser(t)
	e, _ := privEnv(t, nil)
	e.apply(validated(t,
		[]byte(`{"kind": "Settings", "id": "agent", "spec": {"enforcement": {"sudoersDir": "`+dir+`"}}}`),
		fmt.Appendf(nil, `{"kind": "Policy", "id": "id-for-a-while", "spec": {"name": "id", "type": "PrivilegeElevation",
		  "status": "enforce", "controls": ["allow"], "durationSeconds": 60,
		  "filters": {"users": [%q], "applications": [{"path": "/usr/bin/id"}]}}}`, u.Username),
		fmt.Appendf(nil, `{"kind": "Policy", "id": "secret-for-a-while", "spec": {"name": "secret", "type": "FileAccess",
		  "status": "enforce", "controls": ["allow"], "durationSeconds": 60,
		  "filters": {"users": [%q], "folders": [%q]}}}`, u.Username, filepath.Dir(path)),
	)...)
	e.start()
	eng, err := engine.New(engine.Options{Store: e.store, Audit: e.aw, Machine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.waitQuiet()

	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	user := engine.Caller{Kind: engine.CallerUser, Name: u.Username, UID: uint32(uid), PID: 1}
	sha := elevateGrant(t, u, "/usr/bin/id", 0).SHA256
	elevate := func(c engine.Caller) engine.Result {
		t.Helper()
		r, err := eng.Evaluate(ctx, c, &policy.Request{User: u.Username, Action: policy.ActionElevate,
			Application: policy.Application{Path: "/usr/bin/id", SHA256: sha}, RequestedSeconds: grantSeconds}, false)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Over the HTTPS API: allowed, and nothing on the machine.
	if r := elevate(engine.Caller{Kind: engine.CallerAdmin, Name: "cli"}); r.Effective != policy.Allow {
		t.Fatalf("admin evaluate: %+v", r.Decision)
	} else if r.GrantID != "" {
		t.Fatalf("a certificate caller got grant %s", r.GrantID)
	}

	r := elevate(user)
	if r.Effective != policy.Allow || r.GrantID == "" {
		t.Fatalf("user evaluate: %+v, grant %q", r.Decision, r.GrantID)
	}
	drop := filepath.Join(dir, sudoersPrefix+r.GrantID)
	e.waitFor("drop-in of the engine's grant", func() bool { return exists(drop) })
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/id", "-u"); err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("sudo during the grant: %v: %q", err, out)
	}

	ra, err := eng.Evaluate(ctx, user, &policy.Request{User: u.Username, Action: policy.ActionFileAccess,
		Target: &policy.Target{Path: path}, RequestedSeconds: grantSeconds}, false)
	if err != nil || ra.Effective != policy.Allow || ra.GrantID == "" {
		t.Fatalf("access evaluate: %v %+v", err, ra.Decision)
	}
	e.waitFor("cat works", func() bool { out, err := asUser(u, "cat", path); return err == nil && out == "the secret\n" })

	// The engine's timer expires both; the controllers take them away.
	e.waitFor("drop-in gone at expiry", func() bool { return !exists(drop) })
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/id", "-u"); err == nil {
		t.Fatalf("sudo after expiry: %s", out)
	}
	e.waitFor("cat refused at expiry", func() bool { _, err := asUser(u, "cat", path); return err != nil })
	if acl := getfacl(t, path); strings.Contains(acl, "user:"+u.Uid) {
		t.Fatalf("entry left after expiry:\n%s", acl)
	}
	e.waitFor("ELEVATION_EXPIRED", func() bool { return e.hasEvent(audit.ElevationExpired, r.GrantID) })
}
