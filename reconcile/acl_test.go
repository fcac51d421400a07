package reconcile

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/state"
)

// getfacl prints path's ACL with numeric ids, without the header.
func getfacl(t testing.TB, path string) string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(run(t, "getfacl", "-n", "-p", "--omit-header", path), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// The xattr codec against the acl package's own tools: what setfacl
// stores parses to the entries getfacl prints, and what writeACL stores
// getfacl reads back.
func TestPosixACLAgainstSetfacl(t *testing.T) {
	needRoot(t, "setfacl", "getfacl")
	grp := testGroup(t)
	g, err := user.LookupGroup(grp)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o640)
	run(t, "setfacl", "-m", "u:65534:rw,g:"+g.Gid+":r", f)
	raw := make([]byte, 256)
	n, err := unix.Getxattr(f, aclXattr, raw)
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseACL(raw[:n])
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := a.user(65534); !ok || p != 6 {
		t.Fatalf("user 65534: %v %v in %+v", p, ok, a)
	}
	if m, ok := a.mask(); !ok || m != 6 {
		t.Fatalf("mask %v %v", m, ok)
	}
	if !bytes.Equal(a.encode(), raw[:n]) {
		t.Fatalf("encode(parse(x)) != x:\n%x\n%x", a.encode(), raw[:n])
	}

	// Add a user entry, recompute the mask, then remove it again.
	gid, _ := strconv.Atoi(g.Gid)
	next := a.setUser(1, 7, false).withMask(-1)
	if err := writeACL(f, next); err != nil {
		t.Fatal(err)
	}
	want := "user::rw-\nuser:1:rwx\nuser:65534:rw-\ngroup::r--\ngroup:" + strconv.Itoa(gid) + ":r--\nmask::rwx\nother::---"
	if got := getfacl(t, f); got != want {
		t.Fatalf("getfacl after writeACL:\n%s\nwant\n%s", got, want)
	}
	// Every named entry gone and no mask asked for: the minimal ACL, which
	// the kernel keeps as the mode alone.
	min := next.setUser(1, 0, true).setUser(65534, 0, true)
	var rest posixACL
	for _, e := range min {
		if e.Tag != aclGroup {
			rest = append(rest, e)
		}
	}
	if err := writeACL(f, rest.withMask(-1)); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(f, aclXattr, raw); err != unix.ENODATA {
		t.Fatalf("minimal ACL still stored as an xattr: %v", err)
	}
	if got := mode(t, f); got != 0o640 {
		t.Fatalf("mode %v, want 0640", got)
	}
}

func FuzzParseACL(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 6, 0, 0xfe, 0xff, 0, 0, 4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseACL(b)
		if err != nil {
			return
		}
		back, err := parseACL(a.encode())
		if err != nil || len(back) != len(a) {
			t.Fatalf("re-parse of encode: %v", err)
		}
		if err := a.withMask(-1).valid(); err != nil {
			t.Fatalf("recomputed mask invalid: %v", err)
		}
	})
}

// secretFile is a root-only file the test user can reach but not read,
// with an unrelated ACL entry (a test group's) that must survive.
func secretFile(t *testing.T) (path, unrelated string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/tmp" && d != "/" && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // traversable: what is tested is the file's own ACL
	}
	path = filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(path, []byte("the secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	grp := testGroup(t)
	run(t, "setfacl", "-m", "g:"+grp+":r", path)
	g, _ := user.LookupGroup(grp)
	return path, "group:" + g.Gid + ":r--"
}

func accessGrant(u *user.User, path, access string, d time.Duration) state.Grant {
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	return state.Grant{User: u.Username, UID: uint32(uid), Action: "access", Scope: path, Access: access,
		Policy: "test", ExpiresAt: time.Now().Add(d).UTC()}
}

func TestFileAccessGrant(t *testing.T) {
	needRoot(t, "setfacl", "getfacl", "setpriv")
	path, unrelated := secretFile(t)
	before := getfacl(t, path)
	u := testUser(t)
	e, _ := privEnv(t, nil)
	e.start()
	e.waitQuiet()
	if out, err := asUser(u, "cat", path); err == nil {
		t.Fatalf("cat before the grant: %s", out)
	}

	g := e.putGrant(accessGrant(u, path, "read", 60*time.Second))
	entry := "user:" + u.Uid + ":r--"
	e.waitFor("ACL entry added", func() bool { return strings.Contains(getfacl(t, path), entry) })
	if out, err := asUser(u, "cat", path); err != nil || out != "the secret\n" {
		t.Fatalf("cat during the grant: %v: %q", err, out)
	}
	if out, err := asUser(u, "sh", "-c", "echo x >> "+path); err == nil {
		t.Fatalf("a read grant let the user write: %s", out)
	}
	if acl := getfacl(t, path); !strings.Contains(acl, unrelated) || !strings.Contains(acl, "mask::r--") {
		t.Fatalf("during the grant:\n%s", acl)
	}

	// Removed early: put back (the inode's change wakes the controller).
	run(t, "setfacl", "-x", "u:"+u.Uid, path)
	e.waitFor("entry put back", func() bool { return strings.Contains(getfacl(t, path), entry) })
	field := "user:" + u.Username
	e.waitFor("drift corrected", func() bool { return e.hasDrift(KindFileACL, path, field, state.DriftCorrected) })

	// Expiry: the engine's timer deletes the grant.
	if err := e.store.Delete(state.Grants, g.ID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("entry removed at expiry", func() bool { return !strings.Contains(getfacl(t, path), "user:"+u.Uid) })
	if out, err := asUser(u, "cat", path); err == nil {
		t.Fatalf("cat after expiry: %s", out)
	}
	if got := getfacl(t, path); got != before {
		t.Fatalf("ACL after expiry:\n%s\nbefore the grant:\n%s", got, before)
	}

	// Back after expiry (restored from a backup): removed, as drift.
	e.waitQuiet()
	run(t, "setfacl", "-m", "u:"+u.Uid+":r", path)
	e.waitFor("entry back after expiry removed", func() bool { return !strings.Contains(getfacl(t, path), "user:"+u.Uid) })
	e.waitFor("audited", func() bool { return e.hasEvent(audit.DriftDetected, path) && e.hasEvent(audit.DriftCorrected, path) })
	if got := getfacl(t, path); got != before {
		t.Fatalf("ACL at the end:\n%s\nbefore the grant:\n%s", got, before)
	}
}

// A write grant on a folder gives rwx; an entry the user had before the
// grant is put back at expiry, not removed; a restart keeps the record.
func TestFileAccessFolderWriteKeepsEarlierEntry(t *testing.T) {
	needRoot(t, "setfacl", "getfacl", "setpriv")
	path, _ := secretFile(t)
	dir := filepath.Dir(path)
	u := testUser(t)
	run(t, "setfacl", "-m", "u:"+u.Uid+":r-x", dir)
	before := getfacl(t, dir)
	e, _ := privEnv(t, nil)
	e.start()
	g := e.putGrant(accessGrant(u, dir, "write", 60*time.Second))
	e.waitFor("rwx entry", func() bool { return strings.Contains(getfacl(t, dir), "user:"+u.Uid+":rwx") })
	if out, err := asUser(u, "touch", filepath.Join(dir, "new")); err != nil {
		t.Fatalf("write in the folder during the grant: %v: %s", err, out)
	}
	os.Remove(filepath.Join(dir, "new"))

	e.halt() // the agent goes down; the grant expires meanwhile
	if err := e.store.Delete(state.Grants, g.ID); err != nil {
		t.Fatal(err)
	}
	e.restartWithPrivileges()
	e.waitFor("earlier entry put back", func() bool { return getfacl(t, dir) == before })
}

func TestFileAccessNeverFollowsSymlink(t *testing.T) {
	needRoot(t, "setfacl", "getfacl")
	path, _ := secretFile(t)
	before := getfacl(t, path)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(path, link)
	u := testUser(t)
	e, _ := privEnv(t, nil)
	e.start()
	e.putGrant(accessGrant(u, link, "write", 60*time.Second))
	e.waitFor("unresolved drift", func() bool { return e.hasDrift(KindFileACL, link, "target", state.DriftUnresolved) })
	if got := getfacl(t, path); got != before {
		t.Fatalf("the symlink's target changed:\n%s", got)
	}
}
