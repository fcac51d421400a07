package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"warden/audit"
	"warden/state"
)

// Drift is one difference a controller found between desired and actual
// state, reported with ReportDrift while it reconciles a key.
type Drift struct {
	Kind    string // "File" (materialized files), "Path" (permission model), or a controller's own
	ID      string // what drifted: a path relative to the root, a document id
	Field   string // "content", "mode", "owner", "exists", "type", ...
	Desired string
	Actual  string
	Action  string // what the controller does about it
	Target  *audit.TargetInfo
}

// ReportDrift records d as open drift of the key ctx is reconciling and
// audits DRIFT_DETECTED once per (key, field) until it is settled. The
// runtime settles it: when the key's Reconcile next returns nil the record
// becomes corrected (DRIFT_CORRECTED); when it fails with a terminal error,
// or GiveUpAfter times in a row, unresolved (DRIFT_UNRESOLVED, with the
// error). Outside a reconcile ReportDrift does nothing.
func ReportDrift(ctx context.Context, d Drift) {
	s := scopeOf(ctx)
	if s.book == nil {
		return
	}
	s.book.detect(s.controller, s.key, d)
}

// driftBook keeps the open drift records by controller and key and
// persists them, with their audit events, off the reconcile path: a worker
// restoring a file never waits for an fsync of the database. Records and
// events are queued without bound, so none is dropped under a storm, and
// Close stores everything queued.
type driftBook struct {
	store *state.Store
	audit *audit.Writer
	log   *slog.Logger
	met   *metrics
	now   func() time.Time

	mu       sync.Mutex
	open     map[string]map[string]*state.DriftRecord // controller\x00key -> field -> record
	pending  []driftOp
	wake     chan struct{}
	closing  bool
	flushing bool
	done     chan struct{}
}

type driftOp struct {
	rec   state.DriftRecord
	event audit.Event
}

func newDriftBook(st *state.Store, aw *audit.Writer, log *slog.Logger, met *metrics, now func() time.Time) *driftBook {
	b := &driftBook{store: st, audit: aw, log: log, met: met, now: now,
		open: map[string]map[string]*state.DriftRecord{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.flushLoop()
	return b
}

func (b *driftBook) detect(controller, key string, d Drift) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sk := controller + "\x00" + key
	recs := b.open[sk]
	if recs == nil {
		recs = map[string]*state.DriftRecord{}
		b.open[sk] = recs
	}
	if r := recs[d.Field]; r != nil {
		r.Actual = d.Actual // still the same drift: no second DRIFT_DETECTED
		return
	}
	r := &state.DriftRecord{ID: newRecordID(), Kind: d.Kind, Name: d.ID, Field: d.Field,
		Desired: d.Desired, Actual: d.Actual, State: state.DriftOpen, Action: d.Action, DetectedAt: b.now().UTC()}
	recs[d.Field] = r
	b.met.drift.WithLabelValues(r.Kind, state.DriftOpen).Inc()
	b.log.Info("drift detected", "controller", controller, "kind", r.Kind, "id", r.Name,
		"field", r.Field, "desired", r.Desired, "actual", r.Actual, "action", r.Action)
	b.queue(*r, audit.DriftDetected, audit.Warning, target(d.Target, r), "")
}

// adopt takes over the open and unresolved records of an earlier run (the
// agent stopped before settling them) under the controller and key that
// own them, so the next successful reconcile of that key corrects them.
func (b *driftBook) adopt(controller, key string, r state.DriftRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sk := controller + "\x00" + key
	if b.open[sk] == nil {
		b.open[sk] = map[string]*state.DriftRecord{}
	}
	b.open[sk][r.Field] = &r
}

// resolve marks every drift of key corrected: its Reconcile converged.
func (b *driftBook) resolve(controller, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sk := controller + "\x00" + key
	recs := b.open[sk]
	if recs == nil {
		return
	}
	delete(b.open, sk)
	now := b.now().UTC()
	for _, r := range recs {
		r.State, r.CorrectedAt, r.Error = state.DriftCorrected, &now, ""
		b.met.drift.WithLabelValues(r.Kind, state.DriftCorrected).Inc()
		b.log.Info("drift corrected", "controller", controller, "kind", r.Kind, "id", r.Name, "field", r.Field)
		b.queue(*r, audit.DriftCorrected, audit.Info, target(nil, r), "")
	}
}

// unresolve marks key's open drift unresolved with err. A key that fails
// without having reported drift gets a record of its own, so that nothing
// failing for good is invisible in `warden drift`.
func (b *driftBook) unresolve(controller, key string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sk := controller + "\x00" + key
	recs := b.open[sk]
	if recs == nil {
		recs = map[string]*state.DriftRecord{"reconcile": {ID: newRecordID(), Kind: controller, Name: key,
			Field: "reconcile", Desired: "converged", Actual: "failing", State: state.DriftOpen,
			Action: "retry with backoff", DetectedAt: b.now().UTC()}}
		b.open[sk] = recs
	}
	for _, r := range recs {
		if r.State == state.DriftUnresolved {
			r.Error = err.Error()
			continue
		}
		r.State, r.Error = state.DriftUnresolved, err.Error()
		b.met.drift.WithLabelValues(r.Kind, state.DriftUnresolved).Inc()
		b.log.Warn("drift unresolved", "controller", controller, "kind", r.Kind, "id", r.Name, "field", r.Field, "err", err)
		b.queue(*r, audit.DriftUnresolved, audit.Critical, target(nil, r), err.Error())
	}
}

func target(t *audit.TargetInfo, r *state.DriftRecord) *audit.TargetInfo {
	if t != nil {
		return t
	}
	return &audit.TargetInfo{Kind: r.Kind, ID: r.Name}
}

// queue must be called with b.mu held.
func (b *driftBook) queue(r state.DriftRecord, typ, severity string, t *audit.TargetInfo, errText string) {
	details := map[string]any{"recordId": r.ID, "field": r.Field, "desired": r.Desired,
		"actual": r.Actual, "action": r.Action, "state": r.State}
	if errText != "" {
		details["error"] = errText
	}
	ev := audit.Event{Type: typ, Severity: severity, Component: "reconcile", TargetInfo: t, Details: details}
	b.pending = append(b.pending, driftOp{rec: r, event: ev})
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *driftBook) flushLoop() {
	defer close(b.done)
	for {
		<-b.wake
		b.mu.Lock()
		ops, closing := b.pending, b.closing
		b.pending, b.flushing = nil, true
		b.mu.Unlock()
		if len(ops) > 0 {
			b.flush(ops)
		}
		b.mu.Lock()
		b.flushing = false
		b.mu.Unlock()
		if closing {
			b.mu.Lock()
			rest := b.pending
			b.pending = nil
			b.mu.Unlock()
			if len(rest) > 0 {
				b.flush(rest)
			}
			return
		}
	}
}

// flush stores the newest state of every record in one transaction, then
// writes the audit events. Events of one record keep their order (detected
// before corrected); events of different records are written concurrently
// so that the audit writer commits them in a few group commits.
func (b *driftBook) flush(ops []driftOp) {
	latest := make(map[string]any, len(ops))
	for _, op := range ops {
		latest[op.rec.ID] = op.rec
	}
	if err := b.store.PutMany(state.Drift, latest); err != nil {
		b.log.Error("drift records not stored", "count", len(latest), "err", err)
	}
	if b.audit == nil {
		return
	}
	seen := map[string]int{}
	var phases [][]audit.Event
	for _, op := range ops {
		i := seen[op.rec.ID]
		seen[op.rec.ID] = i + 1
		if i == len(phases) {
			phases = append(phases, nil)
		}
		phases[i] = append(phases[i], op.event)
	}
	sem := make(chan struct{}, 256)
	for _, phase := range phases {
		var wg sync.WaitGroup
		for _, ev := range phase {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if _, err := b.audit.Write(context.Background(), ev); err != nil {
					b.log.Error("audit event not recorded", "type", ev.Type, "err", err)
				}
			}()
		}
		wg.Wait()
	}
}

// close stores what is queued and stops the flusher.
func (b *driftBook) close() {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		<-b.done
		return
	}
	b.closing = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	<-b.done
}

// idle reports whether nothing is waiting to be stored (tests).
func (b *driftBook) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) == 0 && !b.flushing
}

func newRecordID() string {
	var x [8]byte
	rand.Read(x[:])
	return hex.EncodeToString(x[:])
}
