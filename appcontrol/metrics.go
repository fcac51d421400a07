package appcontrol

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the controller's counters as Prometheus metrics, read
// from Stats when scraped:
//
//	warden_appcontrol_watching                   1 while execs are watched
//	warden_appcontrol_events_total               exec permission events the agent answered
//	warden_appcontrol_events_cached_total        of those, answered from the decision cache
//	warden_appcontrol_denied_total               answered deny (fallbacks included)
//	warden_appcontrol_fallbacks_total            answered with the fallback (deadline, too busy)
//	warden_appcontrol_ignore_marks_total         files left to the kernel to answer (ignore.go)
//	warden_appcontrol_ignore_flushes_total       times all of those were dropped
//	warden_appcontrol_audit_dropped_total        APPLICATION_BLOCKED reports dropped (queue full)
//
// An exec the kernel answers by itself is in none of the event counters.
func (c *Controller) Collectors() []prometheus.Collector {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	s := &c.stats
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_appcontrol_watching",
			Help: "1 while application control watches execs (an ApplicationControl policy or an allow-list default is in force)."},
			func() float64 {
				c.mu.Lock()
				defer c.mu.Unlock()
				if c.grp != nil {
					return 1
				}
				return 0
			}),
		counter("warden_appcontrol_events_total", "Exec permission events the agent answered.", s.Events.Load),
		counter("warden_appcontrol_events_cached_total", "Exec permission events answered from the decision cache.", s.Cached.Load),
		counter("warden_appcontrol_denied_total", "Execs answered deny, fallbacks included.", s.Denied.Load),
		counter("warden_appcontrol_fallbacks_total", "Execs answered with the fallback: no decision within timeoutMs, or too many in progress.", s.Fallback.Load),
		counter("warden_appcontrol_ignore_marks_total", "Files whose later execs the kernel answers by itself (fanotify ignore marks set).", s.IgnoreMarks.Load),
		counter("warden_appcontrol_ignore_flushes_total", "Times every ignore mark was dropped (a new generation, or the bound reached).", s.IgnoreFlushes.Load),
		counter("warden_appcontrol_audit_dropped_total", "APPLICATION_BLOCKED reports dropped because the audit queue was full.", s.Dropped.Load),
	}
}
