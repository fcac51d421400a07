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

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit writer closed")

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
type Writer struct {
	store   *state.Store
	machine string
	now     func() time.Time
	reqs    chan request
	stop    chan struct{}
	stopped chan struct{}

	lastSeq  uint64
	lastHash string

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
func (w *Writer) AddPublisher(p Publisher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pubs = append(w.pubs, p)
}

// Write records e and returns it as stored (with id, seq, time and hashes).
// When it returns nil the event is on disk. Missing severity defaults to
// info.
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

// Emit is Write for callers that only log a failure to audit.
func (w *Writer) Emit(e Event) {
	if _, err := w.Write(context.Background(), e); err != nil && !errors.Is(err, ErrClosed) {
		fmt.Fprintf(os.Stderr, "audit: %s not recorded: %v\n", e.Type, err)
	}
}

// Close stores what is queued and stops the writer.
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
	for id, s := range w.subs {
		close(s.ch)
		delete(w.subs, id)
	}
	w.mu.Unlock()
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

// commit numbers, chains and stores one batch, then answers and publishes.
func (w *Writer) commit(batch []request) {
	seq, prev := w.lastSeq, w.lastHash
	entries := make([]state.AuditEntry, len(batch))
	for i := range batch {
		e := &batch[i].ev
		seq++
		e.Seq = seq
		e.ID = newID()
		e.Time = w.now().UTC()
		e.Machine = w.machine
		e.PrevHash = prev
		data := e.seal()
		prev = e.Hash
		e.Raw = data
		entries[i] = state.AuditEntry{Seq: seq, Data: data}
	}
	err := w.store.AppendAudit(entries)
	if err == nil {
		w.lastSeq, w.lastHash = seq, prev
	}
	for _, r := range batch {
		r.done <- result{ev: r.ev, err: err}
	}
	if err != nil {
		return
	}
	w.mu.Lock()
	pubs := append([]Publisher(nil), w.pubs...)
	for _, r := range batch {
		for _, s := range w.subs {
			s.offer(r.ev)
		}
	}
	w.mu.Unlock()
	for _, r := range batch {
		for _, p := range pubs {
			p.Publish(r.ev)
		}
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type subscriber struct {
	ch      chan Event
	types   map[string]bool
	dropped uint64
}

func (s *subscriber) offer(e Event) {
	if len(s.types) > 0 && !s.types[e.Type] {
		return
	}
	select {
	case s.ch <- e:
	default:
		s.dropped++ // a slow subscriber never stalls the writer
	}
}

// Subscribe returns events stored from now on, of the given types (all when
// none are given). The channel holds 1024 events; a subscriber that falls
// further behind misses events rather than slowing the writer, and reads
// the history from the store. cancel ends the subscription.
func (w *Writer) Subscribe(types ...string) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, 1024), types: map[string]bool{}}
	for _, t := range types {
		s.types[t] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		close(s.ch)
		return s.ch, func() {}
	}
	id := w.nextSub
	w.nextSub++
	w.subs[id] = s
	return s.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[id]; ok {
			delete(w.subs, id)
			close(s.ch)
		}
	}
}
