package reconcile

import (
	"sync"
	"time"
)

// queue is a controller's work queue, shaped like client-go's: a key is
// queued at most once (adds while it waits are merged), a key being
// reconciled is never handed to a second worker (an add meanwhile queues it
// again once the first worker is done), delayed adds keep the earliest
// deadline, and failures are counted per key for exponential backoff.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	head       int
	dirty      map[string]struct{}
	processing map[string]struct{}
	waiting    map[string]*delayed
	failures   map[string]int
	shutdown   bool
}

type delayed struct {
	at    time.Time
	timer *time.Timer
}

func newQueue() *queue {
	q := &queue{dirty: map[string]struct{}{}, processing: map[string]struct{}{},
		waiting: map[string]*delayed{}, failures: map[string]int{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues keys now. A key that is also waiting for a delayed add stays
// in the delayed set too: reconciling early never hurts a level-based
// controller, and the later run then finds nothing to do.
func (q *queue) add(keys ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		q.addLocked(k)
	}
}

func (q *queue) addLocked(k string) {
	if q.shutdown {
		return
	}
	if _, ok := q.dirty[k]; ok {
		return
	}
	q.dirty[k] = struct{}{}
	if _, ok := q.processing[k]; ok {
		return // done() requeues it
	}
	q.items = append(q.items, k)
	q.cond.Signal()
}

// addAfter queues k once d has passed; of several pending delays of one
// key the earliest wins.
func (q *queue) addAfter(k string, d time.Duration) {
	if d <= 0 {
		q.add(k)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := time.Now().Add(d)
	if w, ok := q.waiting[k]; ok {
		if !w.at.After(at) {
			return
		}
		w.timer.Stop()
	}
	w := &delayed{at: at}
	w.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.waiting[k] == w {
			delete(q.waiting, k)
			q.addLocked(k)
		}
	})
	q.waiting[k] = w
}

// get blocks until a key is ready or the queue shuts down.
func (q *queue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	k := q.items[q.head]
	q.items[q.head] = ""
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	delete(q.dirty, k)
	q.processing[k] = struct{}{}
	return k, true
}

// done ends the processing of k, queueing it again if it was added meanwhile.
func (q *queue) done(k string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, k)
	if _, ok := q.dirty[k]; ok && !q.shutdown {
		q.items = append(q.items, k)
		q.cond.Signal()
	}
}

// fail counts a failure of k and returns how many in a row there were.
func (q *queue) fail(k string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failures[k]++
	return q.failures[k]
}

// forget clears k's failure count after a success.
func (q *queue) forget(k string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, k)
}

// depth returns how many keys are ready, being reconciled, and waiting for
// a delayed add.
func (q *queue) depth() (ready, active, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head, len(q.processing), len(q.waiting)
}

// stop wakes every worker and drops pending work and timers.
func (q *queue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, w := range q.waiting {
		w.timer.Stop()
		delete(q.waiting, k)
	}
	q.cond.Broadcast()
}

// backoff is base·2^(n-1), capped at max.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n; i++ {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}
