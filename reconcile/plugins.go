package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warden/audit"
	"warden/pki"
	"warden/procgroup"
	"warden/schema"
)

// PluginsController is the name of the plugins controller.
const PluginsController = "plugins"

// Defaults of PluginOptions, and the heartbeat rule.
const (
	DefaultPluginCertTTL   = 24 * time.Hour
	DefaultPluginStopGrace = 2 * time.Second
	// HeartbeatMisses heartbeat intervals without a heartbeat make a
	// plugin hung.
	HeartbeatMisses = 3
)

// Errors of Restart.
var (
	ErrPluginUnknown   = errors.New("no such plugin in the desired state")
	ErrPluginNoAutorun = errors.New("plugin has autostart false")
)

// PluginBroker is what the supervisor needs of the MQTT broker: ending
// the connections of a certificate it has revoked.
type PluginBroker interface {
	DisconnectSerial(serial string) int
}

// PluginOptions configures the plugins controller.
type PluginOptions struct {
	CA     *pki.CA      // issues and revokes the plugins' certificates (required)
	Broker PluginBroker // nil: no broker connections to end
	// MQTTAddr and APIAddr are handed to plugins; by default the Listen
	// addresses the Manager knows (Options.Listen, SetListen).
	MQTTAddr, APIAddr string
	// CertTTL is the lifetime of a plugin certificate (DefaultPluginCertTTL).
	// A plugin is restarted with a fresh one after 90% of it.
	CertTTL time.Duration
	// StopGrace is how long a plugin has between SIGTERM and SIGKILL
	// (DefaultPluginStopGrace).
	StopGrace time.Duration
	Workers   int // parallel starts and stops (default 4)
	// Cgroups, when set, holds one cgroup per plugin process, so that a
	// child that calls setsid ends with the plugin; nil: process groups
	// only (docs/plugins.md, "Processes").
	Cgroups *procgroup.Cgroups
}

// Plugins is the controller that supervises plugin processes; its key is
// a Plugin document's id. Every start is preceded by a validation of the
// executable (validateExecutable); the process gets a fresh plugin
// certificate on an inherited pipe and runs in its own process group; its
// exit is noticed at once by a goroutine blocked in wait, which revokes
// the certificate, ends its broker connections, audits PLUGIN_EXITED,
// asks the restart tracker and queues the key. Reconcile then starts,
// stops or waits, and never sleeps: backoff, heartbeat deadlines, the
// SIGKILL after a grace period and certificate renewal are RequeueAfter.
//
// Run must run alongside the Manager: when its context ends it stops
// every plugin (SIGTERM, then SIGKILL after StopGrace) and returns once
// every exit is recorded.
type Plugins struct {
	m     *Manager
	opts  PluginOptions
	log   *slog.Logger
	ctrl  *Controller
	spawn *procgroup.Spawner
	boot  string // kernel boot id, to recognise our processes after a restart

	closing atomic.Bool
	procs   sync.WaitGroup // one per running process: its waiter

	mu       sync.Mutex
	plugins  map[string]*plugin
	bySerial map[string]*proc // running instances by certificate serial

	onIssue func(id, certPEM, keyPEM string) // tests: see the credentials handed over
}

var _ Reconciler = (*Plugins)(nil)
var _ KeyLister = (*Plugins)(nil)

// plugin is what the supervisor knows of one plugin id. Its lock is held
// for a whole Reconcile of the key (starts included), so keep it away from
// anything that waits for a process.
type plugin struct {
	id string

	mu        sync.Mutex
	proc      *proc    // the running instance, nil when none
	docHash   [32]byte // the document the tracker belongs to
	tracker   *restartTracker
	restarts  int // processes replaced since the agent started
	lastStart time.Time
	lastExit  *Exit
	exitWhy   string           // the supervisor's reason when it stopped the last one
	after     *RestartDecision // what follows lastExit; nil once acted on
	nextAt    time.Time        // when a restart is due
	lastPID   int
	invalid   string // last validation failure audited ("" after a good start)
	failed    string // why it is not running, for status
	restartBy string // a restart was asked for, by whom
}

// AddPlugins adds the plugins controller (call before Run). It first ends
// the plugin processes an earlier agent run left behind (recorded in the
// store with their start time), so that a restarted agent never runs a
// plugin twice.
func (m *Manager) AddPlugins(opts PluginOptions) (*Plugins, error) {
	if opts.CA == nil {
		return nil, errors.New("reconcile: AddPlugins needs a CA")
	}
	if opts.CertTTL <= 0 {
		opts.CertTTL = DefaultPluginCertTTL
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultPluginStopGrace
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	p := &Plugins{m: m, opts: opts, log: m.opts.Logger.With("component", "plugins"),
		plugins: map[string]*plugin{}, bySerial: map[string]*proc{}, boot: bootID()}
	c, err := m.Add(PluginsController, p, ControllerOptions{Workers: opts.Workers, OnPath: p.onPath})
	if err != nil {
		return nil, err
	}
	p.ctrl = c
	p.reapOrphans()
	p.spawn = procgroup.NewSpawner()
	return p, nil
}

// PluginsOf returns the plugins controller added to m, or nil.
func PluginsOf(m *Manager) *Plugins {
	c := m.Controller(PluginsController)
	if c == nil {
		return nil
	}
	p, _ := c.r.(*Plugins)
	return p
}

// Run waits for ctx to end, then stops every plugin and returns when
// every exit has been recorded (audited, certificate revoked).
func (p *Plugins) Run(ctx context.Context) error {
	<-ctx.Done()
	p.stopAll()
	return nil
}

// Keys lists every Plugin document and every plugin the supervisor knows.
func (p *Plugins) Keys(context.Context) ([]string, error) {
	seen := map[string]bool{}
	for _, d := range p.m.store.Current().OfKind(schema.KindPlugin) {
		seen[d.ID] = true
	}
	p.mu.Lock()
	for id := range p.plugins {
		seen[id] = true
	}
	p.mu.Unlock()
	keys := make([]string, 0, len(seen))
	for id := range seen {
		keys = append(keys, id)
	}
	sort.Strings(keys)
	return keys, nil
}

// onPath maps a change below Plugins/ to the plugins whose executable,
// signature or key it may be, so a fixed executable is tried at once.
func (p *Plugins) onPath(rel string) (string, bool) {
	if !strings.HasPrefix(rel, "Plugins/") || filesOwned(rel) {
		return "", false
	}
	for _, d := range p.m.store.Current().OfKind(schema.KindPlugin) {
		exe := d.Plugin().Executable
		if rel == exe || rel == exe+sigSuffix || rel == exe+pubSuffix || strings.HasPrefix(exe, rel+"/") {
			return d.ID, true // one key per event is enough: the resync covers the rare shared folder
		}
	}
	return "", false
}

// get returns the plugin id, creating it when create is set.
func (p *Plugins) get(id string, create bool) *plugin {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.plugins[id]
	if pl == nil && create {
		pl = &plugin{id: id}
		p.plugins[id] = pl
	}
	return pl
}

// Reconcile converges plugin id: running the document's executable when
// the document is there with autostart, stopped otherwise.
func (p *Plugins) Reconcile(ctx context.Context, id string) (Result, error) {
	if p.closing.Load() {
		return Result{}, nil
	}
	doc := p.m.store.Current().Get(schema.KindPlugin, id)
	pl := p.get(id, doc != nil)
	if pl == nil {
		return Result{}, nil
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pr := pl.proc; pr != nil {
		return p.supervise(pl, pr, doc), nil
	}
	if doc == nil {
		p.mu.Lock()
		delete(p.plugins, id)
		p.mu.Unlock()
		return Result{}, nil
	}
	return p.ensureRunning(ctx, pl, doc)
}

// supervise looks at a running plugin: stop it when it must go or be
// replaced, else come back at its next deadline.
func (p *Plugins) supervise(pl *plugin, pr *proc, doc *schema.Document) Result {
	if pr.stopReason != "" {
		return p.stop(pr, pr.stopReason, pr.hung)
	}
	now := time.Now()
	switch {
	case doc == nil:
		return p.stop(pr, "document removed", false)
	case !doc.Plugin().Autostart:
		return p.stop(pr, "autostart turned off", false)
	case doc.Hash != pr.docHash:
		return p.stop(pr, "document changed", false)
	case pl.restartBy != "":
		why := "restart requested by " + pl.restartBy
		pl.restartBy = ""
		return p.stop(pr, why, false)
	case !now.Before(pr.renewAt):
		return p.stop(pr, "certificate renewal", false)
	}
	next := pr.renewAt.Sub(now)
	if pr.heartbeat > 0 {
		last := pr.started
		if b := time.Unix(0, pr.lastBeat.Load()); b.After(last) {
			last = b
		}
		deadline := last.Add(HeartbeatMisses * pr.heartbeat)
		if !now.Before(deadline) {
			return p.stop(pr, fmt.Sprintf("hung: no heartbeat for %s", now.Sub(last).Round(time.Millisecond)), true)
		}
		next = min(next, deadline.Sub(now))
	}
	return Result{RequeueAfter: next}
}

// ensureRunning starts a plugin that should run and is not running, unless
// its restart policy says to wait or not to.
func (p *Plugins) ensureRunning(ctx context.Context, pl *plugin, doc *schema.Document) (Result, error) {
	spec := doc.Plugin()
	if pl.tracker == nil || pl.docHash != doc.Hash {
		// A new or changed document starts with a clean history.
		pl.docHash, pl.tracker = doc.Hash, newRestartTracker(restartPolicyOf(doc))
		if pl.after != nil && pl.after.Reason != ReasonStopped {
			pl.after = nil // no backoff, no giving up: start it now
		}
		pl.invalid, pl.failed = "", ""
	}
	reason := ""
	switch {
	case pl.restartBy != "":
		reason = "restart requested by " + pl.restartBy
		pl.restartBy = ""
		pl.tracker = newRestartTracker(restartPolicyOf(doc))
		pl.after = nil
	case !spec.Autostart:
		pl.failed = "autostart is false"
		return Result{}, nil
	case pl.after != nil:
		d := *pl.after
		now := time.Now()
		switch {
		case d.Restart && now.Before(pl.nextAt):
			return Result{RequeueAfter: pl.nextAt.Sub(now)}, nil
		case d.Restart:
			reason = pl.exitWhy
			if reason == "" {
				reason = pl.lastExit.String()
				ReportDrift(ctx, Drift{Kind: "Plugin", ID: pl.id, Field: "process", Desired: "running",
					Actual: "exited: " + reason, Action: "restart", Target: p.target(pl.id, spec)})
			}
		case d.Reason == ReasonTooManyRestarts:
			pl.failed = "gave up: " + d.Detail
			ReportDrift(ctx, Drift{Kind: "Plugin", ID: pl.id, Field: "process", Desired: "running",
				Actual: "exited: " + d.Detail, Action: "none: gave up; fix the plugin, then restart it or change its document",
				Target: p.target(pl.id, spec)})
			return Result{}, TerminalError(fmt.Errorf("plugin %s left stopped: %s", pl.id, d.Detail))
		default: // policy never, or a clean exit under on-failure: stopped is what the document wants
			pl.failed = d.Reason + ": " + d.Detail
			return Result{}, nil
		}
	}
	if err := p.start(ctx, pl, doc, reason); err != nil || pl.proc == nil {
		return Result{}, err // pl.proc is nil when the agent is stopping
	}
	return p.supervise(pl, pl.proc, doc), nil
}

// Restart asks for plugin id to be stopped (if it runs) and started again
// now, with a clean restart history. by names who asked, for the audit.
func (p *Plugins) Restart(id, by string) error {
	doc := p.m.store.Current().Get(schema.KindPlugin, id)
	if doc == nil {
		return fmt.Errorf("%w: %s", ErrPluginUnknown, id)
	}
	if !doc.Plugin().Autostart {
		return fmt.Errorf("%w: %s", ErrPluginNoAutorun, id)
	}
	pl := p.get(id, true)
	pl.mu.Lock()
	pl.restartBy = by
	pl.mu.Unlock()
	p.ctrl.Enqueue(id)
	return nil
}

// Heartbeat records a heartbeat of plugin id from the connection that
// authenticated with serial; one from an older instance's certificate is
// ignored. Wire it to the broker's OnHeartbeat. It never blocks for long.
func (p *Plugins) Heartbeat(id, serial string) {
	p.mu.Lock()
	pr := p.bySerial[serial]
	p.mu.Unlock()
	if pr != nil && pr.id == id {
		pr.lastBeat.Store(time.Now().UnixNano())
	}
}

// PluginStatus is what GET /api/v1/plugins and GET /api/v1/status show of
// one plugin.
type PluginStatus struct {
	ID string `json:"id"`
	// State is running, stopping, restarting (stopped by the supervisor
	// to be started again), backoff (waiting to restart), exited
	// (ended and its policy says not to restart), failed (gave up after
	// maxRestarts), invalid (the executable failed validation), stopped
	// (autostart false), or pending.
	State         string    `json:"state"`
	PID           int       `json:"pid,omitempty"`
	Restarts      int       `json:"restarts"`
	LastStart     time.Time `json:"lastStart,omitzero"`
	LastExit      time.Time `json:"lastExit,omitzero"`
	ExitCode      *int      `json:"exitCode,omitempty"`
	Signal        string    `json:"signal,omitempty"`
	ExitReason    string    `json:"exitReason,omitempty"`
	NextStart     time.Time `json:"nextStart,omitzero"`
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
	Serial        string    `json:"serial,omitempty"`
	SHA256        string    `json:"sha256,omitempty"`
	Error         string    `json:"error,omitempty"`
}

// List returns the status of every plugin the supervisor knows and every
// Plugin document, sorted by id.
func (p *Plugins) List() []PluginStatus {
	keys, _ := p.Keys(context.Background())
	out := make([]PluginStatus, 0, len(keys))
	for _, id := range keys {
		pl := p.get(id, false)
		if pl == nil {
			out = append(out, PluginStatus{ID: id, State: "pending"})
			continue
		}
		out = append(out, pl.status())
	}
	return out
}

func (pl *plugin) status() PluginStatus {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	s := PluginStatus{ID: pl.id, Restarts: pl.restarts, LastStart: utc(pl.lastStart), Error: pl.failed}
	if e := pl.lastExit; e != nil {
		code := e.Code
		s.LastExit, s.ExitCode, s.Signal, s.ExitReason = e.At.UTC(), &code, e.Signal, pl.exitWhy
		if s.ExitReason == "" {
			s.ExitReason = e.String()
		}
	}
	switch pr := pl.proc; {
	case pr != nil:
		s.State, s.PID, s.Serial, s.SHA256, s.Error = "running", pr.pid, pr.serial, pr.sum, ""
		if pr.stopReason != "" {
			s.State = "stopping"
		}
		if b := pr.lastBeat.Load(); b != 0 {
			s.LastHeartbeat = time.Unix(0, b).UTC()
		}
	case pl.invalid != "":
		s.State, s.Error = "invalid", pl.invalid
	case pl.after != nil && pl.after.Reason == ReasonStopped:
		s.State = "restarting"
	case pl.after != nil && pl.after.Restart:
		s.State, s.NextStart = "backoff", pl.nextAt.UTC()
	case pl.after != nil && pl.after.Reason == ReasonTooManyRestarts:
		s.State = "failed"
	case pl.after != nil:
		s.State = "exited"
	case pl.failed == "autostart is false":
		s.State = "stopped"
	default:
		s.State = "pending"
	}
	return s
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// restartPolicyOf reads a document's restart block, telling an explicit
// "maxRestarts": 0 from an absent one.
func restartPolicyOf(d *schema.Document) RestartPolicy {
	var raw struct {
		Spec struct {
			Restart struct {
				MaxRestarts *int `json:"maxRestarts"`
			} `json:"restart"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(d.Raw, &raw) // validated already
	return RestartPolicyOf(d.Plugin().Restart, raw.Spec.Restart.MaxRestarts != nil)
}

func (p *Plugins) target(id string, spec *schema.PluginSpec) *audit.TargetInfo {
	t := &audit.TargetInfo{Kind: schema.KindPlugin, ID: id}
	if spec != nil {
		t.Path = p.m.root + "/" + spec.Executable
	}
	return t
}

func (p *Plugins) emit(ev audit.Event) {
	if p.m.opts.Audit == nil {
		return
	}
	ev.Component = "plugins"
	if _, err := p.m.opts.Audit.Write(context.Background(), ev); err != nil && !errors.Is(err, audit.ErrClosed) {
		p.log.Error("audit event not recorded", "type", ev.Type, "err", err)
	}
}

// serviceUID is the owner plugin executables must have: the enforced
// owner when running as root, else the effective uid.
func (p *Plugins) serviceUID() int {
	if uid, _ := p.m.owner(); uid >= 0 {
		return uid
	}
	return os.Geteuid()
}

// addrs are the broker and API addresses handed to plugins.
func (p *Plugins) addrs() (mqtt, api string) {
	l := p.m.settings.getListen()
	mqtt, api = p.opts.MQTTAddr, p.opts.APIAddr
	if mqtt == "" {
		mqtt = l.MQTT
	}
	if api == "" {
		api = l.API
	}
	return mqtt, api
}
