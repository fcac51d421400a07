package audit

import (
	"errors"
	"fmt"

	"warden/state"
)

// Txn extends the audit chain with events stored by another store
// transaction, so that a state change and the event that records it commit
// together: a generation is never committed without its BUNDLE_APPLIED.
// Begin holds the chain until End; the caller runs exactly one store
// transaction in between and must not Write meanwhile (Write would wait).
type Txn struct {
	w       *Writer
	seq     uint64
	prev    string
	evs     []Event
	entries []state.AuditEntry
	done    bool
}

// Begin starts a Txn. It fails with ErrClosed after Close.
func (w *Writer) Begin() (*Txn, error) {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	w.chainMu.Lock()
	return &Txn{w: w, seq: w.lastSeq, prev: w.lastHash}, nil
}

// Add numbers and seals e as the next event of the chain and returns the
// entry for the store transaction (state.Apply.Audit). Call it inside the
// transaction, once per event.
func (t *Txn) Add(e Event) state.AuditEntry {
	if e.Severity == "" {
		e.Severity = Info
	}
	t.seq++
	entry := t.w.seal(&e, t.seq, t.prev)
	t.prev = e.Hash
	t.evs = append(t.evs, e)
	t.entries = append(t.entries, entry)
	return entry
}

// Events returns the events added so far, as stored.
func (t *Txn) Events() []Event { return t.evs }

// End releases the chain. err is the store transaction's outcome: on nil
// the added events are the chain's newest and are published; otherwise
// they are forgotten. A store failure (not a refusal by the caller's own
// check, refused) counts against Health and is returned wrapping
// ErrUnavailable. End is idempotent.
func (t *Txn) End(err error, refused bool) error {
	if t.done {
		return err
	}
	t.done = true
	w := t.w
	if err == nil && len(t.evs) > 0 {
		w.lastSeq, w.lastHash = t.seq, t.prev
	}
	w.chainMu.Unlock()
	switch {
	case err == nil:
		if len(t.evs) > 0 {
			w.health.record(nil, w.now())
			w.published(t.evs)
		}
		return nil
	case refused || errors.Is(err, state.ErrClosed):
		return err
	default:
		w.health.record(err, w.now())
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}
