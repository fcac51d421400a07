package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/state"
)

// ACL is the controller of file access grants: for each attested access
// grant in force it adds a POSIX ACL entry for the grant's user on the
// grant's path (read: r--, or r-x on a folder; write: rw-, or rwx) and
// recomputes the mask; at expiry it removes exactly that entry (or puts
// back the one the user had before), and the mask as it was, leaving every
// other entry alone. What it added is kept in the store (the Privileges
// bucket, by path), so it only ever removes its own entries, even after a
// restart. An entry removed early is put back while the grant is in force;
// one back after expiry is removed; both are drift of kind FileACL. The
// target is reached without following any symlink. Its key is the path.
type ACL struct {
	m    *Manager
	ctrl *Controller
}

var _ Reconciler = (*ACL)(nil)

// aclRecord is what warden changed on one path.
type aclRecord struct {
	Path string `json:"path"`
	// Mask is the mask before warden's first entry: -1 none.
	Mask    int                  `json:"mask"`
	Entries map[string]*aclAdded `json:"entries"` // by uid
}

// aclAdded is one entry warden set.
type aclAdded struct {
	User string `json:"user"`
	Perm uint16 `json:"perm"` // what warden set
	// Prev is the user's entry before warden's: -1 none.
	Prev int `json:"prev"`
	// Ended is when the last grant behind the entry ended; zero while in
	// force. An ended entry found again is removed (restored from a
	// backup, say).
	Ended time.Time `json:"ended,omitzero"`
}

// aclEndedKept is how long an ended entry is watched for coming back.
const aclEndedKept = 30 * 24 * time.Hour

// Keys names the path of every access grant in force and every path
// warden changed.
func (a *ACL) Keys(ctx context.Context) ([]string, error) {
	grants, err := grantsInForce(a.m.store, "access", a.m.now())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, g := range grants {
		seen[g.Scope] = true
	}
	err = a.m.store.List(state.Privileges, func(k string, _ json.RawMessage) error {
		seen[k] = true
		return nil
	})
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	return keys, err
}

// Reconcile makes path's ACL hold the entries of the grants in force.
func (a *ACL) Reconcile(ctx context.Context, path string) (Result, error) {
	now := a.m.now()
	all, err := grantsInForce(a.m.store, "access", now)
	if err != nil {
		return Result{}, err
	}
	grants := map[string]state.Grant{}
	for id, g := range all {
		if g.Scope == path {
			grants[id] = g
		}
	}
	rec := aclRecord{Path: path, Mask: -1, Entries: map[string]*aclAdded{}}
	stored, err := a.m.store.Get(state.Privileges, path, &rec)
	if err != nil {
		return Result{}, err
	}
	if len(grants) == 0 && !stored {
		return Result{}, nil
	}
	t := &audit.TargetInfo{Kind: KindFileACL, ID: path, Path: path}

	fd, err := openPath(path, oPath)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && len(grants) == 0 {
			return Result{}, a.m.store.Delete(state.Privileges, path) // nothing left to undo
		}
		actual := err.Error()
		if isLoop(err) {
			actual = "a symlink on the way (never followed)"
		}
		ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: "target", Desired: "a file or folder",
			Actual: actual, Action: "none", Target: t})
		return Result{}, TerminalError(fmt.Errorf("open %s: %w", path, err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Result{}, fmt.Errorf("stat %s: %w", path, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && st.Mode&unix.S_IFMT != unix.S_IFREG {
		ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: "target", Desired: "a file or folder",
			Actual: fileType(&st), Action: "none", Target: t})
		return Result{}, TerminalError(fmt.Errorf("%s is a %s", path, fileType(&st)))
	}
	// xattr calls name the object through /proc/self/fd: exactly the
	// inode opened, never a symlink's target.
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	acl, err := readACL(proc, st.Mode)
	if err != nil {
		return Result{}, fmt.Errorf("read acl of %s: %w", path, err)
	}

	// The entries the grants want, by uid: the union of their access.
	want := map[uint32]uint16{}
	users := map[uint32]string{}
	for _, g := range grants {
		if _, err := grantUser(g); err != nil {
			ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: "user:" + g.User, Desired: "an entry",
				Actual: err.Error(), Action: "none: the grant's user is not who it was", Target: t})
			return Result{}, TerminalError(err)
		}
		want[g.UID] |= accessPerm(g.Access, isDir)
		users[g.UID] = g.User
	}

	before, _ := json.Marshal(rec)
	hadActive := false
	for _, e := range rec.Entries {
		hadActive = hadActive || e.Ended.IsZero()
	}
	if !hadActive && len(want) > 0 {
		// warden's first entry: remember the mask to put back after the last.
		rec.Mask = -1
		if m, ok := acl.mask(); ok {
			rec.Mask = int(m)
		}
	}
	next := acl
	changed := false
	for uid, perm := range want {
		key := strconv.FormatUint(uint64(uid), 10)
		field := "user:" + users[uid]
		cur, has := acl.user(uid)
		e := rec.Entries[key]
		switch {
		case e == nil || !e.Ended.IsZero():
			prev := -1
			if has {
				prev = int(cur)
			}
			if e != nil && has && cur == e.Perm {
				prev = e.Prev // our own ended entry, still there: what was before it
			}
			rec.Entries[key] = &aclAdded{User: users[uid], Perm: perm, Prev: prev}
		case !has:
			ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: field, Desired: permString(perm),
				Actual: "missing (removed while the grant is in force)", Action: "add", Target: t})
		case cur != perm && cur != e.Perm:
			ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: field, Desired: permString(perm),
				Actual: permString(cur), Action: "set", Target: t})
		}
		rec.Entries[key].Perm = perm
		if !has || cur != perm {
			next, changed = next.setUser(uid, perm, false), true
		}
	}
	active := 0
	for key, e := range rec.Entries {
		uid64, _ := strconv.ParseUint(key, 10, 32)
		uid := uint32(uid64)
		if _, ok := want[uid]; ok {
			active++
			continue
		}
		cur, has := acl.user(uid)
		if e.Ended.IsZero() {
			e.Ended = now // the grant ended now: quietly undone
			a.m.log.Info("file access ended: ACL entry removed", "path", path, "user", e.User)
		} else if has && cur == e.Perm && e.Prev != int(e.Perm) {
			ReportDrift(ctx, Drift{Kind: KindFileACL, ID: path, Field: "user:" + e.User, Desired: restored(e.Prev),
				Actual: permString(cur) + " (after the grant ended)", Action: "remove", Target: t})
		}
		if has && cur == e.Perm && e.Prev != int(e.Perm) {
			if e.Prev >= 0 {
				next = next.setUser(uid, uint16(e.Prev), false)
			} else {
				next = next.setUser(uid, 0, true)
			}
			changed = true
		}
		if now.Sub(e.Ended) > aclEndedKept {
			delete(rec.Entries, key)
		}
	}
	if changed {
		if active == 0 {
			next = next.withMask(rec.Mask) // as it was before warden's entries
		} else {
			next = next.withMask(-1)
		}
		// Stored first: a crash between the two leaves a record of an
		// entry not yet set (harmless), never an entry without a record.
		if err := a.m.store.Put(state.Privileges, path, rec); err != nil {
			return Result{}, err
		}
		if err := writeACL(proc, next); err != nil {
			return Result{}, fmt.Errorf("set acl of %s: %w", path, err)
		}
		a.m.metrics.writes.WithLabelValues(ACLController, "setxattr").Inc()
	}
	if len(rec.Entries) == 0 {
		err = a.m.store.Delete(state.Privileges, path)
	} else if after, _ := json.Marshal(rec); !changed && string(after) != string(before) {
		err = a.m.store.Put(state.Privileges, path, rec)
	}
	return Result{RequeueAfter: nextExpiry(grants, now)}, err
}

func restored(prev int) string {
	if prev < 0 {
		return "absent"
	}
	return permString(uint16(prev))
}

// accessPerm is the entry of a read or write grant; a folder gets x too.
func accessPerm(access string, dir bool) uint16 {
	p := uint16(4)
	if access == "write" {
		p |= 2
	}
	if dir {
		p |= 1
	}
	return p
}

// readACL reads the access ACL of the object named by proc; a file
// without the xattr has the minimal ACL of its mode.
func readACL(proc string, mode uint32) (posixACL, error) {
	buf := make([]byte, 512)
	for {
		n, err := unix.Getxattr(proc, aclXattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA):
			return aclFromMode(mode), nil
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, len(buf)*4)
			if len(buf) > 1<<20 {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		}
		return parseACL(buf[:n])
	}
}

func writeACL(proc string, a posixACL) error {
	if err := a.valid(); err != nil {
		return err
	}
	return unix.Setxattr(proc, aclXattr, a.encode(), 0)
}

// triggers wakes the controller when a grant is created or deleted, and
// when the inode of a path it manages changes (IN_ATTRIB: an ACL entry
// removed early, or back after expiry). The watch only wakes: Reconcile
// itself never follows a symlink.
func (a *ACL) triggers(ctx context.Context) {
	ch, cancel := a.m.store.WatchBucket(state.Grants)
	defer cancel()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.m.log.Warn("cannot watch ACL targets; changes are found at resync", "err", err)
		watchGrants(ctx, a.m, a.ctrl)
		return
	}
	defer w.Close()
	watched := map[string]bool{}
	rewatch := func() {
		keys, _ := a.Keys(ctx)
		now := map[string]bool{}
		for _, k := range keys {
			now[k] = true
			if !watched[k] {
				if err := w.Add(k); err == nil {
					watched[k] = true
				}
			}
		}
		for k := range watched {
			if !now[k] {
				w.Remove(k)
				delete(watched, k)
			}
		}
		a.ctrl.Enqueue(keys...)
	}
	rewatch()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			rewatch()
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if watched[ev.Name] {
				a.ctrl.Enqueue(ev.Name)
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					delete(watched, ev.Name) // the inode went; watch the new one
					rewatch()
				}
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			a.m.log.Warn("ACL target watch error; full resync", "err", err)
			rewatch()
		}
	}
}
