package elevate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// SecurePath is where a bare command name is looked up, and the PATH an
// elevated command gets (sudo's secure_path).
const SecurePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxLinks bounds symlink resolution, as the kernel's 40.
const maxLinks = 40

// ErrUnsafeExecutable is returned for a program that someone other than
// root could replace: hashing it would prove nothing.
var ErrUnsafeExecutable = errors.New("executable could be replaced by someone other than root")

// Executable is a program resolved and checked by the agent.
type Executable struct {
	// Path is the resolved path (symlinks followed, all of them in
	// root-only folders): what policies match and what runs.
	Path   string
	SHA256 string
}

// Resolve finds name the way the agent runs it: an absolute path as given,
// a bare name on SecurePath; a relative path with a slash is refused (it
// would mean the caller's working directory). Every folder on the way and
// the file itself must be owned by root and not writable by group or
// others, symlinks are followed only where they sit in such folders, and
// the file is opened once and hashed from that open file.
func Resolve(name string) (Executable, error) {
	switch {
	case strings.HasPrefix(name, "/"):
		return resolveAbs(name)
	case strings.Contains(name, "/"):
		return Executable{}, fmt.Errorf("%s: give an absolute path or a bare name (looked up on %s)", name, SecurePath)
	}
	var firstErr error
	for _, dir := range strings.Split(SecurePath, ":") {
		x, err := resolveAbs(dir + "/" + name)
		if err == nil {
			return x, nil
		}
		if errors.Is(err, ErrUnsafeExecutable) && firstErr == nil {
			firstErr = err // an unsafe match is reported rather than "not found"
		}
	}
	if firstErr != nil {
		return Executable{}, firstErr
	}
	return Executable{}, fmt.Errorf("%s: command not found on %s", name, SecurePath)
}

func resolveAbs(p string) (Executable, error) {
	f, real, err := openSafe(p)
	if err != nil {
		return Executable{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Executable{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Executable{}, fmt.Errorf("%s: not a regular file", real)
	}
	if st.Mode&0o111 == 0 {
		return Executable{}, fmt.Errorf("%s: not executable", real)
	}
	if err := rootOnly(real, &st); err != nil {
		return Executable{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Executable{}, fmt.Errorf("hash %s: %w", real, err)
	}
	return Executable{Path: real, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// rootOnly refuses what a non-root user could change.
func rootOnly(p string, st *unix.Stat_t) error {
	if st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d", ErrUnsafeExecutable, p, st.Uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o)", ErrUnsafeExecutable, p, st.Mode&0o7777)
	}
	return nil
}

// openSafe opens the file at absolute path p read-only, walking one
// component at a time from "/" with O_NOFOLLOW. Every folder walked through
// must pass rootOnly; a symlink is read (never followed by the kernel) and
// its target walked in turn, so a link only counts when the folder holding
// it is root's. It returns the open file and its resolved path.
func openSafe(p string) (*os.File, string, error) {
	pending := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	dirfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", err
	}
	cur := "/"
	links := 0
	defer func() { unix.Close(dirfd) }()
	for len(pending) > 0 {
		if err := checkDirFD(dirfd, cur); err != nil {
			return nil, "", err
		}
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// Lexically: cur is a resolved path of real folders.
			parent := path.Dir(cur)
			fd, err := unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", parent, err)
			}
			unix.Close(dirfd)
			dirfd, cur = fd, parent
			continue
		}
		next := path.Join(cur, name)
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, "", fmt.Errorf("%s: %w", next, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			links++
			if links > maxLinks {
				return nil, "", fmt.Errorf("%s: too many symbolic links", p)
			}
			target, err := readlinkat(dirfd, name)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", next, err)
			}
			rest := strings.Split(target, "/")
			if strings.HasPrefix(target, "/") {
				fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					return nil, "", err
				}
				unix.Close(dirfd)
				dirfd, cur = fd, "/"
			}
			pending = append(rest, pending...)
		case len(pending) > 0:
			fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", next, err)
			}
			unix.Close(dirfd)
			dirfd, cur = fd, next
		default:
			fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %w", next, err)
			}
			return os.NewFile(uintptr(fd), next), next, nil
		}
	}
	return nil, "", fmt.Errorf("%s: is a folder", p)
}

func checkDirFD(fd int, p string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return rootOnly(p, &st)
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	if n >= len(buf) {
		return "", errors.New("symbolic link target too long")
	}
	return string(buf[:n]), nil
}
