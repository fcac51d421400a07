// Package reconcile is warden's controller runtime and its controllers.
// Controllers read desired state from the store, act on the machine (the
// agent root's files and modes, the running agent's settings) and report
// every difference as drift: a record in the store and an audit event.
// The Manager owns all concurrency: a work queue per controller with
// per-key backoff, triggers from store commits, fsnotify and timers, and a
// periodic full resync.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// Defaults of Options.
const (
	DefaultResyncInterval = 5 * time.Minute
	DefaultBackoffBase    = 50 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Minute
	DefaultGiveUpAfter    = 6
	DefaultDriftRetention = 15 * 24 * time.Hour
)

// Names of the built-in controllers, as in status and metrics.
const (
	FilesController       = "files"
	PermissionsController = "permissions"
	SettingsController    = "settings"
)

// Errors a caller can test for.
var (
	ErrNotLoopback = errors.New("listen address is not loopback")
	ErrRunning     = errors.New("reconcile: manager already running")
)

// Options configures a Manager.
type Options struct {
	Root     string                // the agent root (DESIGN.md); created if missing
	Store    *state.Store          // desired state, drift records
	Audit    *audit.Writer         // drift events; nil records no events (tests only)
	Logger   *slog.Logger          // default slog.Default()
	Registry prometheus.Registerer // metrics; nil registers none
	Listen   Listen                // rendered into appsettings.json; must be loopback
	// LogLevel, when set, follows Settings logging.level without a restart.
	LogLevel *slog.LevelVar

	ResyncInterval time.Duration // full resync period (DefaultResyncInterval)
	BackoffBase    time.Duration // first retry delay of a failing key (DefaultBackoffBase)
	BackoffMax     time.Duration // retry delay cap (DefaultBackoffMax)
	// GiveUpAfter is how many failures in a row make a key's drift
	// unresolved (DRIFT_UNRESOLVED). Retries go on at the capped delay.
	GiveUpAfter    int
	DriftRetention time.Duration // corrected and unresolved drift records kept (15 days)
	FileWorkers    int           // parallel workers of the files controller (default 4)

	// Owner of managed paths, enforced only when running as root. Default:
	// the process's effective uid and gid (the service account).
	UID, GID *int

	Now func() time.Time // clock for records and status (default time.Now)
}

// Manager runs warden's controllers. Create it with NewManager, call Run
// once; Status, Settings, OnSettings and SetListen are safe to call at any
// time from any goroutine.
type Manager struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	store   *state.Store
	root    string
	uid     int // -1: owners are not enforced (not root)
	gid     int

	mu       sync.Mutex
	ctrls    []*Controller
	byName   map[string]*Controller
	pathFns  map[*Controller]func(rel string) (string, bool)
	running  atomic.Bool
	rootfd   int
	drift    *driftBook
	resyncCh chan struct{}
	pingCh   chan chan struct{}

	files    *Files
	perms    *Permissions
	settings *settingsHooks

	onProgress func(controller, key string, err error) // tests
}

// NewManager checks opts and builds a Manager with the files, permissions
// and settings controllers. It refuses a non-loopback listen address.
func NewManager(opts Options) (*Manager, error) {
	if opts.Root == "" || opts.Store == nil {
		return nil, errors.New("reconcile: Root and Store are required")
	}
	if err := opts.Listen.Validate(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("reconcile: root: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	setDefault(&opts.ResyncInterval, DefaultResyncInterval)
	setDefault(&opts.BackoffBase, DefaultBackoffBase)
	setDefault(&opts.BackoffMax, DefaultBackoffMax)
	setDefault(&opts.DriftRetention, DefaultDriftRetention)
	if opts.GiveUpAfter <= 0 {
		opts.GiveUpAfter = DefaultGiveUpAfter
	}
	if opts.FileWorkers <= 0 {
		opts.FileWorkers = 4
	}
	m := &Manager{opts: opts, log: opts.Logger.With("component", "reconcile"), now: opts.Now,
		store: opts.Store, root: root, uid: -1, gid: -1, rootfd: -1,
		byName: map[string]*Controller{}, pathFns: map[*Controller]func(string) (string, bool){},
		resyncCh: make(chan struct{}, 1), pingCh: make(chan chan struct{})}
	if os.Geteuid() == 0 {
		m.uid, m.gid = os.Geteuid(), os.Getegid()
		if opts.UID != nil {
			m.uid = *opts.UID
		}
		if opts.GID != nil {
			m.gid = *opts.GID
		}
	}
	if m.metrics, err = newMetrics(opts.Registry, m.controllers); err != nil {
		return nil, err
	}
	m.settings = newSettingsHooks(m, opts.Listen)
	m.files = &Files{m: m}
	m.perms = &Permissions{m: m}
	m.mustAdd(SettingsController, m.settings, ControllerOptions{})
	m.mustAdd(FilesController, m.files, ControllerOptions{Workers: opts.FileWorkers})
	m.mustAdd(PermissionsController, m.perms, ControllerOptions{Workers: 2})
	return m, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func (m *Manager) mustAdd(name string, r Reconciler, o ControllerOptions) {
	if _, err := m.Add(name, r, o); err != nil {
		panic(err)
	}
}

// Add registers another controller (the certificates controller, say).
// It must be called before Run. If r implements KeyLister it takes part in
// every full resync; onPath, when not nil, maps a changed path below the
// root (slash-separated, relative) to a key of r.
func (m *Manager) Add(name string, r Reconciler, o ControllerOptions) (*Controller, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running.Load() {
		return nil, ErrRunning
	}
	if _, dup := m.byName[name]; dup {
		return nil, fmt.Errorf("reconcile: controller %q added twice", name)
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	c := &Controller{name: name, r: r, workers: o.Workers, q: newQueue(), m: m}
	c.st.Name = name
	m.ctrls = append(m.ctrls, c)
	m.byName[name] = c
	if o.OnPath != nil {
		m.pathFns[c] = o.OnPath
	}
	return c, nil
}

// Controller returns the controller called name, or nil.
func (m *Manager) Controller(name string) *Controller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byName[name]
}

func (m *Manager) controllers() []*Controller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Controller(nil), m.ctrls...)
}

// Root is the absolute agent root.
func (m *Manager) Root() string { return m.root }

// Status returns every controller's status, sorted by name.
func (m *Manager) Status() []ControllerStatus {
	cs := m.controllers()
	out := make([]ControllerStatus, len(cs))
	for i, c := range cs {
		out[i] = c.Status()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Resync asks for a full resync of every controller now.
func (m *Manager) Resync() {
	select {
	case m.resyncCh <- struct{}{}:
	default:
	}
}

// Run runs the controllers until ctx ends, then stops them, stores every
// queued drift record and audit event, and returns. It can be called once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if !m.running.CompareAndSwap(false, true) {
		m.mu.Unlock()
		return ErrRunning
	}
	m.mu.Unlock()
	if err := os.MkdirAll(m.root, rootMode); err != nil {
		return fmt.Errorf("reconcile: create root: %w", err)
	}
	fd, err := unix.Open(m.root, oDir&^unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("reconcile: open root: %w", err)
	}
	m.rootfd = fd
	defer unix.Close(fd)
	m.removeTemps()

	// Without inotify (instances exhausted, say) the controllers still run:
	// everything is resynced every watchRetry while the watch is tried
	// again, rather than the agent serving with no reconciler at all.
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	var retry <-chan time.Time
	w, err := startWatch(m)
	if err != nil {
		m.log.Error("file watch unavailable; resyncing every "+watchRetry.String()+" until it can be set up", "err", err)
		rt := time.NewTicker(watchRetry)
		defer rt.Stop()
		retry = rt.C
	} else {
		events, watchErrs = w.w.Events, w.w.Errors
	}
	defer func() {
		if w != nil {
			w.close()
		}
	}()
	book := newDriftBook(m.store, m.opts.Audit, m.log, m.metrics, m.now)
	m.mu.Lock()
	m.drift = book
	m.mu.Unlock()
	defer book.close()

	sub, cancelSub := m.store.Subscribe()
	defer cancelSub()

	// Saved after the workers stop (defers run last first), before the
	// drift book closes and the caller closes the store.
	m.files.loadLedger()
	defer m.files.closeLedger()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range m.controllers() {
		for range c.workers {
			wg.Add(1)
			go func() { defer wg.Done(); c.work(ctx) }()
		}
	}
	defer func() {
		for _, c := range m.controllers() {
			c.q.stop()
		}
		wg.Wait()
	}()
	// Controllers with triggers of their own (a store bucket, a folder
	// outside the root) run them until ctx ends.
	tctx, stopTriggers := context.WithCancel(ctx)
	var twg sync.WaitGroup
	defer func() { stopTriggers(); twg.Wait() }()
	for _, c := range m.controllers() {
		if r, ok := c.r.(triggerer); ok {
			twg.Add(1)
			go func() { defer twg.Done(); r.triggers(tctx) }()
		}
	}

	m.adoptDrift()
	m.resyncAll(ctx)
	m.pruneDrift()
	tick := time.NewTicker(m.opts.ResyncInterval)
	defer tick.Stop()
	m.log.Info("reconciler running", "root", m.root, "resync", m.opts.ResyncInterval)
	for {
		select {
		case <-ctx.Done():
			return nil
		case gen, ok := <-sub:
			if !ok {
				return nil // store closed
			}
			m.log.Debug("generation applied", "generation", gen)
			m.generationApplied(ctx)
		case <-tick.C:
			m.files.forgetStats() // verify content, not stats, once a period
			m.resyncAll(ctx)
			m.pruneDrift()
		case <-m.resyncCh:
			m.resyncAll(ctx)
		case done := <-m.pingCh:
			close(done)
		case <-retry:
			if w, err = startWatch(m); err == nil {
				m.log.Info("file watch set up")
				events, watchErrs, retry = w.w.Events, w.w.Errors, nil
			}
			m.resyncAll(ctx)
		case ev, ok := <-events:
			if ok {
				w.handle(ev)
			}
		case err, ok := <-watchErrs:
			if ok {
				// Overflow or a failed watch: events may be lost, so do
				// what a lost event cannot undo: look at everything.
				m.log.Warn("file watch error; full resync", "err", err)
				w.rewatch()
				m.resyncAll(ctx)
			}
		}
	}
}

// watchRetry is how often the reconciler without a file watch resyncs
// and tries to set the watch up again.
const watchRetry = 2 * time.Second

// startWatch sets up the file watch (a variable so that a test can make
// it fail as an exhausted inotify does).
var startWatch = newWatch

// generationApplied looks at what a new generation may have changed: the
// files whose desired content changed, and everything of the other
// controllers (a few keys each) but the permissions controller's, which no
// generation changes. The periodic resync still looks at every file.
func (m *Manager) generationApplied(ctx context.Context) {
	keys, full := m.files.changedKeys()
	for _, c := range m.controllers() {
		switch {
		case c.name == FilesController && !full:
			c.q.add(keys...)
		case c.name == PermissionsController:
			// Modes and owners follow the root's layout, never desired
			// state; what a generation creates (a folder, a file) the watch
			// queues, and the periodic resync walks the rest. (Walking
			// policies/ of 10,000 files is most of what a resync costs.)
		default:
			c.resync(ctx)
		}
	}
}

func (m *Manager) resyncAll(ctx context.Context) {
	for _, c := range m.controllers() {
		c.resync(ctx)
	}
}

// adoptDrift hands drift left open by an earlier run to the controllers
// that own it and queues those keys.
func (m *Manager) adoptDrift() {
	recs, err := m.store.DriftRecords()
	if err != nil {
		m.log.Warn("reading drift records failed", "err", err)
		return
	}
	for _, r := range recs {
		if r.State == state.DriftCorrected {
			continue
		}
		name, key := r.Kind, r.Name
		switch r.Kind {
		case "File":
			name = FilesController
		case "Path":
			name = PermissionsController
		case "Certificate":
			name = CertificatesController
		case "Plugin":
			name = PluginsController
		case KindSudoersGrant:
			name = SudoersController
		case KindFileACL:
			name = ACLController
		case KindGroupMembership, KindStandingPrivilege:
			name = GroupsController
		}
		c := m.Controller(name)
		if c == nil {
			continue
		}
		m.drift.adopt(name, key, r)
		c.Enqueue(key)
	}
}

func (m *Manager) pruneDrift() {
	if n, err := m.store.PruneDrift(m.now().Add(-m.opts.DriftRetention)); err != nil {
		m.log.Warn("pruning drift records failed", "err", err)
	} else if n > 0 {
		m.log.Debug("pruned drift records", "count", n)
	}
}

// quiet reports whether no controller has work and every drift record and
// event is stored.
func (m *Manager) quiet() bool {
	for _, c := range m.controllers() {
		if ready, active, _ := c.q.depth(); ready+active > 0 {
			return false
		}
	}
	m.mu.Lock()
	book := m.drift
	m.mu.Unlock()
	return book == nil || book.idle()
}

func (m *Manager) progress(controller, key string, err error) {
	if m.onProgress != nil {
		m.onProgress(controller, key, err)
	}
}

// owner returns the uid and gid managed paths must have, or -1, -1 when
// owners are not enforced.
func (m *Manager) owner() (int, int) { return m.uid, m.gid }

// Settings returns the settings in effect (the defaults before any
// Settings document is applied).
func (m *Manager) Settings() *schema.SettingsSpec { return m.settings.current() }

// OnSettings registers fn to be called with the settings in effect: at once
// if they are known, then after every change. fn runs on a controller
// goroutine and must not block.
func (m *Manager) OnSettings(fn func(*schema.SettingsSpec)) { m.settings.observe(fn) }

// SetListen records the addresses the agent actually listens on (after
// binding port 0, say); appsettings.json is rendered again. Non-loopback
// addresses are refused with ErrNotLoopback.
func (m *Manager) SetListen(l Listen) error {
	if err := l.Validate(); err != nil {
		return err
	}
	m.settings.setListen(l)
	m.files.invalidate()
	if c := m.Controller(FilesController); c != nil {
		c.Enqueue(settingsFile)
	}
	return nil
}
