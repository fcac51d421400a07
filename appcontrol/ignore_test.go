package appcontrol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"warden/testuser"
)

// The kernel answering by itself (ignore.go), observed from outside: an
// exec "reaches the agent" when the controller's event counter moves. Each
// test mounts its own tmpfs; the programs on it are root's, 0755, in
// root's 0755 folders, so they qualify unless a case changes that.

// nobody is a policy that matches nothing on the test mount, so that
// application control is on (default allow) and every file is the
// default's to answer.
var nobody = acPolicy("nowhere", "enforce", `{"applications": [{"path": "/opt/wdn-appctl2-nowhere/*"}]}`, "deny")

// reaches runs prog as u (nil: root), which must succeed, and reports
// whether the exec reached the agent as a permission event.
func (f *fixture) reaches(t *testing.T, u *testUser, prog string) bool {
	t.Helper()
	before := f.c.Stats().Events.Load()
	if code, out := run(t, u, prog); code != 0 {
		t.Fatalf("%s: exit %d %q; want 0", prog, code, out)
	}
	return f.c.Stats().Events.Load() > before
}

// marks runs prog as u, which must reach the agent, and waits for the
// ignore mark the controller sets after answering (on its own goroutine,
// so the next exec could otherwise come first).
func (f *fixture) marks(t *testing.T, u *testUser, prog string) {
	t.Helper()
	before := f.c.Stats().IgnoreMarks.Load()
	if !f.reaches(t, u, prog) {
		t.Fatalf("%s: exec did not reach the agent", prog)
	}
	waitFor(t, "ignore mark on "+prog, func() bool { return f.c.Stats().IgnoreMarks.Load() > before })
}

func needProtectedHardlinks(t *testing.T) {
	t.Helper()
	if !hardlinksProtected(protectedHardlinks) {
		t.Skip("fs.protected_hardlinks is not 1 here: the controller sets no ignore marks")
	}
}

// TestIgnoreMarkFollowsPolicies: a file no policy could match is answered
// by the kernel from its second exec on; a new generation that denies it
// (by path for one user, by sha256 for everyone) blocks the next exec; a
// write to the file brings its execs back to the agent.
func TestIgnoreMarkFollowsPolicies(t *testing.T) {
	needRoot(t)
	needProtectedHardlinks(t)
	mnt, prog := mountTmpfs(t, 16)
	bob := testuser.New(t, "wdn-appctl2-b", testuser.Options{NoUserGroup: true})
	f := start(t)
	f.apply(t, settings(mnt, ""), nobody)

	f.marks(t, &bob, prog)
	if n := f.c.Stats().IgnoreMarks.Load(); n != 1 {
		t.Fatalf("%d ignore marks after the first exec of a root-owned file no policy matches; want 1", n)
	}
	if f.reaches(t, &bob, prog) || f.reaches(t, nil, prog) {
		t.Fatal("an exec of an ignore-marked file reached the agent; want the kernel to answer")
	}
	m := metrics(t, f.c)
	if m["warden_appcontrol_ignore_marks_total"] != 1 || m["warden_appcontrol_watching"] != 1 ||
		m["warden_appcontrol_events_total"] != float64(f.c.Stats().Events.Load()) || m["warden_appcontrol_events_total"] < 1 {
		t.Errorf("metrics %v; want 1 ignore mark, watching 1, events_total as counted (%d)", m, f.c.Stats().Events.Load())
	}

	denyBob := acPolicy("no-true-bob", "enforce", `{"users": ["`+bob.Name+`"], "applications": [{"path": "`+prog+`"}]}`, "deny")
	f.apply(t, settings(mnt, ""), nobody, denyBob)
	if code, _ := run(t, &bob, prog); code != 126 {
		t.Fatalf("after a deny policy for %s arrived: exit %d; want 126 (the generation flushes the ignore marks)", bob.Name, code)
	}
	if f.c.Stats().IgnoreFlushes.Load() == 0 {
		t.Error("no flush of the ignore marks counted at the generation change")
	}
	// Root may run it, but the decision depends on who asks: never the
	// kernel's.
	if !f.reaches(t, nil, prog) || !f.reaches(t, nil, prog) {
		t.Error("root's exec of a file a policy names for another user did not reach the agent every time")
	}

	f.apply(t, settings(mnt, ""), nobody)
	f.marks(t, &bob, prog)
	if f.reaches(t, &bob, prog) {
		t.Fatal("policy removed: the file is not ignore-marked again")
	}
	denyHash := acPolicy("no-true-hash", "enforce", `{"applications": [{"sha256": "`+sha256File(t, prog)+`"}]}`, "deny")
	f.apply(t, settings(mnt, ""), nobody, denyHash)
	if code, _ := run(t, nil, prog); code != 126 {
		t.Fatalf("after a sha256 deny arrived: exit %d; want 126", code)
	}

	f.apply(t, settings(mnt, ""), nobody)
	f.marks(t, &bob, prog)
	if f.reaches(t, &bob, prog) {
		t.Fatal("not ignore-marked again")
	}
	w, err := os.OpenFile(prog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 16)); err != nil { // an ELF file runs with trailing bytes
		t.Fatal(err)
	}
	w.Close()
	if !f.reaches(t, &bob, prog) {
		t.Fatal("after a write to the file its exec did not reach the agent; want the ignore mark cleared by the write")
	}
}

// TestIgnoreMarkRefused: what a user could rename, relink or rewrite, and
// what a policy or a monitor mode must see, is never left to the kernel.
func TestIgnoreMarkRefused(t *testing.T) {
	needRoot(t)
	needProtectedHardlinks(t)
	mnt, prog := mountTmpfs(t, 16)
	bob := testuser.New(t, "wdn-appctl2-r", testuser.Options{NoUserGroup: true})
	uid, gid := int(bob.Credential().Uid), int(bob.Credential().Gid)
	dir := func(name string, mode os.FileMode, owner int) string {
		p := filepath.Join(mnt, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := func(p string) string { copyFile(t, "/usr/bin/true", p, 0); return p }
	cases := []struct {
		name string
		prog func() string
		want bool // ignore-marked
	}{
		{"root's file in root's folder", func() string { return prog }, true},
		{"in a sticky world-writable folder", func() string { return file(filepath.Join(dir("sticky", 0o777|os.ModeSticky, 0), "p")) }, true},
		{"owned by the user", func() string {
			p := file(filepath.Join(mnt, "mine"))
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
			return p
		}, false},
		{"group-writable", func() string {
			p := file(filepath.Join(mnt, "gw"))
			if err := os.Chmod(p, 0o775); err != nil {
				t.Fatal(err)
			}
			return p
		}, false},
		{"two hard links", func() string {
			p := file(filepath.Join(mnt, "linked"))
			if err := os.Link(p, p+"2"); err != nil {
				t.Fatal(err)
			}
			return p
		}, false},
		{"in a folder the user owns", func() string { return file(filepath.Join(dir("bobs", 0o755, uid), "p")) }, false},
		{"in a world-writable folder, not sticky", func() string { return file(filepath.Join(dir("open", 0o777, 0), "p")) }, false},
		{"below a folder the user owns", func() string {
			sub := filepath.Join(dir("bobs2", 0o755, uid), "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			return file(filepath.Join(sub, "p"))
		}, false},
	}
	f := start(t)
	f.apply(t, settings(mnt, ""), nobody)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.prog()
			if c.want {
				f.marks(t, &bob, p)
				if f.reaches(t, &bob, p) {
					t.Errorf("%s: second exec reached the agent; want the kernel to answer", p)
				}
				return
			}
			before := f.c.Stats().IgnoreMarks.Load()
			if !f.reaches(t, &bob, p) || !f.reaches(t, &bob, p) {
				t.Errorf("%s: an exec did not reach the agent; want no ignore mark", p)
			}
			if n := f.c.Stats().IgnoreMarks.Load(); n != before {
				t.Errorf("%s: %d ignore marks set; want none", p, n-before)
			}
		})
	}

	// Monitor modes must see every exec: a monitor policy on the file,
	// an allow list in rollout. And a policy that filters on the file at
	// all (an allow too) makes the decision the policies', not the kernel's.
	fresh := func(name string) string { return file(filepath.Join(mnt, name)) }
	for i, g := range []struct {
		name string
		docs []string
	}{
		{"monitor policy", []string{settings(mnt, ""), acPolicy("watch", "monitor", `{"folders": ["`+mnt+`"]}`, "deny")}},
		{"default monitor", []string{settings(mnt, `, "default": "monitor"`), nobody}},
		{"allow policy", []string{settings(mnt, ""), acPolicy("ok", "enforce", `{"folders": ["`+mnt+`"]}`, "allow")}},
	} {
		f.apply(t, g.docs...)
		p := fresh(fmt.Sprintf("m%d", i))
		for n := range 3 {
			if !f.reaches(t, &bob, p) {
				t.Errorf("%s: exec %d of %s did not reach the agent", g.name, n+1, p)
			}
		}
	}
	waitFor(t, "monitor events", func() bool { return len(f.blocked(t)) >= 2 })

	// Without protected hard links a user could link a marked inode
	// into a folder a policy denies: no marks at all.
	off := filepath.Join(t.TempDir(), "protected_hardlinks")
	if err := os.WriteFile(off, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.c.hardlinks = off // read by the next apply, which the store's notification orders after this
	f.apply(t, settings(mnt, ""), nobody)
	p := fresh("unprotected")
	if !f.reaches(t, &bob, p) || !f.reaches(t, &bob, p) {
		t.Error("fs.protected_hardlinks 0: an exec was answered by the kernel")
	}
}

// TestIgnoreMarksBounded: at maxIgnores the marks are flushed and set
// again as files run.
func TestIgnoreMarksBounded(t *testing.T) {
	needRoot(t)
	needProtectedHardlinks(t)
	mnt, prog := mountTmpfs(t, 16)
	prog2 := filepath.Join(mnt, "true2")
	copyFile(t, "/usr/bin/true", prog2, 0)
	f := start(t)
	f.c.markMu.Lock()
	f.c.maxIgnores = 1
	f.c.markMu.Unlock()
	f.apply(t, settings(mnt, ""), nobody)
	f.marks(t, nil, prog)
	if f.reaches(t, nil, prog) {
		t.Fatal("not ignore-marked")
	}
	flushes := f.c.Stats().IgnoreFlushes.Load()
	f.marks(t, nil, prog2) // the second mark: the first goes
	if f.c.Stats().IgnoreFlushes.Load() != flushes+1 {
		t.Errorf("flushes %d, want %d: the bound of 1 mark was passed", f.c.Stats().IgnoreFlushes.Load(), flushes+1)
	}
	if !f.reaches(t, nil, prog) {
		t.Error("the first file's mark survived the flush at the bound")
	}
	waitFor(t, "the first file marked again", func() bool { return f.c.Stats().IgnoreMarks.Load() == 3 })
	if f.reaches(t, nil, prog) {
		t.Error("the first file was not marked again")
	}
}

// metrics gathers the controller's Prometheus metrics by name.
func metrics(t *testing.T, c *Controller) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[f.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[f.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// TestIgnoreMarkTakenBack: a write between the decision and the mark
// (seen as a change time other than the one decided on) takes the mark
// back, so that the kernel never answers for content the agent did not
// judge. The marks are set here as the controller sets them after a
// decision, on the descriptor of the file, with the stat the decision saw.
func TestIgnoreMarkTakenBack(t *testing.T) {
	needRoot(t)
	needProtectedHardlinks(t)
	mnt, prog := mountTmpfs(t, 16)
	same := filepath.Join(mnt, "same")
	copyFile(t, "/usr/bin/true", same, 0)
	f := start(t)
	f.apply(t, settings(mnt, ""), nobody)
	f.c.mu.Lock()
	g := f.c.grp
	f.c.mu.Unlock()
	mark := func(p string, changed bool) {
		t.Helper()
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if changed {
			st.Ctim.Nsec-- // the decision saw the file before a write
		}
		f.c.kernelAnswers(f.c.cur.Load(), &event{g: g, fd: fd, pidfd: -1}, &st)
	}

	mark(same, false)
	if f.reaches(t, nil, same) {
		t.Fatal("a mark for the content as it is was not set")
	}
	mark(prog, true)
	if n := f.c.Stats().IgnoreMarks.Load(); n != 1 {
		t.Errorf("%d ignore marks counted; want 1 (the one for unchanged content)", n)
	}
	if !f.reaches(t, nil, prog) {
		t.Fatal("the mark set for content the agent did not judge was not taken back")
	}
}
