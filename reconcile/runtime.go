package reconcile

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Reconciler converges one key. It is level-based: it reads the whole
// desired and actual state for key and acts on the difference, so it does
// not care which event woke it or how many were merged. It never sleeps or
// loops: it returns Result{RequeueAfter} or an error and the queue waits.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (Result, error)
}

// Result tells the runtime what to do after a successful reconcile.
type Result struct {
	// RequeueAfter, when positive, reconciles the key again after this long.
	RequeueAfter time.Duration
}

// KeyLister is implemented by controllers that can name every key they
// own; the manager calls it for a full resync (at start, on every applied
// generation and on the resync timer) so a lost event never leaves drift
// in place for long.
type KeyLister interface {
	Keys(ctx context.Context) ([]string, error)
}

// triggerer is implemented by controllers woken by something the manager
// does not watch (a store bucket, a folder outside the root): the manager
// runs triggers on a goroutine of its own until ctx ends, after the
// workers started. triggers enqueues keys; it never reconciles itself.
type triggerer interface {
	triggers(ctx context.Context)
}

type terminal struct{ err error }

func (t terminal) Error() string { return t.err.Error() }
func (t terminal) Unwrap() error { return t.err }

// TerminalError marks err as one retrying cannot fix: the runtime records
// the key's drift as unresolved at once and does not requeue it (the next
// event or resync still reconciles it). TerminalError(nil) is nil.
func TerminalError(err error) error {
	if err == nil {
		return nil
	}
	return terminal{err}
}

// IsTerminal reports whether err was marked with TerminalError.
func IsTerminal(err error) bool {
	var t terminal
	return errors.As(err, &t)
}

// ControllerStatus is what GET /api/v1/status shows of one controller.
type ControllerStatus struct {
	Name          string    `json:"name"`
	LastReconcile time.Time `json:"lastReconcile,omitzero"`
	LastSuccess   time.Time `json:"lastSuccess,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorKey  string    `json:"lastErrorKey,omitempty"`
	LastErrorAt   time.Time `json:"lastErrorAt,omitzero"`
	QueueDepth    int       `json:"queueDepth"`
	Active        int       `json:"active"`
	Waiting       int       `json:"waiting"`
	Reconciles    uint64    `json:"reconciles"`
	Failures      uint64    `json:"failures"`
}

// Controller is one Reconciler as the manager runs it: its queue, workers
// and status. Its methods are safe for concurrent use.
type Controller struct {
	name    string
	r       Reconciler
	workers int
	q       *queue
	m       *Manager

	mu sync.Mutex
	st ControllerStatus
}

// ControllerOptions tunes one controller.
type ControllerOptions struct {
	// Workers reconcile distinct keys in parallel (default 1). A key is
	// never reconciled by two workers at once.
	Workers int
	// OnPath, when set, maps a path below the agent root that changed
	// (slash-separated, relative to the root) to a key to reconcile.
	OnPath func(rel string) (key string, ok bool)
}

// Name is the controller's name, as in metrics and status.
func (c *Controller) Name() string { return c.name }

// Enqueue asks for keys to be reconciled. Keys already queued are merged.
func (c *Controller) Enqueue(keys ...string) { c.q.add(keys...) }

// EnqueueAfter asks for key to be reconciled once d has passed.
func (c *Controller) EnqueueAfter(key string, d time.Duration) { c.q.addAfter(key, d) }

// Status returns a copy of the controller's status.
func (c *Controller) Status() ControllerStatus {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	st.QueueDepth, st.Active, st.Waiting = c.q.depth()
	return st
}

// resync queues every key the controller names.
func (c *Controller) resync(ctx context.Context) {
	kl, ok := c.r.(KeyLister)
	if !ok {
		return
	}
	keys, err := kl.Keys(ctx)
	if err != nil {
		c.m.log.Warn("resync: listing keys failed", "controller", c.name, "err", err)
	}
	c.q.add(keys...)
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, ok := c.q.get()
		if !ok {
			return
		}
		c.process(ctx, key)
		c.q.done(key)
	}
}

// process runs one reconcile and does everything around it: metrics,
// status, drift bookkeeping, backoff and requeue.
func (c *Controller) process(ctx context.Context, key string) {
	m := c.m
	start := time.Now()
	res, err := c.call(withScope(ctx, m.drift, c.name, key), key)
	elapsed := time.Since(start)
	m.metrics.duration.WithLabelValues(c.name).Observe(elapsed.Seconds())

	now := m.now()
	c.mu.Lock()
	c.st.LastReconcile = now
	c.st.Reconciles++
	if err == nil {
		c.st.LastSuccess = now
	} else {
		c.st.Failures++
		c.st.LastError, c.st.LastErrorKey, c.st.LastErrorAt = err.Error(), key, now
	}
	c.mu.Unlock()

	switch {
	case err == nil:
		m.metrics.lastSuccess.WithLabelValues(c.name).Set(float64(now.Unix()))
		m.metrics.reconciles.WithLabelValues(c.name, "success").Inc()
		c.q.forget(key)
		m.drift.resolve(c.name, key)
		if res.RequeueAfter > 0 {
			c.q.addAfter(key, res.RequeueAfter)
		}
	case IsTerminal(err):
		m.metrics.reconciles.WithLabelValues(c.name, "terminal").Inc()
		m.log.Warn("reconcile failed for good", "controller", c.name, "key", key, "err", err)
		c.q.forget(key)
		m.drift.unresolve(c.name, key, err)
	default:
		m.metrics.reconciles.WithLabelValues(c.name, "error").Inc()
		n := c.q.fail(key)
		d := backoff(n, m.opts.BackoffBase, m.opts.BackoffMax)
		m.log.Debug("reconcile failed, retrying", "controller", c.name, "key", key, "attempt", n, "retryIn", d, "err", err)
		if n == m.opts.GiveUpAfter {
			m.log.Warn("reconcile keeps failing; drift left unresolved, still retrying",
				"controller", c.name, "key", key, "attempts", n, "err", err)
			m.drift.unresolve(c.name, key, err)
		}
		c.q.addAfter(key, d)
	}
	m.progress(c.name, key, err)
}

// call runs Reconcile, turning a panic into an error so that one bad key
// never ends the agent.
func (c *Controller) call(ctx context.Context, key string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.m.metrics.reconciles.WithLabelValues(c.name, "panic").Inc()
			c.m.log.Error("reconcile panicked", "controller", c.name, "key", key, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("reconcile %s: panic: %v", key, p)
		}
	}()
	return c.r.Reconcile(ctx, key)
}

type scopeKey struct{}

type scope struct {
	controller, key string
	book            *driftBook
}

func withScope(ctx context.Context, book *driftBook, controller, key string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope{controller, key, book})
}

func scopeOf(ctx context.Context) scope {
	s, _ := ctx.Value(scopeKey{}).(scope)
	return s
}
