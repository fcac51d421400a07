package state

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"

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
// bDocRefs counts the kept generations whose index names a document; the
// document goes when the last of them is pruned.

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

// putRefs stores the documents a new generation names and counts the
// generation as one more user of each. Only a document no kept generation
// holds yet is marshalled, sealed and written.
func (s *Store) putRefs(tx *bolt.Tx, refs []docRef, docs []*schema.Document) error {
	db, rb := tx.Bucket(bDocs), tx.Bucket(bDocRefs)
	for i, ref := range refs {
		n := refCount(rb.Get(ref[:]))
		if n == 0 {
			d := docs[i]
			spec, err := json.Marshal(d.Spec)
			if err != nil {
				return fmt.Errorf("apply %s: %w", d.Key(), err)
			}
			plain, err := json.Marshal(stored{Kind: d.Kind, ID: d.ID, Raw: d.Raw, Spec: spec})
			if err != nil {
				return fmt.Errorf("apply %s: %w", d.Key(), err)
			}
			if err := db.Put(ref[:], s.seal.seal(plain, ad(bDocs, ref[:]))); err != nil {
				return err
			}
		}
		if err := rb.Put(ref[:], binary.BigEndian.AppendUint32(nil, n+1)); err != nil {
			return err
		}
	}
	return nil
}

// dropRefs counts a pruned generation out of every document it named,
// deleting the documents no kept generation holds any more.
func (s *Store) dropRefs(tx *bolt.Tx, refs []docRef) error {
	db, rb := tx.Bucket(bDocs), tx.Bucket(bDocRefs)
	for _, ref := range refs {
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
