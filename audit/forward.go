package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/schema"
	"warden/state"
)

// Event types of forwarding itself.
const (
	// AuditForwardFailed: a forwarding target has been unreachable for
	// longer than its alertAfterSeconds; events wait in the store.
	AuditForwardFailed = "AUDIT_FORWARD_FAILED"
	// AuditForwardRestored: the target is reachable again after an
	// AUDIT_FORWARD_FAILED.
	AuditForwardRestored = "AUDIT_FORWARD_RESTORED"
)

// Forwarding defaults.
const (
	forwardBatch       = 500
	forwardAlertAfter  = 5 * time.Minute
	forwardMinBackoff  = 250 * time.Millisecond
	forwardMaxBackoff  = 30 * time.Second
	forwardConfirmPoll = 200 * time.Millisecond
	forwardSaveEvery   = time.Second
)

// sink is an open connection to one forwarding target.
type sink interface {
	// send writes events, in order, after those sent before.
	send(evs []Event) error
	// confirmed is the highest sequence number known to have reached the
	// target (0 when none yet); an error means the connection is gone.
	confirmed(now time.Time) (uint64, error)
	// dead is closed when the connection fails on its own (nil: never).
	dead() <-chan struct{}
	close() error
}

// target is one configured destination: how to reach it and where its
// cursor (the highest sequence number it has confirmed) is kept.
type target interface {
	open(ctx context.Context) (sink, error)
	loadCursor() (uint64, error)
	saveCursor(seq uint64) error
}

// ForwardStatus is one target's state, for the status API and doctor.
type ForwardStatus struct {
	Target    string     `json:"target"` // "syslog:HOST:PORT" or "file:PATH"
	Cursor    uint64     `json:"cursor"` // highest seq the target confirmed
	Lag       uint64     `json:"lagEvents"`
	Connected bool       `json:"connected"`
	DownSince *time.Time `json:"downSince,omitempty"`
	Alerted   bool       `json:"alerted,omitempty"` // down past alertAfterSeconds
	LastError string     `json:"lastError,omitempty"`
	Skipped   uint64     `json:"skipped,omitempty"` // pruned by retention before they were forwarded
}

// Forwarder sends every stored audit event to the targets of Settings
// audit.forward, at least once and in order. Each target reads the store
// from its own persisted cursor, woken by the writer's subscription, so
// nothing an agent restart, a receiver outage or a full network buffer
// interrupts is lost: the store is the buffer (bounded by retention).
// Forwarding never slows the writer or an audited action.
type Forwarder struct {
	store *state.Store
	w     *Writer
	log   *slog.Logger
	lag   *prometheus.GaugeVec

	mu   sync.Mutex
	runs map[string]*forwardRun
}

// NewForwarder forwards what w stores in store. reg (may be nil) receives
// warden_audit_forward_lag_events.
func NewForwarder(store *state.Store, w *Writer, logger *slog.Logger, reg prometheus.Registerer) *Forwarder {
	if logger == nil {
		logger = slog.Default()
	}
	f := &Forwarder{store: store, w: w, log: logger.With("component", "audit-forward"), runs: map[string]*forwardRun{},
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_audit_forward_lag_events",
			Help: "Audit events stored but not yet confirmed by a forwarding target.",
		}, []string{"target"})}
	if reg != nil {
		reg.MustRegister(f.lag)
	}
	return f
}

// Run forwards until ctx ends, following Settings: a target added,
// changed or removed is started, restarted or stopped.
func (f *Forwarder) Run(ctx context.Context) error {
	gens, cancel := f.store.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		f.mu.Lock()
		for _, r := range f.runs {
			r.cancel()
		}
		f.mu.Unlock()
		wg.Wait()
	}()
	for {
		f.apply(ctx, &wg, f.store.Current().Settings().Audit.Forward)
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-gens:
			if !ok {
				<-ctx.Done()
				return nil
			}
		}
	}
}

// apply starts and stops runs so that one runs per configured target.
func (f *Forwarder) apply(ctx context.Context, wg *sync.WaitGroup, cfgs []schema.AuditForward) {
	want := map[string]schema.AuditForward{}
	for _, c := range cfgs {
		want[targetName(c)] = c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, r := range f.runs {
		if c, ok := want[name]; !ok || !sameConfig(c, r.cfg) {
			r.cancel()
			<-r.done
			delete(f.runs, name)
			f.lag.DeleteLabelValues(name)
		}
	}
	for name, c := range want {
		if _, ok := f.runs[name]; ok {
			continue
		}
		t, err := f.newTarget(c)
		if err != nil {
			f.log.Error("audit forwarding target not started", "target", name, "err", err)
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &forwardRun{f: f, name: name, cfg: c, t: t, cancel: cancel, done: make(chan struct{}),
			alertAfter: forwardAlertAfter}
		if c.AlertAfterSeconds > 0 {
			r.alertAfter = time.Duration(c.AlertAfterSeconds) * time.Second
		}
		f.runs[name] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.done)
			r.loop(rctx)
		}()
	}
}

func (f *Forwarder) newTarget(c schema.AuditForward) (target, error) {
	switch c.Type {
	case "syslog":
		return newSyslogTarget(c, f.store)
	case "file":
		return newFileTarget(c)
	}
	return nil, fmt.Errorf("unknown type %q", c.Type)
}

// Status reports every target, sorted by name.
func (f *Forwarder) Status() []ForwardStatus {
	f.mu.Lock()
	out := make([]ForwardStatus, 0, len(f.runs))
	for _, r := range f.runs {
		out = append(out, r.status())
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

func targetName(c schema.AuditForward) string {
	if c.Type == "file" {
		return "file:" + c.Path
	}
	return c.Type + ":" + c.Address
}

func sameConfig(a, b schema.AuditForward) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// forwardRun is one target's loop and its state.
type forwardRun struct {
	f          *Forwarder
	name       string
	cfg        schema.AuditForward
	t          target
	cancel     context.CancelFunc
	done       chan struct{}
	alertAfter time.Duration

	mu sync.Mutex
	st ForwardStatus
}

func (r *forwardRun) status() ForwardStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.Target = r.name
	if s.DownSince != nil {
		d := *s.DownSince
		s.DownSince = &d
	}
	return s
}

func (r *forwardRun) update(fn func(*ForwardStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.st)
}

// loop sends events after the cursor, moves the cursor as the target
// confirms them, and after a failure reconnects and sends again from the
// cursor: events in flight when a connection broke are sent twice, with
// their own sequence numbers, never skipped. Events come from a lossless
// subscription started at the cursor (SubscribeFrom), which reads what is
// behind from the store, so a target that was down catches up the way any
// slow subscriber does.
func (r *forwardRun) loop(ctx context.Context) {
	log := r.f.log.With("target", r.name)
	acked, err := r.t.loadCursor()
	if err != nil {
		log.Error("read forwarding cursor; starting from the oldest stored event", "err", err)
	}
	last := max(r.lastStored(), acked)
	r.update(func(s *ForwardStatus) { s.Cursor, s.Lag = acked, last-acked })
	r.f.lag.WithLabelValues(r.name).Set(float64(last - acked)) // in /metrics from the start, as in status
	var (
		s         sink
		evs       <-chan Event
		unsub     = func() {}
		sent      = acked
		saved     = acked
		savedAt   time.Time
		failures  int
		batch     = make([]Event, 0, forwardBatch)
		confirmTk = time.NewTicker(forwardConfirmPoll)
	)
	defer confirmTk.Stop()
	defer func() { unsub() }()
	save := func(force bool) {
		if acked == saved || (!force && time.Since(savedAt) < forwardSaveEvery) {
			return
		}
		if err := r.t.saveCursor(acked); err != nil {
			log.Error("save forwarding cursor", "err", err)
			return
		}
		saved, savedAt = acked, time.Now()
	}
	fail := func(err error) {
		if s != nil {
			s.close()
			s = nil
		}
		unsub()
		evs, unsub = nil, func() {}
		failures++
		r.down(ctx, err, log)
	}
	defer func() {
		if s != nil {
			if c, err := s.confirmed(time.Now()); err == nil && c > acked {
				acked = c
			}
			s.close()
		}
		save(true)
	}()
	for ctx.Err() == nil {
		if s == nil {
			if failures > 0 && !sleepCtx(ctx, backoff(failures)) {
				return
			}
			if s, err = r.t.open(ctx); err != nil {
				s = nil
				fail(err)
				continue
			}
			failures = 0
			r.up(log)
			sent = acked
			evs, unsub = r.f.w.SubscribeFrom(acked + 1)
		}
		var tick <-chan time.Time
		if sent > acked || acked > saved {
			tick = confirmTk.C
		}
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case e, ok := <-evs:
			if !ok {
				return // the writer closed
			}
			batch = collect(append(batch, e), evs)
		case <-tick:
		case <-s.dead():
			fail(errors.New("connection closed by the receiver"))
			continue
		}
		batch = r.after(batch, sent, log)
		if len(batch) > 0 {
			if err := s.send(batch); err != nil {
				fail(err)
				continue
			}
			sent = batch[len(batch)-1].Seq
			if sent >= last {
				last = r.lastStored()
			}
		}
		c, err := s.confirmed(time.Now())
		if err != nil {
			fail(err)
			continue
		}
		acked = max(acked, c)
		save(false)
		lag := max(last, acked) - acked
		r.update(func(st *ForwardStatus) { st.Cursor, st.Lag = acked, lag })
		r.f.lag.WithLabelValues(r.name).Set(float64(lag))
	}
}

// collect adds to batch what the subscription has ready, waiting a moment
// for more (the subscription hands events over one at a time), up to
// forwardBatch.
func collect(batch []Event, evs <-chan Event) []Event {
	t := time.NewTimer(2 * time.Millisecond)
	defer t.Stop()
	for len(batch) < forwardBatch {
		select {
		case e, ok := <-evs:
			if !ok {
				return batch
			}
			batch = append(batch, e)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// after drops events at or below sent (a cursor ahead of the store) and
// counts a gap before the first one (retention pruned events this target
// never confirmed).
func (r *forwardRun) after(batch []Event, sent uint64, log *slog.Logger) []Event {
	i := 0
	for i < len(batch) && batch[i].Seq <= sent {
		i++
	}
	batch = batch[i:]
	if len(batch) > 0 && sent > 0 && batch[0].Seq > sent+1 {
		skipped := batch[0].Seq - sent - 1
		log.Warn("audit events pruned before they were forwarded", "from", sent+1, "to", batch[0].Seq-1)
		r.update(func(st *ForwardStatus) { st.Skipped += skipped })
	}
	return batch
}

// lastStored is the sequence number of the newest stored event.
func (r *forwardRun) lastStored() uint64 {
	e, ok, err := r.f.store.LastAudit()
	if err != nil || !ok {
		return 0
	}
	return e.Seq
}

// down records a failure; past alertAfter it is audited once.
func (r *forwardRun) down(ctx context.Context, err error, log *slog.Logger) {
	now := time.Now()
	var since time.Time
	alert := false
	r.update(func(s *ForwardStatus) {
		s.Connected, s.LastError = false, err.Error()
		if s.DownSince == nil {
			s.DownSince = &now
		}
		since = *s.DownSince
		if !s.Alerted && now.Sub(since) >= r.alertAfter {
			s.Alerted, alert = true, true
		}
	})
	log.Warn("audit forwarding target unreachable", "err", err, "downFor", now.Sub(since).Round(time.Second).String())
	if alert && ctx.Err() == nil {
		r.f.w.Emit(Event{Type: AuditForwardFailed, Severity: Warning, Component: "audit",
			TargetInfo: &TargetInfo{Kind: "AuditForward", ID: r.name},
			Details: map[string]any{"downSince": since.UTC().Format(time.RFC3339), "error": err.Error(),
				"alertAfterSeconds": int(r.alertAfter / time.Second)}})
	}
}

// up records a working connection; it audits the recovery of a target
// that had been reported down.
func (r *forwardRun) up(log *slog.Logger) {
	var since *time.Time
	alerted := false
	r.update(func(s *ForwardStatus) {
		since, alerted = s.DownSince, s.Alerted
		s.Connected, s.DownSince, s.Alerted, s.LastError = true, nil, false, ""
	})
	if since != nil {
		log.Info("audit forwarding target reachable again", "downFor", time.Since(*since).Round(time.Second).String())
	}
	if alerted {
		r.f.w.Emit(Event{Type: AuditForwardRestored, Component: "audit",
			TargetInfo: &TargetInfo{Kind: "AuditForward", ID: r.name},
			Details:    map[string]any{"downSince": since.UTC().Format(time.RFC3339)}})
	}
}

// backoff is exponential from forwardMinBackoff to forwardMaxBackoff,
// with jitter so agents do not reconnect to a SIEM in step.
func backoff(failures int) time.Duration {
	d := forwardMaxBackoff
	if failures < 10 {
		d = min(forwardMaxBackoff, forwardMinBackoff<<(failures-1))
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
