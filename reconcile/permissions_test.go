package reconcile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/state"
)

func TestPermissionsModes(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, e *env) // before start
		tamper  func(t *testing.T, e *env) // after start
		path    string
		want    os.FileMode
		content string // when set, must be unchanged
	}{
		{name: "root made world-writable", path: ".", want: 0o755,
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.root, 0o777)) }},
		{name: "Plugins made world-writable", path: "Plugins", want: 0o750,
			setup:  func(t *testing.T, e *env) { must(t, os.Mkdir(e.path("Plugins"), 0o750)) },
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("Plugins"), 0o777)) }},
		{name: "policies group-readable", path: "policies", want: 0o700,
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("policies"), 0o750)) }},
		{name: "plugin executable loosened", path: "Plugins/heartbeat/heartbeat", want: 0o750, content: "#!/bin/sh\n",
			setup: func(t *testing.T, e *env) {
				must(t, os.MkdirAll(e.path("Plugins/heartbeat"), 0o750))
				must(t, os.WriteFile(e.path("Plugins/heartbeat/heartbeat"), []byte("#!/bin/sh\n"), 0o750))
			},
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("Plugins/heartbeat/heartbeat"), 0o777)) }},
		{name: "plugin data file setuid", path: "Plugins/heartbeat/data.txt", want: 0o600, content: "data",
			setup: func(t *testing.T, e *env) {
				must(t, os.MkdirAll(e.path("Plugins/heartbeat"), 0o750))
				must(t, os.WriteFile(e.path("Plugins/heartbeat/data.txt"), []byte("data"), 0o600))
			},
			tamper: func(t *testing.T, e *env) { must(t, syscall.Chmod(e.path("Plugins/heartbeat/data.txt"), 0o4644)) }},
		{name: "data key readable", path: "KeeperStorage/data.key", want: 0o600,
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("KeeperStorage/data.key"), 0o644)) }},
		{name: "certificate world-writable", path: "certs/ca.pem", want: 0o600, content: "PEM",
			setup: func(t *testing.T, e *env) {
				must(t, os.Mkdir(e.path("certs"), 0o700))
				must(t, os.WriteFile(e.path("certs/ca.pem"), []byte("PEM"), 0o600))
			},
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("certs/ca.pem"), 0o666)) }},
		{name: "trust folder world-writable", path: "trust", want: 0o700,
			setup:  func(t *testing.T, e *env) { must(t, os.Mkdir(e.path("trust"), 0o700)) },
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("trust"), 0o777)) }},
		{name: "logs folder world-writable (at start)", path: "logs", want: 0o755,
			setup: func(t *testing.T, e *env) {
				must(t, os.Mkdir(e.path("logs"), 0o755))
				must(t, os.Chmod(e.path("logs"), 0o777))
			}},
		{name: "inbox folder world-writable", path: "inbox", want: 0o755,
			setup:  func(t *testing.T, e *env) { must(t, os.Mkdir(e.path("inbox"), 0o755)) },
			tamper: func(t *testing.T, e *env) { must(t, os.Chmod(e.path("inbox"), 0o777)) }},
		{name: "log file group-writable (at start)", path: "logs/warden.log", want: 0o644, content: "line\n",
			setup: func(t *testing.T, e *env) {
				must(t, os.Mkdir(e.path("logs"), 0o755))
				must(t, os.WriteFile(e.path("logs/warden.log"), []byte("line\n"), 0o600))
				must(t, os.Chmod(e.path("logs/warden.log"), 0o664))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			e.start()
			e.denyNetcat()
			if tc.tamper != nil {
				tc.tamper(t, e)
			}
			p := e.path(tc.path)
			e.waitFor("mode fixed", func() bool { return mode(t, p) == tc.want })
			if tc.tamper != nil {
				e.waitFor("drift corrected", func() bool { return e.hasDrift("Path", tc.path, "mode", state.DriftCorrected) })
			}
			if tc.content != "" && readFile(p) != tc.content {
				t.Errorf("content changed: got %q, want %q", readFile(p), tc.content)
			}
		})
	}
}

// A symlink planted in a managed folder is removed, and nothing is done
// through it: the file it points to keeps its mode and content.
func TestSymlinkAttack(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.denyNetcat()

	victimDir := t.TempDir()
	victim := filepath.Join(victimDir, "shadow")
	must(t, os.WriteFile(victim, []byte("secret"), 0o644))
	must(t, os.Chmod(victimDir, 0o777))

	links := []string{
		"policies/evil.json",     // would be read as a policy
		"KeeperStorage/data.bak", // next to the data key
		"Plugins/link",
		"certs/admin.pem",
		"trust/dir-link",
	}
	must(t, os.MkdirAll(e.path("Plugins"), 0o750))
	must(t, os.MkdirAll(e.path("certs"), 0o700))
	must(t, os.MkdirAll(e.path("trust"), 0o700))
	for _, l := range links {
		target := victim
		if l == "trust/dir-link" {
			target = victimDir
		}
		must(t, os.Symlink(target, e.path(l)))
	}
	for _, l := range links {
		e.waitFor("symlink "+l+" removed", func() bool {
			_, err := os.Lstat(e.path(l))
			return os.IsNotExist(err)
		})
	}
	// A symlink in place of a whole managed folder.
	link := outside(t, e.path("policies/x"))
	must(t, os.Symlink(victimDir, link))
	must(t, unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, e.path("policies"), unix.RENAME_EXCHANGE))
	e.waitFor("policies folder back", func() bool {
		fi, err := os.Lstat(e.path("policies"))
		return err == nil && fi.IsDir() && readFile(e.path("policies/deny-netcat.json")) != ""
	})
	e.waitQuiet()

	if got := mode(t, victim); got != 0o644 {
		t.Errorf("victim mode: got %v, want 0644 (changed through a symlink)", got)
	}
	if got := mode(t, victimDir); got != 0o777 {
		t.Errorf("victim folder mode: got %v, want 0777 (changed through a symlink)", got)
	}
	if readFile(victim) != "secret" {
		t.Error("victim content changed")
	}
	if _, err := os.Stat(filepath.Join(victimDir, "deny-netcat.json")); err == nil {
		t.Error("a policy was written through the symlinked folder")
	}
	if len(e.events(audit.DriftDetected)) < len(links)+1 {
		t.Errorf("DRIFT_DETECTED: got %d, want at least %d", len(e.events(audit.DriftDetected)), len(links)+1)
	}
}

// A hard link planted in a managed folder is never chmodded or chowned:
// its other name may be outside the root (/etc/shadow). It is drift of its
// own, unresolved and audited.
func TestHardLinkAttack(t *testing.T) {
	e := newEnv(t, nil)
	victimDir := t.TempDir() // same file system as the root: both in t.TempDir()
	victim := filepath.Join(victimDir, "shadow")
	must(t, os.WriteFile(victim, []byte("secret"), 0o640))
	must(t, os.Chmod(victim, 0o666)) // loose, so chmod would have something to "fix"
	must(t, os.Chown(victim, 4242, 4242))
	links := []string{"inbox/rejected/evil.tar.gz", "Plugins/evil", "trust/evil.pem", "KeeperStorage/evil"}
	for _, l := range links {
		must(t, os.MkdirAll(filepath.Dir(e.path(l)), 0o700))
		must(t, os.Link(victim, e.path(l)))
	}
	e.start()
	for _, l := range links {
		e.waitFor("hard link "+l+" unresolved", func() bool { return e.hasDrift("Path", l, "links", state.DriftUnresolved) })
	}
	e.waitQuiet()
	var st unix.Stat_t
	must(t, unix.Stat(victim, &st))
	if st.Mode&0o7777 != 0o666 || st.Uid != 4242 || st.Gid != 4242 {
		t.Errorf("victim is %04o %d:%d; want 0666 4242:4242 (changed through a hard link)", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if readFile(victim) != "secret" {
		t.Error("victim content changed")
	}
	if n := len(e.events(audit.DriftUnresolved)); n < len(links) {
		t.Errorf("DRIFT_UNRESOLVED events: %d; want at least %d", n, len(links))
	}
}

// Temporary files a crash left between create and rename are removed at
// start, in the root and below the managed folders; nothing else is.
func TestLeftoverTempFilesRemovedAtStart(t *testing.T) {
	e := newEnv(t, nil)
	must(t, os.MkdirAll(e.path("Plugins/heartbeat"), 0o750))
	must(t, os.MkdirAll(e.path("policies"), 0o700))
	temps := []string{".warden-tmp-123", "policies/.warden-tmp-456", "Plugins/heartbeat/.warden-tmp-789"}
	for _, p := range temps {
		must(t, os.WriteFile(e.path(p), []byte("half"), 0o600))
	}
	keep := "Plugins/heartbeat/data.txt"
	must(t, os.WriteFile(e.path(keep), []byte("data"), 0o600))
	e.start()
	e.denyNetcat()
	e.waitQuiet()
	for _, p := range temps {
		if _, err := os.Lstat(e.path(p)); !os.IsNotExist(err) {
			t.Errorf("%s left after start: %v", p, err)
		}
	}
	if readFile(e.path(keep)) != "data" {
		t.Errorf("%s removed or changed", keep)
	}
}
