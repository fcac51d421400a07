package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

// Meta describes one generation of desired state.
type Meta struct {
	Generation    uint64    `json:"generation"`
	BundleVersion int64     `json:"bundleVersion"`
	Source        string    `json:"source"`
	AppliedAt     time.Time `json:"appliedAt"`
	Documents     int       `json:"documents"`
}

// Snapshot is one whole generation: read-only, consistent, and cheap to
// share. Docs are sorted by kind order, then id.
type Snapshot struct {
	Meta Meta
	Docs []*schema.Document
}

// Get returns the document kind/id, or nil (a binary search of Docs).
func (sn *Snapshot) Get(kind, id string) *schema.Document {
	key := &schema.Document{Kind: kind, ID: id}
	if i, found := slices.BinarySearchFunc(sn.Docs, key, byKindThenIDCmp); found {
		return sn.Docs[i]
	}
	return nil
}

// OfKind returns the documents of one kind, sorted by id.
func (sn *Snapshot) OfKind(kind string) []*schema.Document {
	lo, _ := slices.BinarySearchFunc(sn.Docs, &schema.Document{Kind: kind}, byKindThenIDCmp)
	hi := lo
	for hi < len(sn.Docs) && sn.Docs[hi].Kind == kind {
		hi++
	}
	if lo == hi {
		return nil
	}
	return slices.Clone(sn.Docs[lo:hi])
}

// Settings returns the Settings spec, or the defaults when none is applied.
func (sn *Snapshot) Settings() *schema.SettingsSpec {
	if d := sn.Get(schema.KindSettings, "agent"); d != nil {
		return d.Settings()
	}
	return schema.DefaultSettings()
}

// newSnapshot is the snapshot of docs (any order; each kind and id once).
func newSnapshot(m Meta, docs []*schema.Document) *Snapshot {
	return sortedSnapshot(m, byKindThenID(docs))
}

// sortedSnapshot is the snapshot of docs sorted by byKindThenID.
func sortedSnapshot(m Meta, docs []*schema.Document) *Snapshot {
	sn := &Snapshot{Meta: m, Docs: docs}
	sn.Meta.Documents = len(docs)
	return sn
}

// sortedOf returns docs sorted by byKindThenID, refusing a kind and id
// held twice. When docs are the last applied documents (s.lastDocs) but
// for a few replaced by documents of the same kinds and ids at the same
// places, the last order is reused with those few put in their places,
// without reading the others (10,000 documents scattered in memory). The
// caller holds applyMu; refsOf moves lastDocs on after it.
func (s *Store) sortedOf(docs []*schema.Document) ([]*schema.Document, error) {
	if len(docs) == len(s.lastDocs) && len(s.lastSorted) == len(docs) {
		sorted := slices.Clone(s.lastSorted)
		same := true
		for i, d := range docs {
			if p := s.lastDocs[i]; d != p {
				if d.Kind != p.Kind || d.ID != p.ID {
					same = false
					break
				}
				sorted[s.lastPlace[i]] = d
			}
		}
		if same {
			s.lastSorted = sorted
			return sorted, nil
		}
	}
	sorted := byKindThenID(docs)
	for i := 1; i < len(sorted); i++ {
		if d := sorted[i]; d.Kind == sorted[i-1].Kind && d.ID == sorted[i-1].ID {
			return nil, fmt.Errorf("apply: %s appears twice", d.Key())
		}
	}
	at := make(map[*schema.Document]int, len(sorted))
	for j, d := range sorted {
		at[d] = j
	}
	place := make([]int, len(docs))
	for i, d := range docs {
		place[i] = at[d]
	}
	s.lastSorted, s.lastPlace = sorted, place
	return sorted, nil
}

// byKindThenID returns docs (a new slice) sorted by kind order, then id
// (byKindThenIDCmp): grouped by kind in one pass, and each group sorted
// only if it is not already (a bundle's documents come in path order,
// sorted by id within each folder).
func byKindThenID(docs []*schema.Document) []*schema.Document {
	groups := make([][]*schema.Document, len(schema.Kinds)+1)
	for _, d := range docs {
		r := kindRank(d.Kind)
		groups[r] = append(groups[r], d)
	}
	out := make([]*schema.Document, 0, len(docs))
	for _, g := range groups {
		if !slices.IsSortedFunc(g, byKindThenIDCmp) {
			slices.SortFunc(g, byKindThenIDCmp)
		}
		out = append(out, g...)
	}
	return out
}

// byKindThenIDCmp orders documents by kind order (unknown kinds last, by
// name), then id.
func byKindThenIDCmp(a, b *schema.Document) int {
	if a.Kind != b.Kind {
		if ra, rb := kindRank(a.Kind), kindRank(b.Kind); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Kind, b.Kind)
	}
	return strings.Compare(a.ID, b.ID)
}

// kindRank is a kind's place in schema.Kinds (unknown kinds last).
func kindRank(kind string) int {
	for i, k := range schema.Kinds {
		if k == kind {
			return i
		}
	}
	return len(schema.Kinds)
}

// Apply is a new generation of desired state.
type Apply struct {
	BundleVersion int64
	Source        string // "bundle:NAME", "backend", "local"
	Docs          []*schema.Document
	// Check, when set, runs inside the write transaction with the current
	// generation's meta; an error aborts the apply. Sources use it to refuse
	// rollbacks atomically.
	Check func(current Meta) error
	// Audit, when set, runs inside the write transaction with the new
	// generation's meta and returns the audit events that record the
	// apply (audit.Txn); they are stored in the same transaction, so the
	// generation commits if and only if its events do.
	Audit func(next Meta) []AuditEntry
}

// stored is a document as it sits (encrypted) in the desired bucket.
type stored struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Raw is []byte (base64 in JSON), not json.RawMessage: Marshal compacts
	// a RawMessage, and the document must come back byte for byte, or its
	// hash (which drift checks and bundles compare) would change on restart.
	Raw  []byte          `json:"raw"`
	Spec json.RawMessage `json:"spec"`
}

var kGenMeta = []byte{0} // sorts before kGenIndex (and the 16-byte document keys of old generations)

// ApplyGeneration replaces the whole desired state with a.Docs as the next
// generation, in one transaction: a crash leaves either the old or the new
// generation, never a mix. Documents a kept generation already holds are
// shared, not written again (docs.go). Generations beyond the last
// KeepGenerations are dropped. Subscribers are told after the commit.
func (s *Store) ApplyGeneration(a Apply) (Meta, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	sorted, err := s.sortedOf(a.Docs)
	if err != nil {
		return Meta{}, err
	}
	docs := a.Docs
	refs := s.refsOf(docs)
	var m Meta
	var auditEntries []AuditEntry
	err = s.update(func(tx *bolt.Tx) error {
		cur, err := readCurrent(tx, s.seal)
		if err != nil {
			return err
		}
		if a.Check != nil {
			if err := a.Check(cur); err != nil {
				return err
			}
		}
		m = Meta{Generation: cur.Generation + 1, BundleVersion: a.BundleVersion, Source: a.Source,
			AppliedAt: time.Now().UTC(), Documents: len(a.Docs)}
		genKey := u64(m.Generation)
		if err := s.countByRun(tx); err != nil {
			return err
		}
		prev, err := s.generationRefs(tx, cur.Generation)
		if err != nil {
			return err
		}
		gb, err := tx.Bucket(bDesired).CreateBucket(genKey)
		if err != nil {
			return fmt.Errorf("generation %d: %w", m.Generation, err)
		}
		if err := s.putRefs(tx, refs, docs, prev); err != nil {
			return err
		}
		if err := gb.Put(kGenIndex, s.seal.seal(indexBytes(refs), ad(genKey, kGenIndex))); err != nil {
			return err
		}
		mj, _ := json.Marshal(m)
		if err := gb.Put(kGenMeta, s.seal.seal(mj, ad(genKey, kGenMeta))); err != nil {
			return err
		}
		if err := tx.Bucket(bMeta).Put(kCurrent, s.seal.seal(mj, kCurrent)); err != nil {
			return err
		}
		if a.Audit != nil {
			auditEntries = a.Audit(m)
			if err := s.appendAudit(tx, auditEntries); err != nil {
				return err
			}
		}
		return s.pruneGenerations(tx, m.Generation)
	})
	if err != nil {
		return Meta{}, err
	}
	s.cp.advance(func(c *Checkpoint) { c.Generation, c.BundleVersion = m.Generation, m.BundleVersion })
	s.advanceAudit(auditEntries)
	s.current.Store(sortedSnapshot(m, sorted))
	s.notify(m.Generation)
	return m, nil
}

func (s *Store) pruneGenerations(tx *bolt.Tx, newest uint64) error {
	if newest <= uint64(s.keep) {
		return nil
	}
	oldestKept := newest - uint64(s.keep) + 1
	b := tx.Bucket(bDesired)
	var drop [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 8 && binary.BigEndian.Uint64(k) < oldestKept {
			drop = append(drop, append([]byte(nil), k...))
		}
	}
	for _, k := range drop {
		if gb := b.Bucket(k); gb != nil {
			g := binary.BigEndian.Uint64(k)
			refs, _, err := s.readIndex(gb, k)
			if err != nil {
				return fmt.Errorf("prune generation %d: %w", g, err)
			}
			// Its successor is kept, or pruned next in this loop (drop is
			// in ascending order): either way it now starts the runs it
			// continues.
			next, err := s.generationRefs(tx, g+1)
			if err != nil {
				return fmt.Errorf("prune generation %d: %w", g, err)
			}
			if err := s.dropRefs(tx, refs, next); err != nil {
				return err
			}
		}
		if err := b.DeleteBucket(k); err != nil {
			return err
		}
	}
	return nil
}

func readCurrent(tx *bolt.Tx, sl *sealer) (Meta, error) {
	var m Meta
	v := tx.Bucket(bMeta).Get(kCurrent)
	if v == nil {
		return m, nil
	}
	plain, err := sl.open(v, kCurrent)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(plain, &m)
}

// Current returns the applied generation. Before any apply it is
// generation 0 with no documents. It never touches the disk.
func (s *Store) Current() *Snapshot { return s.current.Load() }

func (s *Store) loadCurrent() error {
	var sn *Snapshot
	err := s.view(func(tx *bolt.Tx) error {
		m, err := readCurrent(tx, s.seal)
		if err != nil {
			return err
		}
		if m.Generation == 0 {
			sn = newSnapshot(m, nil)
			return nil
		}
		sn, err = s.readGeneration(tx, m.Generation)
		return err
	})
	if err != nil {
		return err
	}
	s.current.Store(sn)
	return nil
}

// Generation reads a kept generation.
func (s *Store) Generation(n uint64) (*Snapshot, error) {
	var sn *Snapshot
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		sn, err = s.readGeneration(tx, n)
		return err
	})
	return sn, err
}

func (s *Store) readGeneration(tx *bolt.Tx, n uint64) (*Snapshot, error) {
	genKey := u64(n)
	gb := tx.Bucket(bDesired).Bucket(genKey)
	if gb == nil {
		return nil, fmt.Errorf("generation %d: %w", n, ErrNotFound)
	}
	var m Meta
	plain, err := s.seal.open(gb.Get(kGenMeta), ad(genKey, kGenMeta))
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	refs, indexed, err := s.readIndex(gb, genKey)
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	var docs []*schema.Document
	if indexed {
		docs = make([]*schema.Document, 0, len(refs))
		for _, ref := range refs {
			d, err := s.readDoc(tx, ref)
			if err != nil {
				return nil, fmt.Errorf("generation %d: %w", n, err)
			}
			docs = append(docs, d)
		}
		return newSnapshot(m, docs), nil
	}
	// A generation written before content addressing: its documents
	// are in its own bucket.
	err = gb.ForEach(func(k, v []byte) error {
		if len(k) == 1 {
			return nil // kGenMeta
		}
		plain, err := s.seal.open(v, ad(genKey, k))
		if err != nil {
			return fmt.Errorf("generation %d: %w", n, err)
		}
		var st stored
		if err := json.Unmarshal(plain, &st); err != nil {
			return fmt.Errorf("generation %d: %w", n, err)
		}
		d, err := schema.Restore(st.Kind, st.ID, st.Raw, st.Spec)
		if err != nil {
			return err
		}
		docs = append(docs, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return newSnapshot(m, docs), nil
}

// Generations lists the kept generations, newest first.
func (s *Store) Generations() ([]Meta, error) {
	var out []Meta
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bDesired).Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			gb := tx.Bucket(bDesired).Bucket(k)
			if gb == nil {
				continue
			}
			plain, err := s.seal.open(gb.Get(kGenMeta), ad(k, kGenMeta))
			if err != nil {
				return err
			}
			var m Meta
			if err := json.Unmarshal(plain, &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Subscribe returns a channel that receives the generation number after
// each committed ApplyGeneration. Notifications coalesce: a slow reader sees
// the newest generation, not every one. cancel stops the subscription.
func (s *Store) Subscribe() (ch <-chan uint64, cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan uint64, 1)
	if s.closed {
		close(c)
		return c, func() {}
	}
	id := s.nextID
	s.nextID++
	s.subs[id] = c
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[id]; ok {
			delete(s.subs, id)
			close(c)
		}
	}
}

func (s *Store) notify(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.subs {
		select {
		case c <- gen:
		default:
			// Replace the stale pending value with the newest one.
			select {
			case <-c:
			default:
			}
			c <- gen
		}
	}
}
