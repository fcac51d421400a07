package audit

import (
	"encoding/json"
	"fmt"
	"time"

	"warden/state"
)

// BreakError says where the audit chain is broken.
type BreakError struct {
	Seq    uint64
	Reason string
}

func (b *BreakError) Error() string {
	return fmt.Sprintf("audit chain broken at event %d: %s", b.Seq, b.Reason)
}

type anchorRecord struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Verify walks the whole stored chain from the retention anchor and returns
// how many events it checked and the first break (a *BreakError), if any.
// It reads the anchor and the events as one snapshot, so it can run while
// the agent writes and prunes. The chain must also reach the event the
// store's checkpoint file records, with the same hash: deleting the newest
// events (truncating the chain) is a break.
func Verify(store *state.Store) (int, error) {
	// The checkpoint is read first: it is written after each commit, so
	// the snapshot read next is never behind it.
	cp, hasCP, err := store.SavedCheckpoint()
	if err != nil {
		return 0, err
	}
	var prev string
	var prevSeq uint64
	anchored := false // the anchor was read: a later error is in the events
	anchor := func(raw []byte) error {
		if raw != nil {
			var a anchorRecord
			if err := json.Unmarshal(raw, &a); err != nil {
				return fmt.Errorf("audit anchor: %w", err)
			}
			prev, prevSeq = a.Hash, a.Seq
		}
		anchored = true
		return nil
	}
	n := 0
	var brk error
	err = store.AuditWalk(anchor, func(a state.AuditEntry) bool {
		var e Event
		if err := json.Unmarshal(a.Data, &e); err != nil {
			brk = &BreakError{Seq: a.Seq, Reason: "unreadable: " + err.Error()}
			return false
		}
		switch {
		case e.Seq != a.Seq:
			brk = &BreakError{Seq: a.Seq, Reason: fmt.Sprintf("stored under %d but numbered %d", a.Seq, e.Seq)}
		case a.Seq != prevSeq+1:
			brk = &BreakError{Seq: a.Seq, Reason: fmt.Sprintf("events %d to %d are missing", prevSeq+1, a.Seq-1)}
		case e.PrevHash != prev:
			brk = &BreakError{Seq: a.Seq, Reason: "prev_hash does not match the event before"}
		case e.computeHash() != e.Hash:
			brk = &BreakError{Seq: a.Seq, Reason: "hash does not match the event's content (edited)"}
		case hasCP && a.Seq == cp.AuditSeq && cp.AuditHash != "" && e.Hash != cp.AuditHash:
			brk = &BreakError{Seq: a.Seq, Reason: "differs from the event " + state.CheckpointFile + " records (replaced)"}
		}
		if brk != nil {
			return false
		}
		prev, prevSeq = e.Hash, e.Seq
		n++
		return true
	})
	if err != nil {
		if !anchored {
			return 0, err
		}
		// A value that fails decryption was edited in the file.
		return n, &BreakError{Seq: prevSeq + 1, Reason: err.Error()}
	}
	if brk == nil && hasCP && prevSeq < cp.AuditSeq {
		brk = &BreakError{Seq: prevSeq + 1, Reason: fmt.Sprintf("events %d to %d are missing: the chain ends before the event %s records (truncated)",
			prevSeq+1, cp.AuditSeq, state.CheckpointFile)}
	}
	return n, brk
}

// Prune deletes events older than cutoff, keeping the hash of the last
// deleted one as the anchor so the remaining chain still verifies.
func Prune(store *state.Store, cutoff time.Time) (int, error) {
	var last *Event
	err := store.AuditScan(0, false, func(a state.AuditEntry) bool {
		var e Event
		if json.Unmarshal(a.Data, &e) != nil || !e.Time.Before(cutoff) {
			return false
		}
		last = &e
		return true
	})
	if err != nil || last == nil {
		return 0, err
	}
	anchor, _ := json.Marshal(anchorRecord{Seq: last.Seq, Hash: last.Hash})
	return store.PruneAudit(last.Seq+1, anchor)
}
