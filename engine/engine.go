// Package engine runs the policy engine inside the agent: it keeps the
// compiled index in step with the applied generation, protects the engine
// with the rate limiter and circuit breaker, carries out the controls that
// need a second step (justification, MFA, approval), creates and expires
// time-limited grants, and audits every decision. The decisions themselves
// are package policy's, which does no I/O.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/schema"
	"warden/state"
)

// ErrRateLimited is returned when a source's wait queue is full (HTTP 429).
var ErrRateLimited = errors.New("rate limited: too many requests from this source")

// ErrNoCaller is returned for a caller the engine cannot name.
var ErrNoCaller = errors.New("caller not identified")

// ErrAuditUnavailable is returned when an event that must be stored before
// its action happens could not be: the action did not happen (HTTP 503).
var ErrAuditUnavailable = errors.New("audit unavailable")

// Options wires an Engine.
type Options struct {
	Store  *state.Store
	Audit  *audit.Writer
	Logger *slog.Logger
	// Machine is this machine's name, the machine of every request made
	// over the user socket (default os.Hostname).
	Machine string
	Now     func() time.Time
	// Sleep waits d for a rate-limited request's turn (default: a timer
	// that ctx can cut short). Tests inject their clock's.
	Sleep func(ctx context.Context, d time.Duration) error
	// Notify publishes a monitor-notify notification (the broker's
	// Notifications topic); nil drops them.
	Notify func(payload []byte)
}

// Engine answers evaluation requests. It is safe for concurrent use.
type Engine struct {
	opts    Options
	log     *slog.Logger
	index   atomic.Pointer[policy.Index]
	gen     atomic.Uint64
	limiter atomic.Pointer[policy.Limiter]
	breaker atomic.Pointer[policy.Breaker]
	rate    schema.RateLimit      // settings the limiter was built with
	brk     schema.CircuitBreaker // settings the breaker was built with

	mfaMu sync.Mutex // serializes each user's MFA check: read, verify, record

	grants   *grantTimer
	decideMu sync.Mutex // serializes approval decisions
	grantMu  sync.Mutex // one grant created or renewed at a time (renew looks, then commits)

	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced when an approval changes
}

// New compiles the current generation's policies.
func New(opts Options) (*Engine, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Machine == "" {
		opts.Machine, _ = os.Hostname()
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "engine"), changed: make(chan struct{})}
	e.grants = newGrantTimer(e)
	if err := e.load(); err != nil {
		// Start denying everything rather than not start: no policy in
		// force means deny, and the operator sees why in the log.
		e.log.Error("policies not loaded; denying every request until a generation compiles", "err", err)
		empty, _ := policy.Compile(nil)
		e.index.Store(empty)
		e.limiter.Store(policy.NewLimiter(schema.RateLimit{}))
		e.breaker.Store(policy.NewBreaker(schema.CircuitBreaker{}))
	}
	return e, nil
}

// load compiles the current generation. A generation whose policies do not
// compile keeps the previous index (and is logged): the engine never runs
// with half a policy set.
func (e *Engine) load() error {
	sn := e.opts.Store.Current()
	// From the index in force: the unchanged policies are neither compiled
	// nor (when their anchors stay) indexed again.
	ix, err := policy.Recompile(e.index.Load(), sn.OfKind(schema.KindPolicy))
	if err != nil {
		return fmt.Errorf("compile policies of generation %d: %w", sn.Meta.Generation, err)
	}
	set := sn.Settings()
	e.index.Store(ix)
	e.gen.Store(sn.Meta.Generation)
	// Keep the limiter's and breaker's memory of each source unless their
	// settings changed: a new generation is no reason to forgive a flood.
	if e.limiter.Load() == nil || e.rate != set.RateLimit {
		e.limiter.Store(policy.NewLimiter(set.RateLimit))
		e.rate = set.RateLimit
	}
	if e.breaker.Load() == nil || e.brk != set.CircuitBreaker {
		e.breaker.Store(policy.NewBreaker(set.CircuitBreaker))
		e.brk = set.CircuitBreaker
	}
	return nil
}

// Run recompiles on every applied generation, expires grants on time and
// forgets idle rate-limit sources, until ctx ends. At start it expires
// every grant whose time passed while the agent was down.
func (e *Engine) Run(ctx context.Context) error {
	gens, cancel := e.opts.Store.Subscribe()
	defer cancel()
	if err := e.grants.start(ctx); err != nil {
		e.log.Error("grants: expire at start", "err", err)
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			e.grants.stop()
			return nil
		case _, ok := <-gens:
			if !ok {
				return nil
			}
			if e.opts.Store.Current().Meta.Generation == e.gen.Load() {
				continue
			}
			if err := e.load(); err != nil {
				e.log.Error("policies not loaded; the previous ones stay in force", "err", err)
			} else {
				e.log.Info("policies loaded", "generation", e.gen.Load())
			}
		case <-sweep.C:
			now := e.opts.Now()
			e.limiter.Load().Sweep(now)
			e.breaker.Load().Sweep(now)
			if _, err := e.pruneApprovals(now); err != nil {
				e.log.Error("approvals: prune", "err", err)
			}
		case <-e.grants.c():
			if err := e.grants.expire(ctx); err != nil {
				e.log.Error("grants: expire", "err", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
