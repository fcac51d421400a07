// Package audit defines warden's audit events and the one writer every event
// goes through: stored first (durable, hash-chained), then published to
// in-process subscribers, the MQTT broker and forwarders.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Event types (DESIGN.md, Audit events).
const (
	PolicyEvaluation            = "POLICY_EVALUATION"
	ElevationGranted            = "ELEVATION_GRANTED"
	ElevationExpired            = "ELEVATION_EXPIRED"
	FileAccess                  = "FILE_ACCESS"
	ConfigChanged               = "CONFIG_CHANGED"
	AdminAction                 = "ADMIN_ACTION"
	BundleApplied               = "BUNDLE_APPLIED"
	BundleRejected              = "BUNDLE_REJECTED"
	DriftDetected               = "DRIFT_DETECTED"
	DriftCorrected              = "DRIFT_CORRECTED"
	DriftUnresolved             = "DRIFT_UNRESOLVED"
	PluginStarted               = "PLUGIN_STARTED"
	PluginExited                = "PLUGIN_EXITED"
	PluginRestarted             = "PLUGIN_RESTARTED"
	PluginValidationFailed      = "PLUGIN_VALIDATION_FAILED"
	CertRotated                 = "CERT_ROTATED"
	CertExpiring                = "CERT_EXPIRING"
	JobStarted                  = "JOB_STARTED"
	JobFinished                 = "JOB_FINISHED"
	AuthorizationFailed         = "AUTHORIZATION_FAILED"
	ProcessAuthenticationFailed = "PROCESS_AUTHENTICATION_FAILED"
	RateLimited                 = "RATE_LIMITED"
	CircuitOpen                 = "CIRCUIT_OPEN"
	AgentRegistered             = "AGENT_REGISTERED"
	AgentStarted                = "AGENT_STARTED"
	AgentStopped                = "AGENT_STOPPED"
	ElevationStarted            = "ELEVATION_STARTED"
	ElevationExited             = "ELEVATION_EXITED"
	ApprovalRequested           = "APPROVAL_REQUESTED"
	ApprovalDecided             = "APPROVAL_DECIDED"
	MFAFailed                   = "MFA_FAILED"
	MFALocked                   = "MFA_LOCKED"
	ApplicationBlocked          = "APPLICATION_BLOCKED"
)

// Severities.
const (
	Info     = "info"
	Warning  = "warning"
	Critical = "critical"
)

// UserInfo says who an event is about.
type UserInfo struct {
	User      string   `json:"user,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	SessionID string   `json:"sessionId,omitempty"`
	Identity  string   `json:"identity,omitempty"` // certificate identity (role/name)
	PeerAddr  string   `json:"peerAddr,omitempty"`
	PeerPID   int      `json:"peerPid,omitempty"`
	PeerExe   string   `json:"peerExe,omitempty"`
}

// TargetInfo says what an event is about.
type TargetInfo struct {
	Kind string `json:"kind,omitempty"`
	ID   string `json:"id,omitempty"`
	Path string `json:"path,omitempty"`
	Hash string `json:"sha256,omitempty"`
}

// Evaluation is a policy decision attached to POLICY_EVALUATION events.
type Evaluation struct {
	Decision  string   `json:"decision"`
	Effective string   `json:"effective"`
	Mode      string   `json:"mode,omitempty"`
	Policy    string   `json:"policy,omitempty"`
	Matched   []string `json:"matched,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// Event is one audit event. The writer fills ID, Seq, Time, Machine,
// PrevHash and Hash; callers set the rest.
type Event struct {
	ID         string          `json:"id"`
	Seq        uint64          `json:"seq"`
	Time       time.Time       `json:"time"`
	Type       string          `json:"type"`
	Severity   string          `json:"severity"`
	Component  string          `json:"component"`
	UserInfo   *UserInfo       `json:"user_info,omitempty"`
	Machine    string          `json:"machine"`
	TargetInfo *TargetInfo     `json:"target_info,omitempty"`
	Evaluation *Evaluation     `json:"policy_evaluation_status,omitempty"`
	Details    map[string]any  `json:"details,omitempty"`
	PrevHash   string          `json:"prev_hash"`
	Hash       string          `json:"hash"`
	Raw        json.RawMessage `json:"-"`
}

// canonical is the event's JSON with Hash empty: the bytes its hash covers.
// They are what encoding/json's Marshal writes (struct fields in
// declaration order, map keys sorted), so the same event always gives the
// same bytes; appendCanonical writes them without reflection.
func (e *Event) canonical() []byte {
	return e.appendCanonical(make([]byte, 0, 1024))
}

func (e *Event) appendCanonical(dst []byte) []byte {
	c := *e
	c.Hash = ""
	if b, ok := appendCanonical(dst, &c); ok {
		return b
	}
	b, _ := json.Marshal(&c)
	return append(dst, b...)
}

// computeHash returns SHA-256 over the canonical event, hex.
func (e *Event) computeHash() string {
	sum := sha256.Sum256(e.canonical())
	return hex.EncodeToString(sum[:])
}

// seal sets e.Hash and returns the event's stored JSON: hash is the last
// field, so the stored form is the canonical form with the empty hash
// filled in, written in place in one buffer.
func (e *Event) seal() []byte {
	const tail = `"hash":""}`
	c := e.appendCanonical(make([]byte, 0, 1024))
	sum := sha256.Sum256(c)
	e.Hash = hex.EncodeToString(sum[:])
	if !bytes.HasSuffix(c, []byte(tail)) {
		b, _ := json.Marshal(e) // not reached while Hash is the last field
		return b
	}
	c = append(c[:len(c)-2], e.Hash...)
	return append(c, `"}`...)
}
