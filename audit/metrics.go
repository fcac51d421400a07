package audit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values the event metrics know in advance: their counters exist at
// zero from the start, so an increase() alert sees the first event.
var (
	bundleRejectKinds = []string{"archive", "signature", "hash", "expired", "rollback", "invalid", "other"}
	decisionEffects   = []string{"allow", "deny", "mfa", "approval", "justification", "redirect"}
	decisionModes     = []string{"enforce", "monitor", "monitor-notify"}
	elevationResults  = map[string]string{ElevationGranted: "granted", ElevationStarted: "started", ElevationExited: "exited", ElevationExpired: "expired"}
	refusedKinds      = map[string]string{AuthorizationFailed: "authorization", ProcessAuthenticationFailed: "process_authentication", RateLimited: "rate_limited", CircuitOpen: "circuit_open", MFAFailed: "mfa_failed", ApplicationBlocked: "application_blocked"}
	jobResults        = []string{"succeeded", "failed", "stopped", "cancelled", "abandoned"}
	knownTypes        = []string{PolicyEvaluation, ElevationGranted, ElevationExpired, FileAccess, ConfigChanged, AdminAction,
		BundleApplied, BundleRejected, DriftDetected, DriftCorrected, DriftUnresolved, PluginStarted, PluginExited,
		PluginRestarted, PluginValidationFailed, CertRotated, CertExpiring, JobStarted, JobFinished, AuthorizationFailed,
		ProcessAuthenticationFailed, RateLimited, CircuitOpen, AgentRegistered, AgentStarted, AgentStopped,
		ElevationStarted, ElevationExited, ApprovalRequested, ApprovalDecided, MFAFailed, MFALocked, ApplicationBlocked}
)

// EventMetrics counts what the audit log records: every metric here is a
// view of stored events, so metrics and the audit log never disagree.
// Observe is safe for concurrent use.
type EventMetrics struct {
	events    *prometheus.CounterVec
	applied   prometheus.Counter
	rejected  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	denials   *prometheus.CounterVec
	elevate   *prometheus.CounterVec
	refused   *prometheus.CounterVec
	restarts  prometheus.Counter
	jobs      *prometheus.CounterVec
	lastSeq   prometheus.Gauge
}

// NewEventMetrics registers the event metrics on reg.
func NewEventMetrics(reg prometheus.Registerer) (*EventMetrics, error) {
	m := &EventMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_audit_events_total",
			Help: "Audit events stored, by type."}, []string{"type"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_bundles_applied_total",
			Help: "Bundles (and local changes) applied as a new generation."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_bundles_rejected_total",
			Help: "Bundles rejected, by reason: archive, signature, hash, expired, rollback, invalid, other."}, []string{"reason"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_decisions_total",
			Help: "Policy decisions, by the effect enforced and the policy's mode."}, []string{"effect", "mode"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_decision_denials_total",
			Help: "Policy decisions that would deny (in any mode), by user: repeated denials from one user are a probe."}, []string{"user"}),
		elevate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_elevations_total",
			Help: "Elevations, by result: granted, started, exited, expired."}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_refused_callers_total",
			Help: "Callers refused, by kind: authorization, process_authentication, rate_limited, circuit_open, mfa_failed, application_blocked."}, []string{"kind"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_plugin_restarts_total",
			Help: "Plugin restarts by the supervisor."}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_job_runs_total",
			Help: "Finished job runs, by result."}, []string{"result"}),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_audit_sequence",
			Help: "Sequence number of the last stored audit event."}),
	}
	for _, t := range knownTypes {
		m.events.WithLabelValues(t)
	}
	for _, r := range bundleRejectKinds {
		m.rejected.WithLabelValues(r)
	}
	for _, e := range decisionEffects {
		for _, mode := range decisionModes {
			m.decisions.WithLabelValues(e, mode)
		}
	}
	for _, r := range elevationResults {
		m.elevate.WithLabelValues(r)
	}
	for _, k := range refusedKinds {
		m.refused.WithLabelValues(k)
	}
	for _, r := range jobResults {
		m.jobs.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.events, m.applied, m.rejected, m.decisions, m.denials, m.elevate, m.refused, m.restarts, m.jobs, m.lastSeq} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe counts one stored event.
func (m *EventMetrics) Observe(e Event) {
	m.events.WithLabelValues(e.Type).Inc()
	m.lastSeq.Set(float64(e.Seq))
	switch e.Type {
	case BundleApplied:
		m.applied.Inc()
	case BundleRejected:
		kind := fmt.Sprint(e.Details["kind"])
		if kind == "" || kind == "<nil>" {
			kind = "other"
		}
		m.rejected.WithLabelValues(kind).Inc()
	case PolicyEvaluation:
		if ev := e.Evaluation; ev != nil {
			mode := ev.Mode
			if mode == "" {
				mode = "enforce"
			}
			m.decisions.WithLabelValues(ev.Effective, mode).Inc()
			if ev.Decision == "deny" && e.UserInfo != nil {
				m.denials.WithLabelValues(userName(e.UserInfo)).Inc()
			}
		}
	case PluginRestarted:
		m.restarts.Inc()
	case JobFinished:
		if s := fmt.Sprint(e.Details["state"]); s != "" && s != "<nil>" {
			m.jobs.WithLabelValues(s).Inc()
		}
	}
	if r, ok := elevationResults[e.Type]; ok {
		m.elevate.WithLabelValues(r).Inc()
	}
	if k, ok := refusedKinds[e.Type]; ok {
		m.refused.WithLabelValues(k).Inc()
	}
}

// userName is the label a user's denials count under: the kernel's or the
// request's user name, else the certificate identity.
func userName(u *UserInfo) string {
	if u.User != "" {
		return u.User
	}
	if u.Identity != "" {
		return u.Identity
	}
	return "unknown"
}
