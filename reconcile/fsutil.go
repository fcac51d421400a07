package reconcile

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Every path below the root is reached from a directory descriptor, one
// component at a time with O_NOFOLLOW: a symlink planted anywhere on the
// way fails with ELOOP (or ENOTDIR) instead of leading the agent, running
// as root, to chmod or write something outside its root.

// tmpPrefix names the agent's own temporary files. Events for them are
// ignored, and a crash can leave one behind only until the next write.
const tmpPrefix = ".warden-tmp-"

const (
	oDir  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	oPath = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	oRead = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
)

// splitRel splits a slash-separated path relative to the root into its
// directory ("" for the root) and base name.
func splitRel(rel string) (dir, name string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// openDir opens the directory rel below rootfd without following any
// symlink. rel "" opens the root itself.
func openDir(rootfd int, rel string) (int, error) {
	fd, err := unix.Openat(rootfd, ".", oDir, 0)
	if err != nil {
		return -1, fmt.Errorf("open root: %w", err)
	}
	if rel == "" {
		return fd, nil
	}
	for _, comp := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, comp, oDir, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// lstatAt stats name in dirfd without following a symlink.
func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// chmodFD changes the mode of the object fd refers to. fd may be an
// O_PATH descriptor: fchmod refuses those, so it uses fchmodat2 with
// AT_EMPTY_PATH (Linux 6.6) and falls back to /proc/self/fd, which also
// names exactly that object and never a symlink's target.
func chmodFD(fd int, mode uint32) error {
	err := unix.Fchmod(fd, mode)
	if err == nil || !errors.Is(err, unix.EBADF) {
		return err
	}
	err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if err == nil {
		return nil
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// chownFD changes the owner of the object fd refers to (O_PATH allowed).
func chownFD(fd, uid, gid int) error {
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// writeAtomic replaces dirfd/name with data: a temporary file in the same
// directory is written, given its mode and owner, and renamed over name. A
// reader sees the old file or the new one, never a mix. It does not fsync:
// materialized files are outputs the agent can always write again, and
// 10,000 of them with two fsyncs each took seconds, so durability is the
// files ledger's business (saveLedger fsyncs what was written since the
// last save before it records it, files_ledger.go). It returns the new file's
// stat, taken after the rename.
func writeAtomic(dirfd int, name string, data []byte, mode uint32, uid, gid int) (unix.Stat_t, error) {
	var st unix.Stat_t
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := tmpPrefix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return st, fmt.Errorf("create temporary file for %s: %w", name, err)
	}
	defer unix.Close(fd)
	fail := func(op string, err error) (unix.Stat_t, error) {
		unix.Unlinkat(dirfd, tmp, 0)
		return st, fmt.Errorf("%s %s: %w", op, name, err)
	}
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:])
		if err != nil {
			return fail("write", err)
		}
		off += n
	}
	if err := unix.Fchmod(fd, mode); err != nil { // the umask may have narrowed it
		return fail("chmod", err)
	}
	if uid >= 0 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fail("chown", err)
		}
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return fail("rename", err)
	}
	err = unix.Fstat(fd, &st)
	return st, err
}

// hashFD is the SHA-256 of what is left to read from fd, read in fixed
// chunks: a huge file planted where a managed one belongs costs time, not
// memory.
func hashFD(fd int) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return [32]byte{}, err
		}
		if n == 0 {
			var sum [32]byte
			h.Sum(sum[:0])
			return sum, nil
		}
		h.Write(buf[:n])
	}
}

// fileType names st's type for drift records.
func fileType(st *unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return "unknown"
}

func modeString(m uint32) string { return fmt.Sprintf("%04o", m&0o7777) }

// readlinkAt returns where the symlink dirfd/name points, for the record.
func readlinkAt(dirfd int, name string) string {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "?"
	}
	return string(buf[:n])
}
