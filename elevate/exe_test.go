package elevate

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	for _, tc := range []struct {
		name, in, path, err string
	}{
		{"absolute", "/usr/bin/id", "/usr/bin/id", ""},
		{"bare name on the secure path", "id", "/usr/bin/id", ""},
		{"root's symlinks followed", "/bin/sh", sh, ""},
		{"dot-dot is lexical on resolved folders", "/usr/bin/../bin/id", "/usr/bin/id", ""},
		{"relative with a slash", "./id", "", "give an absolute path or a bare name"},
		{"not found", "wdn-no-such-program", "", "command not found"},
		{"a folder", "/usr/bin", "", "not a regular file"},
		{"not executable", "/etc/passwd", "", "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Resolve(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Resolve(%q) = %+v, %v; want an error containing %q", tc.in, x, err, tc.err)
				}
				return
			}
			if err != nil || x.Path != tc.path || len(x.SHA256) != 64 {
				t.Fatalf("Resolve(%q) = %+v, %v; want path %s and a sha256", tc.in, x, err, tc.path)
			}
		})
	}
	if os.Geteuid() != 0 {
		return
	}
	// Anything below /tmp (mode 1777) could be replaced.
	dir := t.TempDir()
	p := filepath.Join(dir, "prog")
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Resolve(p); !errors.Is(err, ErrUnsafeExecutable) {
		t.Fatalf("Resolve(%s) = %v; want ErrUnsafeExecutable", p, err)
	}
}

func TestResetEnv(t *testing.T) {
	a := &Actor{UID: 1001, GID: 1002, Name: "carol"}
	got := ResetEnv([]string{"TERM=xterm", "LANG=de_DE.UTF-8", "LC_TIME=../../x", "LC_ALL=%n%n", "LD_PRELOAD=/x.so",
		"PATH=/home/carol/bin", "TERM=vt100", "IFS=x", "HOME=/home/carol", "noequals", "SUDO_COMMAND=/bin/true"}, a,
		"/usr/bin/apt-get", []string{"install", "vim"})
	want := []string{"TERM=xterm", "LANG=de_DE.UTF-8", "PATH=" + SecurePath, "HOME=/root", "SHELL=/bin/sh",
		"USER=root", "LOGNAME=root", "SUDO_USER=carol", "SUDO_UID=1001", "SUDO_GID=1002", "SUDO_COMMAND=/usr/bin/apt-get install vim"}
	if !slices.Equal(got, want) {
		t.Fatalf("ResetEnv =\n%q\nwant\n%q", got, want)
	}
}
