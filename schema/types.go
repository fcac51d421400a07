package schema

import "encoding/json"

// Kinds of desired-state documents.
const (
	KindPolicy   = "Policy"
	KindApprover = "Approver"
	KindPlugin   = "Plugin"
	KindJob      = "Job"
	KindSettings = "Settings"
)

// Kinds lists every document kind, in the order they are materialized.
var Kinds = []string{KindSettings, KindPolicy, KindApprover, KindPlugin, KindJob}

// Document is one validated desired-state document. Spec holds the typed
// spec: *PolicySpec, *ApproverSpec, *PluginSpec, *JobSpec or *SettingsSpec.
// Raw is the document exactly as it was received; Hash is its SHA-256.
type Document struct {
	Kind string
	ID   string
	Spec any
	Raw  json.RawMessage
	Hash [32]byte
}

// Key is "Kind/id", unique within a generation.
func (d *Document) Key() string { return d.Kind + "/" + d.ID }

// Policy returns the spec of a Policy document, or nil.
func (d *Document) Policy() *PolicySpec { s, _ := d.Spec.(*PolicySpec); return s }

// Approver returns the spec of an Approver document, or nil.
func (d *Document) Approver() *ApproverSpec { s, _ := d.Spec.(*ApproverSpec); return s }

// Plugin returns the spec of a Plugin document, or nil.
func (d *Document) Plugin() *PluginSpec { s, _ := d.Spec.(*PluginSpec); return s }

// Job returns the spec of a Job document, or nil.
func (d *Document) Job() *JobSpec { s, _ := d.Spec.(*JobSpec); return s }

// Settings returns the spec of a Settings document, or nil.
func (d *Document) Settings() *SettingsSpec { s, _ := d.Spec.(*SettingsSpec); return s }

// PolicySpec is the spec of a Policy (schema/policy.cue).
type PolicySpec struct {
	Name            string    `json:"name"`
	Description     string    `json:"description,omitempty"`
	Type            string    `json:"type"`
	Status          string    `json:"status"`
	Priority        int       `json:"priority"`
	Controls        []string  `json:"controls"`
	DurationSeconds int       `json:"durationSeconds,omitempty"`
	Redirect        *Redirect `json:"redirect,omitempty"`
	// LeastPrivilege is set on LeastPrivilege policies that manage the
	// admin groups (see reconcile's groups controller).
	LeastPrivilege *LeastPrivilege `json:"leastPrivilege,omitempty"`
	Filters        Filters         `json:"filters"`
}

// LeastPrivilege says which local groups confer admin rights and who may
// stay in them.
type LeastPrivilege struct {
	// AdminGroups left empty means those of DefaultAdminGroups that exist.
	AdminGroups    []string `json:"adminGroups,omitempty"`
	StandingAdmins []string `json:"standingAdmins"`
	AllowEmpty     bool     `json:"allowEmpty"`
}

// DefaultAdminGroups are the admin groups of a LeastPrivilege policy that
// names none, where they exist.
var DefaultAdminGroups = []string{"sudo", "wheel", "admin"}

// Redirect names where a redirect control sends the user.
type Redirect struct {
	To string `json:"to"`
}

// Filters select the requests a policy applies to. An empty list matches
// everything.
type Filters struct {
	Users        []string            `json:"users,omitempty"`
	Groups       []string            `json:"groups,omitempty"`
	Machines     []string            `json:"machines,omitempty"`
	Applications []ApplicationFilter `json:"applications,omitempty"`
	Folders      []string            `json:"folders,omitempty"`
	Time         *TimeWindow         `json:"time,omitempty"`
}

// ApplicationFilter matches the application of a request; every field set
// must match.
type ApplicationFilter struct {
	Path        string `json:"path,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	CommandLine string `json:"commandLine,omitempty"`
	Publisher   string `json:"publisher,omitempty"`
	Parent      string `json:"parent,omitempty"`
}

// TimeWindow restricts a policy to days, times of day and a date range.
type TimeWindow struct {
	Days      []string `json:"days,omitempty"`
	From      string   `json:"from,omitempty"`
	To        string   `json:"to,omitempty"`
	TimeZone  string   `json:"timeZone,omitempty"`
	NotBefore string   `json:"notBefore,omitempty"`
	NotAfter  string   `json:"notAfter,omitempty"`
}

// ApproverSpec is the spec of an Approver (schema/approver.cue).
type ApproverSpec struct {
	Name     string   `json:"name"`
	Users    []string `json:"users"`
	Groups   []string `json:"groups,omitempty"`
	Policies []string `json:"policies"`
}

// PluginSpec is the spec of a Plugin (schema/plugin.cue).
type PluginSpec struct {
	Executable       string            `json:"executable"`
	Args             []string          `json:"args,omitempty"`
	Env              map[string]string `json:"env,omitempty"`
	SHA256           string            `json:"sha256,omitempty"`
	Autostart        bool              `json:"autostart"`
	Restart          RestartPolicy     `json:"restart"`
	HeartbeatSeconds int               `json:"heartbeatSeconds,omitempty"`
	Topics           PluginTopics      `json:"topics"`
}

// RestartPolicy says when a plugin is restarted and how fast.
type RestartPolicy struct {
	Policy         string  `json:"policy"`
	BackoffSeconds float64 `json:"backoffSeconds,omitempty"`
	MaxRestarts    int     `json:"maxRestarts,omitempty"`
	WindowSeconds  int     `json:"windowSeconds,omitempty"`
}

// PluginTopics lists the broker topics a plugin may subscribe to. It may
// always publish below plugins/<id>/.
type PluginTopics struct {
	Subscribe []string `json:"subscribe,omitempty"`
}

// JobSpec is the spec of a Job (schema/job.cue).
type JobSpec struct {
	Enabled     bool       `json:"enabled"`
	Priority    int        `json:"priority"`
	Concurrency string     `json:"concurrency"`
	CatchUp     bool       `json:"catchUp"`
	Trigger     JobTrigger `json:"trigger"`
	Tasks       []Task     `json:"tasks"`
}

// JobTrigger says when a job runs; manual runs are always possible.
type JobTrigger struct {
	Schedule        string   `json:"schedule,omitempty"`
	TimeZone        string   `json:"timeZone,omitempty"`
	IntervalMinutes int      `json:"intervalMinutes,omitempty"`
	RunAt           string   `json:"runAt,omitempty"`
	Events          []string `json:"events,omitempty"`
	// EventCooldownSeconds is how long after a run ends events are ignored
	// for this job (the recursion guard; default 60).
	EventCooldownSeconds int `json:"eventCooldownSeconds"`
}

// Task is one command of a job.
type Task struct {
	Command         string            `json:"command"`
	Args            []string          `json:"args,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	WorkingDir      string            `json:"workingDir,omitempty"`
	TimeoutSeconds  int               `json:"timeoutSeconds"`
	RunAs           string            `json:"runAs,omitempty"`
	ContinueOnError bool              `json:"continueOnError,omitempty"`
	Condition       string            `json:"condition,omitempty"`
}

// SettingsSpec is the spec of the Settings singleton (schema/settings.cue).
type SettingsSpec struct {
	AllowedHosts          []string       `json:"allowedHosts"`
	Logging               Logging        `json:"logging"`
	AlternativeSignatures []string       `json:"alternativeSignatures,omitempty"`
	Certificate           Certificate    `json:"certificate"`
	Backend               *Backend       `json:"backend,omitempty"`
	Audit                 AuditSettings  `json:"audit"`
	RateLimit             RateLimit      `json:"rateLimit"`
	CircuitBreaker        CircuitBreaker `json:"circuitBreaker"`
	Enforcement           Enforcement    `json:"enforcement"`
	ApplicationControl    AppControl     `json:"applicationControl"`
}

// AppControl configures the exec controller (Settings
// applicationControl). Zero values mean the defaults: default allow,
// DefaultAppControlTimeoutMs, fallback allow, mounts ["/"].
type AppControl struct {
	Default   string   `json:"default,omitempty"`
	TimeoutMs int      `json:"timeoutMs,omitempty"`
	Fallback  string   `json:"fallback,omitempty"`
	Mounts    []string `json:"mounts,omitempty"`
}

// Enforcement says where privileges are made true on the machine.
type Enforcement struct {
	// SudoersDir holds the grants' sudoers drop-ins (DefaultSudoersDir).
	SudoersDir string `json:"sudoersDir,omitempty"`
}

// DefaultSudoersDir is Enforcement.SudoersDir when Settings leaves it out.
const DefaultSudoersDir = "/etc/sudoers.d"

// Logging sets the agent's log level and log retention.
type Logging struct {
	Level         string `json:"level,omitempty"`
	RetentionDays int    `json:"retentionDays,omitempty"`
}

// Certificate configures the server certificate.
type Certificate struct {
	RotateBeforeDays int    `json:"rotateBeforeDays,omitempty"`
	Path             string `json:"path,omitempty"`
	KeyPath          string `json:"keyPath,omitempty"`
}

// Backend is the central backend the agent syncs with.
type Backend struct {
	URL         string `json:"url"`
	PollSeconds int    `json:"pollSeconds,omitempty"`
	CAFile      string `json:"caFile,omitempty"`
	Group       string `json:"group,omitempty"`
	// LongPollSeconds is how long the agent offers to wait for a new
	// bundle in one request (Prefer: wait=N); nil means the default, 0
	// turns long polling off. A backend that does not hold requests is
	// polled every pollSeconds.
	LongPollSeconds *int `json:"longPollSeconds,omitempty"`
}

// AuditSettings configures audit retention and forwarding.
type AuditSettings struct {
	RetentionDays int            `json:"retentionDays,omitempty"`
	Forward       []AuditForward `json:"forward,omitempty"`
}

// AuditForward is one place audit events are forwarded to: a syslog
// receiver (RFC 5424 over TCP, TLS unless tls is false) or an NDJSON file.
type AuditForward struct {
	Type              string `json:"type"`                        // "syslog" or "file"
	Address           string `json:"address,omitempty"`           // syslog: host:port
	TLS               *bool  `json:"tls,omitempty"`               // syslog: default true
	CAFile            string `json:"caFile,omitempty"`            // syslog: PEM roots (default: the system's)
	CertFile          string `json:"certFile,omitempty"`          // syslog: client certificate (PEM), optional
	KeyFile           string `json:"keyFile,omitempty"`           // syslog: its key
	ServerName        string `json:"serverName,omitempty"`        // syslog: name to verify (default: the address's host)
	Format            string `json:"format,omitempty"`            // syslog: "json" (default) or "cef"
	Path              string `json:"path,omitempty"`              // file: absolute path
	MaxSizeMB         int    `json:"maxSizeMB,omitempty"`         // file: rotate past this size (default 100)
	MaxFiles          int    `json:"maxFiles,omitempty"`          // file: rotated files kept (default 5)
	AlertAfterSeconds int    `json:"alertAfterSeconds,omitempty"` // receiver down this long: an audit event (default 300)
}

// RateLimit bounds policy evaluations per source.
type RateLimit struct {
	PerMinute int `json:"perMinute,omitempty"`
	Queue     int `json:"queue,omitempty"`
}

// CircuitBreaker opens after consecutive failed evaluations of one source.
type CircuitBreaker struct {
	Failures    int `json:"failures,omitempty"`
	OpenSeconds int `json:"openSeconds,omitempty"`
}

// Manifest is a bundle's manifest.json (schema/manifest.cue).
type Manifest struct {
	Version int64          `json:"version"`
	Created string         `json:"created"`
	Expires string         `json:"expires,omitempty"`
	KeyID   string         `json:"keyId"`
	Files   []ManifestFile `json:"files"`
}

// ManifestFile is one file listed in a manifest.
type ManifestFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Defaults applied where Settings leaves a value out.
const (
	DefaultRotateBeforeDays  = 10
	DefaultRetentionDays     = 15
	DefaultRateLimitPerMin   = 100
	DefaultRateLimitQueue    = 100
	DefaultBreakerFailures   = 10
	DefaultBreakerOpenSecond = 300
	DefaultPollSeconds       = 60
	// DefaultAppControlTimeoutMs is how long an exec waits for the exec
	// controller's answer before the fallback applies.
	DefaultAppControlTimeoutMs = 100
	DefaultLongPollSeconds     = 30
)

// DefaultSettings is what an agent runs with before any Settings document
// is applied.
func DefaultSettings() *SettingsSpec {
	return &SettingsSpec{AllowedHosts: []string{"localhost", "127.0.0.1"}, Logging: Logging{Level: "Information"}}
}
