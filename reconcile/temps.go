package reconcile

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// removeTemps deletes the .warden-tmp-* files an earlier run left behind
// when it died between creating a temporary file and renaming it into
// place. It runs at start, before any controller writes, so every such
// file is a leftover. It looks in the root and the strict folders (where
// writeAtomic writes), follows no symlink, and removes only non-folders.
func (m *Manager) removeTemps() {
	dirs := []string{""}
	for name := range strictFolders {
		dirs = append(dirs, name)
	}
	removed := 0
	for len(dirs) > 0 && removed < maxWalk {
		rel := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		fd, err := openDir(m.rootfd, rel)
		if err != nil {
			continue
		}
		d := os.NewFile(uintptr(fd), rel)
		entries, _ := d.ReadDir(-1)
		for _, e := range entries {
			child := e.Name()
			if rel != "" {
				child = rel + "/" + e.Name()
			}
			switch {
			case strings.HasPrefix(e.Name(), tmpPrefix) && !e.IsDir():
				if err := unix.Unlinkat(fd, e.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
					m.log.Warn("leftover temporary file not removed", "path", child, "err", err)
					continue
				}
				removed++
				m.log.Info("removed a temporary file left by an earlier run", "path", child)
			case e.IsDir() && rel != "": // the root's folders are listed above
				dirs = append(dirs, child)
			}
		}
		d.Close()
	}
}
