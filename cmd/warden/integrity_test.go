package main

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"warden/audit"
	"warden/state"
)

// `warden audit verify` never creates a store, and a chain whose newest
// events were deleted fails, as does an agent start on that store, each
// with one line naming the remedy.
func TestVerifyMissingAndTruncatedStore(t *testing.T) {
	root := t.TempDir()
	out, code := warden(t, "--root", root, "audit", "verify")
	if code == 0 || !strings.Contains(out, "no store") {
		t.Fatalf("verify with no store: exit %d; want an error saying there is no store\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, "KeeperStorage")); !os.IsNotExist(err) {
		t.Fatalf("verify created KeeperStorage (%v)", err)
	}

	keeper := filepath.Join(root, "KeeperStorage")
	st, err := state.Open(keeper, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	st.Close()
	if out, code := warden(t, "--root", root, "audit", "verify"); code != 0 {
		t.Fatalf("verify of an intact store: exit %d\n%s", code, out)
	}
	db, err := bolt.Open(filepath.Join(keeper, state.DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("audit")).Cursor()
		for k, _ := c.Last(); k != nil && binary.BigEndian.Uint64(k) > 7; k, _ = c.Last() {
			c.Delete()
		}
		return nil
	})
	db.Close()
	for _, args := range [][]string{{"audit", "verify"}, {"agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0"}} {
		out, code := warden(t, append([]string{"--root", root}, args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(out, "behind its checkpoint") || !strings.Contains(out, "restore") {
			t.Fatalf("%s on a truncated chain: exit %d; want one line saying the store is behind its checkpoint, with the remedy\n%s",
				args[0], code, out)
		}
	}
}
