package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"warden/atomicfile"
)

// File names inside the certs folder.
const (
	CACertFile      = "ca.pem"
	CAKeyFile       = "ca-key.pem"
	AdminCertFile   = "admin.pem"
	AdminKeyFile    = "admin-key.pem"
	MonitorCertFile = "monitor.pem"
	MonitorKeyFile  = "monitor-key.pem"
	ServerCertFile  = "server.pem"
	ServerKeyFile   = "server-key.pem"
	RevokedFile     = "revoked.json"
)

// ErrInsecureFile reports a key file that others than its owner may read, or
// that is not owned by the user the agent runs as, or is not a regular file.
var ErrInsecureFile = errors.New("insecure key file")

// maxPEMSize bounds what is read from any certificate or key file.
const maxPEMSize = 1 << 20

// removeStaleTemps deletes temporary files a crash left behind in dir (they
// may hold key material, and nothing else reads them).
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// readPrivate reads a key file without following a symlink and refuses it
// when it is not a regular file owned by the effective user with no group or
// world permission bits.
func readPrivate(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrInsecureFile, path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInsecureFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600 (fix: chmod 600 %s)", ErrInsecureFile, path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%w: %s is owned by uid %d, the agent runs as uid %d", ErrInsecureFile, path, st.Uid, os.Geteuid())
	}
	return io.ReadAll(io.LimitReader(f, maxPEMSize))
}

// readPublic reads a certificate file, bounded in size.
func readPublic(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPEMSize))
}
