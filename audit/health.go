package audit

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Health says whether the writer can store events: the `audit` field of
// GET /api/v1/status and `warden status`.
type Health struct {
	// OK is false from a failed store until the next event is stored.
	OK bool `json:"ok"`
	// Failures counts events (and audited state changes) that could not be
	// stored since the agent started.
	Failures uint64 `json:"failures"`
	// FailingSince is when the current failure began (zero when OK).
	FailingSince time.Time `json:"failingSince,omitempty"`
	// LastError is the last store error, when not OK.
	LastError string `json:"lastError,omitempty"`
}

type health struct {
	mu       sync.Mutex
	failures uint64
	since    time.Time
	last     error
}

// record notes the outcome of one store attempt covering n events.
func (h *health) record(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.since, h.last = time.Time{}, nil
		return
	}
	h.failures++
	if h.last == nil {
		h.since = now.UTC()
	}
	h.last = err
}

// Health reports whether the last attempt to store an event succeeded.
// The writer recovers by itself: the first event stored after a failure
// (once the disk has room again) makes it healthy.
func (w *Writer) Health() Health {
	h := &w.health
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Health{OK: h.last == nil, Failures: h.failures}
	if h.last != nil {
		out.FailingSince, out.LastError = h.since, h.last.Error()
	}
	return out
}

// Collectors returns the writer's metrics: warden_audit_write_failures_total
// (store attempts that failed) and warden_audit_healthy (1 or 0).
func (w *Writer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_audit_write_failures_total",
			Help: "Audit store attempts that failed (disk full, I/O error); audited actions were refused."},
			func() float64 { return float64(w.Health().Failures) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_audit_healthy",
			Help: "1 when the last audit store attempt succeeded, 0 while audit is unavailable."},
			func() float64 {
				if w.Health().OK {
					return 1
				}
				return 0
			}),
	}
}
