package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"warden/audit"
	"warden/broker"
	"warden/pki"
	"warden/state"
)

// waitLimit only bounds a failing test; nothing waits for it to pass.
const waitLimit = 10 * time.Second

// fakeClock is the CA's injected clock, so expiry needs no sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a running broker with its own store, audit writer and CA.
type env struct {
	t      *testing.T
	dir    string
	clock  *fakeClock
	store  *state.Store
	audit  *audit.Writer
	ca     *pki.CA
	server *pki.ServerCert
	broker *broker.Broker
	addr   string
}

type envOptions struct {
	topics map[string][]string // plugin id -> filters its document lists
}

func testLogger() *slog.Logger {
	if os.Getenv("BROKER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &fakeClock{t: time.Now()}}
	var err error
	if e.store, err = state.Open(filepath.Join(e.dir, "KeeperStorage"), state.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	if e.audit, err = audit.NewWriter(e.store, audit.Options{Machine: "test"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.audit.Close)
	if e.ca, err = pki.Open(filepath.Join(e.dir, "certs"), e.clock.Now); err != nil {
		t.Fatal(err)
	}
	e.server = pki.NewServerCert(e.ca, pki.ServerCertConfig{})
	if _, err := e.server.Rotate(); err != nil {
		t.Fatal(err)
	}
	e.broker, err = broker.New(broker.Options{
		Addr: "127.0.0.1:0", CA: e.ca, Server: e.server, Audit: e.audit, Logger: testLogger(),
		Topics:        func(id string) []string { return o.topics[id] },
		SweepInterval: -1, // tests call Sweep
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.addr, err = e.broker.Start(); err != nil {
		t.Fatal(err)
	}
	events, cancel := e.audit.Subscribe()
	e.broker.Follow(events)
	t.Cleanup(func() { e.broker.Close(); cancel() })
	return e
}

// identity is a certificate and key issued by some CA.
type identity struct {
	certPEM, keyPEM []byte
	serial          string
}

func (e *env) issue(role, name string) identity {
	e.t.Helper()
	c, k, s, err := e.ca.Issue(role, name, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return identity{c, k, s}
}

// tlsConfig trusts the agent's CA and presents id (none when id is zero).
func (e *env) tlsConfig(id identity) *tls.Config {
	e.t.Helper()
	if id.certPEM == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.ca.CertPEM())
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	cfg, err := pki.ClientTLSConfigPEM(e.ca.CertPEM(), id.certPEM, id.keyPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// client is a paho MQTT v5 client over TLS with the messages it received.
type client struct {
	*paho.Client
	conn     net.Conn
	msgs     chan *paho.Publish
	gone     chan *paho.Disconnect
	connack  *paho.Connack
	localTCP string
}

// connect dials the broker and sends CONNECT; the error is the CONNECT's.
func (e *env) connect(cfg *tls.Config, clientID string, mod func(*paho.Connect)) (*client, error) {
	e.t.Helper()
	raw, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c := &client{conn: raw, msgs: make(chan *paho.Publish, 1024), gone: make(chan *paho.Disconnect, 1),
		localTCP: raw.LocalAddr().String()}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			c.msgs <- r.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.gone <- d },
	})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if mod != nil {
		mod(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c.connack, err = c.Connect(ctx, cp)
	if err == nil {
		e.t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	}
	return c, err
}

func (e *env) mustConnect(id identity, clientID string) *client {
	e.t.Helper()
	c, err := e.connect(e.tlsConfig(id), clientID, nil)
	if err != nil {
		e.t.Fatalf("connect %s: %v", clientID, err)
	}
	return c
}

func (c *client) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ack, err := c.Subscribe(ctx, s)
	if err != nil && ack == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return ack.Reasons
}

func (c *client) publish(t *testing.T, topic string, qos byte, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if r == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r.ReasonCode
}

// receive returns the next message on topic, skipping others.
func (c *client) receive(t *testing.T, topic string) *paho.Publish {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case m := <-c.msgs:
			if m.Topic == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s", topic)
		}
	}
}

// events subscribes to stored audit events of the given types.
func (e *env) events(types ...string) <-chan audit.Event {
	ch, cancel := e.audit.Subscribe(types...)
	e.t.Cleanup(cancel)
	return ch
}

func next(t *testing.T, ch <-chan audit.Event) audit.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(waitLimit):
		t.Fatal("no audit event")
	}
	return audit.Event{}
}
