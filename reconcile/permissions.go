package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"warden/audit"
)

// Permissions is the controller that enforces the permission model
// (perms.go) on the agent root, its folders and every file in them that
// the files controller does not own: modes always, owners when running as
// root. It never follows a symlink and never changes a file's content: in
// the strict folders it removes planted symlinks and special files, and
// elsewhere (KeeperStorage/, certs/, trust/ contents, plugin executables,
// inbox/, run/, logs/) it only fixes modes and owners. Its key is a path
// relative to the root ("." for the root).
type Permissions struct {
	m *Manager
}

var _ Reconciler = (*Permissions)(nil)

// maxWalk bounds how many paths one resync looks at, against a folder
// filled to exhaust the agent.
const maxWalk = 200_000

// Keys lists the root, its known folders and everything below them.
func (p *Permissions) Keys(ctx context.Context) ([]string, error) {
	keys := []string{"."}
	var errs []error
	for _, top := range p.topFolders() {
		err := walkBeneath(p.m.rootfd, top, func(rel string) bool {
			if !filesOwned(rel) {
				keys = append(keys, rel)
			}
			return len(keys) < maxWalk
		})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("walk %s: %w", top, err))
		}
	}
	return keys, errors.Join(errs...)
}

func (p *Permissions) topFolders() []string {
	out := append([]string(nil), looseFolders...)
	for name := range strictFolders {
		out = append(out, name)
	}
	return out
}

// Reconcile gives rel the mode and owner of the permission model.
func (p *Permissions) Reconcile(ctx context.Context, rel string) (Result, error) {
	if filesOwned(rel) || rel == "" {
		return Result{}, nil
	}
	if rel == "." {
		return Result{}, p.fix(ctx, rel, p.m.rootfd)
	}
	dir, name := splitRel(rel)
	dirfd, err := openDir(p.m.rootfd, dir)
	if err != nil {
		// Missing, or a symlink or file on the way: that parent is a key
		// of its own and is dealt with there.
		return Result{}, nil
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat(dirfd, name, oPath, 0)
	if errors.Is(err, unix.ENOENT) {
		return Result{}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("open %s: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Result{}, fmt.Errorf("stat %s: %w", rel, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
		return Result{}, p.fix(ctx, rel, fd)
	}
	if !strict(rel) {
		return Result{}, nil // not ours to remove; never followed either
	}
	actual := fileType(&st)
	if actual == "symlink" {
		actual += " to " + readlinkAt(dirfd, name)
	}
	ReportDrift(ctx, Drift{Kind: "Path", ID: rel, Field: "type", Desired: "file or directory", Actual: actual,
		Action: "remove", Target: p.target(rel)})
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return Result{}, fmt.Errorf("remove %s %s: %w", fileType(&st), rel, err)
	}
	p.m.metrics.writes.WithLabelValues(PermissionsController, "remove").Inc()
	return Result{}, nil
}

// ErrHardLink is the unresolved drift of a file with more than one link in
// a managed folder: its other name may be outside the root (a planted link
// to /etc/shadow), so it is never chmodded or chowned.
var ErrHardLink = errors.New("file has more than one hard link: its mode and owner are left alone, since another name of it may be outside the agent root; remove the extra link")

// fix sets the mode and owner of the file or folder open as fd. A regular
// file with more than one link is never changed: chmod or chown through
// it would change every name of the file, wherever it is.
func (p *Permissions) fix(ctx context.Context, rel string, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		ReportDrift(ctx, Drift{Kind: "Path", ID: rel, Field: "links", Desired: "1", Actual: fmt.Sprint(st.Nlink),
			Action: "none (never changed through a hard link)", Target: p.target(rel)})
		return TerminalError(fmt.Errorf("%s: %w", rel, ErrHardLink))
	}
	if want, cur := wantMode(rel, &st), st.Mode&0o7777; cur != want {
		ReportDrift(ctx, Drift{Kind: "Path", ID: rel, Field: "mode", Desired: modeString(want), Actual: modeString(cur),
			Action: "chmod", Target: p.target(rel)})
		if err := chmodFD(fd, want); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
		p.m.metrics.writes.WithLabelValues(PermissionsController, "chmod").Inc()
	}
	uid, gid := p.m.owner()
	if uid >= 0 && (int(st.Uid) != uid || int(st.Gid) != gid) {
		ReportDrift(ctx, Drift{Kind: "Path", ID: rel, Field: "owner", Desired: fmt.Sprintf("%d:%d", uid, gid),
			Actual: fmt.Sprintf("%d:%d", st.Uid, st.Gid), Action: "chown", Target: p.target(rel)})
		if err := chownFD(fd, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
		p.m.metrics.writes.WithLabelValues(PermissionsController, "chown").Inc()
	}
	return nil
}

func (p *Permissions) target(rel string) *audit.TargetInfo {
	path := p.m.root
	if rel != "." {
		path += string(os.PathSeparator) + rel
	}
	return &audit.TargetInfo{Kind: "Path", ID: rel, Path: path}
}

// walkBeneath calls fn for rel and, if it is a folder, everything below
// it, without following symlinks. fn returns false to stop.
func walkBeneath(rootfd int, rel string, fn func(rel string) bool) error {
	st, err := lstatAt(rootfd, rel)
	if err != nil {
		return err
	}
	if !fn(rel) {
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if err := walkDir(rootfd, rel, fn); err != errStop {
		return err
	}
	return nil
}

func walkDir(rootfd int, rel string, fn func(rel string) bool) error {
	fd, err := openDir(rootfd, rel)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), rel)
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		child := rel + "/" + e.Name()
		if !fn(child) {
			return errStop
		}
		if e.Type()&fs.ModeType == fs.ModeDir {
			if err := walkDir(rootfd, child, fn); err == errStop {
				return err
			}
		}
	}
	return nil
}

var errStop = errors.New("stop")
