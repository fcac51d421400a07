// Package atomicfile replaces files so that a reader, or a crash, sees
// either the old content or the new one, never a mix.
package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// TempMarker is part of every temporary file's name (".NAME.tmp-RANDOM"),
// so leftovers of a crash can be recognized; the leading dot keeps watchers
// of the folder (the bundle inbox) from taking them for input.
const TempMarker = ".tmp-"

// Write replaces path with data: a temporary file in the same folder
// (mode perm), fsync, rename, fsync of the folder. On error path is
// untouched and the temporary file is gone.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+TempMarker+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	tmp = ""
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsTemp reports whether name (a base name) is one of Write's temporary
// files.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, TempMarker)
}
