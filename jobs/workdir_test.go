package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A symlink planted in a job's folder cannot make the runner create
// folders outside it.
func TestWorkDirDoesNotFollowPlantedSymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	base := filepath.Join(root, "Jobs", "j1")
	if err := os.MkdirAll(base, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(base, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := workDir(root, "j1", "out/created"); !errors.Is(err, ErrWorkingDir) {
		t.Fatalf("workDir through a symlink = %v; want ErrWorkingDir", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "created")); !os.IsNotExist(err) {
		t.Fatalf("a folder was created outside the job's folder (stat: %v)", err)
	}
	dir, err := workDir(root, "j1", "work/sub")
	if err != nil || dir != filepath.Join(base, "work", "sub") {
		t.Fatalf("workDir = %q, %v", dir, err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("working directory not created: %v", err)
	}
}
