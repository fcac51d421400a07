package state

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

// checkRuns compares the shared documents with the kept generations'
// indexes: bDocs holds exactly the documents some kept generation names,
// and each one's count is its number of runs (kept generations that hold
// it while the one before does not, or that are the oldest kept).
func checkRuns(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		want := map[docRef]uint32{}
		var prev map[docRef]bool
		last := uint64(0)
		c := tx.Bucket(bDesired).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			g := binary.BigEndian.Uint64(k)
			refs, err := s.generationRefs(tx, g)
			if err != nil {
				return err
			}
			if g != last+1 {
				prev = nil
			}
			for _, r := range refs {
				if !prev[r] {
					want[r]++
				}
			}
			prev, last = refSet(refs), g
		}
		got := map[docRef]uint32{}
		tx.Bucket(bDocRefs).ForEach(func(k, v []byte) error {
			got[docRef(k)] = refCount(v)
			return nil
		})
		for r, n := range want {
			if got[r] != n {
				t.Errorf("document %x: %d runs counted, want %d", r[:6], got[r], n)
			}
			if tx.Bucket(bDocs).Get(r[:]) == nil {
				t.Errorf("document %x: named by a kept generation, not stored", r[:6])
			}
		}
		for r := range got {
			if want[r] == 0 {
				t.Errorf("document %x: counted (%d), but no kept generation names it", r[:6], got[r])
			}
		}
		if n := tx.Bucket(bDocs).Stats().KeyN; n != len(want) {
			t.Errorf("%d documents stored, %d named by the kept generations", n, len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// randomGeneration picks, for each of ids policies, one of tags versions,
// or leaves it out.
func randomGeneration(t *testing.T, rng *rand.Rand, ids, tags int) []*schema.Document {
	var docs []*schema.Document
	for i := range ids {
		v := rng.IntN(tags + 1)
		if v == tags {
			continue
		}
		docs = append(docs, restoredPolicy(t, fmt.Sprintf("policy-%02d", i), fmt.Sprint("v", v)))
	}
	return docs
}

// Documents that come and go, come back, and stay across pruning: after
// every apply the stored documents are exactly those of the kept
// generations, with their runs counted, and every kept generation reads
// back as it was applied.
func TestDocumentRunsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	for _, keep := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			s := openT(t, keeperDir(t), Options{KeepGenerations: keep})
			applied := map[uint64][]*schema.Document{}
			for range 40 {
				docs := randomGeneration(t, rng, 12, 3)
				m, err := s.ApplyGeneration(Apply{Docs: docs})
				if err != nil {
					t.Fatal(err)
				}
				applied[m.Generation] = docs
				checkRuns(t, s)
				for g := m.Generation; g > 0 && g+uint64(keep) > m.Generation; g-- {
					sn, err := s.Generation(g)
					if err != nil {
						t.Fatalf("generation %d: %v", g, err)
					}
					if len(sn.Docs) != len(applied[g]) {
						t.Fatalf("generation %d: %d documents, applied %d", g, len(sn.Docs), len(applied[g]))
					}
					for _, d := range applied[g] {
						if got := sn.Get(d.Kind, d.ID); got == nil || got.Hash != d.Hash {
							t.Fatalf("generation %d: %s not as applied", g, d.Key())
						}
					}
				}
				if t.Failed() {
					t.FailNow()
				}
			}
		})
	}
}

// A store whose reference counts count generations (as written before
// runs) is recounted at its next apply, and prunes right after.
func TestDocumentRunsRecount(t *testing.T) {
	s := openT(t, keeperDir(t), Options{KeepGenerations: 3})
	for _, tag := range []string{"a", "b", "c"} {
		if _, err := s.ApplyGeneration(Apply{Docs: changed(t, 20, "a", 5, tag)}); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite the counts as generation counts and drop the marker.
	err := s.db.Update(func(tx *bolt.Tx) error {
		gens := map[docRef]uint32{}
		for g := uint64(1); g <= 3; g++ {
			refs, err := s.generationRefs(tx, g)
			if err != nil {
				return err
			}
			for _, r := range refs {
				gens[r]++
			}
		}
		for r, n := range gens {
			if err := tx.Bucket(bDocRefs).Put(r[:], binary.BigEndian.AppendUint32(nil, n)); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Delete(kRefsByRun)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, refs := counts(t, s); refs != 20*3 {
		t.Fatalf("set up %d generation counts, want 60", refs)
	}
	for _, tag := range []string{"d", "e", "f"} {
		if _, err := s.ApplyGeneration(Apply{Docs: changed(t, 20, "a", 5, tag)}); err != nil {
			t.Fatal(err)
		}
		checkRuns(t, s)
	}
	if d, r := counts(t, s); d != 15+3*5 || r != d {
		t.Fatalf("%d documents, %d runs; want 30, 30 (15 shared, 5 each of d, e, f)", d, r)
	}
}
