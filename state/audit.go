package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AuditEntry is one stored audit event: its sequence number and its
// canonical JSON. The audit package owns the event format and the hash
// chain; the store keeps the bytes durable and in order.
type AuditEntry struct {
	Seq  uint64
	Data []byte
	// Hash is the event's chain hash, recorded in the checkpoint when the
	// entry is the newest (set by the writer; not stored separately).
	Hash string
}

// AppendAudit stores entries in one transaction (one fsync for the whole
// batch: the audit writer's group commit). Sequence numbers are the
// caller's (the audit writer is the only appender and chains events by
// them) and must be above every stored one. When it returns nil, the
// entries are on disk.
func (s *Store) AppendAudit(entries []AuditEntry) error {
	if err := s.update(func(tx *bolt.Tx) error { return s.appendAudit(tx, entries) }); err != nil {
		return err
	}
	s.advanceAudit(entries)
	return nil
}

// advanceAudit records committed entries in the checkpoint.
func (s *Store) advanceAudit(entries []AuditEntry) {
	if len(entries) == 0 {
		return
	}
	last := entries[len(entries)-1]
	s.cp.advance(func(c *Checkpoint) { c.AuditSeq, c.AuditHash = last.Seq, last.Hash })
}

// newestAuditSeq is the sequence number of the newest event ever stored:
// the last one, or the retention anchor when every event was pruned.
func (s *Store) newestAuditSeq() (uint64, error) {
	last, ok, err := s.LastAudit()
	if err != nil || ok {
		return last.Seq, err
	}
	raw, err := s.AuditAnchor()
	if err != nil || raw == nil {
		return 0, err
	}
	var a struct {
		Seq uint64 `json:"seq"` // the audit package's anchor record
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return 0, fmt.Errorf("audit anchor: %w", err)
	}
	return a.Seq, nil
}

func (s *Store) appendAudit(tx *bolt.Tx, entries []AuditEntry) error {
	b := tx.Bucket(bAudit)
	b.FillPercent = 1.0 // append-only: pack pages full
	last, _ := b.Cursor().Last()
	for _, e := range entries {
		if last != nil && e.Seq <= binary.BigEndian.Uint64(last) {
			return fmt.Errorf("audit: sequence %d not above %d", e.Seq, binary.BigEndian.Uint64(last))
		}
		k := u64(e.Seq)
		if err := b.Put(k, s.seal.seal(e.Data, ad(bAudit, k))); err != nil {
			return err
		}
		last = k
	}
	return nil
}

// AuditScan calls fn for events with sequence numbers from `from` on, in
// order, until fn returns false. reverse walks from the newest down to
// `from`.
func (s *Store) AuditScan(from uint64, reverse bool, fn func(AuditEntry) bool) error {
	return s.view(func(tx *bolt.Tx) error { return s.scanAudit(tx, from, reverse, fn) })
}

// AuditWalk passes the anchor (as AuditAnchor returns it) to anchor, then
// every stored event, oldest first, to fn until it returns false, all in
// one read transaction: a prune committed meanwhile cannot put the anchor
// and the events out of step (the audit chain verifier needs both).
func (s *Store) AuditWalk(anchor func([]byte) error, fn func(AuditEntry) bool) error {
	return s.view(func(tx *bolt.Tx) error {
		a, err := s.anchorTx(tx)
		if err != nil {
			return err
		}
		if err := anchor(a); err != nil {
			return err
		}
		return s.scanAudit(tx, 0, false, fn)
	})
}

func (s *Store) scanAudit(tx *bolt.Tx, from uint64, reverse bool, fn func(AuditEntry) bool) error {
	c := tx.Bucket(bAudit).Cursor()
	var k, v []byte
	if reverse {
		k, v = c.Last()
	} else {
		k, v = c.Seek(u64(from))
	}
	for ; k != nil; k, v = step(c, reverse) {
		seq := binary.BigEndian.Uint64(k)
		if reverse && seq < from {
			return nil
		}
		plain, err := s.seal.open(v, ad(bAudit, k))
		if err != nil {
			return err
		}
		if !fn(AuditEntry{Seq: seq, Data: plain}) {
			return nil
		}
	}
	return nil
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

// LastAudit returns the newest stored event, or ok=false when there is none.
func (s *Store) LastAudit() (e AuditEntry, ok bool, err error) {
	err = s.AuditScan(0, true, func(a AuditEntry) bool {
		e, ok = a, true
		return false
	})
	return e, ok, err
}

// PruneAudit deletes events with sequence numbers below `before` and, in the
// same transaction, stores anchor: the hash of the last deleted event, from
// which verification of the remaining chain starts.
func (s *Store) PruneAudit(before uint64, anchor []byte) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAudit)
		c := b.Cursor()
		// Re-seek after each delete: a bbolt cursor's Next after Delete can
		// skip an entry.
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < before; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return tx.Bucket(bMeta).Put(kAnchor, s.seal.seal(anchor, kAnchor))
	})
	return n, err
}

// AuditAnchor returns the anchor stored by the last PruneAudit, or nil.
func (s *Store) AuditAnchor() ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = s.anchorTx(tx)
		return err
	})
	return out, err
}

func (s *Store) anchorTx(tx *bolt.Tx) ([]byte, error) {
	v := tx.Bucket(bMeta).Get(kAnchor)
	if v == nil {
		return nil, nil
	}
	return s.seal.open(v, kAnchor)
}
