// Package doctor runs the reference pages' hardening checklist against an
// installed agent: each check reads files, /proc and (when the agent runs)
// its API, and answers pass, warn or fail with a one-line remedy. It
// changes nothing.
package doctor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"warden/audit"
	"warden/schema"
)

// Status of one check.
type Status string

// The statuses, from good to bad. Skip: the check does not apply here
// (no systemd, no backend configured, agent down for a live check).
const (
	Pass Status = "pass"
	Skip Status = "skip"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's answer.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Remedy  string `json:"remedy,omitempty"`
}

// API is what doctor asks a running agent: GET path, JSON into out.
type API interface {
	Get(path string, out any) error
}

// Env is where the checks look. Zero fields take the machine's defaults,
// so tests point them at their own files.
type Env struct {
	Root      string // the agent root
	Binary    string // the warden binary (default: the running agent's, else this one)
	Proc      string // /proc
	Sudoers   string // /etc/sudoers
	GroupFile string // /etc/group
	Systemd   *bool  // systemd runs here (default: /run/systemd/system exists)
	Unit      string // warden.service
	// Agent is the running agent's API, nil when none answers; AgentPID
	// and APIAddr come from run/agent.json.
	Agent    API
	AgentPID int
	APIAddr  string
	// Data is what the agent (or, when it is down, the store) says about
	// the desired state; see Gather.
	Data Data
	Now  func() time.Time
	// Systemctl runs systemctl (tests replace it).
	Systemctl func(args ...string) (string, error)
	// Unsynced reports whether the kernel clock is unsynchronized.
	Unsynced func() (bool, error)
}

// Data is the desired and stored state the checks judge.
type Data struct {
	Settings     json.RawMessage   // Settings/agent spec (nil: defaults)
	Policies     []json.RawMessage // Policy specs
	Grants       []Grant           // grants in force
	Registered   *bool             // backend registration present (nil: unknown)
	AuditEvents  int
	AuditBroken  string // empty when the chain is intact
	AuditChecked bool
	// Forward is the running agent's audit forwarding state (status
	// auditForward); nil when the agent is not running.
	Forward []audit.ForwardStatus
	// AppControl is the running agent's application control (status
	// applicationControl); nil when the agent is down or runs without it.
	AppControl *AppControl
}

// Grant is the part of a grant doctor needs.
type Grant struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func (e *Env) defaults() {
	if e.Proc == "" {
		e.Proc = "/proc"
	}
	if e.Sudoers == "" {
		e.Sudoers = "/etc/sudoers"
	}
	if e.GroupFile == "" {
		e.GroupFile = "/etc/group"
	}
	if e.Unit == "" {
		e.Unit = "warden.service"
	}
	if e.Systemd == nil {
		st, err := os.Stat("/run/systemd/system")
		v := err == nil && st.IsDir()
		e.Systemd = &v
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Systemctl == nil {
		e.Systemctl = systemctl
	}
	if e.Unsynced == nil {
		e.Unsynced = clockUnsynced
	}
	if e.Binary == "" && e.AgentPID > 0 {
		if p, err := os.Readlink(filepath.Join(e.Proc, itoa(e.AgentPID), "exe")); err == nil {
			e.Binary = p
		}
	}
	if e.Binary == "" {
		e.Binary, _ = os.Executable()
	}
}

// checks in the order they are reported (the hardening page's order).
var checks = []struct {
	name string
	fn   func(*Env) Result
}{
	{"runs-as-root", checkRoot},
	{"service", checkService},
	{"listeners-loopback", checkListeners},
	{"tls-minimum", checkTLS},
	{"path-security", checkPaths},
	{"allowed-hosts", checkAllowedHosts},
	{"alternative-signatures", checkAltSigs},
	{"certificate-password", checkCertPassword},
	{"certificate-expiry", checkCertExpiry},
	{"log-level", checkLogLevel},
	{"audit-chain", checkAudit},
	{"audit-forwarding", checkForwarding},
	{"backend-registration", checkRegistration},
	{"sudoers", checkSudoers},
	{"admin-groups", checkAdminGroups},
	{"clock", checkClock},
	{"application-control", checkAppControl},
}

// Run runs every check.
func Run(e *Env) []Result {
	e.defaults()
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		r := c.fn(e)
		r.Check = c.name
		out = append(out, r)
	}
	return out
}

// Failed reports whether results hold a fail (or, with strict, a warn).
func Failed(rs []Result, strict bool) bool {
	for _, r := range rs {
		if r.Status == Fail || (strict && r.Status == Warn) {
			return true
		}
	}
	return false
}

// settings decodes Data.Settings into the schema's type (defaults when
// none is stored).
func (e *Env) settings() *schema.SettingsSpec {
	s := schema.DefaultSettings()
	if len(e.Data.Settings) > 0 {
		json.Unmarshal(e.Data.Settings, s)
	}
	return s
}

// settingsField reads a field of the Settings spec by path, for fields
// other areas add to the schema (audit.forward, enforcement.sudoersDir):
// the check works whether or not this build's Go type has them.
func (e *Env) settingsField(path ...string) any {
	var v any
	if json.Unmarshal(e.Data.Settings, &v) != nil {
		return nil
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func pass(msg string) Result         { return Result{Status: Pass, Message: msg} }
func skip(msg string) Result         { return Result{Status: Skip, Message: msg} }
func warn(msg, remedy string) Result { return Result{Status: Warn, Message: msg, Remedy: remedy} }
func fail(msg, remedy string) Result { return Result{Status: Fail, Message: msg, Remedy: remedy} }
