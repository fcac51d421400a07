package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"warden/state"
)

// maxBatch bounds how many events share one transaction and fsync.
const maxBatch = 4096

// Errors a caller can test for.
var (
	// ErrClosed is returned by Write after Close.
	ErrClosed = errors.New("audit writer closed")
	// ErrUnavailable wraps a store failure (disk full, I/O error): the event
	// was not stored, and an action that must be audited must not happen.
	ErrUnavailable = errors.New("audit unavailable: the event could not be stored")
)

// Publisher receives every event after it is stored. Publish must not
// block for long: it runs on the writer's goroutine, after the commit.
type Publisher interface {
	Publish(Event)
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(Event)

// Publish calls f(e).
func (f PublisherFunc) Publish(e Event) { f(e) }

type request struct {
	ev   Event
	done chan result
}

type result struct {
	ev  Event
	err error
}

// Writer is the single way an audit event is recorded. Write returns once
// the event is durable; concurrent writers share one fsync (group commit).
// Events are numbered and chained (prev_hash, hash) in the order they are
// stored. A Writer is safe for concurrent use.
//
// A failure to store is never silent: Write and Record return an error
// wrapping ErrUnavailable, the writer counts it and reports itself
// unhealthy (Health) until an event is stored again. Callers whose action
// must be audited record first and act only on success (fail closed).
type Writer struct {
	store   *state.Store
	machine string
	now     func() time.Time
	reqs    chan request
	stop    chan struct{}
	stopped chan struct{}

	// chainMu guards lastSeq and lastHash: the writer's loop and a Txn
	// (an event committed in another store transaction) both extend the
	// chain. Lock order: chainMu before any store transaction.
	chainMu  sync.Mutex
	lastSeq  uint64
	lastHash string

	health health

	sendMu     sync.RWMutex
	sendClosed bool

	mu      sync.Mutex
	closed  bool
	pubs    []Publisher
	subs    map[int]*subscriber
	nextSub int
}

// Options configures a Writer.
type Options struct {
	Machine string           // host name recorded in events (default os.Hostname)
	Now     func() time.Time // clock (default time.Now)
}

// NewWriter starts a writer on store, continuing the chain from the last
// stored event.
func NewWriter(store *state.Store, opts Options) (*Writer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Machine == "" {
		opts.Machine, _ = os.Hostname()
	}
	w := &Writer{store: store, machine: opts.Machine, now: opts.Now,
		reqs: make(chan request, maxBatch), stop: make(chan struct{}), stopped: make(chan struct{}),
		subs: map[int]*subscriber{}}
	last, ok, err := store.LastAudit()
	if err != nil {
		return nil, fmt.Errorf("audit: read last event: %w", err)
	}
	if ok {
		var e Event
		if err := json.Unmarshal(last.Data, &e); err != nil {
			return nil, fmt.Errorf("audit: last event %d: %w", last.Seq, err)
		}
		w.lastSeq, w.lastHash = last.Seq, e.Hash
	} else if anchor, err := store.AuditAnchor(); err == nil && anchor != nil {
		var a anchorRecord
		if json.Unmarshal(anchor, &a) == nil {
			w.lastSeq, w.lastHash = a.Seq, a.Hash
		}
	}
	go w.loop()
	return w, nil
}

// AddPublisher registers p to receive every event stored from now on.
// Publish runs on the writer's goroutine and must not block; a consumer
// that must see every event uses Subscribe instead.
func (w *Writer) AddPublisher(p Publisher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pubs = append(w.pubs, p)
}

// Write records e and returns it as stored (with id, seq, time and hashes).
// When it returns nil the event is on disk. When the store refuses the
// write (disk full, I/O error) the error wraps ErrUnavailable. Missing
// severity defaults to info.
func (w *Writer) Write(ctx context.Context, e Event) (Event, error) {
	if e.Severity == "" {
		e.Severity = Info
	}
	done := make(chan result, 1)
	// sendMu makes "queued" and "closed" exclusive: an event queued before
	// Close is stored by the loop's final drain; after Close nothing is
	// queued that no one would store.
	w.sendMu.RLock()
	if w.sendClosed {
		w.sendMu.RUnlock()
		return Event{}, ErrClosed
	}
	select {
	case w.reqs <- request{ev: e, done: done}:
		w.sendMu.RUnlock()
	case <-ctx.Done():
		w.sendMu.RUnlock()
		return Event{}, ctx.Err()
	}
	// Once queued the event will be stored; wait for it even if ctx ends,
	// so a caller never believes an event was lost that was not.
	r := <-done
	return r.ev, r.err
}

// Record stores e and returns nil once it is durable: the call for an
// action that must not happen unaudited. It shares the group commit with
// every other writer. Its error wraps ErrUnavailable (the store refused
// the write) or is ErrClosed.
func (w *Writer) Record(e Event) error {
	_, err := w.Write(context.Background(), e)
	return err
}

// Emit is Write for events whose loss does not undo anything (the action
// already happened, or nothing was done): a failure is logged and counted
// in Health, never returned.
func (w *Writer) Emit(e Event) {
	if _, err := w.Write(context.Background(), e); err != nil && !errors.Is(err, ErrClosed) {
		fmt.Fprintf(os.Stderr, "audit: %s not recorded: %v\n", e.Type, err)
	}
}

// Close stores what is queued and stops the writer. Subscriptions end:
// their channels close.
func (w *Writer) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	w.sendMu.Lock()
	w.sendClosed = true
	w.sendMu.Unlock()
	close(w.stop)
	<-w.stopped
	w.mu.Lock()
	subs := w.subs
	w.subs = map[int]*subscriber{}
	w.mu.Unlock()
	for _, s := range subs {
		s.cancel()
	}
}

func (w *Writer) loop() {
	defer close(w.stopped)
	batch := make([]request, 0, maxBatch)
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		case <-w.stop:
			for {
				select {
				case r := <-w.reqs:
					w.commit([]request{r})
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		w.commit(batch)
	}
}

// seal numbers, chains and seals e after seq/prev, and returns its entry.
func (w *Writer) seal(e *Event, seq uint64, prev string) state.AuditEntry {
	e.Seq = seq
	e.ID = newID()
	e.Time = w.now().UTC()
	e.Machine = w.machine
	e.PrevHash = prev
	data := e.seal()
	e.Raw = data
	return state.AuditEntry{Seq: seq, Data: data, Hash: e.Hash}
}

// commit numbers, chains and stores one batch, then answers and publishes.
func (w *Writer) commit(batch []request) {
	w.chainMu.Lock()
	seq, prev := w.lastSeq, w.lastHash
	entries := make([]state.AuditEntry, len(batch))
	for i := range batch {
		seq++
		entries[i] = w.seal(&batch[i].ev, seq, prev)
		prev = batch[i].ev.Hash
	}
	err := w.store.AppendAudit(entries)
	if err == nil {
		w.lastSeq, w.lastHash = seq, prev
	}
	w.chainMu.Unlock()
	w.health.record(err, w.now())
	if err != nil && !errors.Is(err, state.ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, r := range batch {
		r.done <- result{ev: r.ev, err: err}
	}
	if err != nil {
		return
	}
	evs := make([]Event, len(batch))
	for i, r := range batch {
		evs[i] = r.ev
	}
	w.published(evs)
}

// published hands stored events to subscribers and publishers.
func (w *Writer) published(evs []Event) {
	w.mu.Lock()
	pubs := append([]Publisher(nil), w.pubs...)
	for _, s := range w.subs {
		s.offer(evs)
	}
	w.mu.Unlock()
	for _, e := range evs {
		for _, p := range pubs {
			p.Publish(e)
		}
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
