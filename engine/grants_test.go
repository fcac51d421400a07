package engine_test

import (
	"context"
	"testing"
	"time"

	"warden/audit"
	"warden/engine"
	"warden/policy"
)

const fileAccess = `{"kind": "Policy", "id": "logs", "spec": {"name": "Logs", "type": "FileAccess",
 "status": "enforce", "controls": ["allow"], "filters": {"folders": ["/var/log/**"]}}}`

const fileAccessShort = `{"kind": "Policy", "id": "secrets", "spec": {"name": "Secrets", "type": "FileAccess",
 "status": "enforce", "controls": ["allow"], "durationSeconds": 600, "filters": {"folders": ["/srv/secret/**"]}}}`

func access(path string, write bool, secs int) *policy.Request {
	return &policy.Request{User: "dave", Action: policy.ActionFileAccess, Target: &policy.Target{Path: path, Write: write},
		RequestedSeconds: secs}
}

// A decision made over HTTP, by a plugin or the admin, creates no grant at
// all; the same request over the socket creates an attested one with the
// caller's uid and the executable's digest.
func TestHTTPDecisionsCreateNoGrant(t *testing.T) {
	f := setup(t, devTools)
	ctx := context.Background()
	for _, c := range []engine.Caller{pluginCaller, adminCaller} {
		q := req("dave", "/usr/bin/apt-get")
		q.Justification, q.Application.SHA256 = "patching", shaA
		r, err := f.eng.Evaluate(ctx, c, q, false)
		if err != nil || r.Effective != "allow" || r.GrantID != "" || r.DurationSeconds != 900 {
			t.Fatalf("%s: %+v, %v; want allow, duration 900 and no grant", c, r, err)
		}
	}
	if gs := f.storedGrants(t); len(gs) != 0 || f.count(t, audit.ElevationGranted) != 0 {
		t.Fatalf("HTTP decisions stored grants %+v", gs)
	}
	q := req("mallory", "/usr/bin/apt-get")
	q.Justification, q.Application.SHA256 = "patching", shaA
	r, err := f.eng.Evaluate(ctx, dave, q, false)
	if err != nil || r.GrantID == "" {
		t.Fatalf("over the socket: %+v, %v; want a grant", r, err)
	}
	gs := f.storedGrants(t)
	if len(gs) != 1 {
		t.Fatalf("grants %+v; want 1", gs)
	}
	g := gs[0]
	if !g.Attested || g.UID != 1001 || g.User != "dave" || g.SHA256 != shaA || g.Action != engine.GrantElevate ||
		g.Scope != "/usr/bin/apt-get" || !g.ExpiresAt.Equal(f.clk.Now().Add(900*time.Second)) {
		t.Fatalf("grant %+v; want dave's attested elevate grant, uid 1001, sha256, 900 s", g)
	}
	if ev := f.last(t, audit.ElevationGranted); ev.UserInfo.Identity != "uid:1001" || ev.TargetInfo.Hash != shaA {
		t.Fatalf("ELEVATION_GRANTED %+v %+v", ev.UserInfo, ev.TargetInfo)
	}
	// A shorter request shortens the grant; a longer one does not lengthen it.
	for _, tc := range []struct{ asked, want int }{{60, 60}, {3600, 900}} {
		q := req("dave", "/usr/bin/apt-get")
		q.Justification, q.RequestedSeconds = "patching", tc.asked
		r, _ := f.eng.Evaluate(ctx, dave, q, false)
		if r.GrantExpiresAt == nil || !r.GrantExpiresAt.Equal(f.clk.Now().Add(time.Duration(tc.want)*time.Second)) {
			t.Errorf("asked %d s: grant until %v; want %d s", tc.asked, r.GrantExpiresAt, tc.want)
		}
	}
}

// File access grants carry read or write, last what was asked (default an
// hour) within the policy's duration, and are audited as FILE_ACCESS at
// creation and expiry.
func TestFileAccessGrants(t *testing.T) {
	f := setup(t, fileAccess, fileAccessShort)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		q      *policy.Request
		access string
		secs   int
	}{
		{"read, default duration", access("/var/log/syslog", false, 0), "read", 3600},
		{"write, asked 2 h", access("/var/log/app", true, 7200), "write", 7200},
		{"policy caps at 600", access("/srv/secret/key", false, 7200), "read", 600},
	} {
		r, err := f.eng.Evaluate(ctx, dave, tc.q, false)
		if err != nil || r.Effective != "allow" || r.GrantID == "" {
			t.Fatalf("%s: %+v, %v; want allow with a grant", tc.name, r, err)
		}
		var g *engine.Grant
		for _, sg := range f.storedGrants(t) {
			if sg.ID == r.GrantID {
				g = &sg
			}
		}
		if g == nil || g.Action != engine.GrantAccess || g.Access != tc.access || g.Scope != tc.q.Target.Path ||
			!g.Attested || !g.ExpiresAt.Equal(f.clk.Now().Add(time.Duration(tc.secs)*time.Second)) {
			t.Fatalf("%s: grant %+v; want %s access to %s for %d s", tc.name, g, tc.access, tc.q.Target.Path, tc.secs)
		}
		ev := f.last(t, audit.FileAccess)
		if ev.TargetInfo.ID != r.GrantID || ev.Details["phase"] != "granted" || ev.Details["access"] != tc.access {
			t.Fatalf("%s: FILE_ACCESS %+v %v", tc.name, ev.TargetInfo, ev.Details)
		}
	}
	if f.count(t, audit.ElevationGranted) != 0 {
		t.Fatal("file access grants audited as ELEVATION_GRANTED")
	}
	// Expiry: a new engine started after the times passed removes them
	// and audits each as FILE_ACCESS expired.
	f.clk.Add(2*time.Hour + time.Second)
	eng2, _ := engine.New(engine.Options{Store: f.store, Audit: f.aw, Now: f.clk.Now})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng2.Run(rctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	expired := func() int {
		n := 0
		for _, ev := range f.events(t, audit.FileAccess) {
			if ev.Details["phase"] == "expired" {
				n++
			}
		}
		return n
	}
	for expired() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := expired(); n != 3 || len(f.storedGrants(t)) != 0 || f.count(t, audit.ElevationExpired) != 0 {
		t.Fatalf("after expiry: %d FILE_ACCESS expired, grants %+v; want 3 and none", n, f.storedGrants(t))
	}
}

// The same attested request again renews its live grant (same id, the
// later expiry) instead of adding a second one, so one sudoers drop-in
// stays in force; a different executable digest is a grant of its own.
func TestSameRequestRenewsItsGrant(t *testing.T) {
	f := setup(t, devTools)
	ctx := context.Background()
	ask := func(sha string) engine.Result {
		t.Helper()
		q := req("dave", "/usr/bin/apt-get")
		q.Justification, q.Application.SHA256 = "patching", sha
		r, err := f.eng.Evaluate(ctx, dave, q, false)
		if err != nil || r.GrantID == "" {
			t.Fatalf("%+v, %v; want a grant", r, err)
		}
		return r
	}
	first := ask(shaA)
	f.clk.Add(100 * time.Second)
	again := ask(shaA)
	if again.GrantID != first.GrantID {
		t.Errorf("the same request made grant %s, then %s; want one renewed grant", first.GrantID, again.GrantID)
	}
	if want := f.clk.Now().Add(900 * time.Second); !again.GrantExpiresAt.Equal(want) {
		t.Errorf("renewed grant until %v, want %v", again.GrantExpiresAt, want)
	}
	if gs := f.storedGrants(t); len(gs) != 1 || !gs[0].ExpiresAt.Equal(*again.GrantExpiresAt) {
		t.Fatalf("stored grants %+v; want the one, renewed", gs)
	}
	if ev := f.last(t, audit.ElevationGranted); ev.Details["renewed"] != true {
		t.Errorf("the renewal's ELEVATION_GRANTED does not say renewed: %+v", ev.Details)
	}
	other := ask("b" + shaA[1:])
	if other.GrantID == first.GrantID || len(f.storedGrants(t)) != 2 {
		t.Errorf("another executable digest shares the grant: %s", other.GrantID)
	}
}
