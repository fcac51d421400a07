package reconcile

import (
	"strings"

	"golang.org/x/sys/unix"
)

// The permission model (DESIGN.md, Agent root). This table is the one place
// in warden that says which mode a path below the agent root must have.
//
//	path                                        mode
//	ROOT                                        0755
//	Plugins/, Jobs/ (and folders below)         0750
//	KeeperStorage/, policies/, certs/, trust/   0700
//	files inside them                           0600, executables 0750
//	inbox/, run/, logs/, anything else          group and world write removed
//
// In the strict folders symlinks, fifos, sockets and devices are removed
// (the agent never creates one; one found there was planted). The loose
// folders belong to other parts of the agent (source, the logger) and to
// operators dropping bundles: there only write bits for group and others
// are taken away, nothing is removed, and nothing is followed.
type folderRule struct {
	dir, file, exec uint32
}

var strictFolders = map[string]folderRule{
	"Plugins":       {0o750, 0o600, 0o750},
	"Jobs":          {0o750, 0o600, 0o750},
	"policies":      {0o700, 0o600, 0o750},
	"KeeperStorage": {0o700, 0o600, 0o750},
	"certs":         {0o700, 0o600, 0o750},
	"trust":         {0o700, 0o600, 0o750},
}

// looseFolders are known folders of the root whose contents other
// components own. Only their modes are tightened, and only at a resync:
// they are not watched, because logs/ and inbox/ see a write for every log
// line and bundle, and none of those can loosen a mode.
var looseFolders = []string{"inbox", "run", "logs"}

// Modes of the root and of materialized files.
const (
	rootMode = 0o755
	fileMode = 0o600
)

// settingsFile is the materialized settings file, directly in the root.
const settingsFile = "appsettings.json"

// filesFolders hold one materialized <id>.json per document.
var filesFolders = map[string]string{"policies": "Policy", "Plugins": "Plugin", "Jobs": "Job"}

// topOf returns the first component of rel.
func topOf(rel string) string {
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return rel
}

// filesOwned reports whether rel is in the Files controller's namespace:
// appsettings.json and every *.json directly in policies/, Plugins/, Jobs/.
// Those paths are the Files controller's alone (content, mode and owner);
// the Permissions controller leaves them be.
func filesOwned(rel string) bool {
	if rel == settingsFile {
		return true
	}
	dir, name := splitRel(rel)
	if _, ok := filesFolders[dir]; !ok {
		return false
	}
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, tmpPrefix)
}

// strict reports whether rel lies in (or is) a strict folder, where
// planted symlinks and special files are removed.
func strict(rel string) bool {
	_, ok := strictFolders[topOf(rel)]
	return ok
}

// wantMode returns the mode rel must have given what it is now (st).
// Outside the strict folders the current mode minus group/world write is
// wanted.
func wantMode(rel string, st *unix.Stat_t) uint32 {
	cur := st.Mode & 0o7777
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if rel == "" || rel == "." {
		return rootMode
	}
	if filesOwned(rel) && !isDir {
		return fileMode
	}
	r, ok := strictFolders[topOf(rel)]
	switch {
	case !ok:
		return cur &^ 0o022
	case isDir:
		return r.dir
	case cur&0o111 != 0:
		return r.exec
	default:
		return r.file
	}
}

// folderMode is the mode a folder created at rel gets.
func folderMode(rel string) uint32 {
	if r, ok := strictFolders[topOf(rel)]; ok {
		return r.dir
	}
	return 0o700
}
