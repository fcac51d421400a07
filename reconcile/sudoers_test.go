package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/state"
)

// sudoersEnv runs the privilege controllers with the sudoers folder of
// sudoersFolder.
func sudoersEnv(t *testing.T) (*env, string) {
	needRoot(t, "sudo", "visudo", "cvtsudoers", "setpriv")
	dir := sudoersFolder(t)
	e, _ := privEnv(t, nil)
	e.settingsDoc(`{"enforcement": {"sudoersDir": "` + dir + `"}}`)
	e.start()
	e.waitQuiet()
	return e, dir
}

func TestSudoersGrantInForceThenGone(t *testing.T) {
	e, dir := sudoersEnv(t)
	u := testUser(t)
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/id", "-u"); err == nil {
		t.Fatalf("before the grant, sudo ran: %s", out)
	}

	g := e.putGrant(elevateGrant(t, u, "/usr/bin/id", 60*time.Second))
	path := dropIn(dir, g)
	e.waitFor("drop-in written", func() bool { return exists(path) })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o440 || statOwner(fi) != "0:0" {
		t.Fatalf("drop-in mode %v owner %s, want 0440 0:0", fi.Mode().Perm(), statOwner(fi))
	}
	if got := readFile(path); !strings.Contains(got, u.Username+" ALL=(root) NOPASSWD: sha256:"+g.SHA256+" /usr/bin/id\n") {
		t.Fatalf("drop-in:\n%s", got)
	}
	out, err := asUser(u, "sudo", "-n", "/usr/bin/id", "-u")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("sudo -n /usr/bin/id -u during the grant: %v: %q, want 0", err, out)
	}
	if l := run(t, "sudo", "-l", "-U", u.Username); !strings.Contains(l, "sha256:"+g.SHA256) {
		t.Fatalf("sudo -l does not list the grant:\n%s", l)
	}
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/whoami"); err == nil {
		t.Fatalf("another program ran under the grant: %s", out)
	}

	// Expiry: the engine's timer deletes the grant from the store.
	if err := e.store.Delete(state.Grants, g.ID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("drop-in removed at expiry", func() bool { return !exists(path) })
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/id", "-u"); err == nil {
		t.Fatalf("after expiry, sudo ran: %s", out)
	}
	e.waitQuiet()
	for _, r := range e.drift() {
		if r.Kind == KindSudoersGrant {
			t.Fatalf("expiry is not drift: %s", fmtDrift(e.drift()))
		}
	}
}

// A grant that nobody deletes (the engine is not running) still goes at
// its expiry: the controller requeues itself for that instant.
func TestSudoersGrantGoesAtExpiryByItself(t *testing.T) {
	e, dir := sudoersEnv(t)
	u := testUser(t)
	g := e.putGrant(elevateGrant(t, u, "/usr/bin/id", 1500*time.Millisecond))
	path := dropIn(dir, g)
	e.waitFor("drop-in written", func() bool { return exists(path) })
	e.waitFor("drop-in removed at expiry", func() bool { return !exists(path) })
	if time.Now().Before(g.ExpiresAt) {
		t.Fatalf("drop-in removed before the grant expired")
	}
}

func TestSudoersDriftRestoredAndPlantRemoved(t *testing.T) {
	e, dir := sudoersEnv(t)
	u := testUser(t)
	g := e.putGrant(elevateGrant(t, u, "/usr/bin/id", 60*time.Second))
	path := dropIn(dir, g)
	e.waitFor("drop-in written", func() bool { return exists(path) })
	e.waitQuiet()
	want := readFile(path)

	// Files not named warden-* (and names sudo skips) are never touched.
	// (Valid sudoers: the folder is included while the test runs.)
	others := map[string]string{"README-wdn": "# hands off\n", "warden-x.bak": "# inert\n", "warden-y~": "# inert\n"}
	for n, c := range others {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o440); err != nil {
			t.Fatal(err)
		}
	}

	e.timeout = 3 * time.Second // the bound
	if err := os.WriteFile(path, []byte(u.Username+" ALL=(ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	e.waitFor("tampered drop-in restored", func() bool { return readFile(path) == want })
	evil := filepath.Join(dir, "warden-evil")
	if err := os.WriteFile(evil, []byte(u.Username+" ALL=(ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	e.waitFor("planted warden-evil removed", func() bool { return !exists(evil) })
	link := filepath.Join(dir, "warden-link")
	if err := os.Symlink("/etc/sudoers", link); err != nil {
		t.Fatal(err)
	}
	e.waitFor("planted symlink removed", func() bool { return !exists(link) })
	e.timeout = 0
	e.waitQuiet()

	name := sudoersPrefix + g.ID
	for _, want := range []struct{ id, field string }{{name, "content"}, {"warden-evil", "exists"}, {"warden-link", "type"}} {
		if !e.hasDrift(KindSudoersGrant, want.id, want.field, state.DriftCorrected) {
			t.Errorf("no corrected drift %s %s:%s", want.id, want.field, fmtDrift(e.drift()))
		}
		if !e.hasEvent(audit.DriftDetected, want.id) || !e.hasEvent(audit.DriftCorrected, want.id) {
			t.Errorf("%s: DRIFT_DETECTED and DRIFT_CORRECTED not both audited", want.id)
		}
	}
	if st, err := os.Lstat("/etc/sudoers"); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("/etc/sudoers harmed: %v", err)
	}
	for n, c := range others {
		if got := readFile(filepath.Join(dir, n)); got != c {
			t.Errorf("%s touched: %q", n, got)
		}
	}
	if out, err := asUser(u, "sudo", "-n", "/usr/bin/whoami"); err == nil {
		t.Fatalf("the planted rule took effect: %s", out)
	}
}

func TestSudoersExpiredWhileDownRemovedAtStart(t *testing.T) {
	needRoot(t, "sudo", "visudo", "cvtsudoers", "setpriv")
	dir := sudoersFolder(t)
	e, _ := privEnv(t, nil)
	e.settingsDoc(`{"enforcement": {"sudoersDir": "` + dir + `"}}`)
	u := testUser(t)
	// What the agent left before it went down: a drop-in whose grant
	// expired since (still in the store, the engine has not run), and one
	// whose grant is unknown.
	g := elevateGrant(t, u, "/usr/bin/id", -time.Minute)
	g = e.putGrant(g)
	rule, err := sudoersRule(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{sudoersPrefix + g.ID, "warden-0123456789abcdef01"} {
		if err := os.WriteFile(filepath.Join(dir, n), sudoersFile(g, rule), 0o440); err != nil {
			t.Fatal(err)
		}
	}
	live := e.putGrant(elevateGrant(t, u, "/usr/bin/id", time.Minute))
	e.start()
	e.waitFor("expired and unknown drop-ins removed at start", func() bool {
		return !exists(dropIn(dir, g)) && !exists(filepath.Join(dir, "warden-0123456789abcdef01"))
	})
	e.waitFor("the grant in force written", func() bool { return exists(dropIn(dir, live)) })
	e.waitQuiet()
	if !e.hasDrift(KindSudoersGrant, sudoersPrefix+g.ID, "exists", state.DriftCorrected) {
		t.Errorf("expired drop-in removal not recorded:%s", fmtDrift(e.drift()))
	}
}

func TestSudoersFolderNotIncludedIsUnresolved(t *testing.T) {
	needRoot(t, "sudo", "visudo", "cvtsudoers")
	dir := t.TempDir() // no @includedir for it
	e, _ := privEnv(t, nil)
	e.settingsDoc(`{"enforcement": {"sudoersDir": "` + dir + `"}}`)
	e.start()
	u := testUser(t)
	g := e.putGrant(elevateGrant(t, u, "/usr/bin/id", time.Minute))
	name := sudoersPrefix + g.ID
	e.waitFor("unresolved drift", func() bool { return e.hasDrift(KindSudoersGrant, name, "included", state.DriftUnresolved) })
	e.waitFor("DRIFT_UNRESOLVED audited", func() bool { return e.hasEvent(audit.DriftUnresolved, name) })
}

func TestSudoersRefusesWhatItCannotWrite(t *testing.T) {
	needRoot(t)
	u := testUser(t)
	g := elevateGrant(t, u, "/usr/bin/id", time.Minute)
	for name, mutate := range map[string]func(*state.Grant){
		"space in path":  func(g *state.Grant) { g.Scope = "/usr/bin/id ALL" },
		"relative path":  func(g *state.Grant) { g.Scope = "usr/bin/id" },
		"dot-dot":        func(g *state.Grant) { g.Scope = "/usr/../bin/sh" },
		"comma":          func(g *state.Grant) { g.Scope = "/usr/bin/id,/bin/sh" },
		"digest":         func(g *state.Grant) { g.SHA256 = "ALL" },
		"uid reassigned": func(g *state.Grant) { g.UID++ },
		"unknown user":   func(g *state.Grant) { g.User = "wdn-grants-nobody" },
	} {
		bad := g
		mutate(&bad)
		if r, err := sudoersRule(bad); err == nil {
			t.Errorf("%s: rule %q written", name, r)
		}
	}
	if _, err := sudoersRule(g); err != nil {
		t.Fatal(err)
	}
}
