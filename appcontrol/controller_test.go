package appcontrol

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/testuser"
)

// TestDenyForOneUser is the end-to-end behaviour: a deny policy on a
// program for one user makes the exec fail with EPERM for that user only,
// audits it once however often it is tried, monitor mode runs it and
// audits the would-be block, and removing the policy lets it run again.
func TestDenyForOneUser(t *testing.T) {
	needRoot(t)
	mnt, prog := mountTmpfs(t, 16)
	alice, bob := addUser(t, "a"), addUser(t, "b")
	f := start(t)
	deny := func(status string) string {
		return acPolicy("no-true", status, `{"users": ["`+alice.Name+`"], "applications": [{"path": "`+mnt+`/tr*"}]}`, "deny")
	}
	f.apply(t, settings(mnt, ""), deny("enforce"))
	if !f.c.Status()["active"].(bool) {
		t.Fatal("controller not watching after an ApplicationControl policy was applied")
	}

	code, out := run(t, &alice, prog)
	if code != 126 || !contains(out, "Operation not permitted") {
		t.Fatalf("denied user: exit %d %q; want 126 and Operation not permitted", code, out)
	}
	for _, u := range []*testUser{nil, &bob} {
		if code, out := run(t, u, prog); code != 0 {
			t.Errorf("user %v: exit %d %q; want 0", u, code, out)
		}
	}
	// A symbolic link is followed: the policy sees the file executed.
	link := filepath.Join(mnt, "link")
	if err := os.Symlink(prog, link); err != nil {
		t.Fatal(err)
	}
	if code, _ := run(t, &alice, link); code != 126 {
		t.Errorf("through a symbolic link named %s: exit %d; want 126 (the path is the target's)", link, code)
	}
	for range 2 { // repeats are coalesced
		if code, _ := run(t, &alice, prog); code != 126 {
			t.Fatalf("denied user again: exit %d; want 126", code)
		}
	}
	waitFor(t, "APPLICATION_BLOCKED stored", func() bool { return len(f.blocked(t)) > 0 })
	evs := f.blocked(t)
	if len(evs) != 1 {
		t.Fatalf("%d APPLICATION_BLOCKED events after 4 blocked execs within a minute; want 1 (coalesced): %+v", len(evs), evs)
	}
	e := evs[0]
	if e.UserInfo == nil || e.UserInfo.User != alice.Name || e.TargetInfo == nil || e.TargetInfo.Path != prog ||
		e.Evaluation == nil || e.Evaluation.Policy != "no-true" || e.Details["blocked"] != true || e.Details["parent"] == nil || e.Details["pid"] == nil {
		t.Errorf("event %+v %+v %+v %v; want user %s, path %s, policy no-true, blocked, pid and parent", e.UserInfo, e.TargetInfo, e.Evaluation, e.Details, alice.Name, prog)
	}

	f.apply(t, settings(mnt, ""), deny("monitor"))
	if code, out := run(t, &alice, prog); code != 0 {
		t.Fatalf("monitor mode: exit %d %q; want 0", code, out)
	}
	waitFor(t, "monitor event", func() bool { return len(f.blocked(t)) == 2 })
	m := f.blocked(t)[1]
	if m.Details["blocked"] != false || m.Evaluation.Mode != "monitor" || m.Evaluation.Effective != "allow" {
		t.Errorf("monitor event %+v %v; want blocked false, mode monitor, effective allow", m.Evaluation, m.Details)
	}

	// monitor-notify also publishes a notification.
	prog2 := prog + "2"
	copyFile(t, "/usr/bin/true", prog2, 0)
	f.apply(t, settings(mnt, ""), deny("monitor-notify"))
	if code, out := run(t, &alice, prog2); code != 0 {
		t.Fatalf("monitor-notify mode: exit %d %q; want 0", code, out)
	}
	waitFor(t, "notification", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.notified) == 1 })
	if n := f.notified[0]; !contains(n, `"application":"`+prog2+`"`) || !contains(n, `"user":"`+alice.Name+`"`) {
		t.Errorf("notification %s; want the program and the user", n)
	}

	f.apply(t, settings(mnt, ""))
	waitFor(t, "marks removed", func() bool { return !f.c.Status()["active"].(bool) })
	if code, out := run(t, &alice, prog); code != 0 {
		t.Fatalf("policy removed: exit %d %q; want 0", code, out)
	}
}

// TestSHA256AndFallback denies a program by its hash, wherever it lies and
// whatever its name; a file too large to hash within the deadline gets the
// fallback answer, and its next exec the real one (the hash is cached).
func TestSHA256AndFallback(t *testing.T) {
	needRoot(t)
	mnt, prog := mountTmpfs(t, 160)
	bob := addUser(t, "c")
	big := filepath.Join(mnt, "big")
	copyFile(t, "/usr/bin/true", big, 96<<20) // an ELF file runs with trailing bytes
	sum := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		return hex.EncodeToString(s[:])
	}
	renamed := filepath.Join(mnt, "renamed")
	copyFile(t, "/usr/bin/true", renamed, 0)
	f := start(t)
	hashes := `{"applications": [{"sha256": "` + sum(prog) + `"}, {"sha256": "` + sum(big) + `"}]}`
	// A deadline no decision misses on a loaded machine first: these
	// answers must be the policy's.
	f.apply(t, settings(mnt, `, "timeoutMs": 5000, "fallback": "deny"`), acPolicy("by-hash", "enforce", hashes, "deny"))
	if code, _ := run(t, &bob, renamed); code != 126 {
		t.Errorf("a copy under another name: exit %d; want 126 (same sha256)", code)
	}
	if code, _ := run(t, nil, prog); code != 126 {
		t.Errorf("root: exit %d; want 126 (the policy names no users)", code)
	}
	// 96 MiB do not hash in 10 ms: the fallback (deny) answers and is
	// audited as such.
	f.apply(t, settings(mnt, `, "timeoutMs": 10, "fallback": "deny"`), acPolicy("by-hash", "enforce", hashes, "deny"))
	if code, _ := run(t, &bob, big); code != 126 {
		t.Errorf("big file, first exec: exit %d; want 126 from the fallback", code)
	}
	if f.c.Stats().Fallback.Load() == 0 {
		t.Error("no fallback answer counted for a decision that took longer than timeoutMs")
	}
	waitFor(t, "hash cached", func() bool { f.c.hashes.mu.Lock(); defer f.c.hashes.mu.Unlock(); return len(f.c.hashes.m) == 3 })
	hashed := f.c.hashes.hashed.Load()
	f.apply(t, settings(mnt, `, "timeoutMs": 5000, "fallback": "allow"`), acPolicy("by-hash", "enforce", hashes, "deny"))
	if code, _ := run(t, &bob, big); code != 126 {
		t.Errorf("big file once hashed: exit %d; want 126 from the policy (fallback is allow now)", code)
	}
	if n := f.c.hashes.hashed.Load(); n != hashed {
		t.Errorf("%d files hashed again in a new generation; want 0 (the hash cache outlives generations)", n-hashed)
	}
	waitFor(t, "events", func() bool { return len(f.blocked(t)) >= 3 })
	var fallback, byHash bool
	for _, e := range f.blocked(t) {
		if e.TargetInfo.Path == big && e.Evaluation.Policy == "" && contains(e.Evaluation.Reason, "fallback deny") {
			fallback = true
		}
		if e.TargetInfo.Path == renamed && e.TargetInfo.Hash == sum(prog) && e.Evaluation.Policy == "by-hash" {
			byHash = true
		}
	}
	if !fallback || !byHash {
		t.Errorf("events %+v: want a fallback-deny event for %s and a by-hash event with the sha256 for %s", f.blocked(t), big, renamed)
	}
}

// TestAllowList makes application control an allow list on the test
// mount: a listed program runs, any other is refused by default.
func TestAllowList(t *testing.T) {
	needRoot(t)
	mnt, prog := mountTmpfs(t, 16)
	other := filepath.Join(mnt, "other")
	copyFile(t, "/usr/bin/true", other, 0)
	bob := addUser(t, "d")
	f := start(t)
	f.apply(t, settings(mnt, `, "default": "deny"`), acPolicy("listed", "enforce", `{"applications": [{"path": "`+prog+`"}]}`, "allow"))
	if code, out := run(t, &bob, prog); code != 0 {
		t.Errorf("listed program: exit %d %q; want 0", code, out)
	}
	if code, _ := run(t, &bob, other); code != 126 {
		t.Errorf("unlisted program: exit %d; want 126", code)
	}
	f.apply(t, settings(mnt, `, "default": "monitor"`), acPolicy("listed", "enforce", `{"applications": [{"path": "`+prog+`"}]}`, "allow"))
	if code, _ := run(t, &bob, other); code != 0 {
		t.Errorf("unlisted program, default monitor: exit %d; want 0", code)
	}
	waitFor(t, "events", func() bool { return len(f.blocked(t)) == 2 })
	evs := f.blocked(t)
	if evs[0].Details["blocked"] != true || evs[1].Details["blocked"] != false || evs[1].Evaluation.Mode != "monitor" {
		t.Errorf("events %v / %v; want one block then one would-be block", evs[0].Details, evs[1].Details)
	}
	_ = audit.ApplicationBlocked
}

// TestOtherMountNamespaces: the marks are on the filesystem, so an exec
// through a copy of the mount (a new mount namespace, which any user may
// make inside a user namespace) or a bind mount is seen as well. The
// policy names the program by its sha256: through a bind mount its path
// is another.
func TestOtherMountNamespaces(t *testing.T) {
	needRoot(t)
	mnt, prog := mountTmpfs(t, 16)
	bob := testuser.New(t, "wdn-appctl2-n", testuser.Options{NoUserGroup: true})
	f := start(t)
	f.apply(t, settings(mnt, ""), acPolicy("no-true", "enforce", `{"applications": [{"sha256": "`+sha256File(t, prog)+`"}]}`, "deny"))
	inNS := func(u *testUser, flags string) (int, string) {
		cmd := exec.Command("unshare", flags, "/bin/sh", "-c", prog)
		cmd.Dir = "/"
		if u != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
		}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Skipf("unshare: %v", err)
		}
		return 0, string(out)
	}
	if code, out := inNS(nil, "-m"); code != 126 {
		t.Errorf("root in a new mount namespace: exit %d %q; want 126", code, out)
	}
	if out, err := exec.Command("unshare", "-Urm", "/bin/true").CombinedOutput(); err != nil {
		t.Logf("no user namespaces here (%v %s): the unprivileged case is not possible", err, out)
	} else if code, out := inNS(&bob, "-Urm"); code != 126 {
		t.Errorf("%s in a user and mount namespace of their own: exit %d %q; want 126", bob.Name, code, out)
	}
	bind := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(mnt, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bind, unix.MNT_DETACH)
	if code, _ := run(t, &bob, filepath.Join(bind, "true")); code != 126 {
		t.Errorf("through a bind mount: exit %d; want 126", code)
	}
}
