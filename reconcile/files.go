package reconcile

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/schema"
)

// Files is the controller that materializes desired state into the agent
// root: appsettings.json, policies/<id>.json, Plugins/<id>.json and
// Jobs/<id>.json, each written atomically with mode 0600. Its key is a
// path relative to the root. An edit, a deletion, an extra *.json in those
// folders, a symlink or anything else in place of a file, and a changed
// mode or owner are drift: reported, then put back.
//
// It compares before it writes: a file whose bytes and mode are right is
// not touched, so the agent's own writes (which come back as fsnotify
// events) end in one read-only reconcile and never in a loop. A stat cache
// spares even the read when the file's inode, size and change time are
// those it verified.
type Files struct {
	m *Manager

	mu   sync.Mutex
	gen  uint64
	want map[string]*fileWant // nil: rebuild from the store
	// wantDocs are the documents want was made from (patchDesired).
	wantDocs []*schema.Document
	// diffed is the desired set changedKeys last compared against (not
	// want, which a worker may already have moved to the new generation).
	diffed map[string]*fileWant
	seen   map[string]statIdentity // stat of a file whose content was verified

	led ledger // content this agent wrote or verified, by path (files_ledger.go)
}

var _ Reconciler = (*Files)(nil)

// statIdentity is what must be unchanged for a file's verified content to
// be trusted without reading it again (git's index uses the same idea).
type statIdentity struct {
	dev, ino, size uint64
	mtime, ctime   unix.Timespec
	sum            [32]byte
}

// racyWindow: a file verified within this long of its last change may
// have been changed again within the same coarse kernel timestamp tick, so
// its stat is not trusted (git's "racy clean" problem).
const racyWindow = 100 * time.Millisecond

// forgetStats drops the stat cache, so the next reconcile of every file
// reads and hashes it. The periodic resync does this: the cache trusts
// that an unchanged inode, size and change time mean unchanged bytes,
// which someone who can set the clock or write below the filesystem
// could fake, so at least once a period the content itself is verified.
func (f *Files) forgetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = nil
}

func (f *Files) invalidate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.want = nil
}

// desired returns the current set of materialized files.
func (f *Files) desired() map[string]*fileWant {
	sn := f.m.store.Current()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.want == nil || f.gen != sn.Meta.Generation {
		l := f.m.settings.getListen()
		next, ok := patchDesired(f.want, f.wantDocs, sn, l)
		if !ok {
			next = desiredFiles(sn, l)
		}
		f.want, f.wantDocs, f.gen = next, sn.Docs, sn.Meta.Generation
	}
	return f.want
}

// changedKeys moves the desired files on to the current generation and
// returns the paths whose content differs from the previous generation's
// (added, changed or removed): after an apply only those need a look, so
// a generation that changes 10 of 10,000 documents touches 10 files.
// full is true when there was no previous set to compare with; the
// caller then looks at every path.
func (f *Files) changedKeys() (keys []string, full bool) {
	next := f.desired()
	f.mu.Lock()
	old := f.diffed
	f.diffed = next
	f.mu.Unlock()
	if old == nil {
		return nil, true
	}
	for k, w := range next {
		if o := old[k]; o == nil || o.sum != w.sum {
			keys = append(keys, k)
		}
	}
	for k := range old {
		if next[k] == nil {
			keys = append(keys, k)
		}
	}
	return keys, false
}

// Keys lists every desired path, every *.json present in the managed
// folders, and every path this agent wrote.
func (f *Files) Keys(ctx context.Context) ([]string, error) {
	want := f.desired()
	keys := make([]string, 0, len(want))
	seen := make(map[string]bool, len(want))
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for k := range want {
		add(k)
	}
	for _, k := range f.writtenPaths() {
		add(k)
	}
	var errs []error
	for dir := range filesFolders {
		names, err := listDir(f.m.rootfd, dir)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("list %s: %w", dir, err))
		}
		for _, n := range names {
			if filesOwned(dir + "/" + n) {
				add(dir + "/" + n)
			}
		}
	}
	return keys, errors.Join(errs...)
}

// keysUnder lists the known keys in dir (after the folder went away).
func (f *Files) keysUnder(dir string) []string {
	var keys []string
	for k := range f.desired() {
		if strings.HasPrefix(k, dir+"/") {
			keys = append(keys, k)
		}
	}
	for _, k := range f.writtenPaths() {
		if strings.HasPrefix(k, dir+"/") {
			keys = append(keys, k)
		}
	}
	return keys
}

// Reconcile makes the file at rel what desired state says: present with the
// right bytes, mode and owner, or absent.
func (f *Files) Reconcile(ctx context.Context, rel string) (Result, error) {
	if !filesOwned(rel) {
		return Result{}, nil
	}
	want := f.desired()[rel]
	dir, name := splitRel(rel)
	dirfd, err := f.openFolder(ctx, rel, dir, want != nil)
	if err != nil || dirfd < 0 {
		return Result{}, err
	}
	defer unix.Close(dirfd)

	cur, err := f.inspect(ctx, rel, dirfd, name)
	if err != nil {
		return Result{}, err
	}
	if want == nil {
		return Result{}, f.removeExtra(ctx, rel, dirfd, name, cur)
	}
	return Result{}, f.converge(ctx, rel, dirfd, name, want, cur)
}

// current is what inspect found at a managed path.
type current struct {
	exists  bool
	removed bool // something that was not a file was removed
	st      unix.Stat_t
	sum     [32]byte
	fd      int // open O_RDONLY on the file, or -1
}

func (c *current) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// inspect opens rel without following a symlink. Whatever is not a regular
// file (symlink, directory, fifo, ...) is reported and removed, so that
// what remains is a file or nothing. A non-empty directory is not removed
// recursively: it may hold someone's data, so the drift stays unresolved
// until an operator moves it away.
func (f *Files) inspect(ctx context.Context, rel string, dirfd int, name string) (*current, error) {
	c := &current{fd: -1}
	fd, err := unix.Openat(dirfd, name, oRead, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return c, nil
	case err == nil:
		if err := unix.Fstat(fd, &c.st); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("stat %s: %w", rel, err)
		}
		if c.st.Mode&unix.S_IFMT == unix.S_IFREG {
			c.exists, c.fd = true, fd
			if c.sum, err = f.hash(rel, fd, &c.st); err != nil {
				c.close()
				return nil, fmt.Errorf("read %s: %w", rel, err)
			}
			return c, nil
		}
		unix.Close(fd)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EACCES):
		// A symlink (ELOOP), a socket (ENXIO), or something we cannot open.
		if c.st, err = lstatAt(dirfd, name); err != nil {
			return nil, fmt.Errorf("stat %s: %w", rel, err)
		}
		if c.st.Mode&unix.S_IFMT == unix.S_IFREG {
			return nil, fmt.Errorf("open %s: %w", rel, err)
		}
	default:
		return nil, fmt.Errorf("open %s: %w", rel, err)
	}
	actual := fileType(&c.st)
	if actual == "symlink" {
		actual += " to " + readlinkAt(dirfd, name)
	}
	ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "type", Desired: "file", Actual: actual,
		Action: "remove", Target: f.target(rel)})
	flag := 0
	if c.st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flag = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(dirfd, name, flag); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("remove %s %s: %w", fileType(&c.st), rel, err)
	}
	f.m.metrics.writes.WithLabelValues(FilesController, "remove").Inc()
	return &current{fd: -1, removed: true}, nil
}

// hash returns the SHA-256 of the open file, from the stat cache when the
// file is provably unchanged since it was last read.
func (f *Files) hash(rel string, fd int, st *unix.Stat_t) ([32]byte, error) {
	id := statIdentity{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
	f.mu.Lock()
	prev, ok := f.seen[rel]
	f.mu.Unlock()
	if ok {
		sum := prev.sum
		prev.sum = [32]byte{}
		if prev == id {
			return sum, nil
		}
	}
	sum, err := hashFD(fd)
	if err != nil {
		return [32]byte{}, err
	}
	id.sum = sum
	f.remember(rel, id)
	return id.sum, nil
}

// remember caches a verified file's stat unless it changed too recently to
// be trusted.
func (f *Files) remember(rel string, id statIdentity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]statIdentity{}
	}
	if time.Since(time.Unix(id.ctime.Unix())) < racyWindow {
		delete(f.seen, rel)
		return
	}
	f.seen[rel] = id
}

// converge makes a present, desired file right.
func (f *Files) converge(ctx context.Context, rel string, dirfd int, name string, want *fileWant, c *current) error {
	defer c.close()
	uid, gid := f.m.owner()
	last, wrote := f.lastWritten(rel)
	t := f.target(rel)
	switch {
	case !c.exists:
		if wrote && !c.removed {
			ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "exists", Desired: "present", Actual: "missing",
				Action: "write", Target: t})
		}
		return f.write(rel, dirfd, name, want, uid, gid)
	case c.sum != want.sum:
		if !wrote || c.sum != last {
			ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "content", Desired: "sha256:" + short(want.sum),
				Actual: "sha256:" + short(c.sum), Action: "rewrite", Target: t})
		} else {
			f.m.log.Info("updating materialized file", "path", rel, "kind", want.kind, "id", want.id)
		}
		return f.write(rel, dirfd, name, want, uid, gid)
	}
	if c.st.Nlink > 1 {
		// Another name of this file may be outside the root: replace the
		// name (an atomic write) rather than chmod or chown the file.
		ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "links", Desired: "1", Actual: fmt.Sprint(c.st.Nlink),
			Action: "rewrite", Target: t})
		return f.write(rel, dirfd, name, want, uid, gid)
	}
	f.noteWritten(rel, want.sum)
	if mode := c.st.Mode & 0o7777; mode != fileMode {
		ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "mode", Desired: modeString(fileMode),
			Actual: modeString(mode), Action: "chmod", Target: t})
		if err := unix.Fchmod(c.fd, fileMode); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
		f.m.metrics.writes.WithLabelValues(FilesController, "chmod").Inc()
	}
	if uid >= 0 && (int(c.st.Uid) != uid || int(c.st.Gid) != gid) {
		ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "owner", Desired: fmt.Sprintf("%d:%d", uid, gid),
			Actual: fmt.Sprintf("%d:%d", c.st.Uid, c.st.Gid), Action: "chown", Target: t})
		if err := unix.Fchown(c.fd, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
		f.m.metrics.writes.WithLabelValues(FilesController, "chown").Inc()
	}
	return nil
}

func (f *Files) write(rel string, dirfd int, name string, want *fileWant, uid, gid int) error {
	st, err := writeAtomic(dirfd, name, want.data, fileMode, uid, gid)
	if err != nil {
		return err
	}
	f.m.metrics.writes.WithLabelValues(FilesController, "write").Inc()
	f.noteUnsynced(rel)
	f.noteWritten(rel, want.sum)
	f.remember(rel, statIdentity{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim, sum: want.sum})
	return nil
}

// removeExtra removes a file nobody desires. A file this agent wrote for a
// document that is no longer desired goes quietly; anything else is drift.
func (f *Files) removeExtra(ctx context.Context, rel string, dirfd int, name string, c *current) error {
	defer c.close()
	last, wrote := f.lastWritten(rel)
	if c.exists {
		if wrote && c.sum == last {
			f.m.log.Info("removing materialized file no longer desired", "path", rel)
		} else {
			ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "exists", Desired: "absent", Actual: "present",
				Action: "remove", Target: &audit.TargetInfo{Kind: "File", ID: rel, Path: f.abs(rel), Hash: hex.EncodeToString(c.sum[:])}})
		}
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", rel, err)
		}
		f.m.metrics.writes.WithLabelValues(FilesController, "remove").Inc()
	}
	f.forget(rel)
	f.mu.Lock()
	delete(f.seen, rel)
	f.mu.Unlock()
	return nil
}

// openFolder opens the folder holding rel, creating it when a file must be
// written there. A symlink in place of the folder is removed; anything
// else that is not a folder is drift it cannot fix (returned as an error,
// so it is retried and, failing, reported unresolved). It returns -1 and no
// error when there is nothing to do (no folder, nothing desired in it).
func (f *Files) openFolder(ctx context.Context, rel, dir string, create bool) (int, error) {
	fd, err := openDir(f.m.rootfd, dir)
	if err == nil {
		return fd, nil
	}
	if dir == "" {
		return -1, fmt.Errorf("open root: %w", err)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		if !create {
			return -1, nil
		}
	case errors.Is(err, unix.ELOOP):
		ReportDrift(ctx, Drift{Kind: "Path", ID: dir, Field: "type", Desired: "directory",
			Actual: "symlink to " + readlinkAt(f.m.rootfd, dir), Action: "remove", Target: &audit.TargetInfo{Kind: "Path", ID: dir, Path: f.abs(dir)}})
		if err := unix.Unlinkat(f.m.rootfd, dir, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("remove symlink %s: %w", dir, err)
		}
		f.m.metrics.writes.WithLabelValues(FilesController, "remove").Inc()
		if !create {
			return -1, nil
		}
	default:
		if !create {
			return -1, nil // nothing can be below a non-folder
		}
		{
			st, _ := lstatAt(f.m.rootfd, dir)
			ReportDrift(ctx, Drift{Kind: "File", ID: rel, Field: "exists", Desired: "present",
				Actual: "missing: " + dir + " is a " + fileType(&st), Action: "none: move " + dir + " away", Target: f.target(rel)})
		}
		return -1, fmt.Errorf("open folder %s: %w", dir, err)
	}
	if err := unix.Mkdirat(f.m.rootfd, dir, folderMode(dir)); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create folder %s: %w", dir, err)
	}
	fd, err = openDir(f.m.rootfd, dir)
	if err != nil {
		return -1, fmt.Errorf("open folder %s: %w", dir, err)
	}
	if err := chmodFD(fd, folderMode(dir)); err != nil { // the umask narrowed it
		unix.Close(fd)
		return -1, fmt.Errorf("chmod %s: %w", dir, err)
	}
	return fd, nil
}

func (f *Files) target(rel string) *audit.TargetInfo {
	t := &audit.TargetInfo{Kind: "File", ID: rel, Path: f.abs(rel)}
	if w := f.desired()[rel]; w != nil {
		t.Kind, t.ID = w.kind, w.id
	}
	return t
}

func (f *Files) abs(rel string) string { return f.m.root + string(os.PathSeparator) + rel }

func short(sum [32]byte) string { return hex.EncodeToString(sum[:6]) }

// listDir lists the names in the folder rel below rootfd.
func listDir(rootfd int, rel string) ([]string, error) {
	fd, err := openDir(rootfd, rel)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), rel)
	defer d.Close()
	return d.Readdirnames(-1)
}
