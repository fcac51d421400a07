package reconcile

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// sudoersPrefix names warden's drop-ins: warden-<grant id>.
const sudoersPrefix = "warden-"

const sudoersMode = 0o440

// Sudoers is the controller that materializes each attested elevate grant
// in force as a sudoers drop-in, warden-<grant id>, in Settings
// enforcement.sudoersDir: mode 0440, owner root, one rule that lets the
// user run the grant's executable, pinned by its SHA-256, as root without
// a password. A drop-in is written under a name sudo ignores (it contains
// a dot), checked with visudo -cf, then renamed into place, so sudo never
// reads a broken file. Its key is the drop-in's name.
//
// A drop-in whose grant is gone (expired, or never known) is removed; one
// that differs from what the grant says is put back; both are drift (kind
// SudoersGrant), except the removal of a drop-in this agent wrote for a
// grant that expired. Files not named warden-* are never touched, and the
// folder is reached without following a symlink. When the active sudoers
// (read with cvtsudoers) does not hold the rule written, the folder is not
// included: that is unresolved drift, since the grant cannot take effect.
type Sudoers struct {
	m       *Manager
	ctrl    *Controller
	sudoers string // the main sudoers file, for cvtsudoers

	mu      sync.Mutex
	written map[string][32]byte // drop-in name -> SHA-256 of what this agent wrote
}

var _ Reconciler = (*Sudoers)(nil)

// dir is the sudoers folder in effect.
func (s *Sudoers) dir() string {
	if d := s.m.Settings().Enforcement.SudoersDir; d != "" {
		return d
	}
	return schema.DefaultSudoersDir
}

// isDropIn reports whether name is one of warden's drop-ins as sudo reads
// them: warden-*, with no dot and no trailing ~ (sudo skips those).
func isDropIn(name string) bool {
	return strings.HasPrefix(name, sudoersPrefix) && len(name) > len(sudoersPrefix) &&
		!strings.ContainsRune(name, '.') && !strings.HasSuffix(name, "~")
}

// Keys names the drop-in of every grant in force, every warden-* file in
// the folder and every drop-in this agent wrote.
func (s *Sudoers) Keys(ctx context.Context) ([]string, error) {
	grants, err := grantsInForce(s.m.store, "elevate", s.m.now())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for id := range grants {
		add(sudoersPrefix + id)
	}
	s.mu.Lock()
	for k := range s.written {
		add(k)
	}
	s.mu.Unlock()
	names, err := readDirNoFollow(s.dir())
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return keys, fmt.Errorf("list %s: %w", s.dir(), err)
	}
	for _, n := range names {
		if isDropIn(n) {
			add(n)
		}
	}
	return keys, nil
}

// Reconcile makes the drop-in name what the grants say.
func (s *Sudoers) Reconcile(ctx context.Context, name string) (Result, error) {
	if !isDropIn(name) {
		return Result{}, nil
	}
	now := s.m.now()
	grants, err := grantsInForce(s.m.store, "elevate", now)
	if err != nil {
		return Result{}, err
	}
	g, want := grants[strings.TrimPrefix(name, sudoersPrefix)]
	dir := s.dir()
	dirfd, err := openPath(dir, oDir)
	if err != nil {
		if !want && errors.Is(err, unix.ENOENT) {
			return Result{}, nil
		}
		if want {
			ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "folder", Desired: dir + " a folder",
				Actual: err.Error(), Action: "none: create " + dir + " (a real folder, no symlink)", Target: s.target(name, g)})
		}
		return Result{}, TerminalError(fmt.Errorf("open sudoers folder %s: %w", dir, err))
	}
	defer unix.Close(dirfd)

	cur, st, err := readDropIn(dirfd, name)
	if err != nil {
		return Result{}, err
	}
	if cur == nil && st.Mode != 0 {
		// Not a regular file (a symlink, a folder, ...): never followed.
		ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "type", Desired: "file",
			Actual: fileType(&st), Action: "remove", Target: s.target(name, g)})
		if err := removeAt(dirfd, name, &st); err != nil {
			return Result{}, err
		}
	}
	sum := sha256.Sum256(cur)
	s.mu.Lock()
	last, wrote := s.written[name]
	s.mu.Unlock()

	if !want {
		if cur == nil {
			s.forget(name)
			return Result{}, nil
		}
		if wrote && last == sum {
			s.m.log.Info("sudoers grant ended: drop-in removed", "path", dir+"/"+name)
		} else {
			ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "exists", Desired: "absent (no grant in force)",
				Actual: "present, sha256:" + short(sum), Action: "remove",
				Target: &audit.TargetInfo{Kind: KindSudoersGrant, ID: name, Path: dir + "/" + name, Hash: hex.EncodeToString(sum[:])}})
		}
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return Result{}, fmt.Errorf("remove %s/%s: %w", dir, name, err)
		}
		s.m.metrics.writes.WithLabelValues(SudoersController, "remove").Inc()
		s.forget(name)
		return Result{}, nil
	}

	rule, err := sudoersRule(g)
	if err != nil {
		ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "rule", Desired: "a sudoers rule",
			Actual: err.Error(), Action: "none: the grant cannot be written", Target: s.target(name, g)})
		return Result{}, TerminalError(err)
	}
	data := sudoersFile(g, rule)
	wantSum := sha256.Sum256(data)
	switch {
	case cur == nil:
		if wrote {
			ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "exists", Desired: "present",
				Actual: "missing", Action: "write", Target: s.target(name, g)})
		}
		err = s.write(dirfd, name, data)
	case sum != wantSum:
		ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "content", Desired: "sha256:" + short(wantSum),
			Actual: "sha256:" + short(sum), Action: "rewrite", Target: s.target(name, g)})
		err = s.write(dirfd, name, data)
	case st.Mode&0o7777 != sudoersMode || os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0):
		ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "mode",
			Desired: modeString(sudoersMode) + " 0:0", Actual: fmt.Sprintf("%s %d:%d", modeString(st.Mode), st.Uid, st.Gid),
			Action: "rewrite", Target: s.target(name, g)})
		err = s.write(dirfd, name, data)
	default:
		s.mu.Lock()
		s.written[name] = wantSum
		s.mu.Unlock()
	}
	if err != nil {
		return Result{}, err
	}
	if err := s.checkActive(g, rule); err != nil {
		ReportDrift(ctx, Drift{Kind: KindSudoersGrant, ID: name, Field: "included",
			Desired: "rule in the active sudoers", Actual: err.Error(),
			Action: "none: add @includedir " + dir + " to " + s.sudoers, Target: s.target(name, g)})
		return Result{}, TerminalError(err)
	}
	return Result{RequeueAfter: nextExpiry(map[string]state.Grant{g.ID: g}, now)}, nil
}

// write puts data in place as dirfd/name: a temporary file under a name
// sudo ignores, 0440 root, checked by visudo, renamed over name.
func (s *Sudoers) write(dirfd int, name string, data []byte) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := tmpPrefix + hex.EncodeToString(rnd[:]) // has a dot: sudo skips it
	fd, err := unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	fail := func(op string, err error) error {
		unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	if err := f.Chmod(sudoersMode); err != nil {
		return fail("chmod", err)
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return fail("chown", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	// visudo reads exactly the file written, through the descriptor.
	cmd := exec.Command("visudo", "-cqf", "/dev/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail("visudo -cf", fmt.Errorf("%w: %s", err, bytes.TrimSpace(out)))
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return fail("rename", err)
	}
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("fsync sudoers folder: %w", err)
	}
	s.m.metrics.writes.WithLabelValues(SudoersController, "write").Inc()
	s.mu.Lock()
	s.written[name] = sha256.Sum256(data)
	s.mu.Unlock()
	return nil
}

func (s *Sudoers) forget(name string) {
	s.mu.Lock()
	delete(s.written, name)
	s.mu.Unlock()
}

func (s *Sudoers) target(name string, g state.Grant) *audit.TargetInfo {
	t := &audit.TargetInfo{Kind: KindSudoersGrant, ID: name, Path: s.dir() + "/" + name}
	if g.ID != "" {
		t.Hash = g.SHA256
	}
	return t
}

var (
	sudoersUser = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	sudoersPath = regexp.MustCompile(`^(/[A-Za-z0-9._+-]+)+$`)
	hexDigest   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// sudoersRule is the grant's rule. Only names, paths and digests that need
// no quoting in sudoers are written; anything else is refused, not escaped.
func sudoersRule(g state.Grant) (string, error) {
	if _, err := grantUser(g); err != nil {
		return "", err
	}
	switch {
	case !sudoersUser.MatchString(g.User):
		return "", fmt.Errorf("grant %s: user name %q cannot be written in sudoers", g.ID, g.User)
	case !sudoersPath.MatchString(g.Scope) || strings.Contains(g.Scope, "/./") || strings.Contains(g.Scope, "/../"):
		return "", fmt.Errorf("grant %s: executable %q is not a clean absolute path sudoers can hold", g.ID, g.Scope)
	case !hexDigest.MatchString(g.SHA256):
		return "", fmt.Errorf("grant %s: sha256 %q is not a SHA-256 digest in hex", g.ID, g.SHA256)
	}
	return fmt.Sprintf("%s ALL=(root) NOPASSWD: sha256:%s %s", g.User, g.SHA256, g.Scope), nil
}

func sudoersFile(g state.Grant, rule string) []byte {
	return fmt.Appendf(nil, "# warden grant %s (policy %s), until %s. Managed by warden: edits are undone.\n%s\n",
		g.ID, g.Policy, g.ExpiresAt.UTC().Format(time.RFC3339), rule)
}

// checkActive asks cvtsudoers whether the active sudoers holds the rule.
func (s *Sudoers) checkActive(g state.Grant, rule string) error {
	rules, err := activeRules(s.sudoers)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if r.isGrant(g) {
			return nil
		}
	}
	return fmt.Errorf("%s is not included by %s: the rule %q is not in effect", s.dir(), s.sudoers, rule)
}

// triggers wakes the controller when a grant is created or deleted, and
// when something changes in the sudoers folder.
func (s *Sudoers) triggers(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); watchGrants(ctx, s.m, s.ctrl) }()
	dirs := make(chan string, 1)
	s.m.OnSettings(func(*schema.SettingsSpec) {
		select {
		case <-dirs:
		default:
		}
		dirs <- s.dir()
	})
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.m.log.Warn("cannot watch the sudoers folder; drift is found at resync", "err", err)
		return
	}
	defer w.Close()
	watched := ""
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-dirs:
			if d == watched {
				continue
			}
			if watched != "" {
				w.Remove(watched)
			}
			watched = d
			if err := w.Add(d); err != nil {
				s.m.log.Warn("cannot watch the sudoers folder; drift is found at resync", "dir", d, "err", err)
			}
			s.ctrl.resync(ctx)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if name := ev.Name[strings.LastIndexByte(ev.Name, '/')+1:]; isDropIn(name) {
				s.ctrl.Enqueue(name)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.m.log.Warn("sudoers folder watch error; full resync", "err", err)
			s.ctrl.resync(ctx)
		}
	}
}

// readDropIn reads dirfd/name without following a symlink. It returns the
// content (nil if absent or not a regular file) and the file's lstat (zero
// Mode if absent).
func readDropIn(dirfd int, name string) ([]byte, unix.Stat_t, error) {
	st, err := lstatAt(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil, unix.Stat_t{}, nil
	}
	if err != nil {
		return nil, st, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, nil
	}
	fd, err := unix.Openat(dirfd, name, oRead, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, unix.Stat_t{}, nil
		}
		return nil, st, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, err
	}
	// A drop-in is a few lines; a huge plant is drift all the same.
	buf, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, st, fmt.Errorf("read %s: %w", name, err)
	}
	if buf == nil {
		buf = []byte{}
	}
	return buf, st, nil
}

// removeAt removes a non-file found where a drop-in belongs. A folder is
// removed only when empty.
func removeAt(dirfd int, name string, st *unix.Stat_t) error {
	flag := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flag = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(dirfd, name, flag); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s %s: %w", fileType(st), name, err)
	}
	return nil
}

// readDirNoFollow lists the names in the absolute folder dir, reached
// without following a symlink.
func readDirNoFollow(dir string) ([]string, error) {
	fd, err := openPath(dir, oDir)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	return d.Readdirnames(-1)
}
