package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBundleBuildReproducible: two CI checkouts of the same documents
// (different file times, different folders) built with the same
// SOURCE_DATE_EPOCH give the same bytes, created at that time
// (docs/fleet.md); without it, the newest file time is used.
func TestBundleBuildReproducible(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if out, code := warden(t, "bundle", "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	doc := `{"kind": "Policy", "id": "deny-netcat", "spec": {"name": "Block netcat", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 100, "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/nc*"}]}}}`
	build := func(name string, mtime time.Time, env ...string) []byte {
		t.Helper()
		in := filepath.Join(dir, name)
		os.MkdirAll(filepath.Join(in, "policies"), 0o755)
		p := filepath.Join(in, "policies", "deny-netcat.json")
		os.WriteFile(p, []byte(doc), 0o644)
		os.Chtimes(p, mtime, mtime)
		out := filepath.Join(dir, name+".tar.gz")
		cmd := exec.Command(wardenBin, "bundle", "build", "--in", in, "--key", filepath.Join(keys, "bundle.key"), "--version", "4", "--out", out)
		cmd.Env = append(os.Environ(), env...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v %s", name, err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	epoch := "SOURCE_DATE_EPOCH=1764547200" // 2025-12-01T00:00:00Z
	a := build("checkout-a", time.Now().Add(-time.Hour), epoch)
	b := build("checkout-b", time.Now(), epoch)
	if !bytes.Equal(a, b) {
		t.Fatal("same documents and SOURCE_DATE_EPOCH gave different bundles")
	}
	if out, code := warden(t, "bundle", "verify", filepath.Join(dir, "checkout-a.tar.gz"), "--pub", filepath.Join(keys, "bundle.pub")); code != 0 || !strings.Contains(out, "2025-12-01T00:00:00Z") {
		t.Fatalf("verify: %d %s; want created 2025-12-01T00:00:00Z", code, out)
	}
	c := build("checkout-c", time.Now().Add(-2*time.Hour))
	if bytes.Equal(a, c) {
		t.Fatal("without SOURCE_DATE_EPOCH the creation time should be the file time, not the epoch")
	}
	if msg, err := func() ([]byte, error) {
		cmd := exec.Command(wardenBin, "bundle", "build", "--in", filepath.Join(dir, "checkout-a"), "--key", filepath.Join(keys, "bundle.key"), "--version", "4", "--out", filepath.Join(dir, "bad.tar.gz"))
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=yesterday")
		return cmd.CombinedOutput()
	}(); err == nil || !strings.Contains(string(msg), "SOURCE_DATE_EPOCH") {
		t.Fatalf("a malformed SOURCE_DATE_EPOCH: %v %s; want an error naming it", err, msg)
	}
}
