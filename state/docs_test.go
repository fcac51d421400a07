package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

// counts returns how many documents the shared bucket holds and the sum
// of their reference counts (runs: see docs.go).
func counts(t *testing.T, s *Store) (docs, refs int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		docs = tx.Bucket(bDocs).Stats().KeyN
		return tx.Bucket(bDocRefs).ForEach(func(_, v []byte) error {
			refs += int(refCount(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs, refs
}

// changed is generationDocs(n, base) with the first k policies tagged tag.
func changed(t *testing.T, n int, base string, k int, tag string) []*schema.Document {
	docs := generationDocs(t, n, base)
	for i := 0; i < k; i++ {
		docs[i] = restoredPolicy(t, fmt.Sprintf("policy-%05d", i), tag)
	}
	return docs
}

// A generation that changes 10 of 100 documents stores 10 more; every kept
// generation reads back whole; pruning a generation deletes exactly the
// documents no kept generation holds.
func TestDocumentsAreShared(t *testing.T) {
	s := openT(t, keeperDir(t), Options{KeepGenerations: 2})
	apply := func(docs []*schema.Document) {
		t.Helper()
		if _, err := s.ApplyGeneration(Apply{Docs: docs}); err != nil {
			t.Fatal(err)
		}
	}
	apply(generationDocs(t, 100, "a"))
	if d, r := counts(t, s); d != 100 || r != 100 {
		t.Fatalf("after the first generation: %d documents, %d references; want 100, 100", d, r)
	}
	apply(changed(t, 100, "a", 10, "b"))
	if d, r := counts(t, s); d != 110 || r != 110 {
		t.Fatalf("after 10 changed: %d documents, %d runs; want 110, 110 (the 90 shared continue their run)", d, r)
	}
	apply(changed(t, 100, "a", 10, "c")) // generation 1 is pruned (keep 2)
	if d, r := counts(t, s); d != 110 || r != 110 {
		t.Fatalf("after pruning generation 1: %d documents, %d runs; want 110 (90 shared + b + c), 110", d, r)
	}
	for g, tag := range map[uint64]string{2: "b", 3: "c"} {
		sn, err := s.Generation(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(sn.Docs) != 100 || tagOf(sn.Get(schema.KindPolicy, "policy-00000")) != tag || tagOf(sn.Get(schema.KindPolicy, "policy-00099")) != "a" {
			t.Errorf("generation %d: %d docs, policy-00000 tagged %s", g, len(sn.Docs), tagOf(sn.Get(schema.KindPolicy, "policy-00000")))
		}
	}
	// Back to "b" (held by generation 2, pruned by this apply), then two
	// generations of other documents: the counts go down to what is kept.
	apply(changed(t, 100, "a", 10, "b"))
	apply(generationDocs(t, 5, "z"))
	apply(generationDocs(t, 5, "z"))
	if d, r := counts(t, s); d != 5 || r != 5 {
		t.Fatalf("after two generations of 5 new documents: %d documents, %d runs; want 5, 5", d, r)
	}
}

// A store written before content addressing (documents inside each
// generation's bucket) still reads, and its generations are pruned
// without touching the shared documents.
func TestOldGenerationLayout(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{KeepGenerations: 2})
	old := generationDocs(t, 20, "old")
	if err := s.db.Update(func(tx *bolt.Tx) error {
		genKey := u64(1)
		gb, err := tx.Bucket(bDesired).CreateBucket(genKey)
		if err != nil {
			return err
		}
		for _, d := range old {
			spec, _ := json.Marshal(d.Spec)
			plain, _ := json.Marshal(stored{Kind: d.Kind, ID: d.ID, Raw: d.Raw, Spec: spec})
			k := s.seal.keyName("desired", d.Key())
			if err := gb.Put(k, s.seal.seal(plain, ad(genKey, k))); err != nil {
				return err
			}
		}
		mj, _ := json.Marshal(Meta{Generation: 1, BundleVersion: 1, Documents: len(old)})
		if err := gb.Put(kGenMeta, s.seal.seal(mj, ad(genKey, kGenMeta))); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(kCurrent, s.seal.seal(mj, kCurrent))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, Options{KeepGenerations: 2})
	if sn := s.Current(); sn.Meta.Generation != 1 || len(sn.Docs) != 20 || tagOf(sn.Docs[0]) != "old" {
		t.Fatalf("old generation read as generation %d with %d docs", sn.Meta.Generation, len(sn.Docs))
	}
	for g := 2; g <= 4; g++ {
		if _, err := s.ApplyGeneration(Apply{BundleVersion: int64(g), Docs: generationDocs(t, 20, "new")}); err != nil {
			t.Fatal(err)
		}
	}
	if d, r := counts(t, s); d != 20 || r != 20 {
		t.Fatalf("%d documents, %d runs; want 20, 20", d, r)
	}
	if sn, err := s.Generation(4); err != nil || len(sn.Docs) != 20 || tagOf(sn.Docs[0]) != "new" {
		t.Fatalf("generation 4: %v", err)
	}
}

// refsOf takes the reference of a document at its last place without an
// HMAC, computes the few others, and looks many moved ones up by content:
// whichever way, every generation's index holds exactly the references of
// its documents and reads back whole.
func TestRefsReusedByPlace(t *testing.T) {
	s := openT(t, keeperDir(t), Options{KeepGenerations: 3})
	check := func(docs []*schema.Document) {
		t.Helper()
		m, err := s.ApplyGeneration(Apply{Docs: docs})
		if err != nil {
			t.Fatal(err)
		}
		want := map[docRef]bool{}
		rh := s.seal.refHasher()
		for _, d := range docs {
			want[rh.ref(d)] = true
		}
		var got []docRef
		if err := s.db.View(func(tx *bolt.Tx) error {
			got, err = s.generationRefs(tx, m.Generation)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("generation %d indexes %d references, want %d", m.Generation, len(got), len(want))
		}
		for _, r := range got {
			if !want[r] {
				t.Fatalf("generation %d indexes a reference none of its documents has", m.Generation)
			}
		}
		sn, err := s.Generation(m.Generation)
		if err != nil || len(sn.Docs) != len(docs) {
			t.Fatalf("generation %d reads back %d documents (%v), want %d", m.Generation, len(sn.Docs), err, len(docs))
		}
		if got, want := s.Current().Docs, byKindThenID(docs); !slices.Equal(got, want) {
			t.Fatalf("generation %d: the snapshot's documents are not in kind and id order", m.Generation)
		}
	}
	docs := generationDocs(t, 600, "a")
	check(docs)
	same := append([]*schema.Document(nil), docs...)
	same[5] = restoredPolicy(t, "policy-00005", "b")
	check(same) // 599 by place, one HMAC
	shifted := append([]*schema.Document{restoredPolicy(t, "policy-new", "c")}, same...)
	check(shifted)       // every place moved: by content
	check(shifted[300:]) // moved by 300
	check(shifted)
}

// Get and OfKind find documents by kind and id in the sorted snapshot,
// whatever order they were applied in, the same id in two kinds included.
func TestSnapshotLookups(t *testing.T) {
	doc := func(kind, id string) *schema.Document { return &schema.Document{Kind: kind, ID: id} }
	docs := []*schema.Document{doc(schema.KindPolicy, "b"), doc(schema.KindJob, "a"), doc(schema.KindPolicy, "a"),
		doc(schema.KindSettings, "agent"), doc(schema.KindApprover, "b"), doc(schema.KindPolicy, "c"), doc("Strange", "a")}
	sn := newSnapshot(Meta{}, docs)
	for _, d := range docs {
		if got := sn.Get(d.Kind, d.ID); got != d {
			t.Errorf("Get(%s, %s) = %v", d.Kind, d.ID, got)
		}
	}
	for _, miss := range [][2]string{{schema.KindPolicy, "d"}, {schema.KindPlugin, "a"}, {schema.KindJob, "b"}, {"Other", "a"}, {schema.KindPolicy, ""}} {
		if got := sn.Get(miss[0], miss[1]); got != nil {
			t.Errorf("Get(%s, %s) = %v, want nil", miss[0], miss[1], got)
		}
	}
	var ids []string
	for _, d := range sn.OfKind(schema.KindPolicy) {
		ids = append(ids, d.ID)
	}
	if fmt.Sprint(ids) != "[a b c]" {
		t.Errorf("OfKind(Policy) = %v", ids)
	}
	if got := sn.OfKind(schema.KindPlugin); got != nil {
		t.Errorf("OfKind(Plugin) = %v", got)
	}
	if sn.Docs[0].Kind != schema.KindSettings || sn.Docs[len(sn.Docs)-1].Kind != "Strange" {
		t.Errorf("not in kind order: %v first, %v last", sn.Docs[0].Kind, sn.Docs[len(sn.Docs)-1].Kind)
	}
}

// A generation holding a kind and id twice is refused, wherever the two
// are in it, and nothing is applied.
func TestApplyRefusesDuplicates(t *testing.T) {
	s := openT(t, keeperDir(t), Options{})
	docs := generationDocs(t, 20, "a")
	dup := append(append([]*schema.Document(nil), docs...), restoredPolicy(t, "policy-00003", "b"))
	if _, err := s.ApplyGeneration(Apply{Docs: dup}); err == nil || !strings.Contains(err.Error(), "policy-00003 appears twice") {
		t.Fatalf("err = %v, want policy-00003 appears twice", err)
	}
	if g := s.Current().Meta.Generation; g != 0 {
		t.Fatalf("generation %d applied", g)
	}
	// After an apply, the same places with one document replaced by one
	// holding its neighbour's id.
	if _, err := s.ApplyGeneration(Apply{Docs: docs}); err != nil {
		t.Fatal(err)
	}
	same := slices.Clone(docs)
	same[4] = restoredPolicy(t, "policy-00003", "c")
	if _, err := s.ApplyGeneration(Apply{Docs: same}); err == nil || !strings.Contains(err.Error(), "policy-00003 appears twice") {
		t.Fatalf("err = %v, want policy-00003 appears twice", err)
	}
	if g := s.Current().Meta.Generation; g != 1 {
		t.Fatalf("generation %d current, want 1", g)
	}
}
