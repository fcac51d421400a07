package reconcile

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the runtime's Prometheus series. Names start with
// warden_reconcile_ or warden_drift_.
type metrics struct {
	duration    *prometheus.HistogramVec
	reconciles  *prometheus.CounterVec
	depth       *prometheus.Desc
	lastSuccess *prometheus.GaugeVec
	drift       *prometheus.CounterVec
	writes      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, ctrls func() []*Controller) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "warden_reconcile_duration_seconds",
			Help:    "Time one Reconcile call took, by controller.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"controller"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_reconcile_total",
			Help: "Reconcile calls by controller and result (success, error, terminal, panic).",
		}, []string{"controller", "result"}),
		depth: prometheus.NewDesc("warden_reconcile_queue_depth",
			"Keys in a controller's work queue, by state (ready, active, waiting for a delayed retry).",
			[]string{"controller", "state"}, nil),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of a controller's last successful reconcile.",
		}, []string{"controller"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_drift_total",
			Help: "Drift records by kind and state (open counts detections).",
		}, []string{"kind", "state"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_reconcile_writes_total",
			Help: "Changes a controller made to the machine (file writes, removals, chmod, chown).",
		}, []string{"controller", "op"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.duration, m.reconciles, m.lastSuccess, m.drift, m.writes, depthCollector{m.depth, ctrls}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("reconcile: register metrics: %w", err)
		}
	}
	return m, nil
}

// depthCollector reads queue depths at scrape time, so an idle agent does
// no bookkeeping for them.
type depthCollector struct {
	desc  *prometheus.Desc
	ctrls func() []*Controller
}

func (d depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d depthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range d.ctrls() {
		ready, active, waiting := c.q.depth()
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(ready), c.name, "ready")
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(active), c.name, "active")
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(waiting), c.name, "waiting")
	}
}
