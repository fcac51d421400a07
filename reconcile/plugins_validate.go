package reconcile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"warden/source"
)

// Errors of plugin validation, for errors.Is. Every validation failure is
// a *ValidationError wrapping one of them.
var (
	ErrPluginPath      = errors.New("executable must be a path below Plugins/")
	ErrPluginSymlink   = errors.New("symlink on the executable's path")
	ErrPluginMissing   = errors.New("executable not found")
	ErrPluginNotFile   = errors.New("not a regular file or folder")
	ErrPluginOwner     = errors.New("not owned by the service account")
	ErrPluginMode      = errors.New("group- or world-writable, or not executable")
	ErrPluginHash      = errors.New("sha256 differs from the document's")
	ErrPluginSignature = errors.New("no valid signature by a key listed in alternativeSignatures")
)

// ValidationError says which check an executable failed, on which path.
type ValidationError struct {
	Check string // path, symlink, exists, type, owner, mode, sha256, signature
	Path  string // relative to the agent root
	Want  string
	Got   string
	Err   error // one of the ErrPlugin* values
}

func (e *ValidationError) Error() string {
	s := e.Path + ": " + e.Err.Error()
	if e.Want != "" || e.Got != "" {
		s += fmt.Sprintf(" (want %s, got %s)", e.Want, e.Got)
	}
	return s
}

func (e *ValidationError) Unwrap() error { return e.Err }

// sigSuffix and pubSuffix name a detached signature and, optionally, its
// public key next to an executable.
const (
	sigSuffix = ".sig"
	pubSuffix = ".pub"
	maxSig    = 4 << 10
)

// executable is a plugin executable that passed validation, held open so
// that what runs is what was checked.
type executable struct {
	file   *os.File // O_RDONLY, opened without following symlinks
	rel    string   // Plugins/...
	abs    string
	sum    [32]byte
	signer string // thumbprint of the key whose signature was accepted, or ""
	elf    bool
	dev    uint64
	ino    uint64
}

func (x *executable) sumHex() string { return hex.EncodeToString(x.sum[:]) }

func (x *executable) close() {
	if x != nil && x.file != nil {
		x.file.Close()
	}
}

// validateExecutable checks a plugin executable before a start: the path
// lies below Plugins/ and every component is reached without following a
// symlink; every folder from the root down and the file itself are owned
// by the service account and not group- or world-writable; the file is a
// regular, owner-executable file; and its SHA-256 equals sha (hex), or,
// when sha is empty, EXECUTABLE.sig holds an Ed25519 signature of its
// bytes by a key whose thumbprint is in signers. The key material comes
// from trust/ or EXECUTABLE.pub; the pin, not the file, makes it trusted.
func (p *Plugins) validateExecutable(rel, sha string, signers []string) (*executable, error) {
	fail := func(check, where string, err error, want, got string) (*executable, error) {
		return nil, &ValidationError{Check: check, Path: where, Want: want, Got: got, Err: err}
	}
	if path.Clean(rel) != rel || !strings.HasPrefix(rel, "Plugins/") || strings.Contains("/"+rel+"/", "/../") {
		return fail("path", rel, ErrPluginPath, "", "")
	}
	uid := p.serviceUID()
	fd, err := unix.Openat(p.m.rootfd, ".", oDir, 0)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	dir, name := splitRel(rel)
	walked := ""
	if _, verr := checkOwnerMode(fd, ".", uid, true); verr != nil {
		unix.Close(fd)
		return nil, verr
	}
	for _, comp := range strings.Split(dir, "/") {
		walked = path.Join(walked, comp)
		next, err := unix.Openat(fd, comp, oDir, 0)
		if err != nil {
			defer unix.Close(fd)
			return openFailure(fd, comp, walked, err)
		}
		unix.Close(fd)
		fd = next
		if _, verr := checkOwnerMode(fd, walked, uid, true); verr != nil {
			unix.Close(fd)
			return nil, verr
		}
	}
	dirfd := fd
	defer unix.Close(dirfd)
	ffd, err := unix.Openat(dirfd, name, oRead, 0)
	if err != nil {
		return openFailure(dirfd, name, rel, err)
	}
	f := os.NewFile(uintptr(ffd), rel)
	st, verr := checkOwnerMode(ffd, rel, uid, false)
	if verr != nil {
		f.Close()
		return nil, verr
	}
	x := &executable{file: f, rel: rel, abs: p.m.root + "/" + rel, dev: st.Dev, ino: st.Ino}
	var content []byte // read whole only when a signature must be checked
	h := sha256.New()
	var head [4]byte
	if sha == "" {
		if content, err = io.ReadAll(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", rel, err)
		}
		h.Write(content)
	} else if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	h.Sum(x.sum[:0])
	if n, _ := f.ReadAt(head[:], 0); n == 4 {
		x.elf = bytes.Equal(head[:], []byte("\x7fELF"))
	}
	got := x.sumHex()
	if sha != "" {
		if !strings.EqualFold(sha, got) {
			f.Close()
			return fail("sha256", rel, ErrPluginHash, strings.ToLower(sha), got)
		}
		return x, nil
	}
	signer, err := p.checkSignature(dirfd, name, content, signers)
	if err != nil {
		f.Close()
		return fail("signature", rel+sigSuffix, ErrPluginSignature, "a signature by "+listOrNone(signers), err.Error())
	}
	x.signer = signer
	return x, nil
}

// openFailure turns an openat error on dirfd/name into the check it
// failed. O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR, not
// ELOOP, so a symlink is recognised by lstat.
func openFailure(dirfd int, name, rel string, err error) (*executable, error) {
	if st, lerr := lstatAt(dirfd, name); lerr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		err = unix.ELOOP
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, &ValidationError{Check: "symlink", Path: rel, Err: ErrPluginSymlink}
	case errors.Is(err, unix.ENOENT):
		return nil, &ValidationError{Check: "exists", Path: rel, Err: ErrPluginMissing}
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENXIO):
		return nil, &ValidationError{Check: "type", Path: rel, Err: ErrPluginNotFile}
	}
	return nil, fmt.Errorf("open %s: %w", rel, err)
}

// checkOwnerMode checks the object fd refers to: a folder (dir) or a
// regular executable file, owned by uid, not group- or world-writable.
func checkOwnerMode(fd int, rel string, uid int, dir bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, fmt.Errorf("stat %s: %w", rel, err)
	}
	want := uint32(unix.S_IFREG)
	if dir {
		want = unix.S_IFDIR
	}
	if st.Mode&unix.S_IFMT != want {
		return st, &ValidationError{Check: "type", Path: rel, Err: ErrPluginNotFile, Want: map[bool]string{true: "folder", false: "file"}[dir], Got: fileType(&st)}
	}
	if int(st.Uid) != uid {
		return st, &ValidationError{Check: "owner", Path: rel, Err: ErrPluginOwner, Want: fmt.Sprintf("uid %d", uid), Got: fmt.Sprintf("uid %d", st.Uid)}
	}
	mode := st.Mode & 0o7777
	if mode&0o022 != 0 || (!dir && mode&0o100 == 0) {
		return st, &ValidationError{Check: "mode", Path: rel, Err: ErrPluginMode, Want: "no group/world write, owner execute", Got: modeString(mode)}
	}
	return st, nil
}

// checkSignature verifies NAME.sig (raw 64 bytes, or base64) over content
// with each pinned key it can find, and returns the thumbprint of the one
// that verified.
func (p *Plugins) checkSignature(dirfd int, name string, content []byte, signers []string) (string, error) {
	if len(signers) == 0 {
		return "", errors.New("no sha256 in the document and alternativeSignatures is empty")
	}
	sig, err := readSmall(dirfd, name+sigSuffix)
	if err != nil {
		return "", fmt.Errorf("read %s%s: %w", name, sigSuffix, err)
	}
	if len(sig) != ed25519.SignatureSize {
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
		if err != nil || len(dec) != ed25519.SignatureSize {
			return "", fmt.Errorf("%s%s is neither 64 bytes nor base64 of 64 bytes", name, sigSuffix)
		}
		sig = dec
	}
	pinned := map[string]bool{}
	for _, s := range signers {
		pinned[strings.ToLower(s)] = true
	}
	keys := p.pinnedKeys(dirfd, name, pinned)
	if len(keys) == 0 {
		return "", errors.New("no public key of a pinned thumbprint in trust/ or " + name + pubSuffix)
	}
	for id, k := range keys {
		if ed25519.Verify(k, content, sig) {
			return id, nil
		}
	}
	return "", errors.New("the signature does not verify with any pinned key")
}

// pinnedKeys gathers the public keys in trust/ and NAME.pub whose
// thumbprints are pinned. Unreadable or malformed files are skipped: they
// can only make a verification fail, never succeed.
func (p *Plugins) pinnedKeys(dirfd int, name string, pinned map[string]bool) map[string]ed25519.PublicKey {
	keys := map[string]ed25519.PublicKey{}
	add := func(data []byte) {
		ks, err := source.ParsePublicKeys(data)
		if err != nil {
			return
		}
		for _, k := range ks {
			if id := source.KeyID(k); pinned[id] {
				keys[id] = k
			}
		}
	}
	if data, err := readSmall(dirfd, name+pubSuffix); err == nil {
		add(data)
	}
	if names, err := listDir(p.m.rootfd, "trust"); err == nil {
		if tfd, err := openDir(p.m.rootfd, "trust"); err == nil {
			for _, n := range names {
				if strings.HasSuffix(n, ".pub") || strings.HasSuffix(n, ".pem") {
					if data, err := readSmall(tfd, n); err == nil {
						add(data)
					}
				}
			}
			unix.Close(tfd)
		}
	}
	return keys
}

// readSmall reads a regular file of at most maxSig bytes below dirfd
// without following a symlink.
func readSmall(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, oRead, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSig+1))
	if err == nil && len(data) > maxSig {
		err = errors.New("too large")
	}
	return data, err
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none pinned)"
	}
	return strings.Join(s, ", ")
}
