package appcontrol

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/policy"
	"warden/schema"
	"warden/state"
)

// Defaults of Settings applicationControl.
const (
	DefaultAllow   = "allow"   // no policy matched: run it (a deny list)
	DefaultDeny    = "deny"    // no policy matched: refuse it (an allow list)
	DefaultMonitor = "monitor" // an allow list in rollout: run it, audit the would-be block
)

// maxSlow bounds the decisions being made at once (hashing, name lookups);
// an exec beyond that gets the fallback at once instead of a queue.
const maxSlow = 64

// Options wires a Controller.
type Options struct {
	// Root is the agent's root: programs below it always run.
	Root   string
	Store  *state.Store
	Audit  *audit.Writer
	Logger *slog.Logger
	// Machine is the name policies' machine filters see (default: the
	// host name).
	Machine string
	Now     func() time.Time
	// Notify publishes a notification for a would-be block under a
	// monitor-notify policy (the broker's Notifications topic); nil drops
	// them.
	Notify func(payload []byte)
}

// Controller watches execs on the configured mounts while any
// ApplicationControl policy is in force, and answers each.
type Controller struct {
	opts   Options
	log    *slog.Logger
	pid    int
	exeDev uint64
	exeIno uint64
	names  *names
	hashes *hashCache
	cur    atomic.Pointer[config]
	done   atomic.Uint64 // the generation apply last finished with
	// pidfdInfo is cleared once PIDFD_GET_INFO fails (kernels before 6.13).
	pidfdInfo atomic.Bool

	mu  sync.Mutex // group swaps
	grp *group

	// markMu orders ignore marks with generations: a mark is set only
	// while the configuration it was decided under is current, and a new
	// configuration is stored after the marks are flushed, both under it.
	markMu     sync.Mutex
	ignores    int // ignore marks set on grp since its last flush
	maxIgnores int
	// hardlinks is the protected_hardlinks sysctl file (tests point it
	// elsewhere).
	hardlinks string

	sem     chan struct{}
	wg      sync.WaitGroup // readers and decisions
	reports chan report
	stats   Stats
}

// Stats counts what the controller did since it started.
type Stats struct {
	Events atomic.Uint64 // permission events answered
	Cached atomic.Uint64 // answered from the decision cache
	// CachedNanos is the time spent on those, from the event read to the
	// answer written (the controller's share of a cached exec).
	CachedNanos atomic.Uint64
	Denied      atomic.Uint64 // answered deny (fallbacks included)
	Fallback    atomic.Uint64 // answered with the fallback (deadline passed, or too busy)
	Dropped     atomic.Uint64 // audit reports dropped because the queue was full
	// IgnoreMarks counts the ignore marks set: files whose later execs the
	// kernel answers without an event (ignore.go).
	IgnoreMarks   atomic.Uint64
	IgnoreFlushes atomic.Uint64 // times every ignore mark was dropped (generation, bound)
}

// config is one generation's view: the compiled ApplicationControl
// policies, the settings and the decisions made under them.
type config struct {
	gen         uint64
	ix          *policy.Index
	prof        policy.Profile
	defaultMode string
	fallback    bool // fallback answer: allow
	timeout     time.Duration
	mounts      []string
	cache       *decisionCache
	// ignoreOK: a decision may be left to the kernel (default allow and
	// fs.protected_hardlinks on; ignore.go says why both).
	ignoreOK bool
}

func (c *config) active() bool { return c.prof.Policies > 0 || c.defaultMode != DefaultAllow }

// New prepares a controller; Run starts it.
func New(opts Options) (*Controller, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Machine == "" {
		opts.Machine, _ = os.Hostname()
	}
	c := &Controller{opts: opts, log: opts.Logger.With("component", "appcontrol"), pid: os.Getpid(),
		names: newNames(), hashes: newHashCache(), sem: make(chan struct{}, maxSlow), reports: make(chan report, 1024),
		maxIgnores: maxIgnoreMarks, hardlinks: protectedHardlinks}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil, err
	}
	c.exeDev, c.exeIno = st.Dev, st.Ino
	c.pidfdInfo.Store(true)
	return c, nil
}

// Stats returns the controller's counters.
func (c *Controller) Stats() *Stats { return &c.stats }

// Status describes the controller for GET /api/v1/status.
func (c *Controller) Status() map[string]any {
	out := map[string]any{"active": false}
	c.mu.Lock()
	if c.grp != nil {
		out["active"], out["mounts"], out["pidfd"] = true, c.grp.mounts, c.grp.pidfd
	}
	c.mu.Unlock()
	out["events"], out["cached"], out["denied"], out["fallback"] = c.stats.Events.Load(), c.stats.Cached.Load(), c.stats.Denied.Load(), c.stats.Fallback.Load()
	out["ignoreMarks"], out["ignoreFlushes"] = c.stats.IgnoreMarks.Load(), c.stats.IgnoreFlushes.Load()
	return out
}

// Run follows the applied generations until ctx ends, then removes the
// marks (the kernel lets every exec still waiting run).
func (c *Controller) Run(ctx context.Context) error {
	gens, cancel := c.opts.Store.Subscribe()
	defer cancel()
	auditDone := make(chan struct{})
	go func() { defer close(auditDone); c.auditLoop() }()
	c.apply(c.opts.Store.Current())
	for {
		select {
		case <-ctx.Done():
			c.swap(nil)
			c.wg.Wait()
			close(c.reports)
			<-auditDone
			return nil
		case _, ok := <-gens:
			if !ok {
				continue
			}
			if sn := c.opts.Store.Current(); sn.Meta.Generation != c.done.Load() {
				c.apply(sn)
			}
		}
	}
}

// apply compiles a generation's ApplicationControl policies and moves the
// marks to its settings. Decisions cached under the previous generation
// are dropped with it. Policies that do not compile leave the previous
// ones in force (the engine does the same).
func (c *Controller) apply(sn *state.Snapshot) {
	defer c.done.Store(sn.Meta.Generation)
	var docs []*schema.Document
	for _, d := range sn.OfKind(schema.KindPolicy) {
		if p := d.Policy(); p != nil && p.Type == policy.TypeApplicationControl {
			docs = append(docs, d)
		}
	}
	ix, err := policy.Compile(docs)
	if err != nil {
		c.log.Error("ApplicationControl policies not loaded; the previous ones stay in force", "generation", sn.Meta.Generation, "err", err)
		return
	}
	set := sn.Settings().ApplicationControl
	cfg := &config{gen: sn.Meta.Generation, ix: ix, prof: ix.Profile(policy.ActionExec),
		defaultMode: cmpOr(set.Default, DefaultAllow), fallback: set.Fallback != policy.Deny,
		timeout: time.Duration(cmpOr(set.TimeoutMs, schema.DefaultAppControlTimeoutMs)) * time.Millisecond,
		mounts:  set.Mounts, cache: newDecisionCache()}
	if len(cfg.mounts) == 0 {
		cfg.mounts = []string{"/"}
	}
	cfg.ignoreOK = cfg.defaultMode == DefaultAllow && hardlinksProtected(c.hardlinks)
	// The marks decided under the previous generation go before this one
	// decides anything (ignore.go).
	c.markMu.Lock()
	if err := c.flushIgnores(); err != nil { // not seen in practice; no mark may outlive its generation
		c.log.Error("ignore marks not flushed; watching with a new fanotify group", "err", err)
		c.swap(nil)
	}
	c.cur.Store(cfg)
	c.markMu.Unlock()
	if !cfg.active() {
		c.swap(nil)
		return
	}
	c.mu.Lock()
	same := c.grp != nil && slices.Equal(c.grp.mounts, cfg.mounts)
	c.mu.Unlock()
	if same {
		return
	}
	g, err := openGroup(cfg.mounts)
	if err != nil {
		c.log.Error("application control not enforced: cannot watch execs", "mounts", cfg.mounts, "err", err)
		return
	}
	c.log.Info("application control watching execs", "mounts", cfg.mounts, "pidfd", g.pidfd,
		"policies", cfg.prof.Policies, "default", cfg.defaultMode, "timeout", cfg.timeout)
	c.swap(g)
}

// swap installs g (nil: none) and closes the previous group after, so
// that no exec goes unwatched in between.
func (c *Controller) swap(g *group) {
	if g != nil {
		c.wg.Add(1)
		go c.readLoop(g)
	}
	c.mu.Lock()
	old := c.grp
	c.grp = g
	c.mu.Unlock()
	if old != nil {
		old.close()
		c.log.Info("application control stopped watching", "mounts", old.mounts)
	}
}

func (c *Controller) readLoop(g *group) {
	defer c.wg.Done()
	scratch := make([]byte, statusBuf)
	g.serve(func(ev *event) { c.handle(ev, scratch) }, func(err error) { c.log.Error("fanotify", "err", err) })
}

// handle answers one event. What is cheap happens here, on the reading
// goroutine: who runs it, which file, the cache. A decision that needs
// more (policy evaluation, names, a hash) goes to its own goroutine under
// the deadline, after which the fallback answers.
func (c *Controller) handle(ev *event, scratch []byte) {
	if ev.mask&unix.FAN_OPEN_EXEC_PERM == 0 {
		ev.release()
		return
	}
	c.stats.Events.Add(1)
	now := time.Now()
	cfg := c.cur.Load()
	if ev.pid == c.pid {
		c.answer(ev, true)
		ev.release()
		return
	}
	sub, err := c.subject(ev, cfg, scratch)
	if err != nil {
		// A process that is gone runs nothing; otherwise we cannot say
		// who it is, and the fallback decides.
		c.answer(ev, errors.Is(err, errGone) || cfg.fallback)
		ev.release()
		return
	}
	path, err := fdPath(ev.fd)
	if err != nil || (sub.ppid == c.pid && c.isSelf(ev.pid)) || c.underRoot(path) {
		// The agent's own children (plugins, jobs, elevated commands,
		// each checked by its own policy) and its own files always run.
		c.answer(ev, err == nil || cfg.fallback)
		ev.release()
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(ev.fd, &st); err != nil {
		c.answer(ev, cfg.fallback)
		ev.release()
		return
	}
	key := cacheKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim, uid: sub.uid, gid: sub.gid, groups: sub.groups, path: path}
	if v, ok := cfg.cache.get(key, c.opts.Now()); ok {
		defer func() { c.stats.CachedNanos.Add(uint64(time.Since(now))) }()
		c.stats.Cached.Add(1)
		c.deliver(ev, sub, path, &st, v)
		if v.kernel && ev.g.canIgnore() && stableName(path, &st) { // its mark went (the bound, memory pressure): again
			c.kernelAnswers(cfg, ev, &st)
		}
		ev.release()
		return
	}
	select {
	case c.sem <- struct{}{}:
	default:
		c.fallback(ev, cfg, sub, path, st, "too many decisions in progress")
		ev.release()
		return
	}
	timer := time.AfterFunc(cfg.timeout, func() { c.fallback(ev, cfg, sub, path, st, "no decision within "+cfg.timeout.String()) })
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.sem }()
		v := c.decide(cfg, ev, sub, path, &st, c.opts.Now())
		v.kernel = markable(cfg, path, &st, v)
		timer.Stop()
		cfg.cache.put(key, v)
		c.deliver(ev, sub, path, &st, v)
		if v.kernel {
			c.kernelAnswers(cfg, ev, &st)
		}
		ev.release()
	}()
}

// subject says who runs the exec: from the pidfd when no policy needs
// supplementary groups and the kernel can say, else from /proc.
func (c *Controller) subject(ev *event, cfg *config, scratch []byte) (subject, error) {
	if ev.pidfd >= 0 && !cfg.prof.Groups && c.pidfdInfo.Load() {
		s, err := subjectFromPidfd(ev.pidfd)
		if err == nil || errors.Is(err, errGone) {
			return s, err
		}
		c.log.Info("PIDFD_GET_INFO unavailable; reading /proc/<pid>/status", "err", err)
		c.pidfdInfo.Store(false) // an older kernel: ask /proc from now on
	}
	return readSubject(ev.pid, ev.pidfd, scratch)
}

// deliver answers ev with v and, when v is to be reported, queues its
// report once the answer went (the report is read from ev before).
func (c *Controller) deliver(ev *event, sub subject, path string, st *unix.Stat_t, v verdict) {
	if !v.report {
		c.answer(ev, v.allow)
		return
	}
	r := c.newReport(ev, sub, path, st, v)
	if c.answer(ev, v.allow) {
		c.queue(r)
	}
}

// answer responds once and counts it.
func (c *Controller) answer(ev *event, allow bool) bool {
	if !ev.respond(allow) {
		return false
	}
	if !allow {
		c.stats.Denied.Add(1)
	}
	return true
}

// fallback answers with the configured fallback when no decision came in
// time, and audits it when that blocks the exec.
func (c *Controller) fallback(ev *event, cfg *config, sub subject, path string, st unix.Stat_t, why string) {
	var r report
	if !cfg.fallback {
		r = c.newReport(ev, sub, path, &st, verdict{blocked: true, report: true, mode: policy.StatusEnforce,
			reason: "fallback deny: " + why})
	}
	if !c.answer(ev, cfg.fallback) {
		return
	}
	c.stats.Fallback.Add(1)
	c.log.Warn("exec answered with the fallback", "path", path, "pid", ev.pid, "allow", cfg.fallback, "why", why)
	if !cfg.fallback {
		c.queue(r)
	}
}

// isSelf reports whether pid is still running the agent's own program: a
// child the agent forked, in the middle of exec.
func (c *Controller) isSelf(pid int) bool {
	var st unix.Stat_t
	if unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st) != nil {
		return false
	}
	return st.Dev == c.exeDev && st.Ino == c.exeIno
}

func (c *Controller) underRoot(path string) bool {
	return c.opts.Root != "" && strings.HasPrefix(path, strings.TrimRight(c.opts.Root, "/")+"/")
}

// fdPath is the path of the file the kernel opened for the exec, as this
// process's mount namespace names it.
func fdPath(fd int) (string, error) { return readlink("/proc/self/fd/" + strconv.Itoa(fd)) }

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
