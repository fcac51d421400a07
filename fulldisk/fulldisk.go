// Package fulldisk gives tests a real full filesystem: a small tmpfs
// mounted under the test's temporary directory, which the test fills and
// frees. It needs root (mount); tests skip without it.
package fulldisk

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// FS is a mounted tmpfs.
type FS struct {
	t   testing.TB
	Dir string
}

// Mount mounts a tmpfs of size bytes on a new directory under t.TempDir()
// and unmounts it in t.Cleanup. It skips the test when not root or when
// mount is refused (a container without CAP_SYS_ADMIN).
func Mount(t testing.TB, size int64) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (full-disk test)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs for the full-disk test: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &FS{t: t, Dir: dir}
}

// Fill writes a filler file until the filesystem has no room left.
func (f *FS) Fill() {
	f.t.Helper()
	fh, err := os.OpenFile(f.filler(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := fh.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			f.t.Fatal(err)
		}
	}
}

// Free removes the filler: the filesystem has room again.
func (f *FS) Free() {
	f.t.Helper()
	if err := os.Remove(f.filler()); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatal(err)
	}
}

func (f *FS) filler() string { return filepath.Join(f.Dir, "filler") }
