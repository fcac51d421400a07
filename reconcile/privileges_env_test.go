package reconcile

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/state"
	"warden/testuser"
)

// Helpers of the privilege controllers' tests: real users and groups
// (wdn-grants-*), real sudo, visudo, setfacl and gpasswd. They need root;
// CI runs as root with sudo and acl installed (.ci/packages.d).

func needRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: real users, sudoers drop-ins and ACLs")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (sudo and acl are in .ci/packages.d): %v", tool, err)
		}
	}
}

func rnd(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testUser creates a user wdn-grants-<x> (no home) and removes it at
// cleanup.
func testUser(t testing.TB) *user.User {
	t.Helper()
	return testuser.New(t, "wdn-grants-u"+rnd(4), testuser.Options{}).Lookup(t)
}

// testGroup creates a group wdn-grants-<x> and removes it at cleanup.
func testGroup(t testing.TB) string {
	t.Helper()
	name := "wdn-grants-g" + rnd(4)
	testuser.Group(t, name)
	return name
}

// asUser runs a command as u (setpriv: real and effective ids, u's groups)
// and returns its output and error.
func asUser(u *user.User, name string, args ...string) (string, error) {
	all := append([]string{"--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--", name}, args...)
	cmd := exec.Command("setpriv", all...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sudoersFolder is a folder for drop-ins that the active sudoers includes
// for the test's duration: a temp folder and an @includedir drop-in of its
// own in /etc/sudoers.d (named wdn-grants-*, never warden-*), removed at
// cleanup.
func sudoersFolder(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	inc := "/etc/sudoers.d/wdn-grants-inc" + rnd(4)
	if err := os.WriteFile(inc, []byte("@includedir "+dir+"\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(inc) })
	return dir
}

// privEnv is an env with the privilege controllers added.
func privEnv(t testing.TB, tune func(*Options)) (*env, *Privileges) {
	t.Helper()
	e := newEnv(t, tune)
	p, err := e.m.AddPrivileges(PrivilegeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e, p
}

// restartWithPrivileges is restart for a privEnv.
func (e *env) restartWithPrivileges() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	e.opts.Registry = e.reg
	e.newManager()
	if _, err := e.m.AddPrivileges(PrivilegeOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

func (e *env) settingsDoc(json string) {
	e.t.Helper()
	e.apply(validated(e.t, []byte(`{"kind": "Settings", "id": "agent", "spec": `+json+`}`))...)
}

// putGrant stores an attested grant as the engine does for a request over
// the user socket.
func (e *env) putGrant(g state.Grant) state.Grant {
	e.t.Helper()
	if g.ID == "" {
		g.ID = rnd(9)
	}
	g.Attested = true
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now().UTC()
	}
	if err := e.store.Put(state.Grants, g.ID, g); err != nil {
		e.t.Fatal(err)
	}
	return g
}

func elevateGrant(t testing.TB, u *user.User, exe string, d time.Duration) state.Grant {
	t.Helper()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	sum := sha256.Sum256(data)
	return state.Grant{User: u.Username, UID: uint32(uid), Action: "elevate", Scope: exe,
		SHA256: hex.EncodeToString(sum[:]), Policy: "test", ExpiresAt: time.Now().Add(d).UTC()}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func (e *env) hasEvent(typ, targetID string) bool {
	for _, ev := range e.events(typ) {
		if ev.TargetInfo != nil && ev.TargetInfo.ID == targetID {
			return true
		}
	}
	return false
}

func dropIn(dir string, g state.Grant) string { return filepath.Join(dir, sudoersPrefix+g.ID) }

func fmtDrift(recs []state.DriftRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  %s %s %s %s (%s) %s", r.Kind, r.Name, r.Field, r.State, r.Actual, r.Error)
	}
	return b.String()
}

func statOwner(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}
