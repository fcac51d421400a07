// Package agent assembles a running warden agent from its parts: the
// store, the audit writer, the local CA, the API and health listeners, the
// broker, the controllers and the desired-state sources. It owns start-up
// order and a clean stop; the parts own everything else.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"warden/api"
	"warden/appcontrol"
	"warden/atomicfile"
	"warden/audit"
	"warden/broker"
	"warden/elevate"
	"warden/engine"
	"warden/peer"
	"warden/pki"
	"warden/procgroup"
	"warden/reconcile"
	"warden/source"
	"warden/state"
)

// Default listen addresses (DESIGN.md).
const (
	DefaultAPI    = "127.0.0.1:6889"
	DefaultHealth = "127.0.0.1:6888"
	DefaultMQTT   = "127.0.0.1:8675"
)

// shutdownGrace bounds how long in-flight requests may finish at stop; the
// whole stop stays under the 5 s DESIGN.md promises.
const shutdownGrace = 3 * time.Second

// Options says where the agent keeps its files and where it listens.
type Options struct {
	Root         string
	ListenAPI    string
	ListenHealth string
	ListenMQTT   string
	// LogOutput receives the logs besides logs/agent.log (default stderr).
	LogOutput io.Writer
	// LogFormat is json (default) or text.
	LogFormat string
	// LogLevel, when set, pins the level (debug, info, warning, error, or
	// the Settings names); otherwise Settings logging.level rules it.
	LogLevel string
	// Journal: stderr is systemd's journal (UnderJournal). Logs then go
	// to LogOutput only, each line prefixed with its syslog priority, and
	// no log file is written: journald keeps and rotates them.
	Journal bool
	// Ready, when set, is called once the agent serves.
	Ready func(Info)
}

// Info is what run/agent.json says about a running agent.
type Info struct {
	PID    int    `json:"pid"`
	API    string `json:"api"`
	Health string `json:"health"`
	MQTT   string `json:"mqtt"`
	CA     string `json:"ca"`
}

// InfoPath is where a running agent describes itself, relative to its root.
const InfoPath = "run/agent.json"

// ReadInfo reads ROOT/run/agent.json.
func ReadInfo(root string) (Info, error) {
	var in Info
	data, err := os.ReadFile(filepath.Join(root, InfoPath))
	if err != nil {
		return in, fmt.Errorf("no running agent found under %s: %w", root, err)
	}
	return in, json.Unmarshal(data, &in)
}

// agent holds the running parts, for the stop sequence.
type agent struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	logFile  *dailyFile
	store    *state.Store
	audit    *audit.Writer
	forward  *audit.Forwarder
	ca       *pki.CA
	server   *pki.ServerCert
	api      *api.Server
	servers  []*http.Server
	stopOnce sync.Once
	// wroteInfo says run/agent.json is this agent's to remove at stop.
	wroteInfo bool
	wg        sync.WaitGroup // listeners
	bg        sync.WaitGroup // background components
	cancel    context.CancelFunc

	// cgroups holds a cgroup per job task and plugin process; nil where
	// cgroup v2 is not writable (process groups and the orphan sweep).
	cgroups *procgroup.Cgroups

	pipeline *source.Pipeline
	inbox    *source.Inbox
	engine   *engine.Engine
	notifier func([]byte)
	manager  *reconcile.Manager
	broker   *broker.Broker
	// cancelAuditFeed ends the broker's audit subscription.
	cancelAuditFeed func()
	// refusals coalesces refused callers' events for the API and the broker.
	refusals *audit.Coalescer
	appctl   *appcontrol.Controller
	elevate  *elevate.Server
}

// Run starts an agent and blocks until ctx ends, then stops it cleanly:
// in-flight requests finish, the store is closed, run/agent.json removed.
func Run(ctx context.Context, opts Options) error {
	if opts.ListenAPI == "" {
		opts.ListenAPI = DefaultAPI
	}
	if opts.ListenHealth == "" {
		opts.ListenHealth = DefaultHealth
	}
	if opts.ListenMQTT == "" {
		opts.ListenMQTT = DefaultMQTT
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	if err := ParseLogLevel(opts.LogLevel); err != nil {
		return err
	}
	if opts.LogFormat != "" && opts.LogFormat != "json" && opts.LogFormat != "text" {
		return fmt.Errorf("--log-format %q: want json or text", opts.LogFormat)
	}
	for _, l := range []struct{ flag, addr string }{{"listen-api", opts.ListenAPI}, {"listen-health", opts.ListenHealth}, {"listen-mqtt", opts.ListenMQTT}} {
		if err := checkLoopback(l.flag, l.addr); err != nil {
			return err
		}
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return err
	}
	opts.Root = root
	if err := prepareRoot(root); err != nil {
		return err
	}
	a := &agent{opts: opts, level: new(slog.LevelVar)}
	defer a.stop()
	if err := a.start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	a.log.Info("agent stopping")
	return nil
}

func (a *agent) start(ctx context.Context) error {
	if err := closeOnExecInherited(); err != nil {
		return err
	}
	var err error
	// The store's lock comes first: a second agent on this root must touch
	// nothing of the running one (its log, run/agent.json, sockets).
	if a.store, err = state.Open(filepath.Join(a.opts.Root, "KeeperStorage"), state.Options{}); err != nil {
		if errors.Is(err, state.ErrLocked) {
			return fmt.Errorf("another agent holds the store under %s: %w", a.opts.Root, err)
		}
		return err
	}
	if err := a.openLogs(); err != nil {
		return err
	}
	if a.opts.LogLevel != "" {
		a.level.Set(levelOf(a.opts.LogLevel))
	} else {
		a.level.Set(levelOf(a.store.Current().Settings().Logging.Level))
	}
	a.openCgroups()
	if a.audit, err = audit.NewWriter(a.store, audit.Options{}); err != nil {
		return err
	}
	a.refusals = audit.NewCoalescer(a.audit, 0, nil)
	if err := a.startPKI(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(a.audit.Collectors()...)
	bgCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if err := a.startMetrics(bgCtx, reg); err != nil {
		return err
	}
	a.startSources(bgCtx)
	a.goRun(bgCtx, "retention", a.runRetention)
	a.forward = audit.NewForwarder(a.store, a.audit, a.log, reg)
	a.goRun(bgCtx, "audit-forward", a.forward.Run)

	routes, err := a.startEngine(bgCtx)
	if err != nil {
		return err
	}
	if err := a.startAppControl(bgCtx, reg); err != nil {
		return err
	}
	jobRoutes, err := a.startJobs(bgCtx)
	if err != nil {
		return err
	}
	routes = append(routes, jobRoutes...)
	routes = append(routes, a.pluginRoutes()...)
	a.api = api.New(api.Options{Store: a.store, Audit: a.audit, CA: a.ca, Logger: a.log, Registry: reg,
		Peer: lookupPeer, Settle: a.inbox.WaitIdle, Pipeline: a.pipeline, Evaluate: a.engine.EvaluateHandler(), Extra: routes,
		Status: a.runtimeStatus, Refusals: a.refusals})
	a.api.SetAllowedHosts(a.store.Current().Settings().AllowedHosts)

	info := Info{PID: os.Getpid(), CA: filepath.Join(a.opts.Root, "certs", "ca.pem")}
	apiLn, err := net.Listen("tcp", a.opts.ListenAPI)
	if err != nil {
		return fmt.Errorf("listen api: %w", err)
	}
	info.API = apiLn.Addr().String()
	healthLn, err := net.Listen("tcp", a.opts.ListenHealth)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listen health: %w", err)
	}
	info.Health = healthLn.Addr().String()
	if info.MQTT, err = a.startBroker(); err == nil {
		err = a.startControllers(bgCtx, reg, reconcile.Listen{API: info.API, Health: info.Health, MQTT: info.MQTT})
	}
	if err != nil {
		apiLn.Close()
		healthLn.Close()
		return err
	}
	if err := a.startElevate(); err != nil {
		apiLn.Close()
		healthLn.Close()
		return err
	}
	a.serve(apiLn, a.api.Handler(), a.serverTLS())
	a.serve(healthLn, a.api.HealthHandler(info.API), nil)

	if err := writeInfo(a.opts.Root, info); err != nil {
		return err
	}
	a.wroteInfo = true
	a.audit.Emit(audit.Event{Type: audit.AgentStarted, Component: "agent",
		Details: map[string]any{"api": info.API, "health": info.Health, "mqtt": info.MQTT, "generation": a.store.Current().Meta.Generation}})
	a.log.Info("agent serving", "api", info.API, "health", info.Health, "mqtt", info.MQTT, "root", a.opts.Root)
	a.notifyReady()
	a.goRun(bgCtx, "watchdog", a.runWatchdog)
	if a.opts.Ready != nil {
		a.opts.Ready(info)
	}
	return nil
}

func (a *agent) serve(ln net.Listener, h http.Handler, tlsConf *tlsConfig) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       api.ConnContext,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	if tlsConf != nil {
		srv.ErrorLog = a.api.ErrorLog(a.log, ln.Addr().String()) // audits failed handshakes
		srv.TLSConfig = tlsConf
		ln = tlsListener(ln, tlsConf)
	}
	a.servers = append(a.servers, srv)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("listener failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// stop undoes start in reverse order; it is safe after a partial start
// and when called more than once.
func (a *agent) stop() { a.stopOnce.Do(a.stopNow) }

func (a *agent) stopNow() {
	a.notifyStopping()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if a.api != nil {
		a.api.Close()
	}
	if a.elevate != nil {
		a.elevate.Close() // running elevated commands are hung up
	}
	for _, s := range a.servers {
		_ = s.Shutdown(ctx)
	}
	a.wg.Wait()
	if a.cancel != nil {
		a.cancel()
	}
	a.bg.Wait()
	if a.broker != nil {
		if err := a.broker.Close(); err != nil {
			a.log.Warn("close broker", "err", err)
		}
		if a.cancelAuditFeed != nil {
			a.cancelAuditFeed()
		}
	}
	if a.wroteInfo {
		os.Remove(filepath.Join(a.opts.Root, InfoPath))
	}
	if a.refusals != nil {
		a.refusals.Close() // the counts of refusals still in their window
	}
	if a.audit != nil {
		a.audit.Emit(audit.Event{Type: audit.AgentStopped, Component: "agent"})
		a.audit.Close()
	}
	if a.cgroups != nil {
		if err := a.cgroups.Close(); err != nil {
			a.log.Debug("cgroup folder not removed", "path", a.cgroups.Dir(), "err", err)
		}
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
	}
	if a.log != nil {
		a.log.Info("agent stopped")
	}
	if a.logFile != nil {
		a.logFile.Close()
	}
}

// writeInfo writes run/agent.json atomically, 0600.
func writeInfo(root string, in Info) error {
	data, _ := json.MarshalIndent(in, "", "  ")
	return atomicfile.Write(filepath.Join(root, InfoPath), append(data, '\n'), 0o600)
}

// lookupPeer finds the process behind a loopback connection, best effort.
func lookupPeer(local, remote netip.AddrPort) (int, string, bool) {
	p, err := peer.Lookup(local, remote)
	if err != nil {
		return 0, "", false
	}
	return p.PID, p.Exe, true
}

// runtimeStatus adds the controllers to GET /api/v1/status.
func (a *agent) runtimeStatus() map[string]any {
	out := map[string]any{}
	if a.manager != nil {
		out["controllers"] = a.manager.Status()
	}
	out["plugins"] = a.pluginStatus()
	if a.forward != nil {
		out["auditForward"] = a.forward.Status()
	}
	if a.appctl != nil {
		out["applicationControl"] = a.appctl.Status()
	}
	return out
}
