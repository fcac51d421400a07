package audit

import (
	"encoding/json"
	"sync"

	"warden/state"
)

// subPending bounds the events a subscription holds in memory. Past it the
// subscription stops holding events and reads them back from the store by
// sequence number when its reader catches up: a slow reader costs store
// reads, never a lost event, and never slows the writer.
const subPending = 1024

// subBuffer is the room in a subscription's channel. Its goroutine hands
// over what is pending without waiting for the reader to take each event
// (an unbuffered channel costs two goroutine switches per event and
// subscriber, on the decision path's CPU), and a reader takes a burst
// without parking between events.
const subBuffer = 256

// subscriber is one Subscribe. The writer offers it every stored event;
// its own goroutine delivers them in sequence order.
type subscriber struct {
	w     *Writer
	out   chan Event
	types map[string]bool
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	pending []Event
	lost    bool   // pending overflowed: read the store up to through
	through uint64 // highest sequence number offered, of any type
}

func (s *subscriber) match(e Event) bool { return len(s.types) == 0 || s.types[e.Type] }

// offer takes stored events (in sequence order). It never blocks.
func (s *subscriber) offer(evs []Event) {
	s.mu.Lock()
	for _, e := range evs {
		s.through = e.Seq
		if s.lost || !s.match(e) {
			continue
		}
		if len(s.pending) >= subPending {
			s.lost, s.pending = true, nil
			continue
		}
		s.pending = append(s.pending, e)
	}
	s.mu.Unlock()
	s.poke()
}

func (s *subscriber) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) cancel() { s.once.Do(func() { close(s.done) }) }

// run delivers events from next on until cancelled (or the writer closed).
func (s *subscriber) run(next uint64) {
	defer close(s.out)
	// Two buffers take turns: offer fills one while this goroutine hands
	// over the other, so a steady stream allocates nothing here.
	var spare []Event
	for {
		s.mu.Lock()
		lost, through, evs := s.lost, s.through, s.pending
		s.lost, s.pending = false, spare
		s.mu.Unlock()
		if lost {
			if !s.catchUp(next, through) {
				return
			}
			next = through + 1
		}
		for _, e := range evs {
			if e.Seq < next {
				continue
			}
			if !s.send(e) {
				return
			}
			next = e.Seq + 1
		}
		clear(evs) // no references kept to delivered events
		spare = evs[:0]
		if lost || len(evs) > 0 {
			continue
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// catchUp reads events from..through from the store and delivers those
// that match.
func (s *subscriber) catchUp(from, through uint64) bool {
	for from <= through {
		var page []Event
		err := s.w.store.AuditScan(from, false, func(a state.AuditEntry) bool {
			if a.Seq > through || len(page) == 256 {
				return false
			}
			var e Event
			if json.Unmarshal(a.Data, &e) == nil {
				e.Raw = append(json.RawMessage(nil), a.Data...)
				page = append(page, e)
			}
			from = a.Seq + 1
			return true
		})
		if err != nil || len(page) == 0 && from <= through {
			// The store is closed or the events were pruned meanwhile:
			// nothing more can be read.
			return err == nil
		}
		for _, e := range page {
			if s.match(e) && !s.send(e) {
				return false
			}
		}
	}
	return true
}

func (s *subscriber) send(e Event) bool {
	select {
	case s.out <- e:
		return true
	case <-s.done:
		return false
	}
}

// Subscribe returns every event stored from now on, of the given types
// (all when none are given), in sequence order, without loss: a reader
// that falls behind is caught up from the store by sequence number, so a
// burst of one type cannot push out another. The writer never waits for a
// subscriber. The channel closes after cancel or Close.
func (w *Writer) Subscribe(types ...string) (<-chan Event, func()) {
	return w.subscribe(0, types)
}

// SubscribeFrom is Subscribe starting at sequence number from instead of
// now: the stored events from there on are read from the store first
// (those retention pruned are skipped), then each new one, in order and
// without loss. Forwarders resume from their cursor with it.
func (w *Writer) SubscribeFrom(from uint64, types ...string) (<-chan Event, func()) {
	return w.subscribe(max(from, 1), types)
}

// subscribe starts a subscription at from (0: now).
func (w *Writer) subscribe(from uint64, types []string) (<-chan Event, func()) {
	s := &subscriber{w: w, out: make(chan Event, subBuffer), types: map[string]bool{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, t := range types {
		s.types[t] = true
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		close(s.out)
		return s.out, func() {}
	}
	// Under w.mu no batch is being offered, so lastSeq splits events
	// into those before the subscription and those it receives.
	w.chainMu.Lock()
	next := w.lastSeq + 1
	w.chainMu.Unlock()
	if from != 0 && from < next {
		// Stored before the subscription: run reads them from the store
		// first, as it does for a reader that fell behind.
		s.lost, s.through, next = true, next-1, from
	}
	id := w.nextSub
	w.nextSub++
	w.subs[id] = s
	w.mu.Unlock()
	go s.run(next)
	return s.out, func() {
		w.mu.Lock()
		delete(w.subs, id)
		w.mu.Unlock()
		s.cancel()
	}
}
