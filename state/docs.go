package state

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

// Documents are stored once, by content, and shared by every generation
// that holds them: a generation is its meta and an index of content
// references, so a bundle that changes 10 of 10,000 documents seals and
// writes 10 documents, not 10,000. A reference is an HMAC (under the
// key-name key) of the document's kind, id and SHA-256, so it reveals
// nothing about the content; the sealed value is bound to its reference,
// and the index to its generation, so neither can be moved unnoticed.
//
// bDocRefs counts, for each document, its runs within the kept
// generations: the kept generations that hold it while the one before
// them does not (or that are the oldest kept). A document is held by some
// kept generation exactly when it has a run, and it goes when its last run
// is pruned. Counting runs rather than generations is what makes a new
// generation cost its changes: a document the generation before also held
// continues its run and is not written; pruning the oldest generation
// counts down only the documents its successor does not hold. (Stores
// written when bDocRefs counted generations are recounted at their next
// apply: kRefsByRun marks the new count.)
// refSize is the length of a content reference.
const refSize = 32

// kGenIndex is a generation's index of content references (after kGenMeta
// in key order; generations written before content addressing have their
// documents in the generation bucket itself and no index).
var kGenIndex = []byte{1}

type docRef = [refSize]byte

// refHasher computes content references; not safe for concurrent use.
type refHasher struct{ h hash.Hash }

func (s *sealer) refHasher() *refHasher { return &refHasher{h: hmac.New(sha256.New, s.name)} }

func (r *refHasher) ref(d *schema.Document) docRef {
	r.h.Reset()
	r.h.Write([]byte("doc\x00"))
	r.h.Write([]byte(d.Kind))
	r.h.Write([]byte{0})
	r.h.Write([]byte(d.ID))
	r.h.Write([]byte{0})
	r.h.Write(d.Hash[:])
	var out docRef
	r.h.Sum(out[:0])
	return out
}

// kRefsByRun, in bMeta, marks a store whose bDocRefs counts runs.
var kRefsByRun = []byte("docrefs-by-run")

// refsOf returns the content reference of each of docs, reusing those of
// the last applied generation: a document that is the one at the same
// place in the last docs (the same *schema.Document, as the validation
// cache hands out for an unchanged one) has its reference; the others are
// computed, or, when many moved, found by kind, id and hash. The caller
// holds applyMu.
func (s *Store) refsOf(docs []*schema.Document) []docRef {
	refs := make([]docRef, len(docs))
	var miss []int
	for i, d := range docs {
		if i < len(s.lastDocs) && s.lastDocs[i] == d {
			refs[i] = s.lastRefs[i]
		} else {
			miss = append(miss, i)
		}
	}
	var known map[refKey]docRef
	if len(miss) > refsMissMap {
		known = make(map[refKey]docRef, len(s.lastDocs))
		for i, d := range s.lastDocs {
			known[refKey{d.Kind, d.ID, d.Hash}] = s.lastRefs[i]
		}
	}
	var rh *refHasher
	for _, i := range miss {
		d := docs[i]
		r, ok := known[refKey{d.Kind, d.ID, d.Hash}]
		if !ok {
			if rh == nil {
				rh = s.seal.refHasher()
			}
			r = rh.ref(d)
		}
		refs[i] = r
	}
	s.lastDocs, s.lastRefs = slices.Clone(docs), refs
	return refs
}

// refsMissMap: with more documents than this not at their last place,
// refsOf looks the others up by content rather than computing an HMAC each.
const refsMissMap = 256

// refKey is what a content reference is computed from.
type refKey struct {
	kind, id string
	hash     [32]byte
}

// putRefs stores the documents of a new generation (refs, docs in the same
// order) that its predecessor (prev, its index) does not hold, and counts
// a run for each: only those are marshalled, sealed and written, and only
// when no kept generation holds them yet. The sealing runs on all cores
// (a first apply seals every document).
func (s *Store) putRefs(tx *bolt.Tx, refs []docRef, docs []*schema.Document, prev []docRef) error {
	db, rb := tx.Bucket(bDocs), tx.Bucket(bDocRefs)
	held := refSet(prev)
	var runs, fresh []int
	count := make([]uint32, len(refs))
	for i, ref := range refs {
		if !held[ref] {
			runs = append(runs, i)
		}
	}
	// In reference order, so that each Put into the shared buckets is an
	// append to bbolt's in-memory node rather than a memmove (100k
	// documents in random order took seconds).
	slices.SortFunc(runs, func(i, j int) int { return bytes.Compare(refs[i][:], refs[j][:]) })
	for _, i := range runs {
		ref := refs[i]
		if count[i] = refCount(rb.Get(ref[:])); count[i] == 0 {
			fresh = append(fresh, i)
		}
	}
	sealed, err := s.sealDocs(refs, docs, fresh)
	if err != nil {
		return err
	}
	if len(fresh) > len(prev) {
		// Mostly new documents (a first apply): the sorted Puts are
		// appends between few existing keys, and bbolt's default splits
		// each page at half, which wrote twice the pages (5,468 instead of
		// 3,608 for 10,000 policies). At 90 % a page of ~1 KB documents
		// keeps room for one more, so a later generation's few inserts do
		// not split it (TestFirstApplyFillsPages).
		db.FillPercent, rb.FillPercent = 0.9, 0.9
	}
	for _, i := range runs {
		ref := refs[i]
		if v := sealed[i]; v != nil {
			if err := db.Put(ref[:], v); err != nil {
				return err
			}
		}
		if err := rb.Put(ref[:], binary.BigEndian.AppendUint32(nil, count[i]+1)); err != nil {
			return err
		}
	}
	return nil
}

// sealDocs marshals and seals docs[i] under refs[i] for each i of which,
// on all cores; the answer is indexed like docs.
func (s *Store) sealDocs(refs []docRef, docs []*schema.Document, which []int) ([][]byte, error) {
	out := make([][]byte, len(docs))
	errs := make([]error, len(docs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (len(which)+63)/64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1) - 1); k < len(which); k = int(next.Add(1) - 1) {
				i := which[k]
				out[i], errs[i] = s.sealDoc(refs[i], docs[i])
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *Store) sealDoc(ref docRef, d *schema.Document) ([]byte, error) {
	spec, err := json.Marshal(d.Spec)
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", d.Key(), err)
	}
	plain := appendStored(make([]byte, 0, 64+len(d.Kind)+len(d.ID)+len(d.Raw)*4/3+len(spec)), d.Kind, d.ID, d.Raw, spec)
	return s.seal.seal(plain, ad(bDocs, ref[:])), nil
}

// dropRefs prunes the oldest kept generation (its index refs): a run of
// each of its documents that its successor (next) does not hold ends,
// and a document with no run left is deleted. The runs its successor
// continues now start there, and their counts stay.
func (s *Store) dropRefs(tx *bolt.Tx, refs, next []docRef) error {
	db, rb := tx.Bucket(bDocs), tx.Bucket(bDocRefs)
	held := refSet(next)
	for _, ref := range refs {
		if held[ref] {
			continue
		}
		switch n := refCount(rb.Get(ref[:])); n {
		case 0: // already gone: nothing to count down
		case 1:
			if err := db.Delete(ref[:]); err != nil {
				return err
			}
			if err := rb.Delete(ref[:]); err != nil {
				return err
			}
		default:
			if err := rb.Put(ref[:], binary.BigEndian.AppendUint32(nil, n-1)); err != nil {
				return err
			}
		}
	}
	return nil
}

func refSet(refs []docRef) map[docRef]bool {
	m := make(map[docRef]bool, len(refs))
	for _, r := range refs {
		m[r] = true
	}
	return m
}

// generationRefs reads the index of generation n; a generation that is not
// kept, or was written before content addressing, holds none.
func (s *Store) generationRefs(tx *bolt.Tx, n uint64) ([]docRef, error) {
	if n == 0 {
		return nil, nil
	}
	k := u64(n)
	gb := tx.Bucket(bDesired).Bucket(k)
	if gb == nil {
		return nil, nil
	}
	refs, _, err := s.readIndex(gb, k)
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	return refs, nil
}

// countByRun makes bDocRefs count runs (see above) if it does not yet: a
// store written when it counted generations is recounted from the kept
// generations' indexes, once, in the transaction of its next apply.
func (s *Store) countByRun(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if v := meta.Get(kRefsByRun); v != nil {
		if _, err := s.seal.open(v, kRefsByRun); err == nil {
			return nil
		}
	}
	runs := map[docRef]uint32{}
	var prev map[docRef]bool
	c := tx.Bucket(bDesired).Cursor()
	last := uint64(0)
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 8 {
			continue
		}
		g := binary.BigEndian.Uint64(k)
		refs, err := s.generationRefs(tx, g)
		if err != nil {
			return err
		}
		if g != last+1 {
			prev = nil // the oldest kept (generations are numbered without gaps)
		}
		for _, r := range refs {
			if !prev[r] {
				runs[r]++
			}
		}
		prev, last = refSet(refs), g
	}
	db, rb := tx.Bucket(bDocs), tx.Bucket(bDocRefs)
	var gone [][]byte
	if err := rb.ForEach(func(k, _ []byte) error {
		if len(k) == refSize && runs[docRef(k)] == 0 {
			gone = append(gone, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range gone {
		if err := db.Delete(k); err != nil {
			return err
		}
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	for r, n := range runs {
		if err := rb.Put(r[:], binary.BigEndian.AppendUint32(nil, n)); err != nil {
			return err
		}
	}
	return meta.Put(kRefsByRun, s.seal.seal([]byte("runs"), kRefsByRun))
}

func refCount(v []byte) uint32 {
	if len(v) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

// readIndex opens a generation's index; ok is false for a generation
// written before content addressing.
func (s *Store) readIndex(gb *bolt.Bucket, genKey []byte) (refs []docRef, ok bool, err error) {
	v := gb.Get(kGenIndex)
	if v == nil {
		return nil, false, nil
	}
	plain, err := s.seal.open(v, ad(genKey, kGenIndex))
	if err != nil {
		return nil, true, err
	}
	if len(plain)%refSize != 0 {
		return nil, true, ErrCorrupt
	}
	refs = make([]docRef, len(plain)/refSize)
	for i := range refs {
		copy(refs[i][:], plain[i*refSize:])
	}
	return refs, true, nil
}

func indexBytes(refs []docRef) []byte {
	out := make([]byte, 0, len(refs)*refSize)
	for _, r := range refs {
		out = append(out, r[:]...)
	}
	return out
}

// readDoc opens the document stored under ref.
func (s *Store) readDoc(tx *bolt.Tx, ref docRef) (*schema.Document, error) {
	v := tx.Bucket(bDocs).Get(ref[:])
	if v == nil {
		return nil, fmt.Errorf("document %x: %w", ref[:6], ErrCorrupt)
	}
	plain, err := s.seal.open(v, ad(bDocs, ref[:]))
	if err != nil {
		return nil, err
	}
	var st stored
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("document %x: %w", ref[:6], err)
	}
	return schema.Restore(st.Kind, st.ID, st.Raw, st.Spec)
}
