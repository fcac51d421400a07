package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"warden/audit"
	"warden/peer"
	"warden/pki"
)

// DefaultAddr is where the broker listens unless told otherwise (DESIGN.md).
const DefaultAddr = "127.0.0.1:8675"

const (
	// connectTimeout bounds the TLS handshake plus the CONNECT packet of a
	// new connection; the client's keepalive governs it afterwards.
	connectTimeout = 10 * time.Second
	// closeGrace is how long Close lets clients take their DISCONNECT
	// before their connections are cut.
	closeGrace = 2 * time.Second
	// publishQueue bounds the agent's own messages waiting to go out.
	publishQueue = 4096
)

// Errors a caller can test with errors.Is.
var (
	ErrAddress   = errors.New("broker: listen address must be 127.0.0.1:PORT")
	ErrClosed    = errors.New("broker: closed")
	ErrQueueFull = errors.New("broker: publish queue full")
	ErrStarted   = errors.New("broker: already started")
)

// Options configures a Broker. CA, Server and Audit are required.
type Options struct {
	// Addr is 127.0.0.1:PORT (default DefaultAddr); port 0 picks a free
	// port, which Start returns. Any other host is refused.
	Addr   string
	CA     *pki.CA
	Server *pki.ServerCert
	Audit  *audit.Writer
	Logger *slog.Logger // default slog.Default()
	// Topics lists the topic filters a plugin's document lets it subscribe
	// to, besides its own plugins/<id>/#. It is called once per CONNECT.
	Topics func(pluginID string) []string
	// Peer finds the local process behind a refused connection, best
	// effort, for the audit record (default: peer.Lookup).
	Peer func(local, remote netip.AddrPort) (pid int, exe string, ok bool)
	// Now is the clock of the refusal coalescer (default time.Now).
	Now func() time.Time
	// AuditWindow is the window over which repeats of one refusal (same
	// client and topic, or same reason and process) are counted into one
	// event after the first. Default 10 s.
	AuditWindow time.Duration
	// Refusals coalesces refusal events (shared with the API); nil: the
	// broker makes its own with Now and AuditWindow.
	Refusals *audit.Coalescer
	// SweepInterval is how often connected clients are identified again,
	// so a certificate that expired or was revoked by other means than
	// DisconnectSerial loses its connection. Default 30 s; negative: never.
	SweepInterval time.Duration
}

// Broker is the embedded MQTT broker. Its methods are safe for concurrent
// use.
type Broker struct {
	opts Options
	log  *slog.Logger
	srv  *mqtt.Server
	// stopServer is srv.Close; tests replace it with one that never returns.
	stopServer func()

	queue   chan outMsg
	dropped atomic.Uint64
	stop    chan struct{}
	bg      sync.WaitGroup

	mu          sync.Mutex
	conns       map[*conn]struct{}
	perIdentity map[string]int // open sessions by "role/name" (sessions.go)
	shared      int            // open sessions of non-admin identities
	started     bool
	closed      bool
	addr        string

	closeOnce sync.Once
}

type outMsg struct {
	topic   string
	payload []byte
}

// New returns a broker that is not listening yet; call Start.
func New(opts Options) (*Broker, error) {
	if opts.CA == nil || opts.Server == nil || opts.Audit == nil {
		return nil, errors.New("broker: CA, Server and Audit are required")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if err := CheckAddr(opts.Addr); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Peer == nil {
		opts.Peer = lookupPeer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuditWindow <= 0 {
		opts.AuditWindow = 10 * time.Second
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = 30 * time.Second
	}
	if opts.Refusals == nil && opts.Audit != nil {
		opts.Refusals = audit.NewCoalescer(opts.Audit, opts.AuditWindow, opts.Now)
	}
	log := opts.Logger.With("component", "broker")
	b := &Broker{
		opts:        opts,
		log:         log,
		queue:       make(chan outMsg, publishQueue),
		stop:        make(chan struct{}),
		conns:       map[*conn]struct{}{},
		perIdentity: map[string]int{},
	}
	b.srv = mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: capabilities(),
		// mochi logs every refused client at Info and Warn; the broker
		// audits and logs refusals itself.
		Logger: slog.New(levelFloor{h: log.Handler(), min: slog.LevelWarn}),
	})
	b.stopServer = func() { b.srv.Close() }
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, err
	}
	return b, nil
}

// capabilities narrows mochi's defaults to what plugins on one machine need,
// so a misbehaving plugin cannot grow the agent's memory without bound.
func capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumClients = maxClients
	c.MaximumSessionExpiryInterval = 3600
	c.MaximumPacketSize = 1 << 20
	// Retained messages would let a plugin store unbounded data in the
	// agent; topic aliases would let a publish name its topic after the ACL
	// check. Neither is needed.
	c.RetainAvailable = 0
	c.TopicAliasMaximum = 0
	return c
}

// CheckAddr refuses any listen address but 127.0.0.1:PORT, the rule of
// every listener of the agent (pki.CheckListenAddr).
func CheckAddr(addr string) error {
	if err := pki.CheckListenAddr(addr); err != nil {
		return fmt.Errorf("%w, not %q", ErrAddress, addr)
	}
	return nil
}

// Start listens and serves, and returns the bound address (useful with
// port 0). It fails if the address is taken.
func (b *Broker) Start() (addr string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", ErrClosed
	}
	if b.started {
		return "", ErrStarted
	}
	ln, err := net.Listen("tcp4", b.opts.Addr)
	if err != nil {
		return "", fmt.Errorf("broker: listen: %w", err)
	}
	tl := &tlsListener{Listener: ln, cfg: pki.ServerTLSConfig(b.opts.CA, b.opts.Server), b: b}
	if err := b.srv.AddListener(listeners.NewNet("tls", tl)); err != nil {
		ln.Close()
		return "", err
	}
	if err := b.srv.Serve(); err != nil {
		ln.Close()
		return "", err
	}
	b.started = true
	b.addr = ln.Addr().String()
	b.bg.Add(1)
	go b.publishLoop()
	if b.opts.SweepInterval > 0 {
		b.bg.Add(1)
		go b.sweepLoop(b.opts.SweepInterval)
	}
	b.log.Info("broker serving", "addr", b.addr)
	return b.addr, nil
}

// Addr is the address the broker listens on (empty before Start).
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Close sends every client a DISCONNECT, stops listening and returns once
// every connection is closed (within a few seconds). Messages still queued
// by Publish or Notify are delivered first. Close is idempotent.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		started := b.started
		b.mu.Unlock()
		close(b.stop)
		b.bg.Wait()
		if !started {
			return
		}
		// Connections that have not finished CONNECT are unknown to mochi,
		// which would wait for them to time out.
		b.closeConns(func(c *conn) bool { s := c.sess.Load(); return s == nil || s.grants == nil })
		done := make(chan struct{})
		go func() {
			b.stopServer()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeGrace):
			b.log.Warn("clients still connected after the grace period, closing their connections")
			b.closeConns(func(*conn) bool { return true })
			select {
			case <-done:
			case <-time.After(closeGrace):
				// mochi-mqtt (v2.7.9) can deadlock in Server.Close:
				// Clients.GetByListener takes the clients' read lock
				// twice, and a client leaving in between (Delete, the
				// write lock) blocks both for good (mochi-mqtt/server
				// issue 488, fix proposed in pull request 489). Every connection is
				// closed by now; the agent is stopping and does not wait
				// for ever (SIGTERM stops it within 5 s).
				b.log.Error("broker did not stop after its connections were closed; not waiting for it")
				return
			}
		}
		b.log.Info("broker stopped")
	})
	return nil
}

func (b *Broker) closeConns(which func(*conn) bool) {
	b.mu.Lock()
	var cs []*conn
	for c := range b.conns {
		if which(c) {
			cs = append(cs, c)
		}
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *Broker) track(c *conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Broker) untrack(c *conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.release(c)
	b.mu.Unlock()
}

func (b *Broker) tracked() []*conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		out = append(out, c)
	}
	return out
}

func lookupPeer(local, remote netip.AddrPort) (int, string, bool) {
	p, _ := peer.Lookup(local, remote) // an error only means less detail
	return p.PID, p.Exe, p.PID != 0
}
