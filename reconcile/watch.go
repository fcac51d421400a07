package reconcile

import (
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// maxWatches bounds the folders watched, against a tree built to exhaust
// inotify watches; what is beyond is still fixed at every resync.
const maxWatches = 4096

// watch turns fsnotify events below the agent root into keys. It watches
// the root and the strict folders with everything below them. Plain writes
// matter only to materialized files: a write cannot change a mode, and
// KeeperStorage/ sees one for every database commit.
type watch struct {
	m       *Manager
	w       *fsnotify.Watcher
	watched map[string]bool // relative folder paths
}

func newWatch(m *Manager) (*watch, error) {
	fw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, err
	}
	w := &watch{m: m, w: fw, watched: map[string]bool{}}
	w.rewatch()
	return w, nil
}

func (w *watch) close() { w.w.Close() }

// rewatch (re)adds the root and every strict folder tree.
func (w *watch) rewatch() {
	w.add(".")
	for top := range strictFolders {
		w.addTree(top)
	}
}

func (w *watch) abs(rel string) string {
	if rel == "." {
		return w.m.root
	}
	return w.m.root + "/" + rel
}

func (w *watch) add(rel string) {
	if len(w.watched) >= maxWatches && !w.watched[rel] {
		return
	}
	if err := w.w.Add(w.abs(rel)); err != nil {
		w.m.log.Debug("cannot watch folder", "path", rel, "err", err)
		return
	}
	w.watched[rel] = true
}

// addTree watches rel and every folder below it; it returns every path
// found, for the permissions controller.
func (w *watch) addTree(rel string) []string {
	var all []string
	walkBeneath(w.m.rootfd, rel, func(p string) bool {
		all = append(all, p)
		if st, err := lstatAt(w.m.rootfd, p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			w.add(p)
		}
		return len(all) < maxWalk
	})
	return all
}

// forget drops the watches of rel and below (it was removed or renamed
// away; a renamed folder's watch would keep reporting its old name).
func (w *watch) forget(rel string) {
	for p := range w.watched {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			w.w.Remove(w.abs(p))
			delete(w.watched, p)
		}
	}
}

// rel maps an event path to a key: slash-separated, relative to the root,
// "." for the root itself; ok is false outside the root.
func (w *watch) rel(name string) (string, bool) {
	if name == w.m.root {
		return ".", true
	}
	r, ok := strings.CutPrefix(name, w.m.root+string(filepath.Separator))
	if !ok || r == "" {
		return "", false
	}
	return filepath.ToSlash(r), true
}

func (w *watch) handle(ev fsnotify.Event) {
	rel, ok := w.rel(ev.Name)
	if !ok {
		return
	}
	_, base := splitRel(rel)
	if strings.HasPrefix(base, tmpPrefix) {
		return // the agent's own temporary file
	}
	m := w.m
	for c, fn := range m.pathFns {
		if key, ok := fn(rel); ok {
			c.Enqueue(key)
		}
	}
	files, perms := m.Controller(FilesController), m.Controller(PermissionsController)
	if filesOwned(rel) {
		files.Enqueue(rel)
		return
	}
	if ev.Op == fsnotify.Write {
		return
	}
	top := topOf(rel)
	_, isFilesFolder := filesFolders[rel]
	switch {
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		w.forget(rel)
		perms.Enqueue(rel)
		if isFilesFolder {
			files.Enqueue(m.files.keysUnder(rel)...)
		}
	case ev.Has(fsnotify.Create):
		if _, ok := strictFolders[top]; !ok {
			perms.Enqueue(rel)
			return
		}
		perms.Enqueue(w.addTree(rel)...)
		if isFilesFolder {
			// Whatever was created in it before the watch was added.
			files.Enqueue(m.files.keysUnder(rel)...)
			if names, err := listDir(m.rootfd, rel); err == nil {
				for _, n := range names {
					if filesOwned(rel + "/" + n) {
						files.Enqueue(rel + "/" + n)
					}
				}
			}
		}
	default: // Chmod: mode, owner, or (on Linux) link count changed
		perms.Enqueue(rel)
	}
}
