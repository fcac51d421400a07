package state

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// seedStore leaves a closed store in dir at generation 2 (bundle version
// 5) with audit events 1..10 and returns a copy of its file at generation
// 1 (bundle version 3) with events 1..5.
func seedStore(t *testing.T, dir string) (older []byte) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyGeneration(Apply{BundleVersion: 3, Source: "test", Docs: nil}); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		if err := s.AppendAudit([]AuditEntry{{Seq: seq, Data: []byte(`{}`), Hash: "h"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	older, err = os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyGeneration(Apply{BundleVersion: 5, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(6); seq <= 10; seq++ {
		if err := s.AppendAudit([]AuditEntry{{Seq: seq, Data: []byte(`{}`), Hash: "h"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return older
}

// A store that lost commits never silently starts over: missing, empty,
// replaced by an older copy, or with its newest audit events deleted, it
// is refused with one line naming the remedy.
func TestOpenRefusesAStoreBehindItsCheckpoint(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, db string, older []byte)
		want   error
	}{
		{"missing", func(t *testing.T, db string, _ []byte) { os.Remove(db) }, ErrBehind},
		{"empty", func(t *testing.T, db string, _ []byte) { os.WriteFile(db, nil, 0o600) }, ErrDamaged},
		{"older copy", func(t *testing.T, db string, older []byte) { os.WriteFile(db, older, 0o600) }, ErrBehind},
		{"newest audit events deleted", func(t *testing.T, db string, _ []byte) {
			b, err := bolt.Open(db, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			b.Update(func(tx *bolt.Tx) error {
				c := tx.Bucket(bAudit).Cursor()
				for k, _ := c.Last(); k != nil && binary.BigEndian.Uint64(k) > 7; k, _ = c.Last() {
					c.Delete()
				}
				return nil
			})
		}, ErrBehind},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := keeperDir(t)
			older := seedStore(t, dir)
			db := filepath.Join(dir, DBFile)
			tc.damage(t, db, older)
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a store behind its checkpoint")
			}
			if !errors.Is(err, tc.want) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "restore") {
				t.Fatalf("Open = %v; want one line wrapping %v that names the remedy", err, tc.want)
			}
			if fi, err := os.Stat(db); tc.name == "missing" && err == nil {
				t.Fatalf("Open created %s (%d bytes)", db, fi.Size())
			}
		})
	}
	// The remedy works: without the checkpoint the older copy is accepted.
	dir := keeperDir(t)
	older := seedStore(t, dir)
	os.WriteFile(filepath.Join(dir, DBFile), older, 0o600)
	os.Remove(filepath.Join(dir, CheckpointFile))
	s := openT(t, dir, Options{})
	if g := s.Current().Meta.Generation; g != 1 {
		t.Fatalf("generation after the remedy = %d; want 1", g)
	}
}

func TestOpenMustExistCreatesNothing(t *testing.T) {
	dir := keeperDir(t)
	if _, err := Open(dir, Options{MustExist: true}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Open(MustExist) on nothing = %v; want ErrNoStore", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(MustExist) created %s", dir)
	}
}

// The checkpoint follows commits and is MAC'd: an edited one is refused.
func TestCheckpointFollowsCommits(t *testing.T) {
	dir := keeperDir(t)
	seedStore(t, dir)
	s := openT(t, dir, Options{})
	cp, ok, err := s.SavedCheckpoint()
	if err != nil || !ok || cp.Generation != 2 || cp.BundleVersion != 5 || cp.AuditSeq != 10 || cp.AuditHash != "h" {
		t.Fatalf("saved checkpoint = %+v, %v, %v; want generation 2, version 5, event 10", cp, ok, err)
	}
	s.Close()
	p := filepath.Join(dir, CheckpointFile)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), `"auditSeq": 10`, `"auditSeq": 9`, 1)), 0o600)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Fatalf("Open with an edited checkpoint = %v; want a MAC error", err)
	}
}

// A truncated or bit-flipped warden.db is a clear ErrDamaged at open (or,
// for a flip in a value, an authentication error when read), never a
// panic or a crash.
func TestOpenDamagedFile(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	for i := 0; i < 5; i++ {
		if _, err := s.ApplyGeneration(Apply{BundleVersion: int64(i + 1), Docs: generationDocs(t, 20, "g")}); err != nil {
			t.Fatal(err)
		}
	}
	var used int // bytes up to the high-water mark; the file is longer
	s.db.View(func(tx *bolt.Tx) error { used = int(tx.Size()); return nil })
	s.Close()
	good, _ := os.ReadFile(filepath.Join(dir, DBFile))
	key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	try := func(data []byte) error {
		// A new folder each time: after a panic inside bbolt.Open its
		// lock on the file is not released (see openBolt).
		d := keeperDir(t)
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, KeyFile), key, 0o600)
		os.WriteFile(filepath.Join(d, DBFile), data, 0o600)
		s, err := Open(d, Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Generations()
		for g := uint64(1); err == nil && g <= s.Current().Meta.Generation; g++ {
			_, err = s.Generation(g)
		}
		return err
	}
	for _, size := range []int{100, 4096, 3 * 4096, used / 2, used - 4096} {
		if err := try(good[:size]); !errors.Is(err, ErrDamaged) {
			t.Fatalf("truncated to %d of %d bytes: %v; want ErrDamaged", size, used, err)
		}
	}
	// Flip one bit in a page's header and in its middle, for every page in
	// use: every outcome is a one-line ErrDamaged or ErrCorrupt, or a store
	// that still reads whole (a bit in free space).
	damaged := 0
	for p := 0; p < used/4096; p++ {
		for _, off := range []int{9, 17, 2048} {
			bad := append([]byte(nil), good[:used]...)
			bad[p*4096+off] ^= 0x10
			err := try(bad)
			if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("page %d offset %d flipped: %v; want ErrDamaged, ErrCorrupt or success", p, off, err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Fatalf("page %d offset %d: error is not one line: %q", p, off, err)
			}
			if err != nil {
				damaged++
			}
		}
	}
	if damaged == 0 {
		t.Fatal("no flipped bit was noticed")
	}
}
